"""Data tests: the contract catches each way a dataset can be broken, and names where."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.contract import TABLES, ContractError, DatasetWriter, read_dataset, validate_dataset, write_dataset
from tests.simdata import small_dataset_dir


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "data"
    shutil.copytree(small_dataset_dir(), dst)
    return dst


def _break(folder: Path, table: str, fn) -> None:
    path = folder / f"{table}.parquet"
    df = pd.read_parquet(path)
    fn(df).to_parquet(path, index=False)


def _errors(folder: Path) -> str:
    with pytest.raises(ContractError) as err:
        read_dataset(folder)
    return str(err.value)


def test_simulated_dataset_is_valid():
    ds = read_dataset(small_dataset_dir())
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


def test_csv_folder_reads_like_parquet(tmp_path):
    ds = read_dataset(small_dataset_dir())
    write_dataset(ds.tables, tmp_path / "csv", fmt="csv")
    again = read_dataset(tmp_path / "csv")
    for name, df in ds.tables.items():
        pd.testing.assert_frame_equal(df, again[name], check_dtype=True, obj=name)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_write_leaves_the_old_folder_as_it_was(tmp_path):
    ds = read_dataset(small_dataset_dir())
    write_dataset(ds, tmp_path / "data")
    before = _files(tmp_path / "data")
    with pytest.raises(RuntimeError, match="disk full"):
        with DatasetWriter(tmp_path / "data") as writer:
            writer.write("payers", ds["payers"].head(2))
            raise RuntimeError("disk full")
    assert _files(tmp_path / "data") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no temporary folder left behind


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_table_written_in_chunks_reads_back_whole(tmp_path, fmt):
    ds = read_dataset(small_dataset_dir())
    accounts = ds["accounts"]
    with DatasetWriter(tmp_path / "data", fmt=fmt) as writer:
        for name, df in ds.tables.items():
            if name != "accounts":
                writer.write(name, df)
        for start in range(0, len(accounts), 4000):
            writer.write("accounts", accounts.iloc[start:start + 4000])
    again = read_dataset(tmp_path / "data")
    pd.testing.assert_frame_equal(accounts, again["accounts"], check_dtype=True)


def test_keep_existing_carries_the_other_files_over(tmp_path):
    ds = read_dataset(small_dataset_dir())
    write_dataset(ds, tmp_path / "data")
    (tmp_path / "data" / "_ledger.json").write_text("{}")
    with DatasetWriter(tmp_path / "data", keep_existing=True) as writer:
        writer.write("payers", ds["payers"].head(3))
    assert (tmp_path / "data" / "_ledger.json").read_text() == "{}"
    assert len(pd.read_parquet(tmp_path / "data" / "payers.parquet")) == 3
    assert len(pd.read_parquet(tmp_path / "data" / "accounts.parquet")) == len(ds["accounts"])
    with DatasetWriter(tmp_path / "data") as writer:  # without it, the folder is replaced whole
        writer.write("payers", ds["payers"])
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["payers.parquet"]


def test_sql_writer_refuses_a_database_other_than_postgresql(tmp_path):
    ds = read_dataset(small_dataset_dir())
    with pytest.raises(ValueError, match="writes to PostgreSQL, not sqlite"):
        write_dataset(ds, f"sqlite:///{tmp_path / 'x.db'}")


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


@pytest.mark.postgres
def test_sql_url_reader(tmp_path):
    sa = pytest.importorskip("sqlalchemy")
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    engine = sa.create_engine(url)
    schema = "recoup_test_reader"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    ds = read_dataset(small_dataset_dir())
    with engine.begin() as conn:
        for name, df in ds.tables.items():
            df.to_sql(name, conn, schema=schema, index=False)
    engine.dispose()
    again = read_dataset(f"{url}?options=-csearch_path%3D{schema}")
    for name, df in ds.tables.items():
        key = list(TABLES[name].key)
        expected = df.sort_values(key, na_position="first").reset_index(drop=True)
        got = again[name].sort_values(key, na_position="first").reset_index(drop=True)
        pd.testing.assert_frame_equal(expected, got, obj=name)
    validate_dataset(again)
