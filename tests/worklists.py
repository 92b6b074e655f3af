"""Comparing worklists the way DESIGN.md promises: every column but `run_id`, floats to 1e-9."""

from __future__ import annotations

import numpy as np
import pandas as pd

AS_OF = "2025-06-01"  # the as-of dates the batch tests score (the `benv` data ends 2025-06-30)
AS_OF_2 = "2025-05-01"


def assert_worklists_equal(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-9) -> None:
    """Row by row, every column but run_id; floats to `atol`; any missing value equals any other."""
    assert list(a.columns) == list(b.columns), (list(a.columns), list(b.columns))
    assert len(a) == len(b), (len(a), len(b))
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    for col in a.columns:
        if col == "run_id":
            continue
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            same = (np.isnan(xv) & np.isnan(yv)) | (xv == yv) | (np.abs(xv - yv) <= atol)
            assert same.all(), f"{col}: {int((~same).sum())} rows differ"
            continue
        xs = [None if (not isinstance(v, list | np.ndarray) and pd.isna(v)) else v for v in x.astype(object)]
        ys = [None if (not isinstance(v, list | np.ndarray) and pd.isna(v)) else v for v in y.astype(object)]
        xs = [list(v) if isinstance(v, np.ndarray) else v for v in xs]
        ys = [list(v) if isinstance(v, np.ndarray) else v for v in ys]
        bad = [i for i, (u, v) in enumerate(zip(xs, ys, strict=True)) if u != v]
        assert not bad, f"{col}: {len(bad)} rows differ, first at row {bad[0]}: {xs[bad[0]]!r} != {ys[bad[0]]!r}"
