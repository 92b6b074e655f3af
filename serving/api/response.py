"""The service's responses: pydantic models, the ranked columns as one result per account, and
error bodies (they name the field, carry the request id, and never echo a value: it could be PHI)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from serving.api.middleware import request_id_var
from serving.lift import PATIENT_ACTIONS


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
    expected_if_idle: float | None = Field(None, description="expected dollars in H if nothing is done")
    expected_lift: float | None = Field(None, description="dollars in H the suggested work adds (lift order)")
    best_action: str | None = None
    follow_up_date: dt.date | None = Field(None, description="when to look again, for an account that waits")
    propensity: float | None = Field(None, description="the probability that the policy listed this row here: "
                                                       "echo it with POST /work")
    guarantor_id: str | None = None
    guarantor_rank: int | None = Field(None, description="the guarantor's place among the guarantors of the answer "
                                                         "(1 = first), by their first account")
    effect_source: str | None = Field(None, description="learned (from the work log) or prior")
    reasons: list[str] = Field(default_factory=list)
    deadlines: Deadlines = Field(default_factory=Deadlines)
    denials: list[DenialResult] = Field(default_factory=list)
    as_of: dt.date
    model_version: str


class GuarantorResult(BaseModel):
    """The scored accounts of one guarantor (the person one contact reaches), together."""

    guarantor_id: str
    guarantor_rank: int
    account_ids: list[str] = Field(description="the guarantor's scored accounts, in rank order")
    contact_account_id: str | None = Field(None, description="the account whose row carries the person's contact "
                                                             "(its minutes); the others are `covered` by it")
    contact_action: str | None = None
    expected_lift: float | None = Field(None, description="dollars in H the guarantor's suggested work adds, summed")


class ScoreResponse(BaseModel):
    results: list[AccountResult]
    guarantors: list[GuarantorResult] = Field(default_factory=list,
                                              description="the scored accounts grouped by guarantor, in order")
    model_version: str
    request_id: str


def guarantor_groups(results: list[AccountResult]) -> list[GuarantorResult]:
    """The scored results grouped by guarantor, in guarantor rank order."""
    groups: dict[str, list[AccountResult]] = {}
    for r in sorted((r for r in results if r.status == "scored" and r.guarantor_id is not None),
                    key=lambda r: r.rank or 0):
        groups.setdefault(r.guarantor_id, []).append(r)
    out = []
    for gid, rows in groups.items():
        contact = next((r for r in rows if r.next_action in PATIENT_ACTIONS), None)
        lifts = [r.expected_lift for r in rows if r.expected_lift is not None]
        out.append(GuarantorResult.model_construct(
            guarantor_id=gid, guarantor_rank=rows[0].guarantor_rank or 0, account_ids=[r.account_id for r in rows],
            contact_account_id=contact.account_id if contact else None,
            contact_action=contact.next_action if contact else None,
            expected_lift=round(sum(lifts), 2) if lifts else None))
    return sorted(out, key=lambda g: g.guarantor_rank)


class WorkResponse(BaseModel):
    received: int = Field(description="rows in the request")
    written: int = Field(description="rows added to the work store")
    duplicates: int = Field(description="rows already stored (or repeated in the request) with the same content")
    request_id: str


class ReloadResponse(BaseModel):
    old_version: str
    new_version: str
    changed: bool


def _f(x) -> float | None:
    """A finite float or None (JSON has no NaN or infinity)."""
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _d(x) -> dt.date | None:
    if x is None or isinstance(x, dt.date):
        return x
    return None if pd.isna(x) else pd.Timestamp(x).date()


def _values(column: np.ndarray) -> list:
    """A NumPy column as Python values (dates as `datetime.date`, NaT as None)."""
    return column.astype("datetime64[D]").tolist() if column.dtype.kind == "M" else column.tolist()


def _s(x) -> str | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA else str(x)


def account_results(ranked, as_of: dt.date, version: str) -> dict[str, AccountResult]:
    """The ranked `Columns` (`rank(..., frames=False)`) as one result per scored account, in rank order."""
    acc, den = ranked.accounts, ranked.denials
    denials: dict[str, list[dict]] = {}
    if len(den["claim_id"]):
        cols = [_values(den[c]) for c in ("account_id", "claim_id", "rank", "p_overturn", "expected_recovery",
                                           "next_action", "carc", "appeal_deadline")]
        for aid, cid, rk, po, er, act, carc, deadline in zip(*cols, strict=True):
            denials.setdefault(aid, []).append({
                "claim_id": cid, "rank": int(rk), "p_overturn": _f(po), "expected_recovery": _f(er),
                "next_action": _s(act), "carc": _s(carc), "appeal_deadline": _d(deadline)})
    names = ("account_id", "rank", "priority", "p_payment", "expected_recovery", "expected_net", "next_action",
             "action_minutes", "hold_reason", "is_exploration", "balance", "reasons", "appeal_deadline",
             "timely_filing_deadline", "expected_if_idle", "expected_lift", "best_action", "follow_up_date",
             "propensity", "guarantor_id", "guarantor_rank", "effect_source")
    scored: dict[str, AccountResult] = {}
    for (aid, rk, prio, p, er, net, act, mins, hold, explore, bal, reasons, appeal, tf, idle, lift, best, follow,
         prop, guarantor, g_rank, source) in zip(*(_values(acc[c]) for c in names), strict=True):
        scored[aid] = AccountResult(
            account_id=aid, status="scored", rank=int(rk), priority=_f(prio), p_payment=_f(p),
            expected_recovery=_f(er), expected_net=_f(net), next_action=_s(act), action_minutes=_f(mins),
            hold_reason=_s(hold), is_exploration=bool(explore), balance=_f(bal), expected_if_idle=_f(idle),
            expected_lift=_f(lift), best_action=_s(best), follow_up_date=_d(follow), propensity=_f(prop),
            guarantor_id=_s(guarantor), guarantor_rank=int(g_rank), effect_source=_s(source),
            reasons=list(reasons or []),
            deadlines={"appeal": _d(appeal), "timely_filing": _d(tf)}, denials=denials.get(aid, []), as_of=as_of,
            model_version=version)
    return scored


def error_response(status: int, message: str, problems: list[tuple[str, str]] | None = None,
                   **extra) -> JSONResponse:
    """An error body that names each field by its JSON path and carries the request id (and `extra`
    keys, such as the conflicting `work_ids` of a 409)."""
    body: dict = {"error": message, "request_id": request_id_var.get()}
    if problems:
        body["fields"] = [p for p, _ in problems]
        body["detail"] = [{"field": p, "msg": m} for p, m in problems]
    body.update(extra)
    return JSONResponse(body, status_code=status)
