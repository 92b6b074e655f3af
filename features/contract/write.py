"""Write a dataset atomically: to a folder of Parquet or CSV files, or into PostgreSQL.

A folder is built beside its target and switched in once every table is written (`DatasetWriter`), by
one atomic exchange of the two folders (Linux `renameat2(RENAME_EXCHANGE)`): the folder's name always
holds a whole dataset, the old one or the new one, and the old one is deleted only after the switch.
Where the exchange is not supported, two renames, and the next writer puts the old folder back if a
kill fell between them. One writer at a time per folder (a lock file `.NAME.lock` beside it), and what
a killed writer left staged is removed by the next. Tables come whole or in chunks (each `write` appends
one), so a dataset larger than memory is written chunk by chunk. Contract tables go to Parquet with their contract
schema (`arrow_schema`); other frames (`_truth/` tables, an ingest ledger) as pandas types them.

PostgreSQL (`write_sql`, behind `recoup load`): ids and codes `text`, dates `date`, money
`numeric(14,2)` (exact cents), counts `bigint`, other numbers `double precision`; NOT NULL where
the contract says so. Primary keys are the table keys where they are unique; every reference column
(and every table's event time) gets an index. One transaction drops the tables it replaces, creates
them, copies the rows in (COPY) and builds the indexes: readers see the old tables or the new ones.

Appending one table's rows (`append_table`, for the `work` log that work-queue systems report):
idempotent by key (a row stored with the same content is a duplicate, one with different content a
`KeyConflict` that writes nothing), one append at a time per table (a lock), and whole or nothing: a
folder's table file is rewritten beside itself and renamed over the old one; SQL appends in one
transaction, creating the table from the contract when it is absent.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract.dataset import Dataset
from features.contract.locks import file_lock
from features.contract.read import is_sql_url, read_dataset, split_sql_target
from features.contract.tables import TABLES, ContractError, Table, Violation

try:
    import fcntl
except ImportError:  # not POSIX: appends are serialized within one process only
    fcntl = None

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")


def arrow_schema(name: str):
    """The Parquet schema of a contract table: ISO dates as date32, money as float64, ids as strings."""
    import pyarrow as pa

    kinds = {"str": pa.string(), "date": pa.date32(), "money": pa.float64(), "signed_money": pa.float64(),
             "float": pa.float64(), "int": pa.int64()}
    return pa.schema([(col, kinds[c.type]) for col, c in TABLES[name].columns.items()])


# ---------------------------------------------------------------- folders


class DatasetWriter:
    """Write the tables of one dataset folder, all or none.

    Use it as a context manager: `write(name, df)` writes table `name` (a name with a slash, such as
    `_truth/accounts`, goes to a subfolder; writing a name again appends the rows); leaving the block
    swaps the new folder in, an exception discards it. With `keep_existing`, the files of the folder
    it replaces are carried over unless written again. The folder's lock is held from entering the block
    to the switch (waiting `lock_timeout` seconds for another writer, None: as long as it takes)."""

    def __init__(self, folder: str | os.PathLike, fmt: str = "parquet", keep_existing: bool = False,
                 lock_timeout: float | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (parquet or csv)")
        self.folder = Path(folder)
        self.fmt = fmt
        self.keep_existing = keep_existing
        self.lock_timeout = lock_timeout
        self._lock: contextlib.AbstractContextManager | None = None
        self._target = self.folder
        self._tmp: Path | None = None
        self._parquet: dict[str, object] = {}  # table -> open pyarrow ParquetWriter
        self._csv: set[str] = set()  # tables whose CSV header is written

    def __enter__(self) -> DatasetWriter:
        self._target = target = self.folder.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        self._lock = dataset_lock(target, self.lock_timeout)
        self._lock.__enter__()
        try:
            recover_folder(target)
            self._stage(target)
        except BaseException:
            self._release(*sys.exc_info())
            raise
        return self

    def _release(self, *exc) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.__exit__(*exc)

    def _stage(self, target: Path) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new.", dir=target.parent))
        self._csv = set()
        if self.keep_existing and target.exists():
            shutil.copytree(target, self._tmp, dirs_exist_ok=True)

    def write(self, name: str, df: pd.DataFrame) -> None:
        if self._tmp is None:
            raise RuntimeError("DatasetWriter.write must be called inside its `with` block")
        path = self._tmp / f"{name}.{self.fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "parquet":
            self._append_parquet(name, path, df)
        else:
            self._append_csv(name, path, df)

    def _append_parquet(self, name: str, path: Path, df: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = _arrow_table(name, df)
        if name not in self._parquet:
            self._parquet[name] = pq.ParquetWriter(path, table.schema)
        writer = self._parquet[name]
        writer.write_table(table.cast(writer.schema))  # each chunk is one row group

    def _append_csv(self, name: str, path: Path, df: pd.DataFrame) -> None:
        first = name not in self._csv
        _csv_frame(df).to_csv(path, index=False, header=first, mode="w" if first else "a")
        self._csv.add(name)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._finish(exc_type)
        finally:
            self._release(exc_type, exc, tb)

    def _finish(self, exc_type) -> None:
        tmp, self._tmp = self._tmp, None
        writers, self._parquet = list(self._parquet.values()), {}
        if exc_type is not None:
            _discard(tmp, writers)
            return
        try:
            for writer in writers:
                writer.close()  # a Parquet file is whole only once its writer is closed
            _fsync_tree(tmp)
        except BaseException:
            _discard(tmp, writers)
            raise
        _swap_in(tmp, self._target)


def dataset_lock(folder: str | os.PathLike, timeout: float | None = None) -> contextlib.AbstractContextManager:
    """The lock of one dataset folder (a file beside it): one writer at a time."""
    folder = Path(folder).resolve()
    return file_lock(folder.parent / f".{folder.name}.lock", timeout, f"dataset folder {folder}", reentrant=True)


def recover_folder(target: Path) -> None:
    """Under the folder's lock: put back a folder that a kill left moved aside (the two-rename path),
    and remove what killed writers left staged (new folders never switched in, old ones not deleted)."""
    parent = target.parent
    aside = sorted(parent.glob(f".{target.name}.old.*"))
    if not target.exists() and aside:
        aside[-1].rename(target)
        log.warning("restored a dataset folder that a killed write had moved aside")
        aside = aside[:-1]
    for p in [*aside, *parent.glob(f".{target.name}.new.*")]:
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed a staging folder a killed write left behind")


def _fsync_tree(folder: Path) -> None:
    """Every file of the new version on disk before the switch names it."""
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())


def _arrow_table(name: str, df: pd.DataFrame):
    """A frame as an Arrow table: a contract table with the contract's types for the columns written
    (optional ones a writer lacks are left out); anything else as pandas types it."""
    import pyarrow as pa

    columns = [c for c in TABLES[name].columns if c in df.columns] if name in TABLES else []
    if columns and len(columns) == len(df.columns):
        schema = pa.schema([f for f in arrow_schema(name) if f.name in df.columns])
        return pa.Table.from_pandas(df[columns], schema=schema, preserve_index=False)
    return pa.Table.from_pandas(df, preserve_index=False)


def _csv_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Dates as ISO text, as the CSV readers expect them."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].dt.strftime("%Y-%m-%d")
    return out


def _discard(tmp: Path, writers: list) -> None:
    for writer in writers:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - already failing; the temporary folder goes anyway
            pass
    shutil.rmtree(tmp, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    libc = _libc()
    if libc is None:
        return False
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@functools.cache
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    return libc if hasattr(libc, "renameat2") else None


def _swap_in(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is. With an existing target, one atomic exchange (the name
    holds the old dataset or the new one, never neither), then the old one, now at `new`, is deleted.
    Without the exchange: the old one is moved aside, the new one renamed in (a kill between the two
    is undone by `recover_folder`), then the old one deleted."""
    if not target.exists():
        new.rename(target)
        return
    if _exchange(new, target):
        _remove_replaced(new)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    old.rmdir()
    target.rename(old)
    try:
        new.rename(target)
    except BaseException:
        if not target.exists():
            old.rename(target)
        shutil.rmtree(new, ignore_errors=True)
        raise
    _remove_replaced(old)


