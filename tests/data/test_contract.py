"""Data tests: the contract catches each way a dataset can be broken, and names where."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.contract import TABLES, ContractError, read_dataset, write_dataset


@pytest.fixture()
def data_copy(tmp_path: Path, small_data: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(small_data, dst)
    return dst


def _break(folder: Path, table: str, fn) -> None:
    path = folder / f"{table}.parquet"
    df = pd.read_parquet(path)
    fn(df).to_parquet(path, index=False)


def _errors(folder: Path) -> str:
    with pytest.raises(ContractError) as err:
        read_dataset(folder)
    return str(err.value)


def test_simulated_dataset_is_valid(small_dataset):
    ds = small_dataset
    assert set(ds.tables) >= {"payers", "accounts", "claims", "transactions"}
    assert ds.extract_date == pd.Timestamp("2025-06-30")


def test_missing_column_is_named(data_copy):
    _break(data_copy, "claims", lambda df: df.drop(columns=["billed_amount"]))
    assert "claims.billed_amount: required column is missing" in _errors(data_copy)


def test_wrong_type_names_rows(data_copy):
    def bad(df):
        df["billed_amount"] = df["billed_amount"].astype(str)
        df.loc[df.index[:3], "billed_amount"] = "lots"
        return df

    _break(data_copy, "claims", bad)
    msg = _errors(data_copy)
    assert "claims.billed_amount: values are not of type money (3 rows; claim_id:" in msg


def test_unknown_enum_value(data_copy):
    def bad(df):
        df.loc[df.index[:2], "txn_type"] = "bitcoin"
        return df

    _break(data_copy, "transactions", bad)
    msg = _errors(data_copy)
    assert "transactions.txn_type: unknown value (allowed: charge," in msg and "(2 rows; txn_id:" in msg


def test_negative_amount(data_copy):
    first_id = pd.read_parquet(data_copy / "transactions.parquet")["txn_id"].iloc[0]

    def bad(df):
        df.loc[df.index[0], "amount"] = -5.0
        return df

    _break(data_copy, "transactions", bad)
    msg = _errors(data_copy)
    assert "transactions.amount: value is negative" in msg and first_id in msg


def test_broken_reference(data_copy):
    def bad(df):
        df.loc[df.index[:4], "account_id"] = "NOPE"
        return df

    _break(data_copy, "claims", bad)
    assert "claims.account_id: references an unknown accounts.account_id (4 rows" in _errors(data_copy)


def test_duplicate_id(data_copy):
    _break(data_copy, "accounts", lambda df: pd.concat([df, df.iloc[:1]], ignore_index=True))
    assert "accounts.account_id: duplicate key (2 rows" in _errors(data_copy)


def test_row_dated_after_extract_date(data_copy):
    with pytest.raises(ContractError) as err:
        read_dataset(data_copy, extract_date="2025-03-31")
    assert "dated after the extract date 2025-03-31" in str(err.value)


def test_missing_table(data_copy):
    (data_copy / "appeals.parquet").unlink()
    assert "appeals: table is missing" in _errors(data_copy)


def test_csv_folder_reads_like_parquet(small_dataset, tmp_path):
    ds = small_dataset
    write_dataset(ds.tables, tmp_path / "csv", fmt="csv")
    again = read_dataset(tmp_path / "csv")
    for name, df in ds.tables.items():
        pd.testing.assert_frame_equal(df, again[name], check_dtype=True, obj=name)


def test_unknown_columns_are_ignored(data_copy):
    _break(data_copy, "payers", lambda df: df.assign(notes="x"))
    ds = read_dataset(data_copy)
    assert list(ds["payers"].columns) == list(TABLES["payers"].columns)


def test_validate_cli_exits_nonzero_and_names_the_table(data_copy):
    _break(data_copy, "claims", lambda df: df.drop(columns=["payer_id"]))
    proc = subprocess.run([sys.executable, "-m", "recoup_cli", "validate", str(data_copy)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "claims.payer_id: required column is missing" in proc.stderr


# ----------------------------------------------------------------------------- bounds and unreadable files


def _set_cell(folder: Path, table: str, column: str, value, row: int = 0) -> str:
    """Set one cell of a Parquet table (a date as a date32 value, so that 9999-12-31 can be stored);
    returns the row's id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / f"{table}.parquet"
    tab = pq.read_table(path)
    i = tab.schema.get_field_index(column)
    values = tab.column(column).to_pylist()
    values[row] = value
    typ = pa.date32() if isinstance(value, __import__("datetime").date) else tab.schema.field(i).type
    tab = tab.set_column(i, pa.field(column, typ), pa.array(values, type=typ))
    pq.write_table(tab, path)
    return str(tab.column(TABLES[table].key[0])[row])


