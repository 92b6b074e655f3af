"""The array helpers of the snapshot engine: table columns as NumPy arrays, id codes, and the
grouped reductions (counts, sums, min/max, last row) that every block is made of.

A table column is a pandas Series (DataFrame tables) or a NumPy array (`features.contract.ColumnTable`,
the API's one-request tables); the converters here turn either into the arrays the code works on.
Money sums are rounded to cents so that the input row order cannot change a float's last bit.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from features.dates import DAY_KEY, NEVER

SMALL = 4096  # up to this many values, a dict lookup beats building pandas hash tables


# ------------------------------------------------------------------ columns -> arrays


def objects(s) -> np.ndarray:
    return s.to_numpy(dtype=object) if isinstance(s, pd.Series) else np.asarray(s, dtype=object)


def isin(s, choices: list[str]) -> np.ndarray:
    if isinstance(s, pd.Series):
        return s.isin(choices).to_numpy()
    wanted = set(choices)
    return np.fromiter((v in wanted for v in np.asarray(s, dtype=object).tolist()), dtype=bool, count=len(s))


def notna(s) -> np.ndarray:
    return s.notna().to_numpy() if isinstance(s, pd.Series) else ~pd.isna(np.asarray(s))


def text(s) -> np.ndarray:
    """Stripped text (missing stays missing)."""
    if isinstance(s, pd.Series):
        return s.astype(str).str.strip().to_numpy(dtype=object)
    return np.array([v.strip() if isinstance(v, str) else np.nan if v is None else str(v).strip()
                     for v in np.asarray(s, dtype=object).tolist()], dtype=object)


def numbers(s) -> np.ndarray:
    if isinstance(s, pd.Series):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(s, dtype=np.float64)  # ColumnTable numbers are float64 with NaN for missing


def take_rows(table, rows: np.ndarray):
    return table.take(rows) if not isinstance(table, pd.DataFrame) else table.iloc[rows]


class Keys:
    """Ids -> integer codes (-1: unknown): a dict for the small inputs of one API request, Arrow's
    hash lookup for large ones (about 4x faster than a pandas object index here), with the id
    set converted once and reused by every table that refers to these ids."""

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._arrow = None
        self._dict: dict | None = None

    def codes(self, values: pd.Series) -> np.ndarray:
        vals = objects(values)
        if len(self.ids) <= SMALL and len(vals) <= SMALL:
            if self._dict is None:
                self._dict = {k: i for i, k in enumerate(self.ids.tolist())}
            get = self._dict.get
            return np.fromiter((get(v, -1) for v in vals.tolist()), dtype=np.int64, count=len(vals))
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            if self._arrow is None:
                self._arrow = pa.array(self.ids, type=pa.string(), from_pandas=True)
            found = pc.index_in(pa.array(vals, type=pa.string(), from_pandas=True), value_set=self._arrow)
            return pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids that are not strings: pandas' hash index
            index = pd.Index(self.ids, dtype=object)
            return index.get_indexer(pd.Index(vals, dtype=object)).astype(np.int64)


@functools.cache
def _enum_index(names: tuple[str, ...]) -> pd.Index:
    return pd.Index(list(names), dtype=object)


def enum_codes(values: pd.Series, mapping: dict[str, int]) -> np.ndarray:
    """The code of each enum value (`mapping`), -1 for a value not in it."""
    vals = objects(values)
    if len(vals) <= SMALL:
        return np.fromiter((mapping.get(v, -1) for v in vals.tolist()), dtype=np.int64, count=len(vals))
    return _enum_index(tuple(mapping)).get_indexer(pd.Index(vals, dtype=object)).astype(np.int64)


# ------------------------------------------------------------------ grouped reductions


def count_by(codes: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes if mask is None else codes[mask], minlength=n)


def sum_by(codes: np.ndarray, w: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Sums per code, rounded to cents."""
    if mask is not None:
        codes, w = codes[mask], w[mask]
    return np.round(np.bincount(codes, weights=w, minlength=n), 2)


def max_by(codes: np.ndarray, v: np.ndarray, n: int, mask: np.ndarray, fill=-NEVER) -> np.ndarray:
    out = np.full(n, fill, dtype=np.int64)
    np.maximum.at(out, codes[mask], v[mask])
    return out


def min_by(codes: np.ndarray, v: np.ndarray, n: int, mask: np.ndarray, fill=NEVER) -> np.ndarray:
    out = np.full(n, fill, dtype=np.int64)
    np.minimum.at(out, codes[mask], v[mask])
    return out


def last_by(codes: np.ndarray, n: int, mask: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Row index of the last row per code by `keys` (the last key sorts first), -1 when none."""
    rows = np.flatnonzero(mask)
    out = np.full(n, -1, dtype=np.int64)
    if len(rows) == 0:
        return out
    order = rows[np.lexsort(tuple(k[rows] for k in keys) + (codes[rows],))]
    c = codes[order]
    is_last = np.r_[c[1:] != c[:-1], True]
    out[c[is_last]] = order[is_last]
    return out


def next_day(ev_key: np.ndarray, ev_day: np.ndarray, q_key: np.ndarray, q_day: np.ndarray, strict: bool) -> np.ndarray:
    """For each query (key, day): the first event day of the same key on/after (or after) day."""
    out = np.full(len(q_key), NEVER, dtype=np.int64)
    if len(ev_key) == 0 or len(q_key) == 0:
        return out
    ev = np.sort(ev_key * DAY_KEY + ev_day)
    pos = np.searchsorted(ev, q_key * DAY_KEY + q_day, side="right" if strict else "left")
    ok = pos < len(ev)
    cand = ev[np.minimum(pos, len(ev) - 1)]
    ok &= (cand // DAY_KEY) == q_key
    out[ok] = cand[ok] % DAY_KEY
    return out


def take(values: np.ndarray, idx: np.ndarray, fill=None) -> np.ndarray:
    """values[idx] as an object array, `fill` where idx < 0."""
    out = np.full(len(idx), fill, dtype=object)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    return out


def days_since(T: int, day: np.ndarray) -> np.ndarray:
    """Days from `day` to T; NaN where the day is unknown (or not known by T)."""
    out = (T - day).astype(np.float64)
    out[(day >= NEVER) | (day <= -NEVER) | (day > T)] = np.nan
    return out


# ------------------------------------------------------------------ the output table


def feature_table(
    blocks: list[tuple[pd.Timestamp, dict[str, np.ndarray]]],
    keys: list[str],
    names: list[str],
    labels: list[str],
    frames: bool = True,
) -> pd.DataFrame | dict[str, np.ndarray]:
    """The output frame of per-date blocks, built once with its columns in their final order (keys,
    as_of, ...); with `frames=False` the same columns as a dict of NumPy arrays (the API's path: no
    pandas)."""
    cols = [*keys, "as_of", *names, *labels]
    parts = []
    for t, b in blocks:
        n = len(b[keys[0]])
        data = {c: b[c] for c in cols if c in b}
        data["as_of"] = np.full(n, np.datetime64(t, "ns"))
        parts.append(data)
    if len(parts) == 1:
        data = parts[0]
    else:
        data = {c: np.concatenate([d[c] for d in parts]) for c in parts[0]}
    data = {c: data[c] for c in cols if c in data}
    return pd.DataFrame(data) if frames else data
