"""The service's requests: pydantic models derived from the data contract, the checks pydantic cannot
make (references, unique keys), and the request as a contract `Dataset` (and back, for clients).

Every row model is generated from `features.contract.TABLES` (never written by hand): enums become
`Literal`s, money and counts that the contract says are non-negative get `ge=0` (and `le` their column's
maximum), floats must be finite, values are not converted between JSON types (strict), dates are
`datetime.date` (ISO `YYYY-MM-DD`, within what datetime64[ns] holds; the service then holds them to the
configured `Bounds`, as `bound_problems` does amounts), nullable columns may be null or left out,
optional columns may be left out (the service applies their contract default), unknown keys are
ignored (as the contract says). Validation errors never echo the submitted values
(`hide_input_in_errors`): they can be PHI.

Rows are validated into `TypedDict`s, not model instances: a 1,000-account worklist carries some
50,000 rows, and pydantic validates them into dicts in half the time it takes to build objects.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Annotated, Any, Literal, NotRequired

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from features.contract import NANOSECOND_DAYS, TABLES, Bounds, Col, ColumnTable, Dataset, person_of_accounts
from features.dates import from_python_dates, parse_as_of

# the tables an account history carries in a request (payers: those the account refers to)
HISTORY_TABLES = (
    "payers", "claims", "claim_lines", "remittances", "adjustments", "transactions", "appeals", "activities",
    "claim_acks", "work",
)
REQUEST_TABLES = ("accounts", *HISTORY_TABLES)

# strict: a value of another JSON type is refused, not converted (the number 0 is not a date, "5" not an
# amount, true not a count), as the OpenAPI document says; JSON's ISO date strings are dates
_ROW_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, allow_inf_nan=False, strict=True)
_STRICT_CONFIG = _ROW_CONFIG

_PY_TYPE = {"str": str, "date": dt.date, "money": float, "signed_money": float, "int": int, "float": float}


# datetime64[ns] holds these days (pandas' range): the models refuse any other date (it could not even be
# converted), and the service then holds the request to the configured, narrower `Bounds`
_FIRST_DAY, _LAST_DAY = NANOSECOND_DAYS
DATE_DOC = f"ISO date within the accepted range (RECOUP_MIN_DATE … RECOUP_MAX_DATE, default {Bounds().date_range})"


def _not_a_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


def _field(col: str, c: Col) -> Any:
    typ: Any = Literal[c.enum] if c.enum is not None else _PY_TYPE[c.type]
    kw: dict[str, Any] = {}
    if c.non_negative:
        kw["ge"] = 0
    if c.maximum is not None:
        kw["le"] = c.maximum
    if c.type == "date":
        kw.update(ge=_FIRST_DAY, le=_LAST_DAY)
    doc = "; ".join(d for d in (c.doc, DATE_DOC if c.type == "date" else "") if d)
    if not c.required and c.default is not None:
        doc = f"{doc} (default {c.default!r} when left out)".strip()
    if doc:
        kw["description"] = doc
    if c.enum is not None and c.type == "int":
        # JSON's true is not the number 1 (a Literal of ints would take it: True == 1)
        typ = Annotated[typ, BeforeValidator(_not_a_bool)]
    if c.nullable:
        typ = typ | None
    typ = Annotated[typ, Field(**kw)] if kw else typ
    # a required, non-null column is a key every row must carry: a missing key is an error naming it
    return typ if c.required and not c.nullable else NotRequired[typ]


def row_class_name(table: str) -> str:
    """The name of a table's row model (and of its OpenAPI schema)."""
    return "".join(p.capitalize() for p in table.split("_")) + "Row"


@functools.cache
def row_model(table: str) -> type:
    """The pydantic-validated `TypedDict` of one row of a contract table."""
    spec = TABLES[table]
    model = TypedDict(row_class_name(table), {col: _field(col, c) for col, c in spec.columns.items()})
    model.__doc__ = spec.doc or None
    return with_config(_ROW_CONFIG)(model)


def row_defaults(table: str) -> dict[str, Any]:
    """The value of each column when a request row leaves it out (None for nullable columns)."""
    return {col: c.default for col, c in TABLES[table].columns.items() if not c.required or c.nullable}


PayersRow = row_model("payers")
AccountsRow = row_model("accounts")
ClaimsRow = row_model("claims")
ClaimLinesRow = row_model("claim_lines")
RemittancesRow = row_model("remittances")
AdjustmentsRow = row_model("adjustments")
TransactionsRow = row_model("transactions")
AppealsRow = row_model("appeals")
ActivitiesRow = row_model("activities")
ClaimAcksRow = row_model("claim_acks")


