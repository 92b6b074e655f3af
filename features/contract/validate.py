"""Type and validate contract tables.

`coerce_table` gives each column its canonical in-memory type (ids as strings, dates as
datetime64[ns], money as float64, counts as Int64) and names the rows that do not parse;
`validate_dataset` checks a typed dataset with pandera schemas derived from `TABLES`, plus the
cross-table rules pandera cannot express (references, nothing dated after the extract date).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.contract.dataset import Dataset
from features.contract.tables import TABLES, ContractError, Table, Violation

if TYPE_CHECKING:
    import pandera.pandas as pa

MAX_IDS = 5  # offending row ids named per violation


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


def _nanosecond_dates(values: pd.Series) -> pd.Series:
    """Dates as datetime64[ns]; one outside its range (pandas parses year 1500 at a coarser unit) is
    missing, so that it is reported as not a date instead of overflowing."""
    try:
        return values.astype("datetime64[ns]").dt.normalize()
    except pd.errors.OutOfBoundsDatetime:
        inside = (values >= pd.Timestamp.min) & (values <= pd.Timestamp.max)
        return values.where(inside).astype("datetime64[ns]").dt.normalize()


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
            typed = _nanosecond_dates(typed)
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
    import pandera.pandas as pa  # here, not at import: the declarations stay light for X12 ingestion and docs

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


def table_violations(name: str, df: pd.DataFrame) -> list[Violation]:
    """What the pandera schema of one typed table finds (enums, signs, nulls, duplicate keys); the
    cross-table rules need the dataset (`validate_dataset`)."""
    return _pandera_violations(name, df)


def _pandera_violations(name: str, df: pd.DataFrame) -> list[Violation]:
    import pandera.pandas as pa

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
