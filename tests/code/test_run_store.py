"""The worklist store (serving.batch.store) on small hand-made lists: one run at a time per target and
as-of date, a run's lists and its runs row switched in together, overlapping runs never doubled or
mixed, killed runs marked failed and what they staged removed, and the layout before the manifest
still read. Folder targets here; the same on PostgreSQL in tests/integration/test_faults.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from features.contract.locks import LockTimeout
from serving.batch.store import open_run, read_runs, read_worklist
from tests.concurrency import held_in_another_thread

D1, D2 = "2025-06-01", "2025-05-01"


def lists(run_id: str, n: int = 4) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ids = [f"A{i}" for i in range(n)]
    accounts = pd.DataFrame({"account_id": ids, "rank": range(1, n + 1), "reasons": [["r"]] * n, "run_id": run_id})
    denials = pd.DataFrame({"claim_id": [f"C{i}" for i in range(2)], "account_id": ids[:2], "rank": [1, 2],
                            "run_id": run_id})
    drift = pd.DataFrame({"kind": ["feature"], "name": ["balance"], "psi": [0.01], "warn": [False],
                          "run_id": run_id})
    return accounts, denials, drift


def record(run_id: str, day: str, status: str) -> dict:
    return {"run_id": run_id, "as_of": day, "status": status, "engine": "local", "model_version": "m/1",
            "started_at": pd.Timestamp.now(tz="UTC").isoformat()}


def run(target: str, day: str, run_id: str, timeout: float | None = 0.0, between=None) -> None:
    """What a batch run does with the store: its running row, then its lists and final row at once."""
    with open_run(target, day, run_id, timeout) as store:
        store.record(record(run_id, day, "running"))
        if between is not None:
            between()
        store.publish(*lists(run_id), lambda: record(run_id, day, "succeeded"))


def assert_one_run(target: str, day: str, run_id: str, n: int = 4) -> None:
    acc = read_worklist(target, day)
    assert len(acc) == n and acc["account_id"].is_unique and set(acc["run_id"]) == {run_id}
    for kind in ("denials", "drift"):
        assert set(read_worklist(target, day, kind=kind)["run_id"]) == {run_id}, kind  # never mixed


def statuses(target: str) -> dict[str, str]:
    runs = read_runs(target)
    return dict(zip(runs["run_id"], runs["status"], strict=True))


def test_rerun_replaces_its_date_and_keeps_the_others(tmp_path):
    target = str(tmp_path / "worklist")
    run(target, D1, "r1")
    run(target, D2, "r2")
    run(target, D1, "r3")
    assert_one_run(target, D1, "r3")
    assert_one_run(target, D2, "r2")
    assert len(read_worklist(target)) == 8
    assert statuses(target) == {"r1": "succeeded", "r2": "succeeded", "r3": "succeeded"}
    versions = sorted(p.name for p in (tmp_path / "worklist_versions").iterdir() if p.is_dir())
    assert versions == [f"{D2}.r2", f"{D1}.r3"]  # the replaced version is gone
    assert len(list((tmp_path / "worklist_versions").glob("runs.*.parquet"))) == 1


def test_a_second_run_of_the_same_target_and_date_waits_or_fails(tmp_path):
    target = str(tmp_path / "worklist")
    run(target, D1, "r1")
    with open_run(target, D1, "holder", 0):
        with pytest.raises(LockTimeout, match=rf"worklist {target} at {D1} is locked by another run"):
            run(target, D1, "r2", timeout=0)
        t0 = time.monotonic()
        with pytest.raises(LockTimeout, match="waited 0.3 s"):
            run(target, D1, "r2", timeout=0.3)
        assert time.monotonic() - t0 >= 0.3
        run(target, D2, "r3")  # another date is another lock
    assert_one_run(target, D1, "r1")  # the refused runs wrote nothing
    assert "r2" not in statuses(target)
    run(target, D1, "r4")  # free again
    assert_one_run(target, D1, "r4")


def overlap(target: str) -> None:
    """Two runs of one target and date, the second started while the first holds the lock: the second
    waits and replaces the first's lists whole; never both, never a mix."""
    started = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            run(target, D1, "first", None, between=lambda: (started.set(), time.sleep(0.5)))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    t = threading.Thread(target=first)
    t.start()
    started.wait(10)
    run(target, D1, "second", timeout=None)
    t.join()
    assert not errors
    assert_one_run(target, D1, "second")
    assert statuses(target) == {"first": "succeeded", "second": "succeeded"}


