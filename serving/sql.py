"""`recoup load DATA postgresql://...`: the contract tables in PostgreSQL, typed from `TABLES`.

Types: ids and codes `text`, dates `date`, money `numeric(14,2)` (exact cents), counts `bigint`,
other numbers `double precision`; NOT NULL where the contract says so. Primary keys are the table keys
where they are unique; every reference column (and every table's event time) gets an index.
The dataset is read and validated first; then one transaction drops the tables it replaces,
creates them, copies the rows in (COPY) and builds the indexes: readers see the old tables or the
new ones, never a mix.
"""

from __future__ import annotations

import io
import logging
import os

import pandas as pd

from features.contract import TABLES, Table
from features.data import Dataset, read_dataset

log = logging.getLogger(__name__)

SQL_TYPES = {"str": "text", "date": "date", "money": "numeric(14,2)", "signed_money": "numeric(14,2)",
             "int": "bigint", "float": "double precision"}


def table_ddl(spec: Table, columns: list[str]) -> list[str]:
    """CREATE TABLE (and the statements after the load: indexes) for one contract table."""
    cols = [f"{c} {SQL_TYPES[spec.columns[c].type]}{'' if spec.columns[c].nullable else ' NOT NULL'}"
            for c in columns]
    key = [k for k in spec.key if k in columns]
    if spec.unique_key and len(key) == len(spec.key) and not any(spec.columns[k].nullable for k in key):
        cols.append(f"PRIMARY KEY ({', '.join(key)})")
    return [f"CREATE TABLE {spec.name} ({', '.join(cols)})"]


def index_ddl(spec: Table, columns: list[str]) -> list[str]:
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


def load_dataset(source: str | os.PathLike | Dataset, url: str, extract_date=None) -> dict[str, int]:
    """Validate the dataset and replace its tables in the PostgreSQL database at `url` (one transaction).
    Returns the row count per table."""
    import sqlalchemy as sa

    ds = source if isinstance(source, Dataset) else read_dataset(source, extract_date=extract_date)
    url = url.partition("#")[0]
    engine = sa.create_engine(url)
    if engine.dialect.name != "postgresql":
        raise ValueError(f"recoup load writes to PostgreSQL, not {engine.dialect.name}")
    names = [n for n in TABLES if n in ds]  # TABLES lists parents before children
    counts = {}
    try:
        with engine.begin() as conn:
            for name in reversed(names):
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name} CASCADE")
            raw = conn.connection.driver_connection  # psycopg 3, inside the same transaction
            with raw.cursor() as cur:
                for name in names:
                    spec = TABLES[name]
                    df = ds[name][[c for c in spec.columns if c in ds[name]]]
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
