"""A small simulated dataset shared by the tests (built once per session, in a temp folder)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

SMALL = dict(n_accounts=10000, seed=11, start="2024-01-01", end="2025-06-30")


@functools.cache
def small_dataset_dir() -> Path:
    from features.sources.simulate import simulate_to_folder

    root = Path(tempfile.mkdtemp(prefix="recoup-sim-"))
    return simulate_to_folder(root / "data", **SMALL)

OFFICE = dict(n_accounts=2500, seed=5, start="2024-01-01", end="2024-12-31")


@functools.cache
def small_office_dir() -> Path:
    """A small office (a year of history) for the truth, arena and off-policy tests."""
    from features.sources.simulate import simulate_to_folder

    root = Path(tempfile.mkdtemp(prefix="recoup-office-"))
    return simulate_to_folder(root / "data", **OFFICE)