def _remove_replaced(old: Path) -> None:
    shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- SQL

SQL_TYPES = {"str": "text", "date": "date", "money": "numeric(14,2)", "signed_money": "numeric(14,2)",
             "int": "bigint", "float": "double precision"}


def table_ddl(spec: Table, columns: list[str]) -> list[str]:
    """CREATE TABLE for one contract table (with the columns present)."""
    cols = [f"{c} {SQL_TYPES[spec.columns[c].type]}{'' if spec.columns[c].nullable else ' NOT NULL'}"
            for c in columns]
    key = [k for k in spec.key if k in columns]
    if spec.unique_key and len(key) == len(spec.key) and not any(spec.columns[k].nullable for k in key):
        cols.append(f"PRIMARY KEY ({', '.join(key)})")
    return [f"CREATE TABLE {spec.name} ({', '.join(cols)})"]


def index_ddl(spec: Table, columns: list[str]) -> list[str]:
    """The indexes built after the load: reference columns, the event time, a non-unique key."""
    out = []
    indexed = [r.column for r in spec.references]
    if spec.time_from:
        indexed.append(spec.time_from[0])
    if spec.event_time:
        indexed.append(spec.event_time)
    if not spec.unique_key:
        indexed.insert(0, spec.key[0])
    for col in dict.fromkeys(indexed):
        if col in columns and not (spec.unique_key and col == spec.key[0]):
            out.append(f"CREATE INDEX {spec.name}_{col}_idx ON {spec.name} ({col})")
    return out


