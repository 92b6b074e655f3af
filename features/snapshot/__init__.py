"""Point-in-time snapshots. Being split into this package; the whole engine is in `history.py` for now."""

from features.snapshot.history import *  # noqa: F403
from features.snapshot.history import _OFF, _PROCESSED, _SMALL, NEVER, _day, _min, _prepare  # noqa: F401
