"""Where worklists go: a Parquet folder partitioned by as-of date, or SQL tables; always whole or not
at all, and a rerun of the same as-of date replaces that date's rows.

Parquet: TARGET/as_of=YYYY-MM-DD/part-0.parquet (accounts), TARGET_denials/... (denials),
TARGET_drift/as_of=.../drift.parquet, and TARGET_runs.parquet (one row per run). Each file is
written beside its final name and moved into place with an atomic rename.
SQL (`postgresql://...#worklist`): tables worklist, worklist_denials, worklist_drift and
worklist_runs; one transaction deletes the date's rows and inserts the new ones.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import pandas as pd

from features.contract import is_sql_url, split_sql_target

log = logging.getLogger(__name__)

# The runs record has a fixed set of columns (a SQL table cannot grow new ones between inserts).
RUN_COLUMNS = ["run_id", "as_of", "engine", "model_version", "status", "started_at", "finished_at", "n_accounts",
               "n_denials", "drift_warnings", "timings"]
_RUN_SQL_TYPES = {"n_accounts": "bigint", "n_denials": "bigint", "drift_warnings": "bigint"}

def _atomic_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write next to `path` (a dot-file readers ignore), fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    df.to_parquet(tmp, index=False)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    return tmp


def _paths(target: str) -> dict[str, Path]:
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


def write_worklist(target: str, as_of: pd.Timestamp, accounts: pd.DataFrame, denials: pd.DataFrame,
                   drift: pd.DataFrame | None) -> None:
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    if is_sql_url(target):
        _write_sql(target, day, accounts, denials, drift)
        return
    paths = _paths(target)
    staged = []
    frames = {"accounts": accounts, "denials": denials, "drift": drift}
    names = {"accounts": "part-0.parquet", "denials": "part-0.parquet", "drift": "drift.parquet"}
    for kind, df in frames.items():
        if df is None:
            continue
        final = paths[kind] / f"as_of={day}" / names[kind]
        staged.append((_atomic_parquet(_for_storage(df).drop(columns=["as_of"], errors="ignore")
                                       if kind != "drift" else df, final), final))
    swap_into_place(staged)


def swap_into_place(staged: list[tuple[Path, Path]]) -> None:
    """Move each staged file (complete and synced on disk, every one of the run's) over its final name."""
    for tmp, final in staged:
        os.replace(tmp, final)


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
        folder = _paths(target)[kind]
        parts = sorted(folder.glob("as_of=*/*.parquet"))
        frames = []
        for p in parts:
            day = p.parent.name.split("=", 1)[1]
            if as_of is not None and day != pd.Timestamp(as_of).strftime("%Y-%m-%d"):
                continue
            frames.append(pd.read_parquet(p).assign(as_of=pd.Timestamp(day)))
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if "reasons" in df:
        df["reasons"] = df["reasons"].map(json.loads)
    return df


def record_run(target: str, record: dict) -> None:
    """Insert or update one row of the runs record (by run_id)."""
    row = pd.DataFrame([{k: json.dumps(v) if isinstance(v, dict | list) else v
                         for k in RUN_COLUMNS for v in [record.get(k)]}], columns=RUN_COLUMNS)
    row = row.astype({c: "Int64" for c in _RUN_SQL_TYPES}).astype(
        {c: object for c in RUN_COLUMNS if c not in _RUN_SQL_TYPES})
    if is_sql_url(target):
        import sqlalchemy as sa

        url, table = split_sql_target(target)
        runs = (table or "worklist") + "_runs"
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                cols = ", ".join(f"{c} {_RUN_SQL_TYPES.get(c, 'text')}" for c in RUN_COLUMNS)
                conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {runs} ({cols}, PRIMARY KEY (run_id))"))
                conn.execute(sa.text(f"DELETE FROM {runs} WHERE run_id = :r"), {"r": record["run_id"]})
                row.to_sql(runs, conn, if_exists="append", index=False)
        finally:
            engine.dispose()
        return
    path = _paths(target)["runs"]
    old = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    if len(old):
        old = old[old["run_id"] != record["run_id"]]
    new = pd.concat([old.reindex(columns=RUN_COLUMNS), row], ignore_index=True) if len(old) else row
    tmp = _atomic_parquet(new.astype({c: "Int64" for c in _RUN_SQL_TYPES}), path)
    os.replace(tmp, path)


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
    path = _paths(target)["runs"]
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def _write_sql(target: str, day: str, accounts: pd.DataFrame, denials: pd.DataFrame,
               drift: pd.DataFrame | None) -> None:
    import sqlalchemy as sa

    url, table = split_sql_target(target)
    table = table or "worklist"
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:  # one transaction: the date's rows are replaced whole or not at all
            for name, df in ((table, accounts), (f"{table}_denials", denials), (f"{table}_drift", drift)):
                if df is None:
                    continue
                df = _for_storage(df)
                if "as_of" not in df:
                    df = df.assign(as_of=pd.Timestamp(day))
                df["as_of"] = pd.to_datetime(df["as_of"]).dt.date
                if sa.inspect(conn).has_table(name):
                    conn.execute(sa.text(f"DELETE FROM {name} WHERE as_of = :d"), {"d": pd.Timestamp(day).date()})
                df.to_sql(name, conn, if_exists="append", index=False, method="multi",
                          chunksize=max(1, 30_000 // max(len(df.columns), 1)))  # < 65,535 bind parameters
    finally:
        engine.dispose()
