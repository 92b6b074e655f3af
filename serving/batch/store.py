"""Where worklists go: a Parquet folder or SQL tables; one run at a time per target and as-of date, and
every run's outputs (worklist, denials, drift and its row of the runs record) switch in together or
not at all. A rerun of the same as-of date replaces that date's rows.

Parquet (TARGET a folder path): the pointer of record is `TARGET_manifest.json`, replaced with an
atomic rename; it names, per as-of date, the version folder that holds that date's lists
(`TARGET_versions/<date>.<run_id>/accounts.parquet`, `denials.parquet`, `drift.parquet`) and the
runs record's current file (`TARGET_versions/runs.<id>.parquet`). A run writes its version beside the
old one, then switches the manifest, then deletes what it replaced. Folders of the layout before the
manifest (TARGET/as_of=YYYY-MM-DD/part-0.parquet, TARGET_denials/..., TARGET_drift/...,
TARGET_runs.parquet) still read; a date written since is read from the manifest.
Locks: `.TARGET.<date>.lock` for the whole run, `.TARGET.lock` for the short switch of the manifest.

SQL (`postgresql://...#worklist`): tables worklist, worklist_denials, worklist_drift and worklist_runs;
one transaction deletes the date's rows in all three lists, inserts the new ones and marks the run
succeeded. A session advisory lock per (table, date) holds for the whole run; a transaction advisory
lock per table serialises table creation and the swaps.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from features.contract import is_sql_url, split_sql_target
from features.contract.locks import advisory_free, advisory_key, advisory_lock, file_lock, file_lock_free

log = logging.getLogger(__name__)

# The runs record has a fixed set of columns (a SQL table cannot grow new ones between inserts).
RUN_COLUMNS = ["run_id", "as_of", "engine", "model_version", "status", "started_at", "finished_at", "n_accounts",
               "n_denials", "drift_warnings", "timings"]
_RUN_SQL_TYPES = {"n_accounts": "bigint", "n_denials": "bigint", "drift_warnings": "bigint"}
KINDS = ("accounts", "denials", "drift")
MANIFEST_FORMAT = 1
READ_ATTEMPTS = 3  # a reader that lost a race with a switch (its version was deleted) reads the manifest again


def _synced_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write and fsync: the bytes are on disk before any pointer names them."""
    df.to_parquet(path, index=False)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _paths(target: str) -> dict[str, Path]:
    """The layout before the manifest (still read)."""
    base = Path(target)
    stem = base.name[:-8] if base.name.endswith(".parquet") else base.name
    parent = base.parent
    return {"accounts": base, "denials": parent / f"{stem}_denials.parquet" if base.name.endswith(".parquet")
            else parent / f"{stem}_denials", "drift": parent / f"{stem}_drift", "runs": parent / f"{stem}_runs.parquet"}


def _for_storage(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    if "reasons" in out:
        out["reasons"] = out["reasons"].map(lambda r: json.dumps(list(r)) if r is not None else "[]")
    return out


def _runs_row(record: dict) -> pd.DataFrame:
    row = pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict | list) else v
                         for k in RUN_COLUMNS for v in [record.get(k)]}], columns=RUN_COLUMNS)
    return row.astype({c: "Int64" for c in _RUN_SQL_TYPES}).astype(
        {c: object for c in RUN_COLUMNS if c not in _RUN_SQL_TYPES})


def _upsert_run(runs: pd.DataFrame, record: dict) -> pd.DataFrame:
    row = _runs_row(record)
    if not len(runs):
        return row
    runs = runs[runs["run_id"] != record["run_id"]].reindex(columns=RUN_COLUMNS)
    return pd.concat([runs, row], ignore_index=True).astype({c: "Int64" for c in _RUN_SQL_TYPES})


def _killed(runs: pd.DataFrame, is_dead: Callable[[str], bool], now: str) -> tuple[pd.DataFrame, int]:
    """Runs left `running` whose date lock nobody holds (their process died): marked `failed`."""
    if not len(runs):
        return runs, 0
    dead = (runs["status"] == "running") & runs["as_of"].map(lambda d: is_dead(str(d)))
    if dead.any():
        runs = runs.copy()
        runs.loc[dead, "status"] = "failed"
        runs.loc[dead & runs["finished_at"].isna(), "finished_at"] = now
    return runs, int(dead.sum())


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat()


