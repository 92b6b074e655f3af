"""Point-in-time snapshots: account features, denial features, labels and pooled statistics.

This is the one feature code path: training, the nightly batch and the HTTP API all call
`account_features` / `denial_features` / `snapshot_features`. A snapshot (entity, as-of T) sees only
rows whose event time is on or before T (DESIGN.md, "Snapshots and labels"); a child row (claim
line, adjustment) takes its parent's time, and a row is never known before its parent.

How it is fast: every table is turned once into NumPy arrays (`history.History`: integer account /
claim / payer codes, dates as day numbers), then each as-of date is a handful of masked
`np.bincount`s and sorts. No Python loop per account; a loop over as-of dates only.

- `history.py`: `History`, the arrays prepared once, and the denial-event definition;
- `stats.py`: the pooled statistics table (`pooled_stats`) and its lookup;
- `accounts.py`, `denials.py`: the account and denial blocks;
- `arrays.py`: the grouped reductions they are made of.
"""

from __future__ import annotations

import pandas as pd

from features.catalogue import (
    ACCOUNT_CONTEXT,
    ACCOUNT_LABELS,
    DEFAULT_HORIZONS,
    DENIAL_LABELS,
    Horizons,
    account_feature_names,
)
from features.contract import Dataset
from features.dates import parse_as_of_dates
from features.snapshot.accounts import account_block, account_features
from features.snapshot.arrays import feature_table
from features.snapshot.denials import DENIAL_FEATURE_COLUMNS, DENIAL_KEYS, denial_block, denial_features
from features.snapshot.history import History
from features.snapshot.stats import STATS_COLUMNS, pooled_stats, rates_at

__all__ = [
    "STATS_COLUMNS",
    "History",
    "Horizons",
    "account_features",
    "denial_features",
    "pooled_stats",
    "snapshot_features",
]


def snapshot_features(
    ds: Dataset,
    as_of,
    stats: pd.DataFrame | None = None,
    horizons: Horizons = DEFAULT_HORIZONS,
    with_labels: bool = True,
    frames: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`(account_features(...), denial_features(...))` from one preparation of `ds`: the API and
    the batch need both, and preparing the arrays is most of a one-account call's cost. With
    `frames=False`, each is a dict of NumPy arrays with the same columns (what the API ranks)."""
    p = History.from_dataset(ds)
    acc, den = [], []
    for t in parse_as_of_dates(as_of):
        rates = rates_at(p, t, stats, horizons)  # one lookup serves both blocks
        acc.append((t, account_block(p, t, rates, horizons.horizon_days, with_labels)))
        den.append((t, denial_block(p, t, rates, horizons.overturn_horizon_days, with_labels)))
    a = feature_table(acc, ["account_id"], [*account_feature_names(), *ACCOUNT_CONTEXT],
                      list(ACCOUNT_LABELS) if with_labels else [], frames)
    d = feature_table(den, DENIAL_KEYS, DENIAL_FEATURE_COLUMNS, list(DENIAL_LABELS) if with_labels else [], frames)
    return a, d
