"""Dates in one convention: the as-of date parsed once, at the edge, and dates as day numbers.

An as-of date is a midnight `pandas.Timestamp` (`parse_as_of`, `parse_as_of_dates`): the CLI, the batch
and the API parse what they are given once and pass that type down; the feature code only normalises it.

A day number is the days since 1970-01-01 plus `DAY_OFFSET`, so that every date pandas can hold
(1678-2262) is a positive integer below `DAY_KEY`: `code * DAY_KEY + day` is then a composite (id, day)
sort key that decodes back (`key // DAY_KEY`, `key % DAY_KEY`). A date that is not known (null) is
`NEVER`, later than every real day. Day numbers are only compared and subtracted (days between two
dates), so the offset never shows in a feature.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd

DAY_OFFSET = 1_000_000  # days added to epoch days: every real day is positive
DAY_KEY = np.int64(1 << 21)  # above every day number: the day multiplier of (id, day) keys
NEVER = np.int64(1 << 40)  # the day number of a date that is not known (null)
NS_PER_DAY = 86_400_000_000_000
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
_NAT = np.iinfo(np.int64).min

__all__ = [
    "DAY_KEY",
    "DAY_OFFSET",
    "NEVER",
    "NS_PER_DAY",
    "add_days",
    "dates_of",
    "day_number",
    "day_numbers",
    "from_python_dates",
    "parse_as_of",
    "parse_as_of_dates",
]


def parse_as_of(value) -> pd.Timestamp:
    """One as-of date (ISO text `YYYY-MM-DD`, a date, a datetime, a Timestamp or a datetime64) as a
    midnight `pandas.Timestamp`; a `ValueError` that quotes the value when it is not a date."""
    if isinstance(value, pd.Timestamp) and value is not pd.NaT:
        return value.normalize()
    try:
        t = pd.Timestamp(value.strip() if isinstance(value, str) else value)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"as-of date {value!r} is not a date (YYYY-MM-DD)") from err
    if t is pd.NaT:
        raise ValueError(f"as-of date {value!r} is not a date (YYYY-MM-DD)")
    return t.normalize()


def parse_as_of_dates(value) -> list[pd.Timestamp]:
    """Several as-of dates, sorted and without repeats: comma-separated text (`--as-of A,B`), one
    date, or any iterable of dates (each as `parse_as_of` reads it)."""
    if isinstance(value, str):
        value = [a for a in value.split(",") if a.strip()]
    if isinstance(value, (dt.date, pd.Timestamp, np.datetime64)) or not isinstance(value, Iterable):
        value = [value]
    return sorted({parse_as_of(a) for a in value})


def day_number(date) -> int:
    """The day number of one date (an as-of date, usually)."""
    return int(np.datetime64(parse_as_of(date), "D").astype(np.int64)) + DAY_OFFSET


def day_numbers(values) -> np.ndarray:
    """Day numbers (int64) of a date column: a pandas Series or an array of datetime64; `NEVER` for a
    missing date."""
    v = values.to_numpy(dtype="datetime64[ns]") if isinstance(values, pd.Series) else np.asarray(
        values, dtype="datetime64[ns]")
    out = v.astype("datetime64[D]").astype(np.int64) + DAY_OFFSET
    out[np.isnat(v)] = NEVER
    return out


def dates_of(days: np.ndarray) -> np.ndarray:
    """The dates (datetime64[ns]) of day numbers."""
    return (np.asarray(days, dtype=np.int64) - DAY_OFFSET).astype("datetime64[D]").astype("datetime64[ns]")


def from_python_dates(values: list[dt.date | None]) -> np.ndarray:
    """`datetime.date`s (None for missing) as datetime64[ns] (NaT), without pandas (the API's tables)."""
    ns = np.array([_NAT if v is None else (v.toordinal() - _EPOCH_ORDINAL) * NS_PER_DAY for v in values],
                  dtype=np.int64)
    return ns.view("datetime64[ns]")


def add_days(dates: np.ndarray, days: np.ndarray) -> np.ndarray:
    """`dates` (datetime64[ns]) plus a (possibly fractional) number of days; NaT where `days` is not
    finite."""
    ok = np.isfinite(days)
    ns = (np.where(ok, days, 0.0) * NS_PER_DAY).astype(np.int64).astype("timedelta64[ns]")
    return np.where(ok, dates + ns, np.datetime64("NaT", "ns"))
