"""The office whose work the simulated history records: who works what, with what probability.

A billing office's staff works by a plain rule: the older and the larger a claim with no answer, the
sooner someone calls the payer; pends are answered, denials are appealed or corrected the way their
CARC calls for, patients with a balance are called and sent to an agency at the end. A small random
share of the work is done on any feasible account (offices test, and collectors pick up what is in
front of them): that share is what identifies each action's effect from the history.

Why a per-account probability and not a hard top-k list: a daily capacity cut couples every account
to every other (whether this claim is called depends on how many larger ones are waiting), which makes
both the propensity of a piece of work and the truth "under the office's usual work" intractable.
Here each open account, each day, gets at most one action, drawn with probabilities that depend only
on what the office can see of that account (its status, its age since service, its amount, its
denial's CARC and deadline, its collection stage). So:

- every logged `propensity` is the exact probability that this work was chosen that day;
- every chain stays independent of the others, and the truth under usual work is exact propagation
  of the mixture kernel;
- the expected work per day follows the A/R: `intensity` scales every rate (the staff's size).

The history office works account by account, as offices did before work was grouped by person: a
call is about one account. (The arena follows DESIGN.md: a contact covers all of a guarantor's open
balances.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from features.sources import chain as ch


@dataclass(frozen=True)
class OfficeConfig:
    """Daily probabilities of the office's rule (before `intensity`), and its random share."""

    intensity: float = 1.0
    explore: float = 0.002           # per open account and day: a uniformly random feasible action
    status_call: float = 0.04        # a claim with no answer at full age (ramps up 30-60 days after it was sent)
    status_call_followup: float = 0.01  # a claim in appeal, under correction or at the secondary payer
    send_information: float = 0.07   # a pended claim
    resubmit_rejected: float = 0.15  # a claim rejected at the front door
    write_off_denial: float = 0.0015  # an open denial inside its window (0.05 after it)
    write_off_closed: float = 1 / 30  # a denial lost for good (upheld, or filed too late)
    patient_call: float = 0.05       # a patient balance over $100 after the first dunning letter
    statement: float = 0.003         # an extra statement by a collector (balance over $25)
    plan_offer: float = 0.004        # a payment-plan offer (balance over $300)
    agency: float = 1 / 45           # final-notice accounts past the 501(r) wait
    write_off_small: float = 0.03    # patient balances under $10

    def as_dict(self) -> dict:
        return asdict(self)


def _size_factor(P: dict, ix: np.ndarray) -> np.ndarray:
    """Larger balances first: about 0.5 at $100, 1 at $10,000."""
    return np.clip(np.log10(np.maximum(P["charges"][ix], 1.0)) / 4.0, 0.25, 1.25)


def rule_probabilities(s, d: int, P: dict, ix: np.ndarray, clk: dict, cfg: OfficeConfig) -> dict[int, np.ndarray]:
    """The rule's probability of each action for accounts ix in state s on day d (exploration aside)."""
    obs = ch.observed(s)
    k = cfg.intensity
    if obs == "at_payer":
        age = d - P["submit_day"][ix]
        ramp = np.clip((age - 30) / 30.0, 0.0, 1.0)
        return {ch.STATUS_CALL: k * cfg.status_call * ramp * _size_factor(P, ix)}
    if obs == "rejected":
        return {ch.RESUBMIT: np.full(len(ix), k * cfg.resubmit_rejected)}
    if obs == "pended":
        return {ch.SEND_INFORMATION: np.full(len(ix), k * cfg.send_information)}
    if obs == "denied":
        inside = d <= clk["appeal_deadline"][ix]
        usual = np.where(P["work_kind"][ix] == 1, ch.CORRECT, ch.APPEAL)
        w = k * P["work_rate"][ix] * inside
        return {ch.APPEAL: np.where(usual == ch.APPEAL, w, 0.0), ch.CORRECT: np.where(usual == ch.CORRECT, w, 0.0),
                ch.WRITE_OFF: k * np.where(inside, cfg.write_off_denial, 0.05)}
    if obs == "denial_closed":
        return {ch.WRITE_OFF: np.full(len(ix), k * cfg.write_off_closed)}
    if obs in ("in_review", "secondary"):
        return {ch.STATUS_CALL: np.full(len(ix), k * cfg.status_call_followup)}
    if obs == "patient":
        stage = ch.pat_stage(s)
        rem = P["pt_rem"][ix]
        return {
            ch.PATIENT_CALL: k * cfg.patient_call * ((stage >= 2) & (rem > 100)),
            ch.STATEMENT: k * cfg.statement * (rem > 25),
            ch.PLAN_OFFER: k * cfg.plan_offer * (rem > 300),
            ch.AGENCY: k * cfg.agency * ((stage == 4) & (d >= clk["agency_day"][ix])),
            ch.WRITE_OFF: k * cfg.write_off_small * (rem < 10),
        }
    return {}


def office_probabilities(s, d: int, P: dict, ix: np.ndarray, clk: dict, cfg: OfficeConfig):
    """[(action, probability from the rule, probability from the random share)] for accounts ix in
    state s on day d; the probability of the action is their sum, that of no work 1 minus all."""
    feasible = [(a, ch.feasible_mask(a, s, d, ix, clk)) for a in ch.feasible_actions(s)]
    if not feasible:
        return []
    n_feasible = np.maximum(sum(m.astype(np.int64) for _, m in feasible), 1)
    rule = rule_probabilities(s, d, P, ix, clk, cfg)
    out = []
    for a, ok in feasible:
        p_rule = np.where(ok, rule.get(a, 0.0), 0.0) * np.ones(len(ix))
        out.append((a, p_rule, np.where(ok, cfg.explore / n_feasible, 0.0)))
    return out
