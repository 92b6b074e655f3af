"""Write a dataset atomically: to a folder of Parquet or CSV files, or into PostgreSQL.

A folder is built beside its target and swapped in with two renames once every table is written
(`DatasetWriter`): readers see the old folder or the new one, never a part of either, and a failure
leaves the old one as it was. Tables come whole or in chunks (each `write` appends one), so a dataset
larger than memory is written chunk by chunk. Contract tables go to Parquet with their contract
schema (`arrow_schema`); other frames (`_truth/` tables, an ingest ledger) as pandas types them.

PostgreSQL (`write_sql`, behind `recoup load`): ids and codes `text`, dates `date`, money
`numeric(14,2)` (exact cents), counts `bigint`, other numbers `double precision`; NOT NULL where
the contract says so. Primary keys are the table keys where they are unique; every reference column
(and every table's event time) gets an index. One transaction drops the tables it replaces, creates
them, copies the rows in (COPY) and builds the indexes: readers see the old tables or the new ones.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from features.contract.dataset import Dataset
from features.contract.read import is_sql_url, read_dataset, split_sql_target
from features.contract.tables import TABLES, Table

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
    it replaces are carried over unless written again."""

    def __init__(self, folder: str | os.PathLike, fmt: str = "parquet", keep_existing: bool = False) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r} (parquet or csv)")
        self.folder = Path(folder)
        self.fmt = fmt
        self.keep_existing = keep_existing
        self._target = self.folder
        self._tmp: Path | None = None
        self._parquet: dict[str, object] = {}  # table -> open pyarrow ParquetWriter
        self._csv: set[str] = set()  # tables whose CSV header is written

    def __enter__(self) -> DatasetWriter:
        self._target = target = self.folder.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new.", dir=target.parent))
        self._csv = set()
        if self.keep_existing and target.exists():
            shutil.copytree(target, self._tmp, dirs_exist_ok=True)
        return self

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
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns = [c for c in TABLES[name].columns if c in df.columns] if name in TABLES else []
        if columns and len(columns) == len(df.columns):
            # the contract's types for the columns written (optional ones a writer lacks are left out)
            schema = pa.schema([f for f in arrow_schema(name) if f.name in df.columns])
            table = pa.Table.from_pandas(df[columns], schema=schema, preserve_index=False)
        else:
            table = pa.Table.from_pandas(df, preserve_index=False)
        if name not in self._parquet:
            self._parquet[name] = pq.ParquetWriter(path, table.schema)
        writer = self._parquet[name]
        writer.write_table(table.cast(writer.schema))  # each chunk is one row group

    def _append_csv(self, name: str, path: Path, df: pd.DataFrame) -> None:
        out = df.copy()
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%d")
        first = name not in self._csv
        out.to_csv(path, index=False, header=first, mode="w" if first else "a")
        self._csv.add(name)

    def __exit__(self, exc_type, exc, tb) -> None:
        tmp, self._tmp = self._tmp, None
        writers, self._parquet = list(self._parquet.values()), {}
        if exc_type is not None:
            _discard(tmp, writers)
            return
        try:
            for writer in writers:
                writer.close()  # a Parquet file is whole only once its writer is closed
        except BaseException:
            _discard(tmp, writers)
            raise
        _swap_in(tmp, self._target)


def _discard(tmp: Path, writers: list) -> None:
    for writer in writers:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - already failing; the temporary folder goes anyway
            pass
    shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    """Put folder `new` where `target` is: move the old one aside, rename the new one in, then
    delete the old one (restored if the rename fails)."""
    old = None
    try:
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            old.rmdir()
            target.rename(old)
        new.rename(target)
    except BaseException:
        if old is not None and not target.exists():
            old.rename(target)
        shutil.rmtree(new, ignore_errors=True)
        raise
    if old is not None:
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
