"""Pydantic request and response models of the HTTP service, derived from the data contract.

Every row model is generated from `features.contract.TABLES` (never written by hand): enums become
`Literal`s, money and counts that the contract says are non-negative get `ge=0`, floats must be
finite, dates are `datetime.date` (ISO `YYYY-MM-DD`), nullable columns may be null or left out,
optional columns take their contract default, unknown keys are ignored (as the contract says).
Validation errors never echo the submitted values (`hide_input_in_errors`): they can be PHI.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from features.contract import TABLES, Col

# the tables an account history carries in a request (payers: those the account refers to)
HISTORY_TABLES = (
    "payers", "claims", "claim_lines", "remittances", "adjustments", "transactions", "appeals", "activities",
)
REQUEST_TABLES = ("accounts", *HISTORY_TABLES)

_ROW_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, allow_inf_nan=False, frozen=False)
_STRICT_CONFIG = ConfigDict(extra="ignore", hide_input_in_errors=True, allow_inf_nan=False)

_PY_TYPE = {"str": str, "date": dt.date, "money": float, "signed_money": float, "int": int, "float": float}


def _field(col: str, c: Col) -> tuple[Any, Any]:
    typ: Any = Literal[c.enum] if c.enum is not None else _PY_TYPE[c.type]
    kw: dict[str, Any] = {}
    if c.non_negative:
        kw["ge"] = 0
    if c.doc:
        kw["description"] = c.doc
    if c.nullable:
        typ = typ | None
    if not c.required:
        default = c.default
    elif c.nullable:
        default = None  # a nullable column may be left out of a JSON row
    else:
        default = ...  # required: a missing key is an error that names it
    return typ, Field(default, **kw)


def _class_name(table: str) -> str:
    return "".join(p.capitalize() for p in table.split("_")) + "Row"


@functools.cache
def row_model(table: str) -> type[BaseModel]:
    """The pydantic model of one row of a contract table."""
    spec = TABLES[table]
    fields = {col: _field(col, c) for col, c in spec.columns.items()}
    model = create_model(_class_name(table), __config__=_ROW_CONFIG, __doc__=spec.doc or None, **fields)
    return model


PayersRow = row_model("payers")
AccountsRow = row_model("accounts")
ClaimsRow = row_model("claims")
ClaimLinesRow = row_model("claim_lines")
RemittancesRow = row_model("remittances")
AdjustmentsRow = row_model("adjustments")
TransactionsRow = row_model("transactions")
AppealsRow = row_model("appeals")
ActivitiesRow = row_model("activities")


class AccountHistory(BaseModel):
    """One account and its whole history, each object a row of the contract table of that name."""

    model_config = _STRICT_CONFIG

    account: AccountsRow  # type: ignore[valid-type]
    payers: list[PayersRow] = Field(default_factory=list)  # type: ignore[valid-type]
    claims: list[ClaimsRow] = Field(default_factory=list)  # type: ignore[valid-type]
    claim_lines: list[ClaimLinesRow] = Field(default_factory=list)  # type: ignore[valid-type]
    remittances: list[RemittancesRow] = Field(default_factory=list)  # type: ignore[valid-type]
    adjustments: list[AdjustmentsRow] = Field(default_factory=list)  # type: ignore[valid-type]
    transactions: list[TransactionsRow] = Field(default_factory=list)  # type: ignore[valid-type]
    appeals: list[AppealsRow] = Field(default_factory=list)  # type: ignore[valid-type]
    activities: list[ActivitiesRow] = Field(default_factory=list)  # type: ignore[valid-type]


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