def _work_row_model() -> type:
    """A row of the contract's `work` table as `POST /work` takes it: the generated row, with what
    the service must hold to before it writes (pandera is not on the request path): ids not empty and a
    propensity in (0, 1] (a probability the policy drew with); the date is any row's (strict ISO, within
    pandas' range; the service holds it to the configured bounds)."""
    spec = TABLES["work"]
    fields = {col: _field(col, c) for col, c in spec.columns.items()}
    for col in ("work_id", "account_id"):
        fields[col] = Annotated[str, Field(min_length=1)]
    fields["propensity"] = Annotated[float, Field(gt=0, le=1, description=spec.columns["propensity"].doc)]
    model = TypedDict("WorkRow", fields)
    model.__doc__ = spec.doc or None
    return with_config(_ROW_CONFIG)(model)


WorkRow = _work_row_model()


@with_config(_STRICT_CONFIG)
class AccountHistory(TypedDict):
    """One account and its whole history, each object a row of the contract table of that name."""

    account: AccountsRow  # type: ignore[valid-type]
    payers: NotRequired[list[PayersRow]]  # type: ignore[valid-type]
    claims: NotRequired[list[ClaimsRow]]  # type: ignore[valid-type]
    claim_lines: NotRequired[list[ClaimLinesRow]]  # type: ignore[valid-type]
    remittances: NotRequired[list[RemittancesRow]]  # type: ignore[valid-type]
    adjustments: NotRequired[list[AdjustmentsRow]]  # type: ignore[valid-type]
    transactions: NotRequired[list[TransactionsRow]]  # type: ignore[valid-type]
    appeals: NotRequired[list[AppealsRow]]  # type: ignore[valid-type]
    activities: NotRequired[list[ActivitiesRow]]  # type: ignore[valid-type]
    claim_acks: NotRequired[list[ClaimAcksRow]]  # type: ignore[valid-type]
    work: NotRequired[list[WorkRow]]  # type: ignore[valid-type]


class ScoreRequest(BaseModel):
    """Accounts to score at one as-of date."""

    model_config = _STRICT_CONFIG

    as_of: dt.date = Field(ge=_FIRST_DAY, le=_LAST_DAY, description=(
        "The as-of date (YYYY-MM-DD): only what was known on it is used; " + DATE_DOC))
    accounts: list[AccountHistory] = Field(description="At most RECOUP_MAX_ACCOUNTS (default 5,000) accounts.")


class WorklistRequest(ScoreRequest):
    """Accounts to rank into a worklist, optionally cut to the collectors' minutes."""

    capacity_minutes: float | None = Field(None, ge=0, description="Cut the list greedily by priority.")


# ----------------------------------------------------------------------------- POST /work




class WorkRequest(BaseModel):
    """What collectors did: rows of the contract's `work` table (idempotent by `work_id`)."""

    model_config = _STRICT_CONFIG

    work: list[WorkRow] = Field(  # type: ignore[valid-type]
        description="At most RECOUP_MAX_ACCOUNTS (default 5,000) rows; each a row of the contract's work table.")


# ----------------------------------------------------------------------------- checks and the dataset


def _column(kind: str, values: list) -> np.ndarray:
    """One column as `features.contract.ColumnTable` holds it: text as object, dates as datetime64[ns],
    money (to the cent) and counts as float64 with NaN for missing."""
    if kind == "str":
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        return arr
    if kind == "date":
        return from_python_dates(values)
    arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.round(arr, 2) if kind in ("money", "signed_money") else arr


_KINDS = {t: [(c, spec.type) for c, spec in TABLES[t].columns.items()] for t in TABLES}


def _table(table: str, rows: list[dict]) -> ColumnTable:
    """One table from its request rows; a column a row leaves out takes its contract default."""
    defaults = row_defaults(table)
    cols = {}
    for c, kind in _KINDS[table]:
        if c in defaults:
            default = defaults[c]
            cols[c] = _column(kind, [d.get(c, default) for d in rows])
        else:
            cols[c] = _column(kind, [d[c] for d in rows])
    return ColumnTable(cols)


def _path(i: int, name: str | None = None, j: int | None = None, col: str | None = None) -> str:
    """The JSON path of a request field: accounts[i].name[j].col (or accounts[i].account.col)."""
    out = f"accounts[{i}]"
    if name is not None:
        out += f".{name}" + (f"[{j}]" if j is not None else "")
    return out + (f".{col}" if col is not None else "")


_UNIQUE_TABLES = ("accounts", "claims", "claim_lines", "remittances", "transactions", "appeals", "activities",
                  "claim_acks", "work")


