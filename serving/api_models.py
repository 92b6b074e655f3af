"""Pydantic request and response models of the HTTP service, derived from the data contract.

Every row model is generated from `features.contract.TABLES` (never written by hand): enums become
`Literal`s, money and counts that the contract says are non-negative get `ge=0`, floats must be
finite, dates are `datetime.date` (ISO `YYYY-MM-DD`), nullable columns may be null or left out,
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

from pydantic import BaseModel, ConfigDict, Field, with_config
from typing_extensions import TypedDict

from features.contract import TABLES, Col

# the tables an account history carries in a request (payers: those the account refers to)
HISTORY_TABLES = (
    "payers", "claims", "claim_lines", "remittances", "adjustments", "transactions", "appeals", "activities",
)
REQUEST_TABLES = ("accounts", *HISTORY_TABLES)

_ROW_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, allow_inf_nan=False)
_STRICT_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, allow_inf_nan=False)

_PY_TYPE = {"str": str, "date": dt.date, "money": float, "signed_money": float, "int": int, "float": float}


def _field(col: str, c: Col) -> Any:
    typ: Any = Literal[c.enum] if c.enum is not None else _PY_TYPE[c.type]
    kw: dict[str, Any] = {}
    if c.non_negative:
        kw["ge"] = 0
    doc = c.doc
    if not c.required and c.default is not None:
        doc = f"{doc} (default {c.default!r} when left out)".strip()
    if doc:
        kw["description"] = doc
    if c.nullable:
        typ = typ | None
    typ = Annotated[typ, Field(**kw)] if kw else typ
    # a required, non-null column is a key every row must carry: a missing key is an error naming it
    return typ if c.required and not c.nullable else NotRequired[typ]


def _class_name(table: str) -> str:
    return "".join(p.capitalize() for p in table.split("_")) + "Row"


@functools.cache
def row_model(table: str) -> type:
    """The pydantic-validated `TypedDict` of one row of a contract table."""
    spec = TABLES[table]
    model = TypedDict(_class_name(table), {col: _field(col, c) for col, c in spec.columns.items()})
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


class ScoreRequest(BaseModel):
    """Accounts to score at one as-of date."""

    model_config = _STRICT_CONFIG

    as_of: dt.date = Field(description="The as-of date (YYYY-MM-DD): only what was known on it is used.")
    accounts: list[AccountHistory] = Field(description="At most RECOUP_MAX_ACCOUNTS (default 5,000) accounts.")


class WorklistRequest(ScoreRequest):
    """Accounts to rank into a worklist, optionally cut to the collectors' minutes."""

    capacity_minutes: float | None = Field(None, ge=0, description="Cut the list greedily by priority.")


class Deadlines(BaseModel):
    appeal: dt.date | None = None
    timely_filing: dt.date | None = None


class DenialResult(BaseModel):
    claim_id: str
    rank: int | None = None
    p_overturn: float | None = None
    expected_recovery: float | None = None
    next_action: str | None = None
    carc: str | None = None
    appeal_deadline: dt.date | None = None


class AccountResult(BaseModel):
    account_id: str
    status: Literal["scored", "not_open", "over_capacity"] = Field(
        description="scored; not_open: the account is not open at as_of (no positive ledger balance, written "
                    "off, placed with an agency, or not yet serviced), so it is not scored; over_capacity "
                    "(worklist only): scored but cut by capacity_minutes.")
    rank: int | None = None
    priority: float | None = None
    p_payment: float | None = None
    expected_recovery: float | None = None
    expected_net: float | None = None
    next_action: str | None = None
    action_minutes: float | None = None
    hold_reason: str | None = None
    is_exploration: bool | None = None
    balance: float | None = None
    reasons: list[str] = Field(default_factory=list)
    deadlines: Deadlines = Field(default_factory=Deadlines)
    denials: list[DenialResult] = Field(default_factory=list)
    as_of: dt.date
    model_version: str


class ScoreResponse(BaseModel):
    results: list[AccountResult]
    model_version: str
    request_id: str


class ReloadResponse(BaseModel):
    old_version: str
    new_version: str
    changed: bool