def _copy(cursor, name: str, df: pd.DataFrame) -> None:
    """COPY the frame in as CSV (empty field = NULL); dates as ISO, money with its 2 places."""
    out = df.copy()
    for col in out.columns:
        kind = TABLES[name].columns[col].type
        if kind == "date":
            out[col] = out[col].dt.strftime("%Y-%m-%d")
        elif kind in ("money", "signed_money"):
            out[col] = out[col].map(lambda v: None if pd.isna(v) else f"{v:.2f}")
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False)
    with cursor.copy(f"COPY {name} ({', '.join(df.columns)}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buf.getvalue())


def write_sql(tables: dict[str, pd.DataFrame], url: str) -> dict[str, int]:
    """Replace the contract tables in the PostgreSQL database at `url` (a `#table` suffix is ignored),
    in one transaction. Returns the row count per table."""
    import sqlalchemy as sa

    engine = sa.create_engine(split_sql_target(url)[0])
    if engine.dialect.name != "postgresql":
        engine.dispose()
        raise ValueError(f"recoup load writes to PostgreSQL, not {engine.dialect.name}")
    names = [n for n in TABLES if n in tables]  # TABLES lists parents before children
    counts = {}
    try:
        with engine.begin() as conn:
            for name in reversed(names):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name} CASCADE")
            raw = conn.connection.driver_connection  # psycopg 3, inside the same transaction
            with raw.cursor() as cur:
                for name in names:
                    spec = TABLES[name]
                    df = tables[name][[c for c in spec.columns if c in tables[name]]]
                    for stmt in table_ddl(spec, list(df.columns)):
                        cur.execute(stmt)
                    if len(df):
                        _copy(cur, name, df)
                    for stmt in index_ddl(spec, list(df.columns)):
                        cur.execute(stmt)
                    cur.execute(f"ANALYZE {name}")
                    counts[name] = len(df)
    finally:
        engine.dispose()
    log.info("loaded %d tables (%d rows) into PostgreSQL", len(counts), sum(counts.values()))
    return counts


# ---------------------------------------------------------------- appending to one table, idempotently


class KeyConflict(ContractError):
    """Rows whose key is already stored with different content; nothing of the append was written."""

    def __init__(self, table: str, ids: list[str]) -> None:
        self.table, self.ids = table, ids
        key = "/".join(TABLES[table].key)
        super().__init__([Violation(table, key, "already stored with different content (nothing was written)",
                                    len(ids), ids)])