def check_references(req: ScoreRequest) -> list[tuple[str, str]]:
    """References inside each history and unique keys across the request (the contract's rules,
    named by JSON path); payers shared by several accounts must agree. Locations are kept as
    tuples and turned into paths only for a problem: a worklist has ~50,000 rows to check."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, dict] = {t: {} for t in _UNIQUE_TABLES}
    payers: dict[str, dict] = {}
    payer_defaults = row_defaults("payers")

    def unique(table: str, key, loc: tuple) -> None:
        first = seen[table].setdefault(key, loc)
        if first is not loc:
            problems.append((_path(*loc), f"duplicate {'/'.join(TABLES[table].key)} (first at {_path(*first)})"))

    for i, h in enumerate(req.accounts):
        account = h["account"]
        acct = account["account_id"]
        unique("accounts", acct, (i, "account", None, "account_id"))
        payer_ids = set()
        for j, p in enumerate(h.get("payers", ())):
            payer_ids.add(p["payer_id"])
            prev = payers.setdefault(p["payer_id"], p)
            if prev is not p and prev != p and {**payer_defaults, **prev} != {**payer_defaults, **p}:
                problems.append((_path(i, "payers", j), "payer_id given twice with different values"))

        def payer_ref(pid, loc: tuple, payer_ids=payer_ids, i=i) -> None:
            if pid is not None and pid not in payer_ids:
                problems.append((_path(*loc), f"references a payer that is not in {_path(i, 'payers')}"))

        def mismatch(loc: tuple, i=i) -> None:
            own = _path(i, "account", None, "account_id")
            problems.append((_path(*loc), f"is not the account's account_id ({own})"))

        payer_ref(account.get("primary_payer_id"), (i, "account", None, "primary_payer_id"))
        claims = h.get("claims", ())
        claim_ids = {c["claim_id"] for c in claims}
        for j, c in enumerate(claims):
            unique("claims", c["claim_id"], (i, "claims", j, "claim_id"))
            if c["account_id"] != acct:
                mismatch((i, "claims", j, "account_id"))
            payer_ref(c.get("payer_id"), (i, "claims", j, "payer_id"))
            original = c.get("original_claim_id")
            if original is not None and original not in claim_ids:
                problems.append((_path(i, "claims", j, "original_claim_id"),
                                 f"references a claim that is not in {_path(i, 'claims')}"))
        for name in ("claim_lines", "remittances", "appeals", "claim_acks"):
            key_col = TABLES[name].key[-1]
            for j, r in enumerate(h.get(name, ())):
                if r["claim_id"] not in claim_ids:
                    problems.append((_path(i, name, j, "claim_id"),
                                     f"references a claim that is not in {_path(i, 'claims')}"))
                key = (r["claim_id"], r["line_number"]) if name == "claim_lines" else r[key_col]
                unique(name, key, (i, name, j, key_col))
        remit_ids = {r["remit_id"] for r in h.get("remittances", ())}
        for j, a in enumerate(h.get("adjustments", ())):
            if a["remit_id"] not in remit_ids:
                problems.append((_path(i, "adjustments", j, "remit_id"),
                                 f"references a remittance that is not in {_path(i, 'remittances')}"))
        for name in ("transactions", "activities", "work"):
            key_col = TABLES[name].key[0]
            for j, r in enumerate(h.get(name, ())):
                if r["account_id"] != acct:
                    mismatch((i, name, j, "account_id"))
                unique(name, r[key_col], (i, name, j, key_col))
                if name == "transactions":
                    payer_ref(r.get("payer_id"), (i, name, j, "payer_id"))
                if name == "work" and r.get("claim_id") is not None and r["claim_id"] not in claim_ids:
                    problems.append((_path(i, name, j, "claim_id"),
                                     f"references a claim that is not in {_path(i, 'claims')}"))
        if len(problems) >= 50:
            break
    return problems


def _row_path(req: ScoreRequest, table: str, k: int, col: str) -> str:
    """The JSON path of row `k` of the request's table `table` (rows in `build_dataset`'s order)."""
    if table == "accounts":
        return _path(k, "account", None, col)
    for i, h in enumerate(req.accounts):
        n = len(h.get(table, ()))
        if k < n:
            return _path(i, table, k, col)
        k -= n
    return f"{table}[{k}].{col}"


def bound_problems(req: ScoreRequest, ds: Dataset, bounds: Bounds) -> list[tuple[str, str]]:
    """The request's dates outside the accepted range and amounts over the ceiling, by JSON path
    (vectorised over the built tables; the paths are worked out only for what is found)."""
    lo, hi = np.datetime64(bounds.min_date, "ns"), np.datetime64(bounds.max_date, "ns")
    date_msg = f"date outside the accepted range {bounds.date_range} (RECOUP_MIN_DATE, RECOUP_MAX_DATE)"
    money_msg = f"amount over the ceiling of {bounds.max_amount:,.0f} dollars (RECOUP_MAX_AMOUNT)"
    problems: list[tuple[str, str]] = []
    if not bounds.min_date <= req.as_of <= bounds.max_date:
        problems.append(("as_of", date_msg))
    for table, t in ds.tables.items():
        for col, c in TABLES[table].columns.items():
            if c.type == "date":
                v = t[col]
                bad = ~np.isnat(v) & ((v < lo) | (v > hi))
                msg = date_msg
            elif c.type in ("money", "signed_money"):
                bad = np.abs(np.nan_to_num(t[col], nan=0.0)) > bounds.max_amount
                msg = money_msg
            else:
                continue
            problems.extend((_row_path(req, table, int(k), col), msg) for k in np.flatnonzero(bad)[:50])
    return problems


def facility_problems(req: ScoreRequest, allowed: frozenset[str]) -> list[tuple[str, str]]:
    """The accounts of facilities outside `allowed`, by JSON path (the facility itself is not quoted)."""
    return [(_path(i, "account", None, "facility_id"), "a facility this client may not send")
            for i, h in enumerate(req.accounts) if h["account"]["facility_id"] not in allowed]


def build_dataset(req: ScoreRequest) -> Dataset:
    """The request's histories as one contract `Dataset` of `ColumnTable`s (the values `coerce_table`
    gives, as NumPy columns): pandas costs more per operation than a one-account request's work."""
    rows: dict[str, list] = {t: [] for t in REQUEST_TABLES}
    payers: dict[str, dict] = {}
    for h in req.accounts:
        rows["accounts"].append(h["account"])
        for p in h.get("payers", ()):
            payers.setdefault(p["payer_id"], p)
        for name in REQUEST_TABLES[2:]:
            rows[name].extend(h.get(name, ()))
    rows["payers"] = list(payers.values())
    # the as-of date, parsed here once: a request's data is extracted at its as-of date
    return Dataset({t: _table(t, r) for t, r in rows.items()}, extract_date=parse_as_of(req.as_of), source="api")


