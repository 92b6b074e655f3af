"""Type and validate contract tables.

`coerce_table` gives each column its canonical in-memory type (ids as strings, dates as
datetime64[ns], money as float64, counts as Int64) and names the rows that do not parse;
`validate_dataset` checks a typed dataset with pandera schemas derived from `TABLES`, plus the
cross-table rules pandera cannot express (references, nothing dated after the extract date) and the
value bounds (`Bounds`: dates within the accepted range, amounts finite and under the ceiling, the
columns' plausible maximums).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from features.contract.dataset import Dataset
from features.contract.tables import TABLES, Bounds, ContractError, Table, Violation

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


def _is_arrow_text(s: pd.Series) -> bool:
    """A pandas string column (pandas 3's `str`, Arrow-backed as Parquet and CSV text arrive), not objects."""
    return pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(s.dtype)


def _as_str(s: pd.Series, distinct: bool = False) -> pd.Series:
    """Ids as Python strings (object dtype), nulls as None; vectorised for string columns. `distinct`:
    the column is a table's own key, every value its own (nothing to share)."""
    if _is_arrow_text(s) and distinct:
        return pd.Series(s.to_numpy(dtype=object, na_value=None), index=s.index, dtype=object)
    if _is_arrow_text(s):
        # One Python string per distinct value, shared by the rows that repeat it (an account id, a
        # payer, an enum): far less memory than one object a row, and factorizing Arrow text is cheap.
        codes, uniques = pd.factorize(s)
        shared = np.append(uniques.to_numpy(dtype=object), None)  # code -1 (missing) takes the last: None
        return pd.Series(shared[codes], index=s.index, dtype=object)
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


def _bounded_dates(values: pd.Series, bounds: Bounds) -> tuple[pd.Series, pd.Series]:
    """Dates as datetime64[ns], and the mask of those outside the accepted range, which become
    missing (pandas parses year 3025 at a coarser unit: converted as they are, they would overflow)."""
    first, last = pd.Timestamp(bounds.min_date), pd.Timestamp(bounds.max_date)
    outside = values.notna() & ((values < first) | (values > last))
    return values.where(~outside).astype("datetime64[ns]").dt.normalize(), outside


def _date_range_problem(bounds: Bounds) -> str:
    return f"date outside the accepted range {bounds.date_range} (RECOUP_MIN_DATE, RECOUP_MAX_DATE)"


def bound_violations(name: str, df: pd.DataFrame, bounds: Bounds | None = None) -> list[Violation]:
    """Values of a typed table outside the bounds: dates outside the accepted range, numbers that are
    not finite (inf), amounts over the ceiling, counts over their column's plausible maximum."""
    bounds = bounds if bounds is not None else Bounds.from_env()
    out: list[Violation] = []
    for col, c in TABLES[name].columns.items():
        if col not in df:
            continue
        values = df[col]
        if c.type == "date":
            if not pd.api.types.is_datetime64_any_dtype(values):
                continue
            outside = values.notna() & ((values < pd.Timestamp(bounds.min_date))
                                        | (values > pd.Timestamp(bounds.max_date)))
            if outside.any():
                out.append(_violation(name, df, col, _date_range_problem(bounds), outside))
            continue
        if c.type == "str" or not pd.api.types.is_numeric_dtype(values):
            continue
        num = values.to_numpy(dtype="float64", na_value=np.nan)
        infinite = np.isinf(num)
        if infinite.any():
            out.append(_violation(name, df, col, "value is not a finite number", infinite))
        if c.type in ("money", "signed_money"):
            over = np.abs(np.where(infinite, 0.0, num)) > bounds.max_amount
            if over.any():
                out.append(_violation(name, df, col, f"amount over the ceiling of {bounds.max_amount:,.0f} dollars "
                                                     "(RECOUP_MAX_AMOUNT)", over))
        elif c.maximum is not None:
            over = np.where(infinite, 0.0, num) > c.maximum
            if over.any():
                out.append(_violation(name, df, col, f"value over the plausible maximum of {c.maximum:,g}", over))
    return out


def coerce_table(name: str, df: pd.DataFrame, bounds: Bounds | None = None) -> tuple[pd.DataFrame, list[Violation]]:
    """Give each contract column its canonical type and name the values that do not parse or that lie
    outside the bounds (`bound_violations`; dates outside the range become missing, non-finite numbers
    stay as they are but are named); unknown columns are dropped (ignored)."""
    spec: Table = TABLES[name]
    bounds = bounds if bounds is not None else Bounds.from_env()
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
        parsed_all = False  # True where no non-null value can fail to parse
        if c.type == "str":
            typed = _as_str(values, distinct=spec.unique_key and spec.key == (col,))
            parsed_all = _is_arrow_text(values)  # text is text: skip a null scan of Python objects
        elif c.type == "date":
            if pd.api.types.is_datetime64_any_dtype(values):
                typed = values.dt.tz_localize(None) if getattr(values.dt, "tz", None) else values
            elif pd.api.types.infer_dtype(values, skipna=True) in ("date", "datetime", "datetime64", "empty"):
                typed = pd.to_datetime(values, errors="coerce")  # Parquet date32 arrives as datetime.date
            else:  # text: an ISO date, perhaps with a time part
                text = values.astype("string").str.slice(0, 10)
                typed = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
            typed, outside = _bounded_dates(typed, bounds)
            if outside.any():
                problems.append(_violation(name, df, col, _date_range_problem(bounds), outside))
                raw_null = raw_null | outside
        elif c.type in ("money", "signed_money", "float"):
            typed = pd.to_numeric(values, errors="coerce").astype("float64")
            if c.type != "float":
                typed = typed.round(2)
        else:  # int
            num = pd.to_numeric(values, errors="coerce")
            frac = num.notna() & (num != np.floor(num.fillna(0)))
            # beyond int64 (or inf) it is no count: missing, so that it is named as not an int
            num = num.where(~frac & (num.abs() < 2.0**63))
            typed = num.astype("Int64")
        bad = None if parsed_all else typed.isna() & ~raw_null
        if bad is not None and bad.any():
            problems.append(_violation(name, df, col, f"values are not of type {c.type}", bad))
        out[col] = typed
    frame = pd.DataFrame(out, index=df.index)
    problems.extend(bound_violations(name, frame, bounds))
    return frame.reset_index(drop=True), problems


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


def validate_dataset(ds: Dataset, bounds: Bounds | None = None) -> None:
    """Raise `ContractError` naming every broken rule; return None when the dataset is sound. `bounds`
    default to the environment's (`Bounds.from_env`)."""
    bounds = bounds if bounds is not None else Bounds.from_env()
    violations: list[Violation] = []
    for name, df in ds.tables.items():
        violations.extend(_pandera_violations(name, df))
        violations.extend(bound_violations(name, df, bounds))
    violations.extend(_reference_violations(ds))
    violations.extend(_date_violations(ds))
    if violations:
        raise ContractError(violations)


def _as_arrow_text(values: pd.Series):
    """A typed id column as an Arrow string array (nulls as nulls): Arrow hashes its bytes in C++, where
    pandas' `isin` on object columns hashes and compares Python strings one by one."""
    import pyarrow as pa

    arr = values.to_numpy()  # typed ids: str or None, which from_pandas reads as they are
    try:
        return pa.array(arr, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not text (a frame built by hand): compare as text
        return pa.array(_as_str(pd.Series(arr)).to_numpy(), type=pa.string(), from_pandas=True)


def _reference_violations(ds: Dataset) -> list[Violation]:
    import pyarrow.compute as pc

    out = []
    known_sets: dict[tuple[str, str], object] = {}  # a target column is read once for all its references
    for name, df in ds.tables.items():
        for ref in TABLES[name].references:
            if ref.table not in ds.tables or ref.column not in df:
                continue
            target = (ref.table, ref.target)
            if target not in known_sets:
                known_sets[target] = pc.unique(_as_arrow_text(ds.tables[ref.table][ref.target]).drop_null())
            values = _as_arrow_text(df[ref.column])
            unknown = pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, value_set=known_sets[target])))
            mask = unknown.to_numpy(zero_copy_only=False)
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
