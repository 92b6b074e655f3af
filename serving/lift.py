"""What work adds (DESIGN.md, "Ranking"): for every open account and every action a collector can take on
it, the expected dollars within H that the action adds if it is done now, against the account left
alone (`lift`), from the account's point-in-time features, the payment and overturn models and the
effect estimates.

Each action's lift is built from how A/R works, so that it is right in the places where no history
can teach it (an office with no `work` log) and zero where the work cannot change the outcome:

- **send information** on a pended claim: the payer pays once it has what it asked for, and denies the
  claim when it never comes; the lift is the claim's expected payment.
- **resubmit** a claim rejected at the front door (277CA/999): it is never adjudicated otherwise; the
  lift is its expected payment while the filing limit allows.
- **status call** on a claim with no answer: a claim in normal adjudication is paid on the payer's own
  schedule, so a call adds nothing; only a claim the payer lost (never received) is paid because of the
  call. How likely that is follows from how long the claim has waited against the payer's own
  adjudication time (Bayes: a prior lost share, and the chance that a normal claim is still unanswered
  after that long). Before the payer's normal time runs out the call can wait (`follow_up_date`),
  unless the filing deadline is near: then a lost claim found later would be forfeited.
- **appeal / correct and resubmit** an open denial: P(overturn | worked) x the expected paid amount
  (the overturn model), zero once worked or past the appeal deadline (the forfeited denial is what
  the deadline costs).
- **statement, patient call, payment-plan offer** on a patient balance: a share of the balance, for a
  person not contacted lately (engagement fades: a second contact soon after the first adds little),
  less for a person already paying; a call is not possible after the call limit, a plan not below
  its minimum balance or while one is active. One contact covers all of a guarantor's balances.

Where the office's logged work identifies an action's effect, the trained effect model
(`training.effects`) replaces the prior's scale for that action; where it does not, the prior stands
and the row says so (`effect_source`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincc
from scipy.stats import gamma

LIFT_ACTIONS = ("send_information", "resubmit", "status_call", "appeal", "correct_and_resubmit", "statement",
                "patient_call", "payment_plan_offer")
PATIENT_ACTIONS = ("statement", "patient_call", "payment_plan_offer")
DENIAL_ACTIONS = ("appeal", "correct_and_resubmit")


@dataclass
class Lifts:
    """Per account row (n) and action (`LIFT_ACTIONS`, k): the prior or learned lift in dollars within H,
    whether the action is possible now, and the day (offset from as-of) worth looking again when nothing
    is worth doing now."""

    lift: np.ndarray            # (n, k) dollars; 0 where the work changes nothing
    feasible: np.ndarray        # (n, k) bool
    follow_up_days: np.ndarray  # (n,) days after as-of
    source: dict[str, str]      # action -> "learned" | "prior"


def _col(acc, name: str, n: int, default: float = np.nan) -> np.ndarray:
    from serving.ranking import _num

    return _num(acc, name, default) if n else np.zeros(0)


def _adjudication(cfg: dict, mean_days: np.ndarray) -> tuple[float, np.ndarray]:
    shape = float(cfg["adjudication_shape"])
    mean = np.where(np.isfinite(mean_days) & (mean_days > 0), mean_days, float(cfg["default_days_to_pay"]))
    return shape, mean


def p_lost(waited: np.ndarray, mean_days: np.ndarray, cfg: dict) -> np.ndarray:
    """P(the payer never received the claim | no answer after `waited` days), with normal adjudication
    time ~ Gamma(shape, mean = the payer's days to pay) and a prior lost share."""
    shape, mean = _adjudication(cfg, mean_days)
    still_normal = gammaincc(shape, shape * np.maximum(np.nan_to_num(waited), 0.0) / mean)
    prior = float(cfg["lost_claim_rate"])
    return prior / (prior + (1.0 - prior) * still_normal)


def overdue_after(mean_days: np.ndarray, cfg: dict) -> np.ndarray:
    """Days after submission when a normal claim of this payer would have been answered (the
    configured quantile of its adjudication time)."""
    shape, mean = _adjudication(cfg, mean_days)
    return gamma.ppf(float(cfg["overdue_quantile"]), shape, scale=mean / shape)


def claim_clock(waited: np.ndarray, mean_days: np.ndarray, filing_left: np.ndarray, cfg: dict
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For claims unanswered after `waited` days: the day their payer's normal time runs out (`due`,
    days after submission), whether it has (`overdue`), and whether the filing limit would be within
    the margin by then (`deadline_near`: a lost claim found at that time could no longer be refiled)."""
    due = overdue_after(mean_days, cfg)
    overdue = waited >= due
    deadline_near = filing_left - np.maximum(due - np.nan_to_num(waited), 0) < float(cfg["filing_margin_days"])
    return due, overdue, deadline_near


def action_lifts(acc, p_payment: np.ndarray, denial: dict | None, rules: dict, cfg: dict,
                 learned=None) -> Lifts:
    """The lifts of every `LIFT_ACTIONS` action for the account rows `acc` (features as
    `features.snapshot` gives them). `denial` holds, per row, the best open denial's `value`, `action`
    and `worked` (already appealed or corrected) where the account has one; `rules` are the ranking
    rules (call limit); `learned` a fitted `training.effects.EffectModel` or None."""
    from serving.ranking import n_rows

    n = n_rows(acc)
    k = len(LIFT_ACTIONS)
    col = {a: j for j, a in enumerate(LIFT_ACTIONS)}
    L, F = np.zeros((n, k)), np.zeros((n, k), dtype=bool)
    follow = np.full(n, float(cfg["follow_up_days"]))
    if n == 0:
        return Lifts(L, F, follow, {a: "prior" for a in LIFT_ACTIONS})

    bal_ins, bal_pat = np.maximum(_col(acc, "balance_insurance", n, 0.0), 0), np.maximum(
        _col(acc, "balance_patient", n, 0.0), 0)
    ptb = np.clip(np.nan_to_num(_col(acc, "payer_paid_to_billed", n), nan=0.5), 0, 1)
    deny = np.clip(np.nan_to_num(_col(acc, "payer_denial_rate", n), nan=0.1), 0, 1)
    value_ins = bal_ins * ptb  # what the payer is expected to pay on the insurance balance
    filing_left = _col(acc, "filing_days_left", n)
    timely = ~(filing_left < 0)  # NaN (no limit) is timely
    pending = _col(acc, "pending_adjudication", n, 0.0) > 0
    rejected = _col(acc, "claim_rejected_open", n, 0.0) > 0
    pended = _col(acc, "claim_pended_open", n, 0.0) > 0

    # claims the payer holds or never took in
    j = col["send_information"]
    F[:, j] = pended
    L[:, j] = np.where(pended, value_ins * (1 - deny), 0.0)
    j = col["resubmit"]
    F[:, j] = rejected
    L[:, j] = np.where(rejected & timely, value_ins * (1 - deny), 0.0)

    waited = _col(acc, "days_claim_waiting", n)
    payer_days = _col(acc, "payer_days_to_pay", n)
    due, overdue, deadline_near = claim_clock(waited, payer_days, filing_left, cfg)
    recently_called = _col(acc, "days_since_status_call", n) <= float(cfg["status_call_recall_days"])
    plain_wait = pending & ~rejected & ~pended & np.isfinite(waited)
    call_now = plain_wait & (overdue | deadline_near) & ~recently_called
    j = col["status_call"]
    F[:, j] = pending | (_col(acc, "open_denial", n, 0.0) > 0)
    L[:, j] = np.where(call_now & timely, p_lost(waited, payer_days, cfg) * value_ins * (1 - deny), 0.0)
    follow = np.where(plain_wait & ~call_now, np.maximum(due - np.nan_to_num(waited), 1.0), follow)

    # denials: the best open denial of the account, worked the way its CARC calls for
    if denial is not None:
        for a in DENIAL_ACTIONS:
            j = col[a]
            here = denial["action"] == a
            F[:, j] = here
            L[:, j] = np.where(here & ~denial["worked"], denial["value"], 0.0)

    # the patient balance (work on the person)
    patient_side = (bal_pat > 0.005) & (bal_ins <= 0.005) & ~pending
    since_contact = _col(acc, "days_since_last_contact", n)
    engage_days = float(cfg["engagement_days"])
    # the share of the effect a new contact still has: the last contact engaged the person with some
    # probability, and that engagement fades
    engages = float(cfg["contact_engages"])
    engaged = engages * np.exp(-np.nan_to_num(since_contact, nan=np.inf) / engage_days)
    # every other contact of the last 30 days may have engaged the person too (half faded, on average)
    earlier = np.maximum(_col(acc, "statements_30d", n, 0.0) + _col(acc, "contacts_30d", n, 0.0) - 1.0, 0.0)
    fresh = (1.0 - engaged) * (1.0 - engages * 0.5) ** earlier
    # a person already paying (a payment lately, or a plan) needs less pushing; read from what they did,
    # not from the payment model, whose P(payment) moves with the contact features themselves (a lift
    # that rose with every call attempt would ask for more calls)
    paying = (_col(acc, "patient_payments_90d", n, 0.0) > 0) | (_col(acc, "plan_active", n, 0.0) > 0)
    would_pay = np.where(paying, float(cfg["paying_already_discount"]), 0.0)
    # a contact works through engagement (which a recent contact already raised); a plan offer through
    # the person's accepting it, however recently they were contacted
    unpaid = bal_pat * (1.0 - would_pay)
    from serving.ranking import person_call_attempts_7d

    calls_7d = person_call_attempts_7d(acc) if n else np.zeros(0)
    plan_ok = (bal_pat >= float(cfg["plan_min_balance"])) & ~(_col(acc, "plan_active", n, 0.0) > 0)
    plan_ok &= ~(_col(acc, "days_since_plan_offer", n) <= float(cfg["plan_offer_recall_days"]))  # declined lately
    for a, ok, base in (("statement", patient_side, unpaid * fresh),
                        ("patient_call", patient_side & (calls_7d < float(rules["max_call_attempts_7d"])),
                         unpaid * fresh),
                        ("payment_plan_offer", patient_side & plan_ok, unpaid)):
        j = col[a]
        F[:, j] = ok
        L[:, j] = np.where(ok, base * float(cfg["prior_share"][a]), 0.0)
    follow = np.where(patient_side, np.maximum(engage_days - np.nan_to_num(since_contact), 1.0), follow)

    source = {a: "prior" for a in LIFT_ACTIONS}
    if learned is not None:
        L, source = learned.adjust(acc, L, F, LIFT_ACTIONS)
    L = np.where(F, np.maximum(L, 0.0), 0.0)
    return Lifts(L, F, follow, source)
