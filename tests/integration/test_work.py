"""The work log for real: `recoup record-work` and `POST /work` into PostgreSQL (the table created from
the contract, references checked against the database's accounts, idempotent, a conflict rolled back),
writers in separate processes serialized (a folder's lock file, PostgreSQL's advisory lock), and
`recoup serve --work-store` over HTTP with its log checked for ids."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from features.contract import ContractError, KeyConflict, record_work, write_dataset
from tests.builders import random_history
from tests.paths import REPO
from tests.postgres import scratch_database
from tests.servers import recoup_serve, service_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

TOKEN = "work-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def pg_work():
    """A database of its own (recoup_work_<pid>) holding a small dataset's tables, dropped afterwards."""
    with scratch_database("recoup_work") as url:
        ds = random_history(3, n_accounts=8).build()
        write_dataset(ds, url)  # no work table: the first append creates it
        yield url, ds


def _rows(ds, prefix: str, n: int = 4, **changes) -> pd.DataFrame:
    accounts = ds["accounts"]["account_id"].tolist()
    return pd.DataFrame([{"work_id": f"{prefix}-{i}", "account_id": accounts[i % len(accounts)],
                          "worked_date": "2025-06-01", "action": "status_call", "minutes": 4.0 + i,
                          "propensity": 0.5, "is_exploration": 1, "collector": f"K-{prefix}-{i}", **changes}
                         for i in range(n)])


def _query(url: str, sql: str) -> pd.DataFrame:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        return pd.read_sql(sa.text(sql), engine)
    finally:
        engine.dispose()


def test_record_work_into_postgres(pg_work):
    import sqlalchemy as sa

    url, ds = pg_work
    rows = _rows(ds, "PG")
    assert record_work(url, rows).as_dict() == {"received": 4, "written": 4, "duplicates": 0}
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        cols = {c["name"]: c for c in insp.get_columns("work")}
        assert str(cols["worked_date"]["type"]) == "DATE" and not cols["work_id"]["nullable"]
        assert insp.get_pk_constraint("work")["constrained_columns"] == ["work_id"]
    finally:
        engine.dispose()
    assert record_work(url, rows).as_dict() == {"received": 4, "written": 0, "duplicates": 4}
    changed = pd.concat([_rows(ds, "PG-new", 1), _rows(ds, "PG", 2, minutes=30.0)], ignore_index=True)
    with pytest.raises(KeyConflict) as err:
        record_work(url, changed)
    assert err.value.ids == ["PG-0", "PG-1"]
    with pytest.raises(ContractError, match=r"work\.account_id: references an unknown accounts\.account_id"):
        record_work(url, _rows(ds, "PG-ref", 1, account_id="NO-SUCH-ACCOUNT"))
    stored = _query(url, "SELECT * FROM work ORDER BY work_id")
    assert stored["work_id"].tolist() == ["PG-0", "PG-1", "PG-2", "PG-3"]  # the conflict wrote nothing
    assert stored["minutes"].tolist() == [4.0, 5.0, 6.0, 7.0]
    # the database reads back as a dataset whose work log validates
    from features.contract import read_dataset

    assert len(read_dataset(url)["work"]) == 4


@pytest.mark.parametrize("kind", ["folder", "postgres"])
def test_writers_in_separate_processes_are_serialized(pg_work, tmp_path, kind):
    """Three `recoup record-work` processes at once, each with rows of its own and rows common to all:
    every row is stored once, and the written counts add up."""
    url, ds = pg_work
    if kind == "folder":
        store = tmp_path / "data"
        write_dataset(ds, store)
        store = str(store)
    else:
        store = url
    files = []
    for p in range(3):
        rows = pd.concat([_rows(ds, f"{kind}-own{p}", 40), _rows(ds, f"{kind}-common", 40)], ignore_index=True)
        path = tmp_path / f"rows{p}.csv"
        rows.to_csv(path, index=False)
        files.append(path)
    procs = [subprocess.Popen([sys.executable, "-m", "recoup_cli", "record-work", store, str(f), "--json"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    summaries = [json.loads(o[0]) for o in outs]
    assert sum(s["written"] for s in summaries) == 3 * 40 + 40
    assert sum(s["duplicates"] for s in summaries) == 2 * 40
    if kind == "folder":
        stored = pd.read_parquet(tmp_path / "data" / "work.parquet")
    else:
        stored = _query(url, f"SELECT work_id FROM work WHERE work_id LIKE '{kind}-%'")
    assert len(stored) == stored["work_id"].nunique() == 160


def test_recoup_serve_with_a_postgres_work_store(pg_work, benv, tmp_path):
    """`recoup serve --work-store URL` over HTTP: rows written, re-sent rows counted as duplicates, a
    conflict is a 409 that writes nothing, rows count against RECOUP_MAX_ACCOUNTS; the log has no ids."""
    import httpx

    url, ds = pg_work
    rows = _rows(ds, "HTTP", 3).to_dict("records")
    log_path = tmp_path / "serve.log"
    env = service_env(MLFLOW_TRACKING_URI=benv.tracking_uri, RECOUP_ARTIFACT_ROOT=str(benv.artifact_root),
                      RECOUP_API_TOKEN=TOKEN, RECOUP_MAX_ACCOUNTS="3")
    with recoup_serve(["--work-store", url], env, log_path) as (base, _):
        r = httpx.post(f"{base}/work", json={"work": rows}, headers=AUTH, timeout=30)
        assert r.status_code == 200, r.text
        assert (r.json()["received"], r.json()["written"], r.json()["duplicates"]) == (3, 3, 0)
        r = httpx.post(f"{base}/work", json={"work": rows}, headers=AUTH, timeout=30)
        assert (r.status_code, r.json()["written"], r.json()["duplicates"]) == (200, 0, 3)
        r = httpx.post(f"{base}/work", json={"work": [{**rows[0], "minutes": 50.0}]}, headers=AUTH, timeout=30)
        assert r.status_code == 409 and r.json()["work_ids"] == ["HTTP-0"]
        four = [*rows, {**rows[0], "work_id": "HTTP-9"}]
        r = httpx.post(f"{base}/work", json={"work": four}, headers=AUTH, timeout=30)
        assert r.status_code == 413 and "RECOUP_MAX_ACCOUNTS" in r.json()["error"]
        r = httpx.post(f"{base}/work", json={"work": [{**rows[0], "work_id": "HTTP-8", "account_id": "NOBODY"}]},
                       headers=AUTH, timeout=30)
        assert r.status_code == 422 and r.json()["fields"] == ["work[0].account_id"]
        assert httpx.post(f"{base}/work", json={"work": rows}, timeout=30).status_code == 401
    stored = _query(url, "SELECT * FROM work WHERE work_id LIKE 'HTTP-%' ORDER BY work_id")
    assert stored["work_id"].tolist() == ["HTTP-0", "HTTP-1", "HTTP-2"] and stored["minutes"].tolist()[0] == 4.0
    log_text = log_path.read_text()
    assert "work received=3 written=3 duplicates=0" in log_text
    for row in rows:
        for col in ("work_id", "account_id", "collector"):
            assert row[col] not in log_text, col