@dataclass(frozen=True)
class Appended:
    written: int  # rows added
    duplicates: int  # rows whose key was stored with the same content: skipped


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextmanager
def _serialized(key: str, lock_file: Path | None) -> Iterator[None]:
    """One append at a time per store and table: a thread lock within this process and, for a folder,
    an flock on a lock file beside the table, so `recoup record-work` and a running service (or two
    services on one folder) cannot interleave either. SQL stores lock inside their transaction."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if lock_file is None or fcntl is None:
            yield
            return
        with open(lock_file, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def append_table(target: str | os.PathLike, name: str, df: pd.DataFrame) -> Appended:
    """Append rows of contract table `name` to a dataset folder or a SQL database: whole or nothing,
    one append at a time per table. `df` is typed as `coerce_table` leaves it, each key once. A row
    whose key is stored with the same content is a duplicate and is skipped (re-sending adds nothing);
    a key stored with different content raises `KeyConflict`, and then nothing is written."""
    spec = TABLES[name]
    key = list(spec.key)
    if not spec.unique_key:
        raise ValueError(f"{name} has no unique key: its rows cannot be appended idempotently")
    if df.duplicated(key).any():
        raise ValueError(f"append_table({name!r}): each {'/'.join(key)} must come once")
    if is_sql_url(target):
        return _append_sql(str(target), name, df)
    return _append_folder(Path(target), name, df)


def split_stored(name: str, stored: pd.DataFrame, df: pd.DataFrame) -> tuple[pd.DataFrame, int, list[str]]:
    """Rows of `df` against the `stored` rows of the same keys: (the rows not stored yet, how many are
    stored with the same content, the keys stored with different content). Both frames are typed as
    `coerce_table` leaves them; every contract column counts, a null equals a null."""
    key = list(TABLES[name].key)
    cols = [c for c in TABLES[name].columns if c in df.columns and c in stored.columns]
    other = stored[cols].drop_duplicates(key)
    merged = df[cols].merge(other, on=key, how="left", suffixes=("", "__stored"), indicator=True)
    found = (merged["_merge"] == "both").to_numpy()
    differs = np.zeros(len(df), dtype=bool)
    for col in cols:
        if col in key:
            continue
        a, b = merged[col], merged[f"{col}__stored"]
        both_null = (a.isna() & b.isna()).to_numpy()
        ne = (a != b).astype("boolean").fillna(True).to_numpy(dtype=bool)
        differs |= ne & ~both_null
    conflict = found & differs
    ids = ["/".join(str(v) for v in row) for row in merged.loc[conflict, key].itertuples(index=False)]
    return df.loc[~found].reset_index(drop=True), int((found & ~differs).sum()), ids


def _append_folder(folder: Path, name: str, df: pd.DataFrame) -> Appended:
    from features.contract.read import _read_folder_table
    from features.contract.validate import coerce_table

    folder.mkdir(parents=True, exist_ok=True)
    # the folder's own lock too: an ingestion switching in a new version of the folder would drop the rows
    with _serialized(f"{folder.resolve()}#{name}", folder / f".{name}.lock"), dataset_lock(folder):
        path, fmt = _table_file(folder, name)
        raw = _read_folder_table(folder, name)
        if raw is None:
            stored = df.iloc[:0]
        else:
            stored, problems = coerce_table(name, raw)
            if problems:  # a broken stored table: append nothing rather than build on it
                raise _stored_broken(problems)
            extras = [c for c in raw.columns if c not in stored.columns]  # unknown columns: carried over as read
            if extras:
                stored = pd.concat([stored, raw[extras].reset_index(drop=True)], axis=1)
        new, duplicates, conflicts = split_stored(name, stored, df)
        if conflicts:
            raise KeyConflict(name, conflicts)
        if len(new):
            _replace_file(path, name, pd.concat([stored, new], ignore_index=True) if len(stored) else new, fmt)
    log.info("appended %d %s rows to a folder (%d duplicates)", len(new), name, duplicates)
    return Appended(len(new), duplicates)


def _stored_broken(problems: list[Violation]) -> ContractError:
    return ContractError([replace(v, problem=f"{v.problem} (in the stored table)") for v in problems])


def _table_file(folder: Path, name: str) -> tuple[Path, str]:
    """Where table `name` of the folder is, or goes: its file, else the folder's format (CSV when its
    tables are CSV files)."""
    pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if pq.is_dir():
        raise ValueError(f"{pq} is a folder of Parquet parts: appending rewrites a single-file table only")
    if pq.exists():
        return pq, "parquet"
    if csv.exists():
        return csv, "csv"
    csv_only = any(folder.glob("*.csv")) and not any(folder.glob("*.parquet"))
    return (csv, "csv") if csv_only else (pq, "parquet")


def _replace_file(path: Path, name: str, df: pd.DataFrame, fmt: str) -> None:
    """Write `df` beside `path` and rename it over `path`: readers see the old table or the new one."""
    import pyarrow.parquet as pq

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.new.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "parquet":
            pq.write_table(_arrow_table(name, df), tmp)
        else:
            _csv_frame(df).to_csv(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _append_sql(url: str, name: str, df: pd.DataFrame) -> Appended:
    """One transaction: lock (PostgreSQL: an advisory lock, so two writers anywhere queue), create the
    table if absent (the contract's DDL), read the stored rows of the keys given, insert the new ones."""
    import sqlalchemy as sa

    from features.contract.validate import coerce_table

    base, table = split_sql_target(url)
    if table not in (None, name):
        raise ValueError(f"the {name} rows of a SQL store go to its table {name!r}, not {table!r}")
    spec = TABLES[name]
    if len(spec.key) != 1:
        raise ValueError(f"appending to SQL needs a one-column key; {name} has {spec.key}")
    key = spec.key[0]
    engine = sa.create_engine(base)
    try:
        with _serialized(f"{engine.url.render_as_string(hide_password=True)}#{name}", None), engine.begin() as conn:
            postgres = engine.dialect.name == "postgresql"
            if postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(f"recoup.{name}".encode())})
            _ensure_table(conn, spec)
            stored = _stored_rows(conn, name, key, df[key].tolist())
            stored, problems = coerce_table(name, stored)
            if problems:
                raise _stored_broken(problems)
            new, duplicates, conflicts = split_stored(name, stored, df)
            if conflicts:
                raise KeyConflict(name, conflicts)  # the transaction rolls back: nothing written
            cols = [c for c in spec.columns if c in new.columns]
            if len(new) and postgres:
                with conn.connection.driver_connection.cursor() as cur:  # psycopg 3, same transaction
                    _copy(cur, name, new[cols])
            elif len(new):
                conn.execute(sa.text(f"INSERT INTO {name} ({', '.join(cols)}) VALUES "
                                     f"({', '.join(':' + c for c in cols)})"), _records(new[cols], spec))
    finally:
        engine.dispose()
    log.info("appended %d %s rows to SQL (%d duplicates)", len(new), name, duplicates)
    return Appended(len(new), duplicates)