def test_overlapping_runs_never_double_or_mix(tmp_path):
    overlap(str(tmp_path / "worklist"))


def test_killed_run_is_marked_failed_and_its_staging_removed(tmp_path):
    target = str(tmp_path / "worklist")
    run(target, D1, "good")
    # what SIGKILLs leave (the OS drops their locks): a run of D1 staged and never switched in, one of D2
    # that had only written its running row
    for day, rid in ((D1, "killed1"), (D2, "killed2")):
        with open_run(target, day, rid) as store:
            store.record(record(rid, day, "running"))
    staged = tmp_path / "worklist_versions" / f"{D1}.killed1"
    staged.mkdir()
    (staged / "accounts.parquet").write_bytes(b"half a file")
    # a run of another date that is alive is never marked
    with held_in_another_thread(lambda: open_run(target, "2025-04-01", "alive"),
                                lambda store: store.record(record("alive", "2025-04-01", "running"))):
        run(target, D1, "next")
    assert statuses(target) == {"good": "succeeded", "killed1": "failed", "killed2": "failed", "alive": "running",
                                "next": "succeeded"}
    assert not staged.exists()
    assert_one_run(target, D1, "next")
    failed = read_runs(target).set_index("run_id").loc["killed1"]
    assert pd.notna(failed["finished_at"])


def test_the_layout_before_the_manifest_still_reads_and_moves_over(tmp_path):
    target = tmp_path / "worklist"
    for day, rid in ((D1, "old1"), (D2, "old2")):  # what the store wrote before the manifest
        acc, den, drift = lists(rid)
        for folder, df, name in ((target, acc.assign(reasons='["r"]'), "part-0.parquet"),
                                 (tmp_path / "worklist_denials", den, "part-0.parquet"),
                                 (tmp_path / "worklist_drift", drift, "drift.parquet")):
            (folder / f"as_of={day}").mkdir(parents=True)
            df.to_parquet(folder / f"as_of={day}" / name, index=False)
    pd.DataFrame([record("old1", D1, "succeeded"), record("old2", D2, "succeeded")]).to_parquet(
        tmp_path / "worklist_runs.parquet", index=False)
    assert_one_run(str(target), D1, "old1")
    assert read_worklist(str(target), D1)["reasons"].tolist() == [["r"]] * 4
    run(str(target), D1, "new")
    assert_one_run(str(target), D1, "new")
    assert_one_run(str(target), D2, "old2")  # the date not rewritten still reads from the old layout
    assert not (target / f"as_of={D1}").exists()
    assert statuses(str(target)) == {"old1": "succeeded", "old2": "succeeded", "new": "succeeded"}


def test_a_reader_that_loses_a_race_with_a_switch_reads_again(tmp_path, monkeypatch):
    from serving.batch import store

    target = str(tmp_path / "worklist")
    run(target, D1, "r1")
    real = pd.read_parquet
    calls = {"n": 0}

    def racing(path, *a, **k):  # the first read finds its version deleted by a switch, as a race would
        calls["n"] += 1
        if calls["n"] == 1:
            run(target, D1, "r2")
            raise FileNotFoundError(path)
        return real(path, *a, **k)

    monkeypatch.setattr(store.pd, "read_parquet", racing)
    assert set(read_worklist(target, D1)["run_id"]) == {"r2"}


def test_lock_file_is_released_when_its_holder_dies(tmp_path):
    import subprocess
    import sys

    lock = tmp_path / ".x.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+b'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('held', flush=True); time.sleep(60)"), str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from features.contract.locks import file_lock, file_lock_free

        assert not file_lock_free(lock)
        holder.kill()
        holder.wait(10)
        with file_lock(lock, 5, "x"):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
    assert Path(lock).exists()
