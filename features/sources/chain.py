"""The mechanism of one account: a day-stepped Markov chain, and what work does to it.

Every account moves through the states below one day at a time. Two functions hold the whole
mechanism, and everything else (the simulator, the office's history, the exact truth, the arena)
calls them, so the truth is exact by construction:

- `natural_edges(s, d, ...)`: the moves out of state s on day d when nobody works the account
  (payers adjudicate on their own schedule, patients pay or not, the billing system sends its
  statement cycle and dunning letters): [(destination, probability, event, dollars or None)];
- `jump(action, s, d, ...)`: what one piece of work does on the morning it is done:
  [(destination, probability, events)], probabilities summing to one; the day's natural move
  follows from where the jump left the account.

Why it is built this way: an action is a change to the account's transition on the day it is done,
so "action a at T, then left alone" and "left alone" are both the same chain propagated exactly,
and the true lift is their difference. Where the mechanism has no effect the jump is the identity,
so the lift is exactly 0 (a status call on a claim in normal adjudication, an appeal after the
window, a call to a person already engaged).

How A/R behaves here (each figure is a default of `Mechanics`, configurable):

- Insurance. A submitted claim is adjudicated in three Erlang stages at the payer's speed; a call
  does not hurry it. A few percent of submissions are lost (never received; more for some payers):
  they are paid only after a status call (or a resubmission) resubmits them, and only while the
  payer's timely-filing limit (from the service date) allows; after it a resubmission is denied
  CO-29 and the claim is forfeited. Some claims are rejected at the front door (a 277CA rejection in
  `claim_acks`): never adjudicated unless corrected and resubmitted, in time. Some are pended for
  information: paid once it is sent, denied CO-16 (missing information) if it never is.
- Denials are overturned only when worked (appeal, or corrected claim, as the CARC calls for; the
  other kind of work succeeds less often) inside the payer's appeal window; after it, nothing.
- Patients. Each guarantor (the person who pays) has a latent type: some pay whatever is done
  (self-cure), some never pay, most respond to contact. A contact (a call that reaches the person)
  or a statement raises the person's engagement one level (at most two); engagement raises the
  payment hazard with diminishing returns (the second level adds less than the first) and fades.
  A call to someone already at the top level does nothing but cost. A payment-plan offer is
  accepted with the guarantor's latent probability. Agency placement closes the account (never
  before 120 days after the first statement: IRS 501(r)).

Clocks: the only per-account times the chain reads are the timely-filing deadline (fixed by the
service date), the appeal deadline of a denial that exists at T, and the 501(r) date of an account
already billed to the patient at T. A denial or first statement that happens after T has its
deadline beyond T + H (H is at most the shortest appeal window and the 501(r) wait), so the truth
treats unknown clocks as "not yet" and stays exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# ----------------------------------------------------------------------------- states
(NOT_STARTED, PRE_BILL, INS_1, INS_2, INS_3, LOST, PENDED, PEND_INFO, DENIED, APPEAL_1, APPEAL_2, CORR_1, CORR_2,
 DENIED_FINAL, TF_DENIED, SEC_1, SEC_2) = range(17)
PAT_FIRST = 17  # PAT(stage 1-4, engagement 0-2): 17 + 3 * (stage - 1) + engagement
PLAN_3, PLAN_2, PLAN_1, FA_PENDING, BANKRUPT, CLOSED_PAID, CLOSED_WRITEOFF, CLOSED_AGENCY = range(29, 37)
REJECTED = 37  # rejected at the payer's front door (277CA): never adjudicated unless resubmitted
N_STATES = 38
ENGAGEMENT_LEVELS = 3
PAT_STATES = tuple(range(PAT_FIRST, PAT_FIRST + 12))
PLAN_STATES = (PLAN_3, PLAN_2, PLAN_1)
CLOSED_STATES = (CLOSED_PAID, CLOSED_WRITEOFF, CLOSED_AGENCY)
OPEN_STATES = np.array([s for s in range(1, N_STATES) if s not in CLOSED_STATES])
INSURANCE_STATES = tuple(range(PRE_BILL, SEC_2 + 1))
BIG = 1 << 30  # a day that never comes (an unknown or absent clock)


def pat(stage: int, engagement: int) -> int:
    return PAT_FIRST + 3 * (stage - 1) + engagement


def pat_stage(s):
    return (s - PAT_FIRST) // 3 + 1


def pat_engagement(s):
    return (s - PAT_FIRST) % 3


def is_patient(s) -> bool:
    """States are ints, except the patient block: every function here also takes, for accounts in
    different patient states (stage x engagement), the array of their states (one vectorised call)."""
    return np.ndim(s) > 0 or PAT_FIRST <= s < PAT_FIRST + 12


def blocks(state: np.ndarray) -> np.ndarray:
    """The group each account is processed in: its state, or PAT_FIRST for the whole patient block."""
    return np.where((state >= PAT_FIRST) & (state < PAT_FIRST + 12), PAT_FIRST, state)


def observed(s) -> str:
    return "patient" if is_patient(s) else OBSERVED[s]


# what the office can see of each state (lost and in-adjudication claims look alike: no answer yet)
OBSERVED = np.array(
    ["not_started", "unbilled", "at_payer", "at_payer", "at_payer", "at_payer", "pended", "at_payer", "denied",
     "in_review", "in_review", "in_review", "in_review", "denial_closed", "denial_closed", "secondary", "secondary"]
    + ["patient"] * 12 + ["hold"] * 5 + ["closed"] * 3 + ["rejected"], dtype=object)

# the statuses of a balance still with a payer (the rest is the patient's)
INSURANCE_STATUSES = ("unbilled", "at_payer", "rejected", "pended", "denied", "in_review", "denial_closed",
                      "secondary")

# ----------------------------------------------------------------------------- events
(EV_CHARGE, EV_SUBMIT, EV_PAID, EV_DENY, EV_APPEAL, EV_CORRECT, EV_OVERTURN, EV_UPHELD, EV_SEC_PAID, EV_PAT_PAY,
 EV_PLAN_START, EV_INSTALLMENT, EV_PLAN_DEFAULT, EV_FA_APP, EV_CHARITY, EV_FA_DENIED, EV_BANKRUPTCY, EV_BK_WO,
 EV_AGENCY, EV_REVERSAL, EV_STATEMENT, EV_CALL_ATTEMPT, EV_CALL_CONTACT, EV_LETTER, EV_NONE, EV_PEND, EV_RESUBMIT,
 EV_TF_DENY, EV_WRITEOFF, EV_FORFEIT, EV_REJECT) = range(31)
PAYMENT_EVENTS = (EV_PAID, EV_OVERTURN, EV_SEC_PAID, EV_PAT_PAY, EV_INSTALLMENT)

# ----------------------------------------------------------------------------- actions (DESIGN.md's `work.action`)
ACTIONS = ("status_call", "resubmit", "send_information", "appeal", "correct_and_resubmit", "patient_call",
           "statement", "payment_plan_offer", "dispute_underpayment", "send_to_agency", "write_off")
(STATUS_CALL, RESUBMIT, SEND_INFORMATION, APPEAL, CORRECT, PATIENT_CALL, STATEMENT, PLAN_OFFER, DISPUTE, AGENCY,
 WRITE_OFF) = range(len(ACTIONS))
PATIENT_ACTIONS = (PATIENT_CALL, STATEMENT, PLAN_OFFER)  # work on the person: one contact covers all balances
CLAIM_ACTIONS = (STATUS_CALL, RESUBMIT, SEND_INFORMATION, APPEAL, CORRECT, DISPUTE)

# the work the office can do in each observed status (send_to_agency also needs the 501(r) date)
FEASIBLE = {
    "at_payer": (STATUS_CALL, RESUBMIT),
    "rejected": (RESUBMIT, STATUS_CALL),
    "pended": (SEND_INFORMATION, STATUS_CALL),
    "denied": (APPEAL, CORRECT, STATUS_CALL, WRITE_OFF),
    "in_review": (STATUS_CALL,),
    "denial_closed": (WRITE_OFF,),
    "secondary": (STATUS_CALL,),
    "patient": (PATIENT_CALL, STATEMENT, PLAN_OFFER, AGENCY, WRITE_OFF),
}


@dataclass(frozen=True)
class Mechanics:
    """What work does and costs (every effect of `jump` and every minute of the `work` log)."""

    minutes: tuple[tuple[str, float], ...] = (
        ("status_call", 10.0), ("resubmit", 12.0), ("send_information", 15.0), ("appeal", 45.0),
        ("correct_and_resubmit", 20.0), ("patient_call", 8.0), ("statement", 2.0), ("payment_plan_offer", 6.0),
        ("dispute_underpayment", 30.0), ("send_to_agency", 5.0), ("write_off", 2.0))
    lost_rate: float = 0.03            # share of submissions the payer never receives (times the payer's factor)
    reject_rate: float = 0.04          # share rejected at the front door (277CA), times the payer's factor
    pend_rate: float = 0.04            # share of claims pended for information (times the payer's factor)
    pend_timeout_days: float = 40.0    # a pend nobody answers is denied CO-16 after this many days (mean)
    wrong_work_factor: float = 0.3     # the other kind of work than the CARC calls for wins this share as often
    corrected_days: float = 25.0       # mean days for a corrected claim to be adjudicated (an appeal: 35)
    statement_read: float = 0.35       # a statement raises engagement with this probability
    engagement_boost: tuple[float, float, float] = (0.0, 0.030, 0.045)  # daily payment hazard per level (x resp.)
    engagement_fade_days: float = 21.0  # mean days before engagement falls one level
    plan_min_balance: float = 50.0     # no plan offered (accepted) below this patient balance
    agency_wait_days: int = 120        # IRS 501(r): no agency placement before this many days after the first statement

    def minutes_of(self) -> np.ndarray:
        table = dict(self.minutes)
        return np.array([table[a] for a in ACTIONS], dtype=np.float64)

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- helpers


def next_after_primary(P: dict, ix: np.ndarray) -> np.ndarray:
    return np.where(P["has_sec"][ix], SEC_1, np.where(P["pt_rem"][ix] > 0, pat(1, 0), CLOSED_PAID))


def balance(P: dict, s: int, ix: np.ndarray) -> np.ndarray:
    """The ledger balance of accounts in state s (every amount is fixed by the latent draw)."""
    if s <= DENIED_FINAL or s in (TF_DENIED, REJECTED):
        return P["charges"][ix]
    if s in (SEC_1, SEC_2):
        return P["pt_resp"][ix]
    if s in PLAN_STATES:
        k = {PLAN_3: 3, PLAN_2: 2, PLAN_1: 1}[s]
        return np.round(P["pt_rem"][ix] - (3 - k) * P["inst"][ix], 2)
    return P["pt_rem"][ix]


def feasible_actions(s) -> tuple[int, ...]:
    return FEASIBLE.get(observed(s), ())


def feasible_mask(action: int, s, d: int, ix: np.ndarray, clk: dict) -> np.ndarray:
    """Which of the accounts ix (all in state s) may have `action` done on day d."""
    if action not in feasible_actions(s):
        return np.zeros(len(ix), dtype=bool)
    if action == AGENCY:
        return d >= clk["agency_day"][ix]
    return np.ones(len(ix), dtype=bool)


# ----------------------------------------------------------------------------- the natural moves


def natural_edges(s, d: int, P: dict, ix: np.ndarray, clk: dict):
    """Moves out of state s on day d for accounts ix when nobody works them:
    [(destination, probability, event, dollars or None)]; the rest of the mass stays."""
    one = np.ones(len(ix))
    mech: Mechanics = P["mech"]
    if is_patient(s):
        return _patient_edges(np.broadcast_to(s, len(ix)), d, P, ix, mech)
    if s == NOT_STARTED:
        on = (P["service_day"][ix] == d).astype(float)
        return [(np.where(P["selfpay"][ix], pat(1, 0), PRE_BILL), on, EV_CHARGE, None)]
    if s == PRE_BILL:  # the claim goes out: rejected at the front door, accepted (and perhaps lost later)
        on = (P["submit_day"][ix] == d).astype(float)
        lost, rejected = P["p_lost"][ix], P["p_reject"][ix]
        return [(REJECTED, on * rejected, EV_REJECT, None), (LOST, on * (1 - rejected) * lost, EV_SUBMIT, None),
                (INS_1, on * (1 - rejected) * (1 - lost), EV_SUBMIT, None)]
    if s in (INS_1, INS_2):
        return [(s + 1, P["r_ins"][ix], EV_NONE, None)]
    if s == INS_3:
        r, pd_, pend = P["r_ins"][ix], P["p_deny"][ix], P["will_pend"][ix]
        return [(next_after_primary(P, ix), r * (1 - pd_) * ~pend, EV_PAID, P["a1"][ix]),
                (DENIED, r * pd_ * ~pend, EV_DENY, None), (PENDED, r * pend, EV_PEND, None)]
    if s == PENDED:
        return [(DENIED, one / mech.pend_timeout_days, EV_DENY, None)]
    if s == PEND_INFO:
        return [(next_after_primary(P, ix), P["r_ins"][ix], EV_PAID, P["a1"][ix])]
    if s in (APPEAL_1, CORR_1):
        return [(s + 1, P["r_app" if s == APPEAL_1 else "r_corr"][ix], EV_NONE, None)]
    if s in (APPEAL_2, CORR_2):
        r = P["r_app" if s == APPEAL_2 else "r_corr"][ix]
        q = P["q_appeal" if s == APPEAL_2 else "q_correct"][ix]
        return [(next_after_primary(P, ix), r * q, EV_OVERTURN, P["a1"][ix]),
                (DENIED_FINAL, r * (1 - q), EV_UPHELD, None)]
    if s == SEC_1:
        return [(SEC_2, P["r_sec"][ix], EV_NONE, None), (SEC_1, P["p_reversal"][ix], EV_REVERSAL, None)]
    if s == SEC_2:
        nxt = np.where(P["pt_rem"][ix] > 0, pat(1, 0), CLOSED_PAID)
        return [(nxt, P["r_sec"][ix], EV_SEC_PAID, P["a2"][ix]), (SEC_2, P["p_reversal"][ix], EV_REVERSAL, None)]
    if s in PLAN_STATES:
        k = {PLAN_3: 3, PLAN_2: 2, PLAN_1: 1}[s]
        amount = P["inst"][ix] if k > 1 else np.round(P["pt_rem"][ix] - 2 * P["inst"][ix], 2)
        return [(s + 1 if k > 1 else CLOSED_PAID, one / 30.0, EV_INSTALLMENT, amount),
                (CLOSED_WRITEOFF, one / 250.0, EV_PLAN_DEFAULT, None)]
    if s == FA_PENDING:
        return [(CLOSED_WRITEOFF, one * 0.6 / 30, EV_CHARITY, None), (pat(3, 0), one * 0.4 / 30, EV_FA_DENIED, None)]
    if s == BANKRUPT:
        return [(CLOSED_WRITEOFF, one / 150.0, EV_BK_WO, None)]
    return []  # LOST, REJECTED, DENIED, DENIED_FINAL, TF_DENIED wait for work; closed states stay closed


def _patient_edges(s: np.ndarray, d: int, P: dict, ix: np.ndarray, mech: Mechanics):
    stage, level = pat_stage(s), pat_engagement(s)
    one = np.ones(len(ix))
    in_cycle_boost = ((d - P["anchor"][ix]) % 30) < 10  # the ten days after the billing cycle's statement
    base = P["h_pay"][ix] * np.array([1.0, 0.55, 0.3, 0.15])[stage - 1] * np.where(in_cycle_boost, 1.8, 1.0)
    pay = base + P["resp"][ix] * np.asarray(mech.engagement_boost)[level]
    # each later collection stage sends the next dunning letter (and is seen as one)
    letter = np.array([1 / 40, 1 / 60, 1 / 60, 0.0])[stage - 1]
    return [(CLOSED_PAID, pay, EV_PAT_PAY, P["pt_rem"][ix]),
            (PLAN_3, P["p_plan"][ix], EV_PLAN_START, None),
            (FA_PENDING, np.where(P["fa_eligible"][ix], 0.004, 0.0), EV_FA_APP, None),
            (BANKRUPT, one * 0.00015, EV_BANKRUPTCY, None),
            (s, P["p_reversal"][ix] * (~P["selfpay"][ix]), EV_REVERSAL, None),
            (pat(np.minimum(stage + 1, 4), level), letter, EV_LETTER, None),
            (pat(stage, np.maximum(level - 1, 0)), np.where(level > 0, 1.0 / mech.engagement_fade_days, 0.0),
             EV_NONE, None)]


# ----------------------------------------------------------------------------- work


def jump(action: int, s, d: int, P: dict, ix: np.ndarray, clk: dict):
    """What `action` done on the morning of day d does to accounts ix in state s:
    [(destination, probability per account, events)], probabilities summing to one."""
    n = len(ix)
    one, zero = np.ones(n), np.zeros(n)
    mech: Mechanics = P["mech"]
    if is_patient(s):
        return _patient_jump(action, np.broadcast_to(s, n), d, P, ix, clk, mech)
    if (s == LOST and action in (STATUS_CALL, RESUBMIT)) or (s == REJECTED and action == RESUBMIT):
        # "no claim on file" (or the rejection fixed): resubmitted, and adjudicated if still timely
        timely = (d <= clk["tf_day"][ix]).astype(float)
        return [(INS_1, timely, (EV_RESUBMIT,)), (TF_DENIED, 1 - timely, (EV_RESUBMIT, EV_TF_DENY))]
    if action == SEND_INFORMATION and s == PENDED:
        return [(PEND_INFO, one, ())]
    if action in (APPEAL, CORRECT) and s == DENIED:
        inside = (d <= clk["appeal_deadline"][ix]).astype(float)
        dst, ev = (APPEAL_1, EV_APPEAL) if action == APPEAL else (CORR_1, EV_CORRECT)
        return [(dst, inside, (ev,)), (s, 1 - inside, ())]
    if action == WRITE_OFF and s not in CLOSED_STATES and s != NOT_STARTED:
        return [(CLOSED_WRITEOFF, one, (EV_WRITEOFF,))]
    return [(s, one, ())] if n else [(s, zero, ())]  # no effect: the identity


def _patient_jump(action: int, s: np.ndarray, d: int, P: dict, ix: np.ndarray, clk: dict, mech: Mechanics):
    n = len(ix)
    one = np.ones(n)
    stage, level = pat_stage(s), pat_engagement(s)
    up = pat(stage, np.minimum(level + 1, ENGAGEMENT_LEVELS - 1))
    if action == PATIENT_CALL:
        reach = P["reach"][ix]
        return [(up, reach, (EV_CALL_ATTEMPT, EV_CALL_CONTACT)), (s, 1 - reach, (EV_CALL_ATTEMPT,))]
    if action == STATEMENT:
        read = one * mech.statement_read
        return [(up, read, (EV_STATEMENT,)), (s, 1 - read, (EV_STATEMENT,))]
    if action == PLAN_OFFER:
        accept = P["accept"][ix] * (P["pt_rem"][ix] >= mech.plan_min_balance)
        return [(PLAN_3, accept, (EV_PLAN_START,)), (s, 1 - accept, ())]
    if action == AGENCY:
        allowed = (d >= clk["agency_day"][ix]).astype(float)
        return [(CLOSED_AGENCY, allowed, (EV_AGENCY,)), (s, 1 - allowed, ())]
    if action == WRITE_OFF:
        return [(CLOSED_WRITEOFF, one, (EV_WRITEOFF,))]
    return [(s, one, ())]


def clocks(P: dict, den_day: np.ndarray, first_statement: np.ndarray) -> dict[str, np.ndarray]:
    """The per-account deadlines the chain reads, from what has happened so far (BIG: not yet)."""
    mech: Mechanics = P["mech"]
    return {
        "tf_day": P["tf_day"],
        "appeal_deadline": np.where(den_day < BIG, den_day + P["appeal_window"], BIG),
        "agency_day": np.where(first_statement < BIG, first_statement + mech.agency_wait_days, BIG),
    }