# ---------------------------------------------------------------- one run's writer


class RunStore(Protocol):
    """The writer of one run (target, as-of date), holding that pair's lock: `record` writes the run's
    row of the runs record; `publish` switches the run's lists and its final row (`record()`, called
    once the lists are written) in together."""

    def record(self, record: dict) -> None: ...

    def publish(self, accounts: pd.DataFrame, denials: pd.DataFrame, drift: pd.DataFrame | None,
                record: Callable[[], dict]) -> None: ...


@contextmanager
def open_run(target: str, as_of, run_id: str, lock_timeout: float | None = 0.0) -> Iterator[RunStore]:
    """Take the (target, as-of date) lock, waiting up to `lock_timeout` seconds (else `LockTimeout`),
    mark runs that died `failed`, clear what killed runs left staged, and yield the run's writer."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    if is_sql_url(target):
        import sqlalchemy as sa

        url, table = split_sql_target(target)
        engine = sa.create_engine(url)
        try:
            store = SqlRunStore(engine, table or "worklist", day, run_id)
            with store.locked(lock_timeout):
                yield store
        finally:
            engine.dispose()
        return
    store = FolderRunStore(FolderTarget.of(target), day, run_id)
    with file_lock(store.t.date_lock(day), lock_timeout, f"worklist {target} at {day}"):
        store.recover()
        yield store


# ---------------------------------------------------------------- folders


@dataclass(frozen=True)
class FolderTarget:
    target: str
    parent: Path
    stem: str

    @classmethod
    def of(cls, target: str) -> FolderTarget:
        base = Path(target)
        stem = base.name[:-8] if base.name.endswith(".parquet") else base.name
        return cls(str(target), base.parent, stem)

    @property
    def manifest(self) -> Path:
        return self.parent / f"{self.stem}_manifest.json"

    @property
    def versions(self) -> Path:
        return self.parent / f"{self.stem}_versions"

    @property
    def lock(self) -> Path:
        return self.parent / f".{self.stem}.lock"

    def date_lock(self, day: str) -> Path:
        return self.parent / f".{self.stem}.{day}.lock"

    def read_manifest(self) -> dict:
        if not self.manifest.exists():
            return {"format": MANIFEST_FORMAT, "dates": {}, "runs": None}
        m = json.loads(self.manifest.read_text())
        if m.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{self.manifest}: unknown worklist manifest format {m.get('format')!r}")
        return m

    def runs(self, manifest: dict) -> pd.DataFrame:
        if manifest.get("runs"):
            return pd.read_parquet(self.versions / manifest["runs"])
        legacy = _paths(self.target)["runs"]
        return pd.read_parquet(legacy) if legacy.exists() else pd.DataFrame()


def _replace_manifest(t: FolderTarget, manifest: dict, step: str) -> None:
    """The one switch of a folder target: the manifest, written beside itself, renamed over it."""
    tmp = t.parent / f".{t.manifest.name}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, t.manifest)
    _fsync_dir(t.parent)
    log.debug("worklist manifest switched (%s)", step)


class FolderRunStore:
    def __init__(self, t: FolderTarget, day: str, run_id: str) -> None:
        self.t, self.day, self.run_id = t, day, run_id

    def _switch_runs(self, change: Callable[[pd.DataFrame], pd.DataFrame | None], step: str,
                     dates: dict[str, str] | None = None) -> dict:
        """Under the target's lock: a new runs file from the current one (`change` returns None when
        nothing changes), the manifest switched to it (and to `dates`), the replaced runs file deleted.
        Returns the manifest it replaced."""
        t = self.t
        with file_lock(t.lock, None, f"worklist manifest {t.manifest}"):
            old = t.read_manifest()
            runs = change(t.runs(old))
            if runs is None:
                return old
            t.versions.mkdir(parents=True, exist_ok=True)
            name = f"runs.{uuid.uuid4().hex[:16]}.parquet"
            _synced_parquet(runs, t.versions / name)
            new = {**old, "format": MANIFEST_FORMAT, "dates": {**old["dates"], **(dates or {})}, "runs": name}
            _replace_manifest(t, new, step)
            for p in t.versions.glob("runs.*.parquet"):  # the replaced one, and any a killed switch left
                if p.name != name:
                    p.unlink(missing_ok=True)
        return old

    def recover(self) -> None:
        """Under this date's lock: runs that died are marked failed; version folders of this date
        the manifest does not name (staged by a killed run, or replaced and not yet deleted) go."""
        t = self.t
        if t.versions.exists():
            current = t.read_manifest()["dates"].get(self.day)
            for p in t.versions.glob(f"{self.day}.*"):
                if p.name != current:
                    shutil.rmtree(p, ignore_errors=True)
                    log.info("removed a worklist version left by an earlier run (%s)", p.name)
        if not t.manifest.exists() and not _paths(t.target)["runs"].exists():
            return
        marked = []

        def mark(runs: pd.DataFrame) -> pd.DataFrame | None:
            runs, n = _killed(runs, lambda d: d == self.day or file_lock_free(t.date_lock(d)), _now())
            marked.append(n)
            return runs if n else None

        self._switch_runs(mark, "killed runs marked failed")
        if marked and marked[0]:
            log.warning("%d earlier run(s) of %s were left running by a killed process: marked failed",
                        marked[0], t.target)

    def record(self, record: dict) -> None:
        self._switch_runs(lambda r: _upsert_run(r, record), f"run {record['status']}")

    def publish(self, accounts, denials, drift, record) -> None:
        t = self.t
        version = f"{self.day}.{self.run_id}"
        folder = t.versions / version
        folder.mkdir(parents=True, exist_ok=False)
        frames = {"accounts": accounts, "denials": denials, "drift": drift}
        for kind, df in frames.items():
            if df is not None:
                out = _for_storage(df).drop(columns=["as_of"], errors="ignore") if kind != "drift" else df
                _synced_parquet(out, folder / f"{kind}.parquet")
        _fsync_dir(folder)
        old = self._switch_runs(lambda r: _upsert_run(r, record()), "published", {self.day: version})
        replaced = old["dates"].get(self.day)
        if replaced and replaced != version:
            shutil.rmtree(t.versions / replaced, ignore_errors=True)
        _drop_legacy_date(t.target, self.day)


def _drop_legacy_date(target: str, day: str) -> None:
    """A date of the layout before the manifest, once the manifest names it, is only in the way."""
    for kind in KINDS:
        shutil.rmtree(_paths(target)[kind] / f"as_of={day}", ignore_errors=True)


def _legacy_parts(target: str, kind: str) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for p in sorted(_paths(target)[kind].glob("as_of=*/*.parquet")):
        out.setdefault(p.parent.name.split("=", 1)[1], []).append(p)
    return out


def _read_folder(target: str, as_of, kind: str) -> pd.DataFrame:
    t = FolderTarget.of(target)
    want = None if as_of is None else pd.Timestamp(as_of).strftime("%Y-%m-%d")
    for attempt in range(READ_ATTEMPTS):
        try:
            parts = _legacy_parts(target, kind)
            for day, version in t.read_manifest()["dates"].items():
                parts[day] = [t.versions / version / f"{kind}.parquet"]
            frames = []
            for day in sorted(parts):
                if want is not None and day != want:
                    continue
                for p in parts[day]:
                    if kind == "drift" and not p.exists():  # a run written without a drift report
                        continue
                    frames.append(pd.read_parquet(p).assign(as_of=pd.Timestamp(day)))
            return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- SQL


class SqlRunStore:
    def __init__(self, engine, table: str, day: str, run_id: str) -> None:
        self.engine, self.table, self.day, self.run_id = engine, table, day, run_id
        self.runs = f"{table}_runs"
        self._lock_conn = None

    def _lock_name(self, day: str) -> str:
        return f"recoup.worklist:{self.table}:{day}"

    @contextmanager
    def locked(self, timeout: float | None) -> Iterator[None]:
        if self.engine.dialect.name != "postgresql":  # (SQLite: its own database lock serialises writers)
            self.recover()
            yield
            return
        with advisory_lock(self.engine, self._lock_name(self.day), timeout,
                           f"worklist table {self.table} at {self.day}") as conn:
            self._lock_conn = conn
            try:
                self.recover()
                yield
            finally:
                self._lock_conn = None

    @contextmanager
    def _transaction(self, step: str) -> Iterator[object]:
        """A transaction holding the table's own lock (creation and swaps are serialised)."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            conn.info["recoup_step"] = step  # (named for tests/killpoint.py)
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                             {"k": advisory_key(f"recoup.worklist:{self.table}")})
            cols = ", ".join(f"{c} {_RUN_SQL_TYPES.get(c, 'text')}" for c in RUN_COLUMNS)
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {self.runs} ({cols}, PRIMARY KEY (run_id))"))
            yield conn

    def _is_dead(self, day: str) -> bool:
        if day == self.day or self._lock_conn is None:
            return day == self.day
        return advisory_free(self._lock_conn, self._lock_name(day))

    def recover(self) -> None:
        import sqlalchemy as sa

        with self._transaction("recover") as conn:
            running = conn.execute(sa.text(f"SELECT run_id, as_of FROM {self.runs} WHERE status = 'running'")).all()
            dead = [r.run_id for r in running if self._is_dead(str(r.as_of))]
            if dead:
                conn.execute(sa.text(f"UPDATE {self.runs} SET status = 'failed', finished_at = "
                                     "COALESCE(finished_at, :now) WHERE run_id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)), {"now": _now(), "ids": dead})
                log.warning("%d earlier run(s) of %s were left running by a killed process: marked failed",
                            len(dead), self.table)

    def _upsert(self, conn, record: dict) -> None:
        import sqlalchemy as sa

        conn.execute(sa.text(f"DELETE FROM {self.runs} WHERE run_id = :r"), {"r": record["run_id"]})
        _runs_row(record).to_sql(self.runs, conn, if_exists="append", index=False)

    def record(self, record: dict) -> None:
        with self._transaction(f"run {record['status']}") as conn:
            self._upsert(conn, record)

    def publish(self, accounts, denials, drift, record) -> None:
        import sqlalchemy as sa

        day = pd.Timestamp(self.day).date()
        with self._transaction("published") as conn:  # one transaction: every list and the run's row, or none
            for name, df in ((self.table, accounts), (f"{self.table}_denials", denials),
                             (f"{self.table}_drift", drift)):
                if df is None:
                    continue
                df = _for_storage(df)
                if "as_of" not in df:
                    df = df.assign(as_of=pd.Timestamp(self.day))
                df["as_of"] = pd.to_datetime(df["as_of"]).dt.date
                if sa.inspect(conn).has_table(name):
                    conn.execute(sa.text(f"DELETE FROM {name} WHERE as_of = :d"), {"d": day})
                df.to_sql(name, conn, if_exists="append", index=False, method="multi",
                          chunksize=max(1, 30_000 // max(len(df.columns), 1)))  # < 65,535 bind parameters
            self._upsert(conn, record())


# ---------------------------------------------------------------- readers


def read_worklist(target: str, as_of=None, kind: str = "accounts") -> pd.DataFrame:
    """The stored worklist (all dates, or one), reasons decoded; used by tests and notebooks."""
    if is_sql_url(target):
        import sqlalchemy as sa

        url, table = split_sql_target(target)
        table = (table or "worklist") + ("" if kind == "accounts" else f"_{kind}")
        engine = sa.create_engine(url)
        try:
            # a table has no row order of its own: the list's order is (as_of, rank)
            query = (f"SELECT * FROM {table}" + (" WHERE as_of = :d" if as_of is not None else "")
                     + (' ORDER BY as_of, "rank"' if kind in ("accounts", "denials") else ""))
            with engine.connect() as conn:
                df = pd.read_sql(sa.text(query), conn,
                                 params={"d": pd.Timestamp(as_of).date()} if as_of is not None else None)
        finally:
            engine.dispose()
        if "as_of" in df:
            df["as_of"] = pd.to_datetime(df["as_of"])
    else:
        df = _read_folder(target, as_of, kind)
    if "reasons" in df:
        df["reasons"] = df["reasons"].map(json.loads)
    return df


def read_runs(target: str) -> pd.DataFrame:
    if is_sql_url(target):
        import sqlalchemy as sa

        url, table = split_sql_target(target)
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return pd.read_sql(sa.text(f"SELECT * FROM {(table or 'worklist')}_runs"), conn)
        finally:
            engine.dispose()
    t = FolderTarget.of(target)
    for attempt in range(READ_ATTEMPTS):
        try:
            return t.runs(t.read_manifest())
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")
