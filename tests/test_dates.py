"""features.dates: the one day-number convention and the as-of parsing every entry point uses."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from features.dates import (
    DAY_KEY,
    NEVER,
    add_days,
    dates_of,
    day_number,
    day_numbers,
    from_python_dates,
    parse_as_of,
    parse_as_of_dates,
)


def test_parse_as_of_gives_one_type_and_names_bad_input():
    want = pd.Timestamp("2025-06-01")
    for value in ("2025-06-01", " 2025-06-01 ", dt.date(2025, 6, 1), pd.Timestamp("2025-06-01 13:45"),
                  np.datetime64("2025-06-01")):
        got = parse_as_of(value)
        assert isinstance(got, pd.Timestamp) and got == want
    for bad in ("2025-13-01", "soon", None, ""):
        with pytest.raises(ValueError, match="as-of date .* is not a date"):
            parse_as_of(bad)


def test_parse_as_of_dates_sorts_and_drops_repeats():
    assert parse_as_of_dates("2025-06-01,2025-05-01, 2025-06-01") == [pd.Timestamp("2025-05-01"),
                                                                      pd.Timestamp("2025-06-01")]
    assert parse_as_of_dates(pd.Timestamp("2025-05-01")) == [pd.Timestamp("2025-05-01")]
    assert parse_as_of_dates(["2025-05-02", dt.date(2025, 5, 1)]) == [pd.Timestamp("2025-05-01"),
                                                                     pd.Timestamp("2025-05-02")]
    assert parse_as_of_dates("") == []


def test_day_numbers_round_trip_and_fit_composite_keys():
    dates = pd.Series(pd.to_datetime(["1678-01-01", "1970-01-01", "2025-06-01", "2262-04-11", None]))
    days = day_numbers(dates)
    assert days[-1] == NEVER and (days[:-1] > 0).all() and (days[:-1] < DAY_KEY).all()
    assert days[2] - days[1] == (pd.Timestamp("2025-06-01") - pd.Timestamp("1970-01-01")).days
    assert day_number("2025-06-01") == days[2]
    np.testing.assert_array_equal(dates_of(days[:-1]), dates[:-1].to_numpy())
    key = 12_345 * DAY_KEY + days[:-1]  # (code, day) decodes back
    assert (key // DAY_KEY == 12_345).all() and (key % DAY_KEY == days[:-1]).all()


def test_python_dates_and_day_arithmetic():
    got = from_python_dates([dt.date(2025, 6, 1), None])
    assert got.dtype == np.dtype("datetime64[ns]") and got[0] == np.datetime64("2025-06-01") and np.isnat(got[1])
    later = add_days(np.array(["2025-06-01", "2025-06-01"], dtype="datetime64[ns]"), np.array([30.0, np.nan]))
    assert later[0] == np.datetime64("2025-07-01") and np.isnat(later[1])