@pytest.mark.parametrize("table,column,value", [
    ("transactions", "posted_date", "9999-12-31"),
    ("remittances", "received_date", "3025-01-02"),
    ("claims", "submitted_date", "1850-06-01"),
])
def test_a_date_outside_the_range_is_named(data_copy, table, column, value):
    import datetime as dt

    rid = _set_cell(data_copy, table, column, dt.date.fromisoformat(value))
    msg = _errors(data_copy)
    assert f"{table}.{column}: date outside the accepted range 1900-01-01 … 2100-12-31" in msg and rid in msg


def test_a_date_outside_the_range_in_csv_and_the_range_is_configurable(data_copy, monkeypatch):
    df = pd.read_parquet(data_copy / "activities.parquet")
    (data_copy / "activities.parquet").unlink()
    df["activity_date"] = pd.to_datetime(df["activity_date"]).dt.strftime("%Y-%m-%d")
    df.loc[0, "activity_date"] = "2150-01-02"
    df.to_csv(data_copy / "activities.csv", index=False)
    assert f"activities.activity_date: date outside the accepted range 1900-01-01 … 2100-12-31 (RECOUP_MIN_DATE, " \
           f"RECOUP_MAX_DATE) (1 row; activity_id: {df.loc[0, 'activity_id']})" in _errors(data_copy)
    monkeypatch.setenv("RECOUP_MAX_DATE", "2200-12-31")  # the range is the operator's: 2150 is then in it
    assert read_dataset(data_copy).extract_date == pd.Timestamp("2150-01-02")
    monkeypatch.setenv("RECOUP_MAX_DATE", "2300-01-01")
    with pytest.raises(ValueError, match="RECOUP_MAX_DATE=2300-01-01 must be ordered and within"):
        read_dataset(data_copy)


@pytest.mark.parametrize("value,problem", [
    (float("inf"), "value is not a finite number"),
    (float("-inf"), "value is not a finite number"),
    (2e9, "amount over the ceiling of 1,000,000,000 dollars"),
])
def test_amounts_are_finite_and_under_the_ceiling(data_copy, value, problem, monkeypatch):
    rid = _set_cell(data_copy, "transactions", "amount", value)
    msg = _errors(data_copy)
    assert f"transactions.amount: {problem}" in msg and rid in msg
    if value == 2e9:
        monkeypatch.setenv("RECOUP_MAX_AMOUNT", "5e9")
        read_dataset(data_copy)


def test_a_count_over_its_plausible_maximum_is_named(data_copy):
    _break(data_copy, "payers", lambda df: df.assign(timely_filing_days=df["timely_filing_days"].where(
        df.index != 0, 10**7)))
    assert "payers.timely_filing_days: value over the plausible maximum of 3,650" in _errors(data_copy)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "latin1"])
def test_an_unreadable_file_is_named_by_file_and_table_without_a_traceback(data_copy, damage):
    if damage == "latin1":
        df = pd.read_parquet(data_copy / "payers.parquet")
        (data_copy / "payers.parquet").unlink()
        df.loc[0, "payer_name"] = "Caf\u00e9 Sant\u00e9"
        df.to_csv(data_copy / "payers.csv", index=False, encoding="latin-1")
        table, file = "payers", data_copy / "payers.csv"
    else:
        table, file = "claims", data_copy / "claims.parquet"
        data = file.read_bytes()
        file.write_bytes({"truncated": data[:len(data) // 2], "empty": b"", "garbage": b"not parquet " * 40}[damage])
    msg = _errors(data_copy)
    assert f"{table}: file {file} " in msg
    assert ("is not UTF-8 text" if damage == "latin1" else "cannot be read") in msg
    proc = subprocess.run([sys.executable, "-m", "recoup_cli", "validate", str(data_copy)], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and f"{table}: file {file}" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
