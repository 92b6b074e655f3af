"""A dataset in memory: its contract tables, typed, plus its extract date.

Tables are pandas DataFrames with the canonical types (`validate.coerce_table` gives them), or
`ColumnTable`s (NumPy columns) for the API's one-request datasets, which only the feature code reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract.tables import TABLES


def person_of_accounts(accounts) -> np.ndarray:
    """Each account's person, who gets one contact for all their balances: its `guarantor_id`, else its
    patient (DESIGN.md), from an accounts table (a DataFrame or a `ColumnTable`), as an object array."""
    def col(name: str) -> np.ndarray:
        v = accounts[name]
        return v.to_numpy(dtype=object) if isinstance(v, pd.Series) else np.asarray(v, dtype=object)

    person = col("patient_id")
    if "guarantor_id" in accounts:
        g = col("guarantor_id")
        person = np.where(pd.isna(g), person, g) if len(g) else person
    return person


def float_column(values) -> np.ndarray:
    """A column (a pandas Series, or a NumPy array of a ColumnTable or of feature columns) as float64,
    missing values and non-numbers as NaN."""
    if isinstance(values, pd.Series):
        if values.dtype.kind in "fiub":
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class ColumnTable:
    """A contract table as NumPy columns: ids and text as object arrays, dates as datetime64[ns],
    money and counts as float64 (NaN for missing). It offers what the feature code reads of a
    DataFrame (`len`, `in`, `[column]`, `take`) without pandas' cost per operation, which dominates
    a one-account API request; the feature code accepts either."""

    __slots__ = ("columns", "n")

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns
        self.n = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self.n

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, rows: np.ndarray) -> ColumnTable:
        return ColumnTable({c: v[rows] for c, v in self.columns.items()})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> ColumnTable:
        """A typed contract frame (as `coerce_table` leaves it) in ColumnTable's types."""
        cols = {}
        for c in df.columns:
            s = df[c]
            if s.dtype.kind == "M":
                cols[c] = s.to_numpy(dtype="datetime64[ns]")
            elif s.dtype.kind in "fiub":
                cols[c] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                cols[c] = np.array([None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                                    else v for v in s.to_numpy(dtype=object)], dtype=object)
        return cls(cols)


@dataclass
class Dataset:
    """The contract tables of one dataset, typed, plus its extract date. Tables are DataFrames,
    or `ColumnTable`s for the API's one-request datasets (read by the feature code only)."""

    tables: dict[str, pd.DataFrame]
    extract_date: pd.Timestamp | None = None
    source: str = ""
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # e.g. _truth tables

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def row_counts(self) -> dict[str, int]:
        return {n: len(df) for n, df in self.tables.items()}


def latest_date(ds: Dataset) -> pd.Timestamp | None:
    """The latest date in any contract date column: the dataset's extract date unless one is given."""
    dates = []
    for name, df in ds.tables.items():
        for col, spec in TABLES[name].columns.items():
            if spec.type == "date" and col in df and len(df):
                m = df[col].max()
                if pd.notna(m):
                    dates.append(m)
    return max(dates) if dates else None
