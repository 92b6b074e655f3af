"""The one atomic writer (`features.contract.write`): a failed write leaves the old folder as it was,
chunks append, other files are carried over when asked, and the SQL writer only writes PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.contract import DatasetWriter, read_dataset, write_dataset


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_write_leaves_the_old_folder_as_it_was(small_dataset, tmp_path):
    ds = small_dataset
    write_dataset(ds, tmp_path / "data")
    before = _files(tmp_path / "data")
    with pytest.raises(RuntimeError, match="disk full"):
        with DatasetWriter(tmp_path / "data") as writer:
            writer.write("payers", ds["payers"].head(2))
            raise RuntimeError("disk full")
    assert _files(tmp_path / "data") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.lock", "data"]  # no temporary folder left behind


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_table_written_in_chunks_reads_back_whole(small_dataset, tmp_path, fmt):
    ds = small_dataset
    accounts = ds["accounts"]
    with DatasetWriter(tmp_path / "data", fmt=fmt) as writer:
        for name, df in ds.tables.items():
            if name != "accounts":
                writer.write(name, df)
        for start in range(0, len(accounts), 4000):
            writer.write("accounts", accounts.iloc[start:start + 4000])
    again = read_dataset(tmp_path / "data")
    pd.testing.assert_frame_equal(accounts, again["accounts"], check_dtype=True)


def test_keep_existing_carries_the_other_files_over(small_dataset, tmp_path):
    ds = small_dataset
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


def test_sql_writer_refuses_a_database_other_than_postgresql(small_dataset, tmp_path):
    ds = small_dataset
    with pytest.raises(ValueError, match="writes to PostgreSQL, not sqlite"):
        write_dataset(ds, f"sqlite:///{tmp_path / 'x.db'}")


def test_one_writer_at_a_time_per_folder(small_dataset, tmp_path):
    from features.contract.locks import LockTimeout
    from features.contract.write import dataset_lock
    from features.sources.x12 import ingest
    from tests.concurrency import held_in_another_thread

    write_dataset(small_dataset, tmp_path / "data")
    with held_in_another_thread(lambda: dataset_lock(tmp_path / "data")):  # another writer of the folder
        with pytest.raises(LockTimeout, match=f"dataset folder {tmp_path / 'data'} is locked by another run"):
            with DatasetWriter(tmp_path / "data", lock_timeout=0.2):
                pass
        with pytest.raises(LockTimeout):
            ingest([], out=tmp_path / "data", lock_timeout=0)
    with DatasetWriter(tmp_path / "data", keep_existing=True, lock_timeout=0) as writer:
        writer.write("payers", small_dataset["payers"])


def test_what_a_killed_write_left_is_cleaned_up_and_a_folder_moved_aside_put_back(small_dataset, tmp_path):
    write_dataset(small_dataset, tmp_path / "data")
    before = _files(tmp_path / "data")
    (tmp_path / ".data.new.x1").mkdir()  # a new version a kill left staged
    # the two-rename path (no atomic exchange) killed between its renames: the folder is aside
    (tmp_path / "data").rename(tmp_path / ".data.old.x2")
    with DatasetWriter(tmp_path / "data", keep_existing=True) as writer:
        writer.write("work", small_dataset["work"].head(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.lock", "data"]
    after = _files(tmp_path / "data")
    assert {k: v for k, v in after.items() if k != "work.parquet"} == {
        k: v for k, v in before.items() if k != "work.parquet"}


def test_an_existing_folder_is_switched_by_one_exchange(small_dataset, tmp_path, monkeypatch):
    from features.contract import write

    write_dataset(small_dataset, tmp_path / "data")
    real, done = write._exchange, []
    monkeypatch.setattr(write, "_exchange", lambda a, b: done.append(real(a, b)) or done[-1])
    with DatasetWriter(tmp_path / "data") as writer:
        writer.write("payers", small_dataset["payers"].head(2))
    assert done == [True]  # one atomic step (Linux): no moment without a folder of that name
    assert len(read_dataset(tmp_path / "data", validate=False, tables=("payers",))["payers"]) == 2


def test_a_read_that_spans_a_switch_reads_one_version(tmp_path, monkeypatch):
    """A writer switches a new version of the folder in while a reader is between two tables: every table
    the reader returns is the old version's (the folder is opened once)."""
    import os

    from features.contract import read as reader
    from tests.builders import random_history

    def write(folder, seed):
        folder.mkdir()
        for name, df in random_history(seed, 4).frames().items():
            df.to_parquet(folder / f"{name}.parquet")

    data, new = tmp_path / "data", tmp_path / "new"
    write(data, 1)
    write(new, 2)
    old_accounts = set(pd.read_parquet(data / "accounts.parquet")["account_id"])
    old_claims = set(pd.read_parquet(data / "claims.parquet")["claim_id"])
    assert old_claims != set(pd.read_parquet(new / "claims.parquet")["claim_id"])
    real, calls = reader._read_folder_table, []

    def read_then_switch(folder, name, *args):
        df = real(folder, name, *args)
        if not calls:  # after the first table, the writer's switch
            os.rename(data, tmp_path / "previous")
            os.rename(new, data)
        calls.append(name)
        return df

    monkeypatch.setattr(reader, "_read_folder_table", read_then_switch)
    raw = reader.read_raw(data)
    assert len(calls) > 3 and set(raw["accounts"]["account_id"]) == old_accounts
    assert set(raw["claims"]["claim_id"]) == old_claims
