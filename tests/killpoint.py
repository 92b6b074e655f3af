"""`recoup` with a pause at one real rename or commit point of a writer, so that a test (or
bench/faults.py) can SIGKILL the process there (the product has no test hook: the pause is installed
from outside, here):

    RECOUP_KILLPOINT_READY=/tmp/ready python -m tests.killpoint POINT recoup-args...

The process touches the file named by RECOUP_KILLPOINT_READY once it is paused. POINTS:

- parquet: every file of the run's version is written and synced, the manifest not switched yet;
- parquet-switched: the manifest is switched, the version it replaced not deleted yet;
- parquet-running: the run's "running" row is written, the manifest not switched to it yet;
- sql: the transaction has replaced the date's rows and the run's row, not committed;
- sql-running: the transaction of the run's "running" row is not committed;
- dataset: a dataset folder's new version is complete, not switched in yet (ingest-x12, simulate);
- dataset-swapped: the new version is switched in, the old one not deleted yet;
- train-registered: the model version is registered, no alias points at it yet;
- train-aliased: the alias points at the new version, the run not ended yet.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PAUSE_S = 120
READY_ENV = "RECOUP_KILLPOINT_READY"


def _pause() -> None:
    ready = os.environ.get(READY_ENV)
    if ready:
        Path(ready).touch()
    time.sleep(PAUSE_S)
    raise SystemExit("the kill point was not killed in time")


def _around(module, name: str, when: str, only=lambda *a, **k: True) -> None:
    """Pause before or after `module.name` (where `only(*args)` holds)."""
    original = getattr(module, name)

    def paused(*args, **kwargs):
        if when == "before" and only(*args, **kwargs):
            _pause()
        out = original(*args, **kwargs)
        if when == "after" and only(*args, **kwargs):
            _pause()
        return out

    setattr(module, name, paused)


def _manifest(when: str, step: str):
    def install() -> None:
        from serving.batch import store

        _around(store, "_replace_manifest", when, lambda t, manifest, s: s == step)

    return install


def _sql_commit(step: str):
    """SQLAlchemy's `commit` event runs before the COMMIT is sent: pause there, in the transaction the
    store named `step` (`conn.info["recoup_step"]`)."""

    def install() -> None:
        import sqlalchemy as sa

        @sa.event.listens_for(sa.engine.Engine, "commit")
        def before_commit(conn) -> None:
            if conn.info.pop("recoup_step", None) == step:
                _pause()

    return install


def _dataset(name: str):
    def install() -> None:
        from features.contract import write

        _around(write, name, "before")

    return install


def _alias(when: str):
    def install() -> None:
        import mlflow

        _around(mlflow.MlflowClient, "set_registered_model_alias", when)

    return install


POINTS = {
    "parquet": _manifest("before", "published"),
    "parquet-switched": _manifest("after", "published"),
    "parquet-running": _manifest("before", "run running"),
    "sql": _sql_commit("published"),
    "sql-running": _sql_commit("run running"),
    "dataset": _dataset("_exchange"),
    "dataset-swapped": _dataset("_remove_replaced"),
    "train-registered": _alias("before"),
    "train-aliased": _alias("after"),
}


def kill_when(proc, ready, timeout_s: float = 240) -> None:
    """SIGKILL `proc` (a `python -m tests.killpoint ...` run) once `ready()` says it is at its kill point."""
    import signal

    try:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "the run never reached its kill point"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


def run_killed(point: str, args: list[str], ready_file: Path, **popen) -> None:
    """Run `recoup ARGS` paused at `point` and SIGKILL it there."""
    import subprocess

    ready_file.unlink(missing_ok=True)
    env = {**popen.pop("env", os.environ), READY_ENV: str(ready_file)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.killpoint", point, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
    kill_when(proc, ready_file.exists)


def main() -> None:
    point, *args = sys.argv[1:]
    POINTS[point]()
    from recoup_cli import app

    app(args, prog_name="recoup")


if __name__ == "__main__":
    main()
