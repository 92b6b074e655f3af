"""Recording the `work` log (`features.contract.work`, the writer's `append_table`, `recoup record-work`)
on small inline rows: writes, re-sending adds nothing, a conflict writes nothing, bad rows name table,
column, ids and count, references are checked where the store holds accounts, appends are serialized."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.contract import (
    ContractError,
    KeyConflict,
    read_dataset,
    read_work_rows,
    record_work,
    write_dataset,
)
from recoup_cli import app
from tests.builders import random_history


def _row(i: int, **changes) -> dict:
    row = {"work_id": f"W{i}", "account_id": f"A{i % 3}", "worked_date": "2025-06-01", "action": "status_call",
           "minutes": 10 + i, "propensity": 0.25, "is_exploration": i % 2}
    return {**row, **changes}


ROWS = pd.DataFrame([_row(1), _row(2, claim_id="C2", collector="K7", run_id="R1", suggested_action="appeal"),
                     _row(3, action="appeal", minutes=12.5, propensity=1.0)])


def _stores(tmp_path: Path) -> dict[str, str]:
    return {"parquet": str(tmp_path / "data"), "sqlite": f"sqlite:///{tmp_path / 'work.db'}"}


def _stored(store: str) -> pd.DataFrame:
    tables = ("work",)
    if "://" in store:
        import sqlalchemy as sa

        engine = sa.create_engine(store)
        try:
            return pd.read_sql("SELECT * FROM work ORDER BY work_id", engine)
        finally:
            engine.dispose()
    return read_dataset(store, tables=tables, validate=False)["work"]


def _snapshot(store: str) -> pd.DataFrame | dict:
    if "://" in store:
        return _stored(store).to_dict("list")
    return {p.name: p.read_bytes() for p in Path(store).iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_rows_are_written_once_and_resending_adds_nothing(tmp_path, kind):
    store = _stores(tmp_path)[kind]
    assert record_work(store, ROWS).as_dict() == {"received": 3, "written": 3, "duplicates": 0}
    got = _stored(store)
    assert sorted(got["work_id"]) == ["W1", "W2", "W3"]
    w2 = got.set_index("work_id").loc["W2"]
    assert (w2["claim_id"], w2["collector"], w2["run_id"], w2["suggested_action"]) == ("C2", "K7", "R1", "appeal")
    before = _snapshot(store)
    again = record_work(store, ROWS)
    assert again.as_dict() == {"received": 3, "written": 0, "duplicates": 3}
    assert _snapshot(store) == before  # nothing rewritten
    # a new row beside the old ones: only it is written; the same row twice in one input is one row
    more = pd.concat([ROWS, pd.DataFrame([_row(4), _row(4)])], ignore_index=True)
    assert record_work(store, more).as_dict() == {"received": 5, "written": 1, "duplicates": 4}
    assert sorted(_stored(store)["work_id"]) == ["W1", "W2", "W3", "W4"]


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_a_conflicting_row_writes_nothing_of_its_input(tmp_path, kind):
    store = _stores(tmp_path)[kind]
    record_work(store, ROWS)
    before = _snapshot(store)
    changed = pd.DataFrame([_row(9), _row(2, claim_id="C2", collector="K7", run_id="R1", suggested_action="appeal",
                                         minutes=99), _row(3, action="write_off", minutes=12.5, propensity=1.0)])
    with pytest.raises(KeyConflict) as err:
        record_work(store, changed)
    assert err.value.ids == ["W2", "W3"]
    assert "work.work_id" in str(err.value) and "2 rows" in str(err.value) and "W2, W3" in str(err.value)
    assert _snapshot(store) == before  # W9 was not written either


def test_a_null_where_a_value_was_stored_is_a_conflict(tmp_path):
    store = str(tmp_path / "data")
    record_work(store, ROWS)
    with pytest.raises(KeyConflict):
        record_work(store, pd.DataFrame([_row(2)]))  # W2 without its claim, collector, run


@pytest.mark.parametrize("change, column, problem", [
    ({"propensity": 0}, "propensity", "(0, 1]"),
    ({"propensity": 1.5}, "propensity", "(0, 1]"),
    ({"minutes": -1}, "minutes", "negative"),
    ({"action": "dance"}, "action", "unknown value"),
    ({"worked_date": "2025-13-01"}, "worked_date", "not of type date"),
    ({"worked_date": "1500-01-01"}, "worked_date", "outside the accepted range 1900-01-01"),  # a named bound
    ({"is_exploration": 2}, "is_exploration", "unknown value"),
    ({"account_id": None}, "account_id", "missing"),
])
def test_bad_rows_name_table_column_ids_and_count_and_write_nothing(tmp_path, change, column, problem):
    store = tmp_path / "data"
    rows = pd.DataFrame([_row(1), _row(5, **change), _row(6, **change)])
    with pytest.raises(ContractError) as err:
        record_work(store, rows)
    text = str(err.value)
    assert f"work.{column}" in text and problem in text and "2 rows" in text and "W5, W6" in text, text
    assert not store.exists() or not any(store.iterdir()) or not (store / "work.parquet").exists()


def test_a_work_id_repeated_with_different_content_is_a_duplicate_key(tmp_path):
    rows = pd.DataFrame([_row(1), _row(1, minutes=3)])
    with pytest.raises(ContractError, match=r"work\.work_id: duplicate key .*W1"):
        record_work(tmp_path / "data", rows)


def test_references_are_checked_where_the_store_holds_accounts_and_claims(tmp_path):
    ds = random_history(1).build()
    write_dataset(ds, tmp_path / "data")
    account = ds["accounts"]["account_id"].iloc[0]
    claim = ds["claims"]["claim_id"].iloc[0]
    good = pd.DataFrame([_row(1, account_id=account, claim_id=claim)])
    assert record_work(tmp_path / "data", good).written == 1
    bad = pd.DataFrame([_row(2, account_id="NO-SUCH-ACCOUNT"), _row(3, account_id=account, claim_id="NO-SUCH")])
    with pytest.raises(ContractError) as err:
        record_work(tmp_path / "data", bad)
    text = str(err.value)
    assert "work.account_id: references an unknown accounts.account_id (1 row; work_id: W2)" in text
    assert "work.claim_id: references an unknown claims.claim_id (1 row; work_id: W3)" in text
    # the dataset still reads and validates, with its work log
    assert list(read_dataset(tmp_path / "data")["work"]["work_id"]) == ["W1"]


def test_a_csv_dataset_gets_a_csv_work_table(tmp_path):
    ds = random_history(1).build()
    write_dataset(ds, tmp_path / "data", fmt="csv")
    account = ds["accounts"]["account_id"].iloc[0]
    record_work(tmp_path / "data", pd.DataFrame([_row(1, account_id=account)]))
    assert (tmp_path / "data" / "work.csv").exists() and not (tmp_path / "data" / "work.parquet").exists()
    assert record_work(tmp_path / "data", pd.DataFrame([_row(1, account_id=account)])).duplicates == 1
    back = read_dataset(tmp_path / "data")["work"]
    assert back["minutes"].tolist() == [11.0] and back["worked_date"].tolist() == [pd.Timestamp("2025-06-01")]


def test_a_broken_stored_table_is_not_built_on(tmp_path):
    (tmp_path / "data").mkdir()
    pd.DataFrame([_row(1, worked_date="yesterday")]).to_csv(tmp_path / "data" / "work.csv", index=False)
    with pytest.raises(ContractError, match=r"work\.worked_date: values are not of type date \(in the stored table"):
        record_work(tmp_path / "data", pd.DataFrame([_row(2)]))


@pytest.mark.parametrize("kind", ["parquet", "sqlite"])
def test_concurrent_appends_are_serialized(tmp_path, kind):
    """Eight writers at once, each with its own rows and a share of common ones: every row is stored
    once, and the counts add up (no lost update, no duplicate)."""
    store = _stores(tmp_path)[kind]
    results, errors = [], []

    def writer(t: int) -> None:
        try:
            for k in range(3):
                rows = pd.DataFrame([_row(1000 + 10 * t + k), _row(k)])  # _row(k): common to every writer
                results.append(record_work(store, rows))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    stored = _stored(store)
    assert len(stored) == stored["work_id"].nunique() == 8 * 3 + 3
    assert sum(r.written for r in results) == len(stored)
    assert sum(r.duplicates for r in results) == 8 * 3 - 3


def test_rows_files_csv_parquet_and_json_lines(tmp_path):
    rows = ROWS.copy()
    rows.to_csv(tmp_path / "w.csv", index=False)
    rows.to_parquet(tmp_path / "w.parquet")
    (tmp_path / "w.jsonl").write_text("\n".join(json.dumps(r) for r in rows.to_dict("records")) + "\n\n")
    (tmp_path / "body.json").write_text(json.dumps({"work": rows.to_dict("records")}))
    for name in ("w.csv", "w.parquet", "w.jsonl", "body.json"):
        got = read_work_rows(tmp_path / name)
        assert list(got["work_id"]) == ["W1", "W2", "W3"], name
    store = tmp_path / "data"
    assert record_work(store, read_work_rows(tmp_path / "w.csv")).written == 3
    for name in ("w.parquet", "w.jsonl", "body.json"):  # the same rows, however they come
        assert record_work(store, read_work_rows(tmp_path / name)).duplicates == 3, name
    (tmp_path / "broken.jsonl").write_text('{"work_id": "W1"}\n{"work_id": \n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_work_rows(tmp_path / "broken.jsonl")
    with pytest.raises(ValueError, match="unknown kind of file"):
        read_work_rows(tmp_path / "w.xlsx")


def test_cli_record_work(tmp_path):
    runner = CliRunner()
    assert runner.invoke(app, ["record-work", "--help"]).exit_code == 0
    ROWS.to_csv(tmp_path / "w.csv", index=False)
    (tmp_path / "data").mkdir()
    first = runner.invoke(app, ["record-work", str(tmp_path / "data"), str(tmp_path / "w.csv")])
    assert first.exit_code == 0, first.output
    assert "received 3, written 3, duplicates 0" in first.output
    again = runner.invoke(app, ["record-work", str(tmp_path / "data"), str(tmp_path / "w.csv"), "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout) == {"received": 3, "written": 0, "duplicates": 3}
    before = (tmp_path / "data" / "work.parquet").read_bytes()
    bad = ROWS.assign(propensity=[0.5, 0.0, 0.5], work_id=["W7", "W8", "W9"])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    out = runner.invoke(app, ["record-work", str(tmp_path / "data"), str(tmp_path / "bad.csv")])
    assert out.exit_code == 1 and "nothing written" in out.output and "work.propensity" in out.output
    assert "1 row; work_id: W8" in out.output
    ROWS.assign(minutes=[1, 2, 3]).to_csv(tmp_path / "changed.csv", index=False)
    out = runner.invoke(app, ["record-work", str(tmp_path / "data"), str(tmp_path / "changed.csv")])
    assert out.exit_code == 1 and "already stored with different content" in out.output and "W1, W2, W3" in out.output
    assert (tmp_path / "data" / "work.parquet").read_bytes() == before
    missing = runner.invoke(app, ["record-work", str(tmp_path / "nowhere"), str(tmp_path / "w.csv")])
    assert missing.exit_code == 2 and "no such dataset folder" in missing.output


def test_service_settings_take_the_work_store():
    from serving.api.settings import ServiceSettings

    env = {"RECOUP_API_TOKEN": "t", "RECOUP_WORK_STORE": "postgresql+psycopg://postgres@127.0.0.1/ar"}
    assert ServiceSettings.from_env(env).work_store == env["RECOUP_WORK_STORE"]
    assert ServiceSettings.from_env({"RECOUP_API_TOKEN": "t"}).work_store is None
    assert ServiceSettings.from_env(env, work_store="/data/ar").work_store == "/data/ar"
    with pytest.raises(ValueError, match="RECOUP_WORK_STORE.*table `work`"):
        ServiceSettings.from_env({**env, "RECOUP_WORK_STORE": "postgresql://h/db#worklist"})
    with pytest.raises(ValueError, match="RECOUP_WORK_STORE is not a SQLAlchemy URL") as err:
        ServiceSettings.from_env({**env, "RECOUP_WORK_STORE": "://secret@"})
    assert "secret" not in str(err.value)
