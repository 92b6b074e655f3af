"""Reasons in the office's words, declared once beside the feature catalogue (DESIGN.md, "Ranking").

Each row of a worklist says why its suggested action pays: first an *action sentence* (what the work is
and what it is expected to add, or for `wait` when to look again and why), then a few *feature
sentences* about the features that drove it. Which features speak is chosen elsewhere
(`serving.ranking._reasons`, by LightGBM's TreeSHAP contributions among the row's `ACTION_FEATURES`);
what they say is declared here:

- `FEATURE_SENTENCES`: per account feature, a `Template` that says its value with the other values of
  the row it `needs` (e.g. `days_claim_waiting` with `payer_days_to_pay`, `last_denial_carc` with the
  CARC's text from `features.catalogue.carc_descriptions()` and the days left to appeal); a template
  returns None when the value has nothing to say (a flag that is off, a day count that is unknown), and
  leaves out a part the row's reasons have said already;
- `ACTION_SENTENCES`: per next action, its sentence from the ranked row (`expected_lift`,
  `follow_up_date`, `hold_reason`, ...);
- `ACTION_FEATURES`: which features speak for which action (`reason_keys`: for a `wait`, for what it
  waits on: a claim, a denial or the patient).

Sentences print money as whole dollars, rates as whole percents and days as whole days: never a raw
float, never "nan".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from features.catalogue import DEFAULT_HORIZONS, WINDOWS, Horizons, carc_descriptions, features_of
from features.contract import float_column

# ----------------------------------------------------------------------------- row values


class Values:
    """The columns of the rows being explained (the ranked rows' figures and their feature rows), read
    one value at a time. Each column is converted once (float64 for numbers), so a sentence costs a
    few array lookups and no pandas work per row. Earlier tables win when both hold a column."""

    def __init__(self, *tables) -> None:
        self._tables = tables
        self._num: dict[str, np.ndarray] = {}
        self._obj: dict[str, np.ndarray] = {}

    def _raw(self, name: str) -> np.ndarray | None:
        for t in self._tables:
            if name in t:
                v = t[name]
                return v.to_numpy() if hasattr(v, "to_numpy") else np.asarray(v)
        return None

    def numbers(self, name: str, n: int) -> np.ndarray:
        """The whole column as float64 (NaN when missing or not a number; all NaN when not in the tables)."""
        a = self._num.get(name)
        if a is None:
            raw = self._raw(name)
            if raw is not None and raw.dtype.kind == "M":
                a = np.full(len(raw), np.nan)
            else:
                a = float_column(raw) if raw is not None else np.full(0, np.nan)
            self._num[name] = a
        return a if len(a) == n else np.full(n, np.nan)

    def num(self, name: str, i: int) -> float:
        """The value as a float; NaN when missing, not a number, or not in the tables."""
        a = self._num.get(name)
        if a is None:
            self.numbers(name, 0)
            a = self._num[name]
        return float(a[i]) if i < len(a) else math.nan

    def obj(self, name: str, i: int):
        a = self._obj.get(name)
        if a is None:
            raw = self._raw(name)
            if raw is None:
                a = np.full(0, None, dtype=object)
            elif raw.dtype.kind == "M":  # dates as ISO days, NaT as None
                days = raw.astype("datetime64[D]")
                a = np.where(np.isnat(days), None, np.datetime_as_string(days)).astype(object)
            else:
                a = raw.astype(object)
            self._obj[name] = a
        return a[i] if i < len(a) else None

    def text(self, name: str, i: int) -> str | None:
        """The value as text; None when missing (None, NaN, NA) or empty."""
        v = self.obj(name, i)
        if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) in ("", "<NA>", "nan", "NaT"):
            return None
        return str(v)

    def row(self, i: int) -> Row:
        return Row(self, i)


class Row:
    """One row of `Values`: what a template reads. `said` holds the features the row's reasons have
    already said, so a template leaves out a part said before."""

    __slots__ = ("_v", "_i", "said")

    def __init__(self, values: Values, i: int) -> None:
        self._v, self._i = values, i
        self.said: set[str] = set()

    def fresh(self, name: str) -> bool:
        return name not in self.said

    def num(self, name: str) -> float:
        return self._v.num(name, self._i)

    def text(self, name: str) -> str | None:
        return self._v.text(name, self._i)

    def flag(self, name: str) -> bool:
        return self.num(name) > 0  # NaN is False


# ----------------------------------------------------------------------------- how values are said

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _ok(x: float) -> bool:
    return x is not None and math.isfinite(x)


def count(n: float, noun: str, plural: str | None = None) -> str:
    """'two statements', 'one call attempt', '14 claims'."""
    k = int(round(n))
    word = _NUMBER_WORDS[k] if 0 <= k < len(_NUMBER_WORDS) else f"{k:,}"
    return f"{word} {noun if k == 1 else (plural or noun + 's')}"


def whole(x: float) -> str:
    return f"{x:,.0f}"


def days(x: float) -> str:
    k = int(round(abs(x)))
    return f"{k:,} day" + ("" if k == 1 else "s")


def money(x: float) -> str:
    """Whole dollars ('$74,071', '-$20' for a credit); 'less than $1' for a few cents."""
    if 0 < abs(x) < 0.5:
        return "less than $1"
    return f"{'-' if x <= -0.5 else ''}${abs(x):,.0f}"


def about(x: float) -> str:
    """An estimate: three significant figures from $1,000 ('$1,850'), whole dollars below."""
    if abs(x) >= 1000:
        x = round(x, 2 - int(math.floor(math.log10(abs(x)))))
    return money(x)


def percent(rate: float) -> str:
    p = min(max(rate, 0.0), 1.0) * 100  # a share: anything outside [0, 1] is a broken input, not news
    if 0 < p < 0.5:
        return "under 1%"
    if 99.5 <= p < 100:
        return "over 99%"
    return f"{p:.0f}%"


_APOSTROPHE = re.compile(r"(?<=[A-Za-z])\"(?=s\b)|(?<=[A-Za-z]s)\"(?=\s)")  # the source writes ' as "
_CUT = re.compile(r"\.\s|\s\(Use only|\s+Note:|\.$")


def carc_text(code: str, limit: int = 100) -> str | None:
    """The CARC's description from the reference list, its first sentence, cut at a word boundary."""
    desc = carc_descriptions().get(str(code).strip())
    if not desc:
        return None
    desc = _APOSTROPHE.sub("'", desc.strip())
    m = _CUT.search(desc)
    desc = (desc[: m.start()] if m else desc).strip()
    if len(desc) > limit:
        desc = desc[:limit].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return desc


CARC_GROUP_TEXT = {
    "missing_info": "missing information", "authorization": "authorization", "medical_necessity": "medical necessity",
    "timely_filing": "timely filing", "coordination_of_benefits": "coordination of benefits", "coding": "coding",
    "duplicate": "duplicate claim", "eligibility": "eligibility", "other": "other",
}
FINANCIAL_CLASS_TEXT = {
    "medicare": "Medicare", "medicaid": "Medicaid", "commercial": "commercial insurance",
    "managed_care": "managed care", "self_pay": "self-pay", "workers_comp": "workers' compensation", "other": "other",
}
REMIT_STATUS_TEXT = {
    "processed_primary": "processed as primary", "processed_secondary": "processed as secondary",
    "processed_tertiary": "processed as tertiary", "denied": "denied", "pended": "pended",
    "reversal": "a reversal", "not_our_claim": "not our claim (wrong payer)", "predetermination": "a predetermination",
}
PROC_FAMILY_TEXT = {
    "em": "evaluation and management", "cpt_cat2": "CPT category II", "cpt_cat3": "CPT category III",
    "lab": "laboratory",
}


def _group(r: Row) -> str | None:
    g = r.text("last_denial_group")
    return CARC_GROUP_TEXT.get(g) if g and g not in ("none", "other") else None


def _family(r: Row) -> str | None:
    f = r.text("proc_family")
    if not f or f == "unknown":
        return None
    if f.startswith("hcpcs_"):
        return f"HCPCS {f[-1]}-code"
    return PROC_FAMILY_TEXT.get(f, f)


# ----------------------------------------------------------------------------- feature sentences


@dataclass(frozen=True)
class Template:
    """How one feature's value is said: `say(row)` gives the sentence (None: nothing to say), reading
    the feature and the `needs` (the other values it says too: they are not said again)."""

    say: Callable[[Row], str | None]
    needs: tuple[str, ...] = ()


def _flag(name: str, text: str) -> Template:
    return Template(lambda r: text if r.flag(name) else None)


def _amount(name: str, text: str, zero: str | None = None) -> Template:
    """'{money}' in `text`; `zero` when the amount is nothing."""

    def say(r: Row) -> str | None:
        x = r.num(name)
        if not _ok(x):
            return None
        if abs(x) < 0.5:
            return zero
        return text.format(money=money(x))

    return Template(say)


def _ago(name: str, text: str, never: str | None = None) -> Template:
    """'{days}' ago in `text`; `never` when it never happened (NaN)."""

    def say(r: Row) -> str | None:
        x = r.num(name)
        return text.format(days=days(x)) if _ok(x) else never

    return Template(say)


def _counted(name: str, noun: str, tail: str, plural: str | None = None, zero: str | None = None) -> Template:
    def say(r: Row) -> str | None:
        x = r.num(name)
        if not _ok(x):
            return None
        if x < 0.5:
            return zero
        return f"{count(x, noun, plural)}{tail}"

    return Template(say)


def _rate(name: str, text: str) -> Template:
    def say(r: Row) -> str | None:
        x = r.num(name)
        return text.format(pct=percent(x)) if _ok(x) else None

    return Template(say)


def _days_left(name: str, left: str, passed: str) -> Template:
    def say(r: Row) -> str | None:
        x = r.num(name)
        if not _ok(x):
            return None
        return (left if x >= 0 else passed).format(days=days(x))

    return Template(say)


def _since_contact(x: float) -> str:
    return f"no statement or contact in {days(x)}" if x >= 30 else f"last statement or contact {days(x)} ago"


def _contact_tail(r: Row) -> str:
    x = r.num("days_since_last_contact")
    if not _ok(x) or not r.fresh("days_since_last_contact"):
        return ""
    return "; " + _since_contact(x)


def _say_patient_balance(r: Row) -> str | None:
    x = r.num("balance_patient")
    if not _ok(x) or x < 0.005:
        return None
    return f"patient owes {money(x)}{_contact_tail(r)}"


def _say_last_contact(r: Row) -> str | None:
    owed = r.num("balance_patient")
    if owed < 0.005:  # contact with the patient matters for what the patient owes
        return None
    if _ok(owed) and r.fresh("balance_patient"):
        return _say_patient_balance(r)
    x = r.num("days_since_last_contact")
    if not _ok(x):
        return "no statement or contact yet"
    return _since_contact(x)


def _say_waiting(r: Row) -> str | None:
    x = r.num("days_claim_waiting")
    if not _ok(x):
        return None
    text = f"no response from the payer {days(x)} after submission"
    mean = r.num("payer_days_to_pay")
    if _ok(mean) and mean > 0 and r.fresh("payer_days_to_pay"):
        text += f" (this payer answers in {whole(mean)} on average)"
    return text


def _say_pending(r: Row) -> str | None:
    if not r.flag("pending_adjudication"):
        return None
    return _say_waiting(r) or "a claim is waiting for the payer's decision"


def _filing_tail(r: Row) -> str:
    x = r.num("filing_days_left")
    if not _ok(x) or not r.fresh("filing_days_left"):
        return ""
    return f"; {days(x)} left to file" if x >= 0 else f"; the filing limit passed {days(x)} ago"


def _when(r: Row, name: str) -> str:
    """' N days ago' from the day count `name`, or nothing when it is unknown."""
    x = r.num(name)
    return f" {days(x)} ago" if _ok(x) else ""


def _say_rejected(r: Row) -> str | None:
    if not r.flag("claim_rejected_open"):
        return None
    return f"rejected at the payer's front door{_when(r, 'days_since_rejection')} and not resubmitted{_filing_tail(r)}"


def _say_pended(r: Row) -> str | None:
    if not r.flag("claim_pended_open"):
        return None
    return f"the payer pended the claim{_when(r, 'days_pended')} waiting for information"


def _say_status_calls(r: Row) -> str | None:
    x = r.num("status_calls_30d")
    if not _ok(x):
        return None
    if x < 0.5:
        return "no status call to the payer in the last 30 days"
    last = r.num("days_since_status_call")
    tail = f", the latest {days(last)} ago" if _ok(last) and r.fresh("days_since_status_call") else ""
    return f"{count(x, 'status call')} to the payer in the last 30 days{tail}"


def _say_carc(r: Row) -> str | None:
    code = r.text("last_denial_carc")
    if not code or code == "none":
        return None
    desc = carc_text(code)
    text = f"denied with CARC {code}" + (f" ({desc})" if desc else "")
    left = r.num("appeal_deadline_days_left")
    if _ok(left) and r.fresh("appeal_deadline_days_left"):
        text += f", {days(left)} left to appeal" if left >= 0 else f", the appeal window closed {days(left)} ago"
    return text


def _say_group_overturn(r: Row) -> str | None:
    x = r.num("payer_group_overturn_rate")
    if not _ok(x):
        return None
    g = _group(r)
    kind = f"{g} denials" if g else "denials of this kind"
    return f"this payer overturned {percent(x)} of worked {kind}"


def _say_open_denial(r: Row) -> str | None:
    if not r.flag("open_denial"):
        return None
    x = r.num("open_denied_amount")
    return f"an open denial of {money(x)}" if _ok(x) and x >= 0.5 else "a denial is open"


def _say_trend(name: str, more: str, less: str, amount: bool) -> Template:
    def say(r: Row) -> str | None:
        x = r.num(name)
        if not _ok(x) or abs(x) < (0.5 if amount else 0.05):
            return None
        size = f"{money(abs(x))} " if amount else ""
        return (more if x > 0 else less).format(size=size)

    return Template(say)


def _say_net_payments(w: int) -> Template:
    def say(r: Row) -> str | None:
        x = r.num(f"payments_{w}d")
        if not _ok(x):
            return None
        if abs(x) < 0.5:
            return f"nothing paid in the last {w} days"
        what = "paid" if x > 0 else "reversed or refunded"  # net payments go negative on reversals
        return f"{money(abs(x))} {what} in the last {w} days"

    return Template(say)


def _say_text(name: str, text: str, labels: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> Template:
    def say(r: Row) -> str | None:
        v = r.text(name)
        if not v or v in skip:
            return None
        return text.format(value=(labels or {}).get(v, v.replace("_", " ")))

    return Template(say)


def _say_family(r: Row) -> str | None:
    f = _family(r)
    return f"mainly {f} services" if f else None


def _say_family_denials(r: Row) -> str | None:
    x = r.num("proc_family_denial_rate")
    if not _ok(x):
        return None
    f = _family(r)
    return f"{percent(x)} of {f} claims are denied" if f else f"{percent(x)} of claims like these are denied"


def _say_age(r: Row) -> str | None:
    x = r.num("patient_age")
    return f"patient aged {whole(x)}" if _ok(x) else None


def _say_last_claim(r: Row) -> str | None:
    x = r.num("days_since_last_claim")
    if not _ok(x) or (not r.fresh("days_claim_waiting") and x == r.num("days_claim_waiting")):
        return None  # the claim's age is said already
    return f"last claim sent {days(x)} ago"


def _say_deadline(r: Row) -> str | None:
    code = r.text("last_denial_carc")
    if code and code != "none" and r.fresh("last_denial_carc"):
        return _say_carc(r)  # the deadline with what it is a deadline for
    return _APPEAL_LEFT.say(r)


def _say_payer_days(r: Row) -> str | None:
    if _ok(r.num("days_claim_waiting")) and r.fresh("days_claim_waiting"):
        return _say_waiting(r)  # the payer's usual time beside this claim's wait
    x = r.num("payer_days_to_pay")
    return f"this payer pays in {whole(x)} days on average" if _ok(x) and x > 0 else None


def _say_payer(r: Row) -> str | None:
    v = r.text("primary_payer_id")
    if not v:
        return None
    return "no insurance (self-pay)" if v == "self_pay" else f"primary payer {v}"


_APPEAL_LEFT = _days_left("appeal_deadline_days_left", "{days} left to appeal the denial",
                          "the appeal window closed {days} ago")

def _say_earlier_balances(r: Row) -> str | None:
    """How the person paid their earlier balances here: the strongest sign of how they pay this one."""
    prior, share = r.num("guarantor_prior_accounts"), r.num("guarantor_paid_in_full_share")
    if not _ok(prior) or prior < 1:
        return "no earlier balance of this guarantor at this provider"
    if not _ok(share):
        return f"the guarantor has {count(prior, 'other account')} here, none with a balance of their own to pay"
    dollars = r.num("guarantor_patient_paid_share")
    paid = f"; {percent(dollars)} of what they owed paid" if _ok(dollars) else ""
    return f"the guarantor paid off {percent(share)} of their earlier balances here{paid}"


def _say_guarantor_pay_days(r: Row) -> str | None:
    x = r.num("guarantor_median_days_to_pay")
    return f"the guarantor usually pays {days(x)} after the first statement" if _ok(x) else None


def _say_guarantor_open(r: Row) -> str | None:
    other, total = r.num("guarantor_open_accounts"), r.num("guarantor_open_patient_balance")
    if not _ok(other) or other < 1:
        return None
    owed = f", {money(total)} owed by the patient in all" if _ok(total) and total > 0 else ""
    return f"the guarantor has {count(other, 'other open account')}{owed}: one contact covers them"


FEATURE_SENTENCES: dict[str, Template] = {
    # account profile
    "financial_class": _say_text("financial_class", "financial class: {value}", FINANCIAL_CLASS_TEXT),
    "encounter_type": _say_text("encounter_type", "{value} encounter"),
    "primary_payer_id": Template(_say_payer),
    "patient_age": Template(_say_age),
    "total_charges": _amount("total_charges", "total charges of {money}"),
    "days_since_service": _ago("days_since_service", "service {days} ago"),
    "days_since_discharge": _ago("days_since_discharge", "discharged {days} ago"),
    # ledger
    "balance": _amount("balance", "balance of {money}"),
    "balance_patient": Template(_say_patient_balance, ("days_since_last_contact",)),
    "balance_insurance": _amount("balance_insurance", "insurance owes {money}"),
    "charges_posted": _amount("charges_posted", "{money} charged"),
    "insurance_paid": _amount("insurance_paid", "insurance has paid {money} so far", "insurance has paid nothing yet"),
    "adjustments_total": _amount("adjustments_total", "{money} adjusted off (contractual and other adjustments)"),
    "days_since_last_payment": _ago("days_since_last_payment", "last payment {days} ago", "no payment yet"),
    **{f"payments_{w}d": _say_net_payments(w) for w in WINDOWS},
    "payments_trend_30d": _say_trend("payments_trend_30d", "payments in the last 30 days {size}above the usual month",
                                     "payments in the last 30 days {size}below the usual month", amount=True),
    # claims
    "n_claims": _counted("n_claims", "claim", " submitted", zero="no claim submitted yet"),
    "n_corrected_claims": _counted("n_corrected_claims", "corrected or replacement claim", " sent"),
    "has_secondary_claim": _flag("has_secondary_claim", "a claim to a secondary payer was filed"),
    "billed_total": _amount("billed_total", "billed {money}"),
    "days_since_last_claim": Template(_say_last_claim),
    "proc_family": Template(_say_family),
    "timely_filing_days_left": _days_left("timely_filing_days_left", "{days} left to file with the payer",
                                          "the payer's filing limit passed {days} ago"),
    # remittances
    "n_remits": _counted("n_remits", "remittance", " received", zero="no remittance received yet"),
    "remit_paid": _amount("remit_paid", "the payer's remittances paid {money}", "the payer's remittances paid nothing"),
    "last_remit_status": _say_text("last_remit_status", "latest remittance: {value}", REMIT_STATUS_TEXT, ("none",)),
    "pending_adjudication": Template(_say_pending, ("days_claim_waiting", "payer_days_to_pay")),
    "days_claim_waiting": Template(_say_waiting, ("payer_days_to_pay", "pending_adjudication")),
    # claim status
    "claim_rejected_open": Template(_say_rejected, ("days_since_rejection", "filing_days_left")),
    "days_since_rejection": Template(_say_rejected, ("claim_rejected_open", "filing_days_left")),
    "claim_pended_open": Template(_say_pended, ("days_pended",)),
    "days_pended": Template(_say_pended, ("claim_pended_open",)),
    "filing_days_left": _days_left("filing_days_left", "{days} left in the payer's filing limit",
                                   "the payer's filing limit passed {days} ago"),
    # the work log
    "status_calls_30d": Template(_say_status_calls, ("days_since_status_call",)),
    "days_since_status_call": _ago("days_since_status_call", "last status call to the payer {days} ago",
                                   "the payer has not been called about this claim"),
    "days_since_plan_offer": _ago("days_since_plan_offer", "a payment plan was offered {days} ago"),
    # denials
    "n_denials": _counted("n_denials", "denial", " on this account"),
    "open_denial": Template(_say_open_denial, ("open_denied_amount",)),
    "open_denied_amount": _amount("open_denied_amount", "{money} denied and still open"),
    "last_denial_carc": Template(_say_carc, ("appeal_deadline_days_left",)),
    "last_denial_group": Template(lambda r: f"the latest denial is for {_group(r)}" if _group(r) else None),
    "appeal_deadline_days_left": Template(_say_deadline, ("last_denial_carc",)),
    # appeals
    "n_appeals": _counted("n_appeals", "appeal", " sent"),
    "pending_appeal": _flag("pending_appeal", "an appeal is waiting for the payer's decision"),
    "n_overturned": _counted("n_overturned", "appeal", " on this account already overturned"),
    # patient payments
    "n_patient_payments": _counted("n_patient_payments", "payment", " from the patient on this account so far",
                                   zero="the patient has not paid anything on this account"),
    "patient_paid": _amount("patient_paid", "the patient has paid {money} so far"),
    "days_since_last_patient_payment": _ago("days_since_last_patient_payment", "the patient last paid {days} ago"),
    **{f"patient_payments_{w}d": _amount(f"patient_payments_{w}d", f"the patient paid {{money}} in the last {w} days",
                                         f"no patient payment in the last {w} days") for w in WINDOWS},
    # activities
    **{f"statements_{w}d": _counted(f"statements_{w}d", "statement", f" sent in the last {w} days",
                                    zero=f"no statement in the last {w} days") for w in WINDOWS},
    **{f"call_attempts_{w}d": _counted(f"call_attempts_{w}d", "call attempt", f" in the last {w} days",
                                       zero=f"no call attempt in the last {w} days") for w in (7, *WINDOWS)},
    **{f"contacts_{w}d": _counted(f"contacts_{w}d", "contact",
                                  f" (calls reached, letters, portal) in the last {w} days",
                                  zero=f"no contact with the patient in the last {w} days") for w in WINDOWS},
    "contacts_trend_30d": _say_trend("contacts_trend_30d", "more contact than usual in the last 30 days",
                                     "less contact than usual in the last 30 days", amount=False),
    "days_since_first_statement": _ago("days_since_first_statement", "first statement {days} ago",
                                       "no statement sent yet"),
    "days_since_last_statement": _ago("days_since_last_statement", "last statement {days} ago",
                                      "no statement sent yet"),
    "days_since_last_contact": Template(_say_last_contact, ("balance_patient",)),
    "n_letters": _counted("n_letters", "collection letter", " sent"),
    "plan_active": _flag("plan_active", "a payment plan is active"),
    "plan_defaulted": _flag("plan_defaulted", "the last payment plan defaulted"),
    "plan_in_good_standing": _flag("plan_in_good_standing", "the payment plan is in good standing"),
    "dispute_recent": _flag("dispute_recent", "the patient disputed the bill in the last 90 days"),
    "fa_pending": _flag("fa_pending", "a financial assistance application is pending"),
    "in_bankruptcy": _flag("in_bankruptcy", "a bankruptcy notice was received"),
    "n_promises_90d": _counted("n_promises_90d", "promise", " to pay in the last 90 days"),
    # the guarantor (the person, across their accounts)
    "guarantor_prior_accounts": Template(_say_earlier_balances,
                                         ("guarantor_paid_in_full_share", "guarantor_patient_paid_share")),
    "guarantor_closed_accounts": _counted("guarantor_closed_accounts", "earlier account", " of the guarantor closed"),
    "guarantor_paid_in_full_share": Template(_say_earlier_balances,
                                             ("guarantor_prior_accounts", "guarantor_patient_paid_share")),
    "guarantor_patient_paid_share": Template(_say_earlier_balances,
                                             ("guarantor_prior_accounts", "guarantor_paid_in_full_share")),
    "guarantor_median_days_to_pay": Template(_say_guarantor_pay_days),
    "guarantor_patient_payments_365d": _counted("guarantor_patient_payments_365d", "payment",
                                                " by the guarantor on other accounts in the last 365 days",
                                                zero="no payment by the guarantor on other accounts in a year"),
    "guarantor_days_since_last_payment": _ago("guarantor_days_since_last_payment",
                                              "the guarantor last paid another balance {days} ago"),
    "guarantor_plans_started": _counted("guarantor_plans_started", "payment plan", " started on other accounts"),
    "guarantor_plans_defaulted": _counted("guarantor_plans_defaulted", "payment plan",
                                          " of the guarantor's defaulted before"),
    "guarantor_agency_accounts": _counted("guarantor_agency_accounts", "earlier account",
                                          " of the guarantor sent to an agency or bad debt"),
    "guarantor_open_accounts": Template(_say_guarantor_open, ("guarantor_open_patient_balance",)),
    "guarantor_open_patient_balance": Template(_say_guarantor_open, ("guarantor_open_accounts",)),
    "guarantor_call_attempts_7d": _counted("guarantor_call_attempts_7d", "call attempt",
                                           " to the guarantor (all accounts) in the last 7 days"),
    "guarantor_call_attempts_30d": _counted("guarantor_call_attempts_30d", "call attempt",
                                            " to the guarantor (all accounts) in the last 30 days"),
    "guarantor_contacts_30d": _counted("guarantor_contacts_30d", "contact",
                                       " with the guarantor (all accounts) in the last 30 days"),
    "guarantor_days_since_last_contact": _ago("guarantor_days_since_last_contact",
                                              "the guarantor was last contacted {days} ago (any account)"),
    # pooled rates (point-in-time)
    "payer_denial_rate": _rate("payer_denial_rate", "this payer denies {pct} of claims"),
    "payer_overturn_rate": _rate("payer_overturn_rate", "this payer overturned {pct} of worked denials"),
    "payer_group_overturn_rate": Template(_say_group_overturn, ("last_denial_group",)),
    "payer_paid_to_billed": _rate("payer_paid_to_billed", "this payer pays {pct} of billed charges"),
    "payer_days_to_pay": Template(_say_payer_days, ("days_claim_waiting",)),
    "proc_family_denial_rate": Template(_say_family_denials, ("proc_family",)),
}


# ----------------------------------------------------------------------------- which features speak for an action

_DENIAL = ("last_denial_carc", "appeal_deadline_days_left", "payer_group_overturn_rate", "open_denied_amount",
           "open_denial", "payer_overturn_rate", "last_denial_group", "n_denials", "n_appeals", "n_overturned",
           "payer_paid_to_billed")
_CLAIM = ("balance_insurance", "payer_paid_to_billed", "payer_denial_rate", "filing_days_left")
_STATUS = ("days_claim_waiting", "payer_days_to_pay", "filing_days_left", "status_calls_30d", "days_since_status_call",
           "pending_adjudication", "days_since_last_claim", "timely_filing_days_left", *_CLAIM)
_PATIENT = ("balance_patient", "days_since_last_contact", "n_patient_payments", "patient_paid",
            "days_since_last_patient_payment", *(f"patient_payments_{w}d" for w in WINDOWS),
            *(f"statements_{w}d" for w in WINDOWS), "days_since_last_statement", "days_since_first_statement",
            "call_attempts_7d", *(f"call_attempts_{w}d" for w in WINDOWS), *(f"contacts_{w}d" for w in WINDOWS),
            "n_promises_90d", "plan_defaulted", "plan_active", "days_since_plan_offer", "dispute_recent", "n_letters",
            *(f.name for f in features_of("guarantor")))
_HELD = ("plan_in_good_standing", "fa_pending", "in_bankruptcy", "call_attempts_7d", "guarantor_call_attempts_7d",
         "plan_active", "dispute_recent", "balance_patient")

ACTION_FEATURES: dict[str, tuple[str, ...]] = {
    "appeal": _DENIAL,
    "correct_and_resubmit": (*_DENIAL, "timely_filing_days_left"),  # a corrected claim is a claim: it must be timely
    "status_call": _STATUS,
    "resubmit": ("claim_rejected_open", "days_since_rejection", *_CLAIM),
    "send_information": ("claim_pended_open", "days_pended", *_CLAIM),
    "statement": _PATIENT,
    "patient_call": _PATIENT,
    "payment_plan_offer": (*_PATIENT, "plan_active", "plan_defaulted"),
    "bill_patient": _PATIENT,
    "send_to_agency": _PATIENT,
    "call": (*_STATUS, *_PATIENT),
    "write_off": ("balance", "balance_patient", "balance_insurance"),
    "hold": _HELD,
    "covered": _PATIENT,
    # a `wait` speaks of what it waits on (`reason_keys`): a claim at the payer, a denial, the patient
    "wait": (*_STATUS, "pending_appeal", "appeal_deadline_days_left", "days_since_last_contact", "balance_patient"),
    "wait:claim": (*_STATUS, "claim_rejected_open", "days_since_rejection", "claim_pended_open", "days_pended"),
    "wait:denial": (*_DENIAL, "pending_appeal"),
    "wait:patient": _PATIENT,
}


def reason_keys(actions: np.ndarray, values: Values) -> np.ndarray:
    """Per row, the key of `ACTION_FEATURES` whose features speak for it: its action, and for a `wait`
    what it waits on."""
    keys = np.asarray(actions, dtype=object).copy()
    wait = keys == "wait"
    if not wait.any():
        return keys
    n = len(keys)
    col = {c: np.nan_to_num(values.numbers(c, n)) > 0 for c in (
        "pending_adjudication", "claim_rejected_open", "claim_pended_open", "open_denial", "pending_appeal")}
    owed = np.nan_to_num(values.numbers("balance_patient", n)) > 0.005
    claim = col["pending_adjudication"] | col["claim_rejected_open"] | col["claim_pended_open"]
    # later cases win: a pending appeal, then a claim at the payer, then a denial, then the patient
    keys[wait & owed] = "wait:patient"
    keys[wait & col["open_denial"]] = "wait:denial"
    keys[wait & claim] = "wait:claim"
    keys[wait & col["pending_appeal"]] = "wait:denial"
    return keys


def action_features_mask(keys: np.ndarray, names: list[str]) -> np.ndarray:
    """(rows, features) bool: the features (model column order `names`) that speak for each row's
    `reason_keys` (an action, or a kind of wait)."""
    acts = list(ACTION_FEATURES)
    table = np.array([[n in ACTION_FEATURES[a] for n in names] for a in acts] + [[False] * len(names)], dtype=bool)
    code = {a: k for k, a in enumerate(acts)}
    idx = np.fromiter((code.get(a, len(acts)) for a in np.asarray(keys, dtype=object)), dtype=np.int64,
                      count=len(keys))
    return table[idx]


# ----------------------------------------------------------------------------- action sentences

@dataclass(frozen=True)
class ActionSentence:
    """What the work is (`work`, with the expected dollars added within the horizon) or, for rows that
    are not worked, a `say(row)` of its own that gives the sentence and the features it already says
    (they are not said again)."""

    work: str | None = None
    denial: bool = False  # expected within the overturn horizon (H2), not H
    why: Callable[[Row], tuple[str, tuple[str, ...]]] | None = None  # a clause after `work`, and what it says
    say: Callable[[Row], tuple[str, tuple[str, ...]]] | None = None


def _gain(r: Row, window: int) -> str:
    lift = r.num("expected_lift")
    if _ok(lift):
        return f"about {about(lift)} expected within {window} days" if lift >= 0.5 else "little expected"
    net = r.num("expected_net")  # the orders before the lift: expected recovery less the work's cost
    if _ok(net):
        if net < 0.5:
            return "expected to bring less than the work costs"
        return f"about {about(net)} expected within {window} days, net of the work"
    return "expected to pay"


def _say_wait(r: Row) -> tuple[str, tuple[str, ...]]:
    until = r.text("follow_up_date")
    head = f"nothing to do until {until}" if until else "nothing to do now"
    cause, covers = _wait_cause(r)
    return f"{head}: {cause}", covers


_CLAIM_WAIT = ("pending_adjudication", "days_claim_waiting", "payer_days_to_pay", "days_since_status_call")
_PERSON_WAIT = ("balance_patient", "days_since_last_contact")


def _wait_cause(r: Row) -> tuple[str, tuple[str, ...]]:
    """Why no work pays now, as far as the row shows serving/lift.py's cases (the ranking's effect settings
    are not here, so where the row cannot tell which case holds the sentence says what is true in each)."""
    if r.flag("pending_appeal"):
        return "an appeal is waiting for the payer's decision", ("pending_appeal",)
    filing = r.num("filing_days_left")
    if r.flag("claim_rejected_open") and _ok(filing) and filing < 0:
        return (f"the rejected claim can no longer be resubmitted: the filing limit passed {days(filing)} ago",
                ("claim_rejected_open", "filing_days_left"))
    waited, mean = r.num("days_claim_waiting"), r.num("payer_days_to_pay")
    if r.flag("pending_adjudication") and _ok(waited) and not (r.flag("claim_rejected_open")
                                                               or r.flag("claim_pended_open")):
        usual = f"this payer answers in {whole(mean)} on average" if _ok(mean) and mean > 0 else ""
        if usual and waited < mean:  # the normal time (a high quantile of it) has surely not run out
            return f"the payer's normal time to pay has not run out (waiting {days(waited)}; {usual})", _CLAIM_WAIT
        called = r.num("days_since_status_call")
        if _ok(called) and called < 30:
            return f"the payer was called about the claim {days(called)} ago (waiting {days(waited)})", _CLAIM_WAIT
        return (f"no answer yet after {days(waited)}" + (f" ({usual})" if usual else "")
                + "; a status call now is not expected to add more than it costs"), _CLAIM_WAIT
    left = r.num("appeal_deadline_days_left")
    if r.flag("open_denial") and _ok(left) and left < 0:
        return f"the appeal window closed {days(left)} ago", ("appeal_deadline_days_left",)
    if r.flag("open_denial") and (r.num("n_appeals") > 0 or r.num("n_corrected_claims") > 0):
        return "the denial was already appealed or corrected; its answer is pending", ("n_appeals",)
    owed, contact = r.num("balance_patient"), r.num("days_since_last_contact")
    if _ok(owed) and owed > 0.005:
        if _ok(contact) and contact < 30:  # engagement from a recent contact has not faded
            return f"the patient was contacted {days(contact)} ago; another contact this soon adds little", _PERSON_WAIT
        paying = r.num("patient_payments_90d") > 0 or r.flag("plan_active")  # lift.py: needs less pushing
        already = "; the patient is already paying" if paying else ""
        text = f"no contact is expected to add more than it costs (the patient owes {money(owed)}{already})"
        return text, _PERSON_WAIT
    if r.flag("open_denial"):
        return "working the open denial is not expected to add more than it costs", ("open_denial",)
    return "no work is expected to add more than it costs", ()


def _why_status_call(r: Row) -> tuple[str, tuple[str, ...]]:
    waited, mean, filing = r.num("days_claim_waiting"), r.num("payer_days_to_pay"), r.num("filing_days_left")
    if not (_ok(filing) and filing >= 0):
        return " (it may never have arrived)", ()
    if _ok(waited) and _ok(mean) and waited < mean:
        # not overdue (a payer's normal time runs well past its mean): the call is for the filing clock
        return (f" now ({days(filing)} left in the filing limit: too few to wait out the payer's normal time and"
                " still refile if the claim never arrived)", ("filing_days_left",))
    return f" (it may never have arrived; {days(filing)} left in the filing limit)", ("filing_days_left",)


def _say_hold(r: Row) -> tuple[str, tuple[str, ...]]:
    why = r.text("hold_reason")
    text = f"on hold, not worked for collection: {why}" if why else "on hold, not worked for collection"
    covers = ("plan_in_good_standing", "fa_pending", "in_bankruptcy")
    return text, (*covers, "plan_active") if why and "payment plan" in why else covers


def _say_agency(r: Row) -> tuple[str, tuple[str, ...]]:
    first = r.num("days_since_first_statement")
    since = f" {days(first)} after the first statement" if _ok(first) else ""
    return f"send to the collection agency: unpaid{since} and payment is unlikely", ("days_since_first_statement",)


def _say_write_off(r: Row) -> tuple[str, tuple[str, ...]]:
    bal = r.num("balance")
    size = f" of {money(bal)}" if _ok(bal) else ""
    return f"write off the small balance{size}: working it costs more than it can bring", ("balance",)


_PERSON_WORK = {"statement": "statement", "patient_call": "call", "payment_plan_offer": "payment-plan offer"}


def _say_covered(r: Row) -> tuple[str, tuple[str, ...]]:
    work = _PERSON_WORK.get(r.text("best_action") or "", "contact")
    return (f"covered by the {work} to the guarantor listed with their first account: one contact for all "
            f"their open balances, this one adding {_gain(r, DEFAULT_HORIZONS.horizon_days)}"), ()


ACTION_SENTENCES: dict[str, ActionSentence] = {
    "status_call": ActionSentence("call the payer about the unanswered claim", why=_why_status_call),
    "resubmit": ActionSentence("fix and resubmit the claim the payer rejected"),
    "send_information": ActionSentence("send the information the payer asked for"),
    "appeal": ActionSentence("appeal the denial", denial=True),
    "correct_and_resubmit": ActionSentence("correct the denied claim and resubmit it", denial=True),
    "statement": ActionSentence("send the patient a statement"),
    "patient_call": ActionSentence("call the patient"),
    "payment_plan_offer": ActionSentence("offer the patient a payment plan"),
    "bill_patient": ActionSentence("bill the patient (a statement)"),
    "call": ActionSentence("call about the open balance"),
    "send_to_agency": ActionSentence(say=_say_agency),
    "write_off": ActionSentence(say=_say_write_off),
    "hold": ActionSentence(say=_say_hold),
    "wait": ActionSentence(say=_say_wait),
    "covered": ActionSentence(say=_say_covered),
}


def action_sentence(r: Row, action: str, horizons: Horizons = DEFAULT_HORIZONS) -> tuple[str, tuple[str, ...]]:
    """The row's first reason (what to do and what it adds) and the features it already says."""
    spec = ACTION_SENTENCES.get(action)
    if spec is None:
        return str(action).replace("_", " "), ()
    covers: tuple[str, ...] = ()
    if spec.say is not None:
        text, covers = spec.say(r)
    else:
        window = horizons.overturn_horizon_days if spec.denial else horizons.horizon_days
        why, covers = spec.why(r) if spec.why is not None else ("", ())
        text = f"{spec.work}{why}: {_gain(r, window)}"
    if r.flag("is_exploration"):
        text += "; picked at random this time, so the office learns what the work adds"
    return text, covers


def explain(r: Row, action: str, relevant: Iterable[str], overall: Iterable[str], top_n: int,
            horizons: Horizons = DEFAULT_HORIZONS) -> list[str]:
    """The row's reasons: the action sentence, then up to `top_n - 1` feature sentences, taken in order
    from `relevant` (the features that speak for the action, strongest first) or, when none of those
    has anything to say, from `overall`. A feature already said (by the action sentence or a template's
    `needs`) is not said again."""
    first, covered = action_sentence(r, action, horizons)
    out = [first]
    said = set(covered)
    for candidates in (relevant, overall):
        for name in candidates:
            if len(out) >= top_n:
                break
            t = FEATURE_SENTENCES.get(name)
            if t is None or name in said:
                continue
            r.said = said  # what is said already, for the template to leave out
            text = t.say(r)
            said.add(name)
            if text and text not in out:
                out.append(text)
                said.update(t.needs)
        if len(out) > 1:
            break
    return out[:max(top_n, 0)]
