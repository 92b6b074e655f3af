"""Read a dataset in the contract: a folder of Parquet or CSV files (one per table), or a SQLAlchemy
URL whose database holds tables of the same names.

`read_raw` returns the tables as stored; `read_dataset` types them (`coerce_table`), sets the extract
date and (by default) validates them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pandas as pd

from features.contract.dataset import Dataset, latest_date
from features.contract.tables import REQUIRED_TABLES, TABLES, Bounds, ContractError, Violation
from features.contract.validate import coerce_table, validate_dataset


def is_sql_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def split_sql_target(target: str) -> tuple[str, str | None]:
    """`postgresql://host/db#worklist` -> (url, "worklist")."""
    url, _, table = str(target).partition("#")
    return url, (table or None)


def _read_folder_table(folder: Path, name: str, dates_as_datetime: bool = False) -> pd.DataFrame | None:
    """One table's file as stored; `dates_as_datetime` reads Parquet dates as datetime64 instead of
    `datetime.date` objects (for `coerce_table`, which would otherwise parse a Python object a row)."""
    pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if pq.exists():  # a file, or a folder of parts
        if dates_as_datetime:
            return pd.read_parquet(pq, to_pandas_kwargs={"date_as_object": False})
        return pd.read_parquet(pq)
    if csv.exists():
        # Read everything as text: typing happens in one place (`coerce_table`), which can name
        # the rows that do not parse.
        return pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    return None


def unreadable(name: str, folder: Path, err: Exception) -> Violation:
    """What is wrong with a table's file that cannot be read (truncated, empty, not Parquet, not UTF-8),
    naming the file and the table; no cell values (pyarrow's and pandas' messages quote none)."""
    path = folder / f"{name}.parquet"
    path = path if path.exists() else folder / f"{name}.csv"
    if isinstance(err, UnicodeDecodeError):
        byte = err.object[err.start]
        reason = f"is not UTF-8 text ({err.encoding} cannot decode byte 0x{byte:02x}): save it as UTF-8"
    elif isinstance(err, pd.errors.EmptyDataError):
        reason = "is empty (no header row)"
    else:
        text = " ".join(str(err).split()).replace(str(path), "the file")
        reason = f"cannot be read ({type(err).__name__}: {text[:200]})"
    return Violation(name, None, f"file {path} {reason}")


# what reading a damaged file raises: pyarrow's errors are OSError or ArrowInvalid (a ValueError),
# pandas' parser errors ValueErrors, a wrong encoding a UnicodeDecodeError (a ValueError too)
UNREADABLE = (OSError, ValueError)


def read_raw(source: str | os.PathLike, tables: tuple[str, ...] | None = None, *,
             dates_as_datetime: bool = False) -> dict[str, pd.DataFrame]:
    """The tables as stored, untyped; absent optional tables are left out. `dates_as_datetime`: Parquet
    dates as datetime64 (what `read_dataset` types them to anyway), not `datetime.date` objects."""
    names = tables or tuple(TABLES)
    raw: dict[str, pd.DataFrame] = {}
    if is_sql_url(source):
        import sqlalchemy as sa

        engine = sa.create_engine(str(source))
        try:
            existing = set(sa.inspect(engine).get_table_names())
            with engine.connect() as conn:
                for name in names:
                    if name in existing:
                        # a table has no order: sort by key so every read gives the same frame
                        order = ", ".join(f'"{k}"' for k in TABLES[name].key)
                        raw[name] = pd.read_sql(sa.text(f'SELECT * FROM "{name}" ORDER BY {order}'), conn)
        finally:
            engine.dispose()
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise ContractError([Violation(str(source), None, "is not a folder of contract tables")])
        broken: list[Violation] = []
        with _opened_folder(folder) as base:
            for name in names:
                try:
                    df = _read_folder_table(base, name, dates_as_datetime)
                except UNREADABLE as err:
                    broken.append(unreadable(name, folder, err))
                    continue
                if df is not None:
                    raw[name] = df
        if broken:
            raise ContractError(broken)
    return raw


@contextlib.contextmanager
def _opened_folder(folder: Path):
    """The folder, opened once: every table is read from the same version of it, even when a writer
    switches a new version in under the same name meanwhile (`features.contract.write` exchanges whole
    folders). On Linux the open directory is reached through /proc/self/fd; elsewhere, by its path."""
    proc = Path("/proc/self/fd")
    if not proc.is_dir():
        yield folder
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield proc / str(fd)
    finally:
        os.close(fd)


def read_dataset(
    source: str | os.PathLike,
    extract_date: str | pd.Timestamp | None = None,
    validate: bool = True,
    tables: tuple[str, ...] | None = None,
    bounds: Bounds | None = None,
) -> Dataset:
    """Read a dataset, type it and (by default) validate it; raise `ContractError` if broken: a file
    that cannot be read, a value that does not parse or lies outside the `bounds` (default: the
    environment's, `Bounds.from_env`) is named by table, column and row ids."""
    bounds = bounds if bounds is not None else Bounds.from_env()
    raw = read_raw(source, tables, dates_as_datetime=True)
    violations: list[Violation] = []
    wanted = tables or REQUIRED_TABLES
    for name in wanted:
        if name not in raw and not TABLES[name].optional:
            violations.append(Violation(name, None, f"table is missing from {source}"))
    typed: dict[str, pd.DataFrame] = {}
    for name in list(raw):
        df = raw.pop(name)  # the stored table goes once typed: peak memory holds one table twice, not all
        frame, problems = coerce_table(name, df, bounds)
        violations.extend(problems)
        typed[name] = frame
    if violations:
        raise ContractError(violations)
    ds = Dataset(typed, source=str(source))
    ds.extract_date = pd.Timestamp(extract_date) if extract_date is not None else latest_date(ds)
    if validate:
        validate_dataset(ds, bounds)
    return ds



def read_known_values(source: str | os.PathLike, table: str, column: str, values) -> set | None:
    """Which of `values` the stored `table.column` holds (for reference checks of appended rows, without
    reading whole tables); None when the source has no such table or column, so nothing can be checked."""
    wanted = list(dict.fromkeys(v for v in values if v is not None))
    if is_sql_url(source):
        import sqlalchemy as sa

        engine = sa.create_engine(split_sql_target(str(source))[0])
        try:
            with engine.connect() as conn:
                insp = sa.inspect(conn)
                if not insp.has_table(table) or column not in {c["name"] for c in insp.get_columns(table)}:
                    return None
                query = sa.text(f'SELECT "{column}" FROM "{table}" WHERE "{column}" IN :ids').bindparams(
                    sa.bindparam("ids", expanding=True))
                known: set = set()
                for start in range(0, len(wanted), 1000):  # bounded statements (SQLite caps parameters)
                    known.update(str(r[0]) for r in conn.execute(query, {"ids": wanted[start:start + 1000]}))
                return known
        finally:
            engine.dispose()
    folder = Path(source)
    pq, csv = folder / f"{table}.parquet", folder / f"{table}.csv"
    if pq.exists():
        import pyarrow.dataset as pads

        if column not in pads.dataset(pq).schema.names:  # a file or a folder of parts
            return None
        stored = pd.read_parquet(pq, columns=[column])[column]
    elif csv.exists():
        header = pd.read_csv(csv, nrows=0).columns
        if column not in header:
            return None
        stored = pd.read_csv(csv, usecols=[column], dtype=str, keep_default_na=False, na_values=[""])[column]
    else:
        return None
    stored_text = stored.dropna().astype(str)
    return set(stored_text[stored_text.isin(wanted)])
