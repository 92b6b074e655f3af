"""Read, type and validate a dataset in the contract; write one back.

A dataset is a folder of Parquet or CSV files (one per table) or a SQLAlchemy URL whose database
holds tables of the same names. `read_dataset` returns a `Dataset` whose frames have the canonical
in-memory types (ids as strings, dates as datetime64[ns], money as float64, counts as Int64);
`validate_dataset` checks it with pandera schemas derived from `contract.TABLES`, plus the
cross-table rules pandera cannot express (references, nothing dated after the extract date).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from features.contract import REQUIRED_TABLES, TABLES, ContractError, Table, Violation

log = logging.getLogger(__name__)

MAX_IDS = 5


def float_column(values) -> np.ndarray:
    """A column (a pandas Series, or a NumPy array of a ColumnTable or of feature columns) as float64,
    missing values and non-numbers as NaN."""
    if isinstance(values, pd.Series):
        if values.dtype.kind in "fiub":
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values = np.asarray(values)
    if values.dtype.kind in "fiub":
        return values.astype(np.float64)
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class ColumnTable:
    """A contract table as NumPy columns: ids and text as object arrays, dates as datetime64[ns],
    money and counts as float64 (NaN for missing). It offers what the feature code reads of a
    DataFrame (`len`, `in`, `[column]`, `take`) without pandas' cost per operation, which dominates
    a one-account API request; the feature code accepts either."""

    __slots__ = ("columns", "n")

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns
        self.n = len(next(iter(columns.values()))) if columns else 0

    def __len__(self) -> int:
        return self.n

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def take(self, rows: np.ndarray) -> ColumnTable:
        return ColumnTable({c: v[rows] for c, v in self.columns.items()})

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> ColumnTable:
        """A typed contract frame (as `coerce_table` leaves it) in ColumnTable's types."""
        cols = {}
        for c in df.columns:
            s = df[c]
            if s.dtype.kind == "M":
                cols[c] = s.to_numpy(dtype="datetime64[ns]")
            elif s.dtype.kind in "fiub":
                cols[c] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                cols[c] = np.array([None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
                                    else v for v in s.to_numpy(dtype=object)], dtype=object)
        return cls(cols)


@dataclass
class Dataset:
    """The contract tables of one dataset, typed, plus its extract date. Tables are DataFrames,
    or `ColumnTable`s for the API's one-request datasets (read by the feature code only)."""

    tables: dict[str, pd.DataFrame]
    extract_date: pd.Timestamp | None = None
    source: str = ""
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # e.g. _truth tables

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def row_counts(self) -> dict[str, int]:
        return {n: len(df) for n, df in self.tables.items()}


def is_sql_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def split_sql_target(target: str) -> tuple[str, str | None]:
    """`postgresql://host/db#worklist` -> (url, "worklist")."""
    url, _, table = str(target).partition("#")
    return url, (table or None)


# ---------------------------------------------------------------- reading


def _read_folder_table(folder: Path, name: str) -> pd.DataFrame | None:
    pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
    if pq.exists():
        return pd.read_parquet(pq)
    if pq.is_dir():
        return pd.read_parquet(pq)
    if csv.exists():
        # Read everything as text: typing happens in one place (`coerce_table`), which can name
        # the rows that do not parse.
        return pd.read_csv(csv, dtype=str, keep_default_na=False, na_values=[""])
    return None


