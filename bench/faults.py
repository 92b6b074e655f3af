"""Faults and overlap (issue 15): kill every writer, at random and at each of its switch or commit
points, and overlap score runs; check that what was there before stays whole and readable, that the
rerun completes, and that nothing is doubled or mixed.

Writers: `recoup score` to Parquet and to PostgreSQL, `recoup ingest-x12`, `recoup train`. For each:
`--trials` SIGKILLs at a random moment of the run (uniform over the run's measured duration), plus one
injected kill at every rename or commit point (tests/killpoint.py). After each kill: the output
reads whole (one run's worklist, denials and drift; a dataset that validates; a champion that loads),
then the run is repeated in-process and must complete, leave no run `running`, no staging behind and
no row twice. Then `--trials` pairs of overlapping `recoup score` runs to each target, the second
started 0-0.3 s after the first: with `--lock-timeout 120` the second waits and replaces the first's
list; with the default (0) it fails at once with exit code 75. Either way the stored list is one run's.

Small simulated data (default 1,000 accounts) and small models, so it runs in a few minutes on 2 cores.
Prints JSON.   Run by hand:  python bench/faults.py [--trials 10] [--accounts 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `python bench/x.py` puts bench/ first, where bench/features.py would shadow

AS_OF = "2025-06-01"
SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
SMALL_MODELS = ("payment_model: {n_estimators: 20}\namount_model: {n_estimators: 20}\n"
                "overturn_model: {n_estimators: 10}\n")
READY_ENV = "RECOUP_KILLPOINT_READY"


@dataclass
class Tally:
    """What the trials of one writer found; every `*_ok` should equal `trials`."""

    trials: int = 0
    killed: int = 0  # SIGKILLed while running (a random kill may come after the run ended)
    finished_before_kill: int = 0
    random_kills_while_writing: int = 0  # random kills that fell after the run began to write
    whole_after_kill_ok: int = 0
    rerun_ok: int = 0
    no_duplicates_ok: int = 0
    failures: list[str] = field(default_factory=list)
    at: Counter = field(default_factory=Counter)  # kill point -> trials

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("failures", "at")}
        return {**d, "kill_points": dict(self.at), "failures": self.failures[:10]}


class Env:
    def __init__(self, root: Path, accounts: int, seed: int) -> None:
        self.root = root
        self.data = root / "data"
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                    "RECOUP_ARTIFACT_ROOT": str(root / "artifacts")}
        os.environ.update({k: self.env[k] for k in ("MLFLOW_TRACKING_URI", "RECOUP_ARTIFACT_ROOT")})
        (root / "models.yaml").write_text(SMALL_MODELS)
        from features.sources.simulate import simulate_to_folder

        simulate_to_folder(self.data, accounts, seed, "2024-01-01", "2025-06-30", truth=False)
        self.recoup(["train", str(self.data), "--config", str(root / "models.yaml")], check=True)
        from training.tracking import load_bundle

        self.model = load_bundle("recoup", "champion")
        self.label = f"{self.model.registry_name_}/{self.model.registry_version_}"
        self.db = f"recoup_faults_bench_{os.getpid()}"
        self._admin("DROP DATABASE IF EXISTS {db}", "CREATE DATABASE {db}")
        self.sql = f"{SERVER}/{self.db}"

    def _admin(self, *statements: str) -> None:
        import sqlalchemy as sa

        admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for s in statements:
                    conn.exec_driver_sql(s.format(db=self.db))
        finally:
            admin.dispose()

    def close(self) -> None:
        self._admin("DROP DATABASE IF EXISTS {db} WITH (FORCE)")

    def recoup(self, args: list[str], check: bool = False, point: str | None = None, ready: Path | None = None,
               **kw) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "tests.killpoint", point, *args] if point else \
            [sys.executable, "-m", "recoup_cli", *args]
        env = {**self.env, **({READY_ENV: str(ready)} if ready else {})}
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, **kw)
        if check:
            _, err = proc.communicate(timeout=600)
            if proc.returncode:
                raise RuntimeError(f"recoup {args[0]} failed ({proc.returncode}): {err[-2000:]}")
        return proc


@dataclass
class Writer:
    name: str
    args: Callable[[int], list[str]]  # the command of trial i
    check: Callable[[], object]  # the output as it stands: raises AssertionError unless whole and readable
    rerun: Callable[[int], None]  # the same write, in-process; must complete
    settled: Callable[[], None]  # after a rerun: nothing running, no staging, no row twice (raises)
    points: list[str]
    writing: Callable[[], bool] = lambda: False  # after a kill: had it begun to write (a running row, staging)?


def kill_random(proc: subprocess.Popen, after_s: float) -> bool:
    """SIGKILL after `after_s` seconds; False if the run had ended by then."""
    try:
        proc.wait(timeout=after_s)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return True


def kill_at_point(proc: subprocess.Popen, ready: Path, timeout_s: float = 300) -> bool:
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            return False
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def run_trials(e: Env, w: Writer, trials: int, rng: random.Random) -> dict:
    t = Tally()
    t0 = time.perf_counter()
    proc = e.recoup(w.args(0))  # one run to completion: its duration scales the random kills
    proc.communicate(timeout=600)
    duration = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{w.name}: the unkilled run failed ({proc.returncode})")
    plan = [None] * trials + w.points
    for i, point in enumerate(plan, start=1):
        t.trials += 1
        t.at[point or "random"] += 1
        try:
            w.check()
        except AssertionError as err:
            t.failures.append(f"trial {i}: the output was not whole before the kill: {err}")
            continue
        ready = e.root / "ready"
        ready.unlink(missing_ok=True)
        proc = e.recoup(w.args(i), point=point, ready=ready if point else None)
        if point:
            killed = kill_at_point(proc, ready)
            if not killed:
                t.failures.append(f"trial {i}: never reached {point}: {proc.stderr.read()[-500:]}")
        else:
            killed = kill_random(proc, rng.uniform(0.2, 0.95 * duration))
        t.killed += killed
        t.finished_before_kill += not killed
        t.random_kills_while_writing += bool(killed and not point and w.writing())
        try:
            w.check()
            t.whole_after_kill_ok += 1
        except (AssertionError, OSError, ValueError) as err:
            t.failures.append(f"trial {i} ({point or 'random'}): not whole after the kill: {err}")
        try:
            w.rerun(i)
            t.rerun_ok += 1
        except Exception as err:  # noqa: BLE001 - counted and reported
            t.failures.append(f"trial {i}: the rerun failed: {type(err).__name__}: {err}")
            continue
        try:
            w.settled()
            t.no_duplicates_ok += 1
        except AssertionError as err:
            t.failures.append(f"trial {i}: after the rerun: {err}")
    return {"run_s": round(duration, 1), **t.as_dict()}


# ---------------------------------------------------------------- the writers


def worklist_writer(e: Env, name: str, target: str, n_expected: int, points: list[str]) -> Writer:
    from serving.batch import run_batch
    from serving.batch.store import read_runs, read_worklist

    def check() -> str:
        acc = read_worklist(target, AS_OF)
        assert len(acc) == n_expected, f"{len(acc)} rows, expected {n_expected}"
        assert acc["account_id"].is_unique, "an account twice"
        run_ids = set(acc["run_id"])
        assert len(run_ids) == 1, f"{len(run_ids)} runs in one list"
        for kind in ("denials", "drift"):
            other = set(read_worklist(target, AS_OF, kind=kind)["run_id"])
            assert other == run_ids, f"{kind} of another run (mixed)"
        read_runs(target)
        return run_ids.pop()

    def rerun(i: int) -> None:
        run_batch(e.data, AS_OF, target, e.model, e.label, lock_timeout=60)

    def settled() -> None:
        check()
        runs = read_runs(target)
        assert not (runs["status"] == "running").any(), "a run left running"
        assert runs["run_id"].is_unique, "a run recorded twice"
        if "://" not in target:
            versions = Path(target).parent / f"{Path(target).name}_versions"
            assert len(list(versions.glob(f"{AS_OF}.*"))) == 1, "staging left behind"
            assert len(list(versions.glob("runs.*.parquet"))) == 1, "a runs file left behind"

    def writing() -> bool:
        return bool((read_runs(target)["status"] == "running").any())

    return Writer(name, lambda i: ["score", str(e.data), "--as-of", AS_OF, "--out", target, "--lock-timeout", "60"],
                  check, rerun, settled, points, writing)


def ingest_writer(e: Env, samples: list[Path]) -> Writer:
    """Ingest-x12 into a folder holding two sample 835s; each trial ingests an 835 of its own (new
    content, so that every trial has rows to add and reaches the switch)."""
    import pandas as pd

    from features.contract import read_dataset
    from features.sources.x12 import ingest
    from tests.code.test_x12 import _835_body, _interchange

    folder = e.root / "x12data"
    ingest(samples[:2], out=folder)

    def sample(i: int) -> Path:
        p = e.root / "x12in" / f"trial{i}.835"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            p.write_text(_interchange(_835_body(st02=f"{i + 1:04d}", pcn=f"ACCT{i}", paid=str(50 + i)),
                                      control=f"{i + 1:09d}"))
        return p

    def check() -> dict:
        counts = read_dataset(folder).row_counts()  # whole: it reads and validates
        ledger = pd.read_parquet(folder / "_ingested.parquet")
        assert ledger["sha256"].is_unique, "a file ingested twice"
        return counts

    def rerun(i: int) -> None:
        ingest([sample(i)], out=folder)
        before = check()
        _, summary = ingest([sample(i)], out=folder)  # again: adds nothing
        assert summary.files_already_ingested == 1 and check() == before

    def staged() -> list[str]:
        return [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.new.")]

    def settled() -> None:
        check()
        assert not staged(), f"staging left behind: {staged()}"

    return Writer("ingest_x12", lambda i: ["ingest-x12", str(sample(i)), "--out", str(folder)], check, rerun,
                  settled, ["dataset", "dataset-swapped"], lambda: bool(staged()))


def train_writer(e: Env) -> Writer:
    import mlflow

    from features.contract import read_dataset
    from training.settings import load_settings
    from training.tracking import load_bundle
    from training.train import train_and_register

    champion = e.model.registry_version_
    ds = read_dataset(e.data)

    def check() -> None:
        m = load_bundle("recoup", "champion")
        assert m.registry_version_ == champion, f"champion moved to {m.registry_version_}"
        m.score_accounts  # noqa: B018 - loaded whole (unpickled)

    def rerun(i: int) -> None:
        train_and_register(ds, load_settings(e.root / "models.yaml"))

    def settled() -> None:
        check()
        client = mlflow.MlflowClient()
        versions = client.search_model_versions("name='recoup'")
        aliases = [a for v in versions for a in v.aliases]
        assert sorted(aliases) == sorted(set(aliases)), "an alias on two versions"

    return Writer("train", lambda i: ["train", str(e.data), "--config", str(e.root / "models.yaml")], check, rerun,
                  settled, ["train-registered", "train-aliased"])


def overlap_pairs(e: Env, target: str, pairs: int, rng: random.Random, n_expected: int) -> dict:
    from serving.batch.store import read_runs, read_worklist

    out = Counter()
    for i in range(pairs):
        wait = i % 2 == 0  # even pairs: the second waits; odd pairs: it fails at once
        args = ["score", str(e.data), "--as-of", AS_OF, "--out", target, "--lock-timeout", "120" if wait else "0"]
        first = e.recoup(args)
        time.sleep(rng.uniform(0.0, 0.3))  # a double trigger: both reach the lock at about the same moment
        second = e.recoup(args)
        _, err1 = first.communicate(timeout=600)
        _, err2 = second.communicate(timeout=600)
        codes = sorted([first.returncode, second.returncode])
        out["pairs"] += 1
        if wait:
            out["both_succeeded"] += codes == [0, 0]
            out["second_waited_for_the_lock"] += any("is locked by another run: waiting" in err for err in (err1, err2))
        else:
            refused = [err for p, err in ((first, err1), (second, err2)) if p.returncode == 75]
            out["one_refused_exit_75"] += codes == [0, 75] and "locked by another run" in "".join(refused)
            out["both_succeeded"] += codes == [0, 0]  # the first had released the lock when the second came
        out["contended"] += any("is locked by another run" in err for err in (err1, err2))
        acc = read_worklist(target, AS_OF)
        run_ids = set(acc["run_id"])
        whole = (len(acc) == n_expected and acc["account_id"].is_unique and len(run_ids) == 1
                 and all(set(read_worklist(target, AS_OF, kind=k)["run_id"]) == run_ids for k in ("denials", "drift")))
        out["single_whole_list"] += whole
        out["doubled_or_mixed"] += not whole
        runs = read_runs(target)
        out["left_running"] += int((runs["status"] == "running").sum())

    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=10, help="random kills per writer, and overlapping pairs")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--only", default=None, help="comma-separated: score_parquet,score_sql,ingest_x12,train,overlap")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    only = set(args.only.split(",")) if args.only else None
    root = Path(tempfile.mkdtemp(prefix="recoup-faults-"))
    t_all = time.perf_counter()
    e = Env(root, args.accounts, args.seed)
    try:
        from serving.batch import run_batch
        from tests.paths import X12_SAMPLES

        n = run_batch(e.data, AS_OF, None, e.model, e.label).n_accounts
        parquet, sql = str(root / "out" / "worklist"), f"{e.sql}#worklist"
        writers = [
            worklist_writer(e, "score_parquet", parquet, n, ["parquet-running", "parquet", "parquet-switched"]),
            worklist_writer(e, "score_sql", sql, n, ["sql-running", "sql"]),
            ingest_writer(e, sorted((X12_SAMPLES / "835").glob("*.txt"))[:2]),
            train_writer(e),
        ]
        report: dict = {"accounts": args.accounts, "open_accounts_scored": n, "trials": args.trials}
        for w in writers:
            if only is None or w.name in only:
                t0 = time.perf_counter()
                report[w.name] = {**run_trials(e, w, args.trials, rng), "seconds": round(time.perf_counter() - t0, 1)}
        if only is None or "overlap" in only:
            t0 = time.perf_counter()
            report["overlap_parquet"] = overlap_pairs(e, str(root / "overlap" / "worklist"), args.trials, rng, n)
            report["overlap_sql"] = overlap_pairs(e, f"{e.sql}#overlap", args.trials, rng, n)
            report["overlap_seconds"] = round(time.perf_counter() - t0, 1)
        report["total_seconds"] = round(time.perf_counter() - t_all, 1)
        report["load_average"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(report, indent=2))
    finally:
        e.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
