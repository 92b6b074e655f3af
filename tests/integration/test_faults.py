"""Faults and overlap (issue 15): one run at a time per target and date on PostgreSQL too (a fresh
database included: table creation is race-free), overlapping runs never double or mix, a run killed
(SIGKILL) at a switch or commit point leaves the previous output whole, the next start marks it failed
and removes what it staged, and `recoup ingest-x12` killed between its steps keeps the old dataset.
The kill points not covered here (`parquet`, `sql`) are in test_batch.py and test_postgres.py; every
one, ten times, with random kills beside them, in bench/faults.py."""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from features.contract.locks import LockTimeout
from serving.batch.store import open_run, read_runs, read_worklist
from tests.code.test_run_store import D1, D2, assert_one_run, overlap, record, run, statuses
from tests.killpoint import run_killed
from tests.paths import REPO, X12_SAMPLES
from tests.postgres import scratch_database
from tests.worklists import AS_OF, assert_worklists_equal


@pytest.fixture(scope="module")
def pg():
    with scratch_database("recoup_faults") as url:
        yield url


@pytest.mark.postgres
def test_sql_second_run_waits_or_fails_and_a_fresh_database_is_created_once(pg):
    target = f"{pg}#fresh"
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def date_run(day: str, rid: str) -> None:  # two dates at once on tables nobody created yet
        try:
            run(target, day, rid, between=lambda: barrier.wait(10))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=date_run, args=a) for a in ((D1, "d1"), (D2, "d2"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert_one_run(target, D1, "d1")
    assert_one_run(target, D2, "d2")
    with open_run(target, D1, "holder", 0):
        with pytest.raises(LockTimeout, match=f"worklist table fresh at {D1} is locked by another run"):
            run(target, D1, "refused", timeout=0.2)
    assert "refused" not in statuses(target)


@pytest.mark.postgres
def test_sql_overlapping_runs_never_double_or_mix(pg):
    overlap(f"{pg}#overlap")


@pytest.mark.postgres
def test_sql_killed_runs_are_marked_failed_on_the_next_start(pg):
    target = f"{pg}#killed_runs"
    run(target, D1, "good")
    for day, rid in ((D1, "dead1"), (D2, "dead2")):  # the server dropped their locks when they died
        with open_run(target, day, rid) as store:
            store.record(record(rid, day, "running"))
    run(target, D1, "next")
    assert statuses(target) == {"good": "succeeded", "dead1": "failed", "dead2": "failed", "next": "succeeded"}
    assert_one_run(target, D1, "next")


# ---------------------------------------------------------------- real SIGKILLs at the other points


@pytest.mark.slow
@pytest.mark.parametrize("point", ["parquet-running", "parquet-switched"])
def test_score_killed_at_a_switch_leaves_a_whole_worklist(benv, tmp_path, point):
    from serving.batch import run_batch

    target = str(tmp_path / "worklist")
    before = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    old = read_worklist(target)
    run_killed(point, ["score", str(benv.data), "--as-of", AS_OF, "--out", target], tmp_path / "ready", cwd=REPO,
               env=benv.env())
    now = read_worklist(target)
    assert now["account_id"].is_unique and len(now) == len(old)
    assert_worklists_equal(old, now)  # the same data and model: whichever whole run it is, it is this list
    (run_id,) = set(now["run_id"])
    assert set(read_worklist(target, kind="denials")["run_id"]) == {run_id}  # never mixed
    runs = read_runs(target).set_index("run_id")
    if point == "parquet-running":  # killed before its running row switched in: no trace but what it staged
        assert run_id == before.run_id and list(runs.index) == [before.run_id]
    else:  # killed after its lists and its succeeded row switched in, before deleting the replaced version
        assert run_id != before.run_id and runs.loc[run_id, "status"] == "succeeded"
        assert (tmp_path / "worklist_versions" / f"{AS_OF}.{before.run_id}").exists()
    after = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    assert_one_run(target, AS_OF, after.run_id, len(old))
    assert [p.name for p in (tmp_path / "worklist_versions").glob(f"{AS_OF}.*")] == [f"{AS_OF}.{after.run_id}"]
    assert len(list((tmp_path / "worklist_versions").glob("runs.*.parquet"))) == 1
    assert set(read_runs(target)["status"]) == {"succeeded"}


@pytest.mark.slow
@pytest.mark.postgres
def test_sql_score_killed_before_its_running_row_commits(benv, pg, tmp_path):
    from serving.batch import run_batch

    target = f"{pg}#killed_start"
    before = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    old = read_worklist(target)
    run_killed("sql-running", ["score", str(benv.data), "--as-of", AS_OF, "--out", target], tmp_path / "ready",
               cwd=REPO, env=benv.env())
    assert_worklists_equal(old, read_worklist(target)[list(old.columns)])
    assert list(read_runs(target)["run_id"]) == [before.run_id]
    after = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    assert_one_run(target, AS_OF, after.run_id, len(old))


def _counts(folder) -> dict[str, int]:
    from features.contract import read_dataset

    return read_dataset(folder).row_counts()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["dataset", "dataset-swapped"])
def test_ingest_killed_between_steps_keeps_a_whole_dataset(tmp_path, point):
    from features.sources.x12 import ingest

    files = sorted((X12_SAMPLES / "835").glob("*.txt"))
    data = tmp_path / "data"
    ingest(files[:2], out=data)
    old = _counts(data)
    run_killed(point, ["ingest-x12", str(files[2]), "--out", str(data)], tmp_path / "ready", cwd=REPO)
    now = _counts(data)  # a whole dataset that validates: the old one, or the new one once switched
    staged = [p.name for p in tmp_path.iterdir() if p.name.startswith(".data.new.")]
    assert len(staged) == 1  # the new version not switched in, or (swapped) the old one not deleted yet
    if point == "dataset":
        assert now == old
    else:
        assert now["remittances"] > old["remittances"]
    ingest(files[2:4], out=data)  # the next ingestion completes, adds each file once, and cleans up
    again = _counts(data)
    assert again["remittances"] > old["remittances"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".data.new.")]
    ledger = pd.read_parquet(data / "_ingested.parquet")
    assert ledger["sha256"].is_unique and len(ledger) == 4