def read_raw(source: str | os.PathLike, tables: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
    """The tables as stored, untyped; absent optional tables are left out."""
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
        for name in names:
            df = _read_folder_table(folder, name)
            if df is not None:
                raw[name] = df
    return raw


def read_dataset(
    source: str | os.PathLike,
    extract_date: str | pd.Timestamp | None = None,
    validate: bool = True,
    tables: tuple[str, ...] | None = None,
) -> Dataset:
    """Read a dataset, type it and (by default) validate it; raise `ContractError` if broken."""
    raw = read_raw(source, tables)
    violations: list[Violation] = []
    wanted = tables or REQUIRED_TABLES
    for name in wanted:
        if name not in raw and not TABLES[name].optional:
            violations.append(Violation(name, None, f"table is missing from {source}"))
    typed: dict[str, pd.DataFrame] = {}
    for name, df in raw.items():
        frame, problems = coerce_table(name, df)
        violations.extend(problems)
        typed[name] = frame
    if violations:
        raise ContractError(violations)
    ds = Dataset(typed, source=str(source))
    ds.extract_date = pd.Timestamp(extract_date) if extract_date is not None else latest_date(ds)
    if validate:
        validate_dataset(ds)
    return ds


def latest_date(ds: Dataset) -> pd.Timestamp | None:
    dates = []
    for name, df in ds.tables.items():
        for col, spec in TABLES[name].columns.items():
            if spec.type == "date" and col in df and len(df):
                m = df[col].max()
                if pd.notna(m):
                    dates.append(m)
    return max(dates) if dates else None


# ---------------------------------------------------------------- typing


def _ids_of(table: str, df: pd.DataFrame, mask: np.ndarray | pd.Series) -> list[str]:
    key = TABLES[table].key
    rows = df.loc[np.asarray(mask, dtype=bool)].head(MAX_IDS)
    present = [k for k in key if k in rows]
    if not present:
        return [f"row {i}" for i in rows.index]
    return ["/".join(str(v) for v in r) for r in rows[present].itertuples(index=False)]


def _violation(table: str, df: pd.DataFrame, column: str | None, problem: str, mask) -> Violation:
    mask = np.asarray(mask, dtype=bool)
    return Violation(table, column, problem, int(mask.sum()), _ids_of(table, df, mask))


def _as_str(s: pd.Series) -> pd.Series:
    """Ids as Python strings (object dtype), nulls as None; vectorised for string columns."""
    if pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype=object, na_value=None), index=s.index, dtype=object)
    if pd.api.types.is_object_dtype(s.dtype) and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return s.astype(object).where(s.notna(), None)
    if pd.api.types.is_integer_dtype(s.dtype):
        return s.astype("Int64").astype(str).astype(object).where(s.notna(), None)
    if pd.api.types.is_float_dtype(s):
        # ids stored as numbers (a CSV export, a SQL integer column): 123.0 -> "123"
        out = s.map(lambda v: None if pd.isna(v) else (str(int(v)) if float(v).is_integer() else str(v)))
    else:
        out = s.map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
                    else str(v))
    out = out.astype(object)
    return out.where(out.notna(), None)


def coerce_table(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, list[Violation]]:
    """Give each contract column its canonical type; unknown columns are dropped (ignored)."""
    spec: Table = TABLES[name]
    out: dict[str, pd.Series] = {}
    problems: list[Violation] = []
    for col, c in spec.columns.items():
        if col not in df.columns:
            if c.required:
                problems.append(Violation(name, col, "required column is missing"))
                continue
            values = pd.Series([c.default] * len(df), index=df.index)
        else:
            values = df[col]
        raw_null = values.isna()
        if c.type == "str":
            typed = _as_str(values)
        elif c.type == "date":
            if pd.api.types.is_datetime64_any_dtype(values):
                typed = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
            elif pd.api.types.infer_dtype(values, skipna=True) in ("date", "datetime", "datetime64", "empty"):
                typed = pd.to_datetime(values, errors="coerce")  # Parquet date32 arrives as datetime.date
            else:  # text: an ISO date, perhaps with a time part
                text = values.astype("string").str.slice(0, 10)
                typed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
            typed = typed.astype("datetime64[ns]").dt.normalize()
        elif c.type in ("money", "signed_money", "float"):
            typed = pd.to_numeric(values, errors="coerce").astype("float64")
            if c.type != "float":
                typed = typed.round(2)
        else:  # int
            num = pd.to_numeric(values, errors="coerce")
            frac = num.notna() & (num != np.floor(num.fillna(0)))
            num = num.where(~frac)
            typed = num.astype("Int64")
        bad = typed.isna() & ~raw_null
        if bad.any():
            problems.append(_violation(name, df, col, f"values are not of type {c.type}", bad))
        out[col] = typed
    return pd.DataFrame(out, index=df.index).reset_index(drop=True), problems


# ---------------------------------------------------------------- validation

_PANDERA_DTYPE = {
    "str": None,  # ids stay Python strings; pandera checks values, not the object dtype
    "date": "datetime64[ns]",
    "money": "float64",
    "signed_money": "float64",
    "float": "float64",
    "int": "Int64",
}