def _ensure_table(conn, spec: Table) -> None:
    """The table as the contract declares it: created when absent (as `recoup load` would), optional
    columns it lacks added; a missing required column is an error."""
    import sqlalchemy as sa

    insp = sa.inspect(conn)
    columns = list(spec.columns)
    if not insp.has_table(spec.name):
        for stmt in table_ddl(spec, columns) + index_ddl(spec, columns):
            conn.exec_driver_sql(stmt)
        return
    present = {c["name"] for c in insp.get_columns(spec.name)}
    missing = [c for c in columns if c not in present]
    required = [Violation(spec.name, c, "required column is missing from the stored table")
                for c in missing if spec.columns[c].required]
    if required:
        raise ContractError(required)
    for c in missing:
        conn.exec_driver_sql(f"ALTER TABLE {spec.name} ADD COLUMN {c} {SQL_TYPES[spec.columns[c].type]}")


def _stored_rows(conn, name: str, key: str, ids: list) -> pd.DataFrame:
    import sqlalchemy as sa

    query = sa.text(f"SELECT * FROM {name} WHERE {key} IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    parts = [pd.read_sql(query, conn, params={"ids": ids[i:i + 1000]}) for i in range(0, len(ids), 1000)]
    if not parts:
        return pd.read_sql(sa.text(f"SELECT * FROM {name} WHERE 1 = 0"), conn)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def _records(df: pd.DataFrame, spec: Table) -> list[dict]:
    """Rows as plain Python values for a DB-API driver: dates as `datetime.date`, nulls as None."""
    cols = {}
    for c in df.columns:
        s = df[c]
        values = s.dt.date.tolist() if spec.columns[c].type == "date" else s.tolist()
        cols[c] = [None if v is None or v is pd.NaT or (not isinstance(v, str) and pd.isna(v)) else v
                   for v in values]
    return [dict(zip(cols, row, strict=True)) for row in zip(*cols.values(), strict=True)]


# ---------------------------------------------------------------- either


def write_dataset(ds: Dataset | dict[str, pd.DataFrame], target: str | os.PathLike,
                  fmt: str = "parquet") -> dict[str, int]:
    """Write every table, atomically, to a folder (`fmt` parquet or csv, with the `_truth/` extras)
    or, for a SQL URL, into PostgreSQL (the contract tables). Returns the row count per table."""
    tables = ds.tables if isinstance(ds, Dataset) else ds
    if is_sql_url(target):
        return write_sql(tables, str(target))
    extra = ds.extra if isinstance(ds, Dataset) else {}
    with DatasetWriter(target, fmt) as writer:
        for name, df in {**tables, **extra}.items():
            writer.write(name, df)
    return {name: len(df) for name, df in tables.items()}


def load_dataset(source: str | os.PathLike | Dataset, url: str, extract_date=None) -> dict[str, int]:
    """`recoup load`: read and validate the dataset (unless given one), then replace its tables in the
    PostgreSQL database at `url`. Returns the row count per table."""
    ds = source if isinstance(source, Dataset) else read_dataset(source, extract_date=extract_date)
    return write_sql(ds.tables, url)