def table_records(df: pd.DataFrame, name: str) -> list[dict]:
    """Rows of the contract table `name` as JSON records (its own columns only; dates as ISO strings,
    missing values as None): a request body's rows."""
    cols = [c for c in df.columns if c in TABLES[name].columns]
    out = []
    for row in df[cols].itertuples(index=False, name=None):
        rec = {}
        for c, v in zip(cols, row, strict=True):
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
                rec[c] = None
            elif isinstance(v, (pd.Timestamp, dt.date)):
                rec[c] = v.strftime("%Y-%m-%d")
            elif isinstance(v, np.integer):
                rec[c] = int(v)
            elif isinstance(v, np.floating):
                rec[c] = float(v)
            else:
                rec[c] = v
        out.append(rec)
    return out


def guarantor_account_ids(ds: Dataset, account_ids) -> list[str]:
    """`account_ids` and, after them, every other account of their guarantors (`guarantor_id`, else the
    patient): what a request must carry for the guarantor features to be the batch's, which sees the
    whole person."""
    acc = ds.tables["accounts"]
    person = person_of_accounts(acc)
    wanted = list(account_ids)
    people = set(person[acc["account_id"].isin(wanted)])
    seen = set(wanted)
    extra = [a for a, g in zip(acc["account_id"], person, strict=True) if g in people and a not in seen]
    return wanted + sorted(set(extra))


def history_from_dataset(ds: Dataset, account_ids, as_of) -> dict:
    """A request body (`{"as_of", "accounts": [...]}`) made of a dataset's rows for some accounts:
    the inverse of `build_dataset`, for clients, tests and benchmarks."""
    wanted = list(account_ids)
    t = ds.tables
    by_acct = {n: t[n].groupby("account_id", sort=False).indices for n in ("accounts", "claims", "transactions",
                                                                             "activities", "work") if n in t}
    histories = []
    for a in wanted:
        h: dict = {}
        h["account"] = table_records(t["accounts"].iloc[by_acct["accounts"][a]], "accounts")[0]
        cl = t["claims"].iloc[by_acct["claims"].get(a, [])]
        h["claims"] = table_records(cl, "claims")
        cids = set(cl["claim_id"])
        for name in ("claim_lines", "remittances", "appeals", "claim_acks"):
            h[name] = table_records(t[name][t[name]["claim_id"].isin(cids)], name) if name in t else []
        rids = {r["remit_id"] for r in h["remittances"]}
        h["adjustments"] = table_records(t["adjustments"][t["adjustments"]["remit_id"].isin(rids)], "adjustments")
        for name in ("transactions", "activities", "work"):
            h[name] = table_records(t[name].iloc[by_acct[name].get(a, [])], name) if name in t else []
        pids = {h["account"]["primary_payer_id"]} | {c["payer_id"] for c in h["claims"]} | {
            x["payer_id"] for x in h["transactions"]}
        h["payers"] = table_records(t["payers"][t["payers"]["payer_id"].isin(pids - {None})], "payers")
        histories.append(h)
    return {"as_of": pd.Timestamp(as_of).strftime("%Y-%m-%d"), "accounts": histories}
