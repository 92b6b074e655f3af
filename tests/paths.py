"""Where the tests find the repository and `../shared/` (CI keeps shared/ beside the checkout)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
X12_SAMPLES = SHARED / "samples" / "x12"
NOTEBOOKS = REPO / "notebooks"