def pandera_schema(name: str) -> pa.DataFrameSchema:
    """The pandera schema of one contract table (derived from `TABLES`, never written by hand)."""
    spec = TABLES[name]
    columns = {}
    for col, c in spec.columns.items():
        checks = []
        if c.enum is not None:
            allowed = ", ".join(map(str, c.enum))
            checks.append(pa.Check.isin(list(c.enum), error=f"unknown value (allowed: {allowed})"))
        if c.non_negative:
            checks.append(pa.Check.ge(0, error="value is negative where the contract requires >= 0"))
        columns[col] = pa.Column(_PANDERA_DTYPE[c.type], checks, nullable=c.nullable, required=c.required)
    unique = list(spec.key) if spec.unique_key else None
    return pa.DataFrameSchema(columns, unique=unique, report_duplicates="all", strict=False, name=name)


def _pandera_violations(name: str, df: pd.DataFrame) -> list[Violation]:
    try:
        pandera_schema(name).validate(df, lazy=True)
        return []
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
    out: list[Violation] = []
    for (column, check), group in fc.groupby(["column", "check"], dropna=False, sort=False):
        idx = pd.to_numeric(group["index"], errors="coerce").dropna().astype(int).unique()
        mask = np.zeros(len(df), dtype=bool)
        mask[idx[(idx >= 0) & (idx < len(df))]] = True
        check = str(check)
        if "not_nullable" in check:
            problem = "value is missing (null) where the contract requires one"
        elif "unique" in check or "duplicate" in check.lower():
            column = "/".join(TABLES[name].key)
            problem = "duplicate key"
        elif "dtype" in check:
            problem = f"wrong type ({check})"
        else:
            problem = check  # our own check texts: "value is not one of ...", "value is negative ..."
        col = None if pd.isna(column) else str(column)
        if col in (name, "None"):
            col = "/".join(TABLES[name].key)
        out.append(_violation(name, df, col, problem, mask) if mask.any() else Violation(name, col, problem))
    return out


def validate_dataset(ds: Dataset) -> None:
    """Raise `ContractError` naming every broken rule; return None when the dataset is sound."""
    violations: list[Violation] = []
    for name, df in ds.tables.items():
        violations.extend(_pandera_violations(name, df))
    violations.extend(_reference_violations(ds))
    violations.extend(_date_violations(ds))
    if violations:
        raise ContractError(violations)


def _reference_violations(ds: Dataset) -> list[Violation]:
    out = []
    for name, df in ds.tables.items():
        for ref in TABLES[name].references:
            if ref.table not in ds.tables or ref.column not in df:
                continue
            values = df[ref.column]
            known = pd.Index(ds.tables[ref.table][ref.target].dropna().unique())
            mask = values.notna() & ~values.isin(known)
            if mask.any():
                out.append(_violation(name, df, ref.column, f"references an unknown {ref.table}.{ref.target}", mask))
    return out


def _date_violations(ds: Dataset) -> list[Violation]:
    if ds.extract_date is None:
        return []
    out = []
    for name, df in ds.tables.items():
        for col, c in TABLES[name].columns.items():
            if c.type == "date" and col in df:
                mask = df[col] > ds.extract_date
                if mask.any():
                    out.append(_violation(name, df, col,
                                          f"dated after the extract date {ds.extract_date.date()}", mask))
    return out


# ---------------------------------------------------------------- writing


def write_dataset(ds: Dataset | dict[str, pd.DataFrame], folder: str | os.PathLike, fmt: str = "parquet") -> Path:
    """Write every table (and `_truth/` extras) to a folder, atomically: all files or none."""
    tables = ds.tables if isinstance(ds, Dataset) else ds
    extra = ds.extra if isinstance(ds, Dataset) else {}
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, df in tables.items():
            _write_frame(df, tmp / f"{name}.{fmt}", fmt)
        for name, df in extra.items():
            path = tmp / f"{name}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_frame(df, path, fmt)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def arrow_schema(name: str):
    """The Parquet schema of a contract table: ISO dates as date32, money as float64, ids as strings."""
    import pyarrow as pa

    kinds = {"str": pa.string(), "date": pa.date32(), "money": pa.float64(), "signed_money": pa.float64(),
             "float": pa.float64(), "int": pa.int64()}
    return pa.schema([(col, kinds[c.type]) for col, c in TABLES[name].columns.items()])


def _write_frame(df: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = path.stem
        if name in TABLES and set(TABLES[name].columns) == set(df.columns):
            pq.write_table(pa.Table.from_pandas(df[list(TABLES[name].columns)], schema=arrow_schema(name),
                                                preserve_index=False), path)
        else:
            df.to_parquet(path, index=False)
    elif fmt == "csv":
        out = df.copy()
        for col in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%d")
        out.to_csv(path, index=False)
    else:
        raise ValueError(f"unknown format {fmt!r} (parquet or csv)")
