"""The lift of each action (serving/lift.py) on hand-made feature rows: zero where the work cannot change
the outcome, positive where it can, and the ranking's `wait` with a follow-up date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.lift import LIFT_ACTIONS, action_lifts, overdue_after, p_lost
from serving.ranking import load_ranking_config

CFG = load_ranking_config()


def rows(**cols) -> pd.DataFrame:
    """Feature rows: an insured account with a claim at a payer that pays in 20 days on average,
    unless the columns say otherwise."""
    n = max(len(v) if isinstance(v, list) else 1 for v in cols.values()) if cols else 1
    base = {
        "account_id": [f"A{i}" for i in range(n)], "as_of": pd.Timestamp("2025-06-01"), "balance": 1000.0,
        "balance_insurance": 1000.0, "balance_patient": 0.0, "payer_paid_to_billed": 0.6,
        "payer_denial_rate": 0.1, "payer_days_to_pay": 20.0, "pending_adjudication": 1.0, "days_claim_waiting": 10.0,
        "claim_rejected_open": 0.0, "claim_pended_open": 0.0, "filing_days_left": 300.0, "open_denial": 0.0,
        "days_since_status_call": np.nan, "days_since_last_contact": np.nan, "call_attempts_7d": 0.0,
        "plan_active": 0.0, "days_since_plan_offer": np.nan,
    }
    base.update(cols)
    return pd.DataFrame({k: (v if isinstance(v, list) else [v] * n) for k, v in base.items()})


def lift_of(acc: pd.DataFrame, action: str, p: float = 0.5, denial=None) -> np.ndarray:
    out = action_lifts(acc, np.full(len(acc), p), denial, CFG["rules"], CFG["effects"])
    return out.lift[:, LIFT_ACTIONS.index(action)]


def test_a_status_call_inside_normal_adjudication_adds_nothing():
    due = float(overdue_after(np.array([20.0]), CFG["effects"])[0])
    assert 30 < due < 60  # the 95th percentile of a Gamma(3) with mean 20
    acc = rows(days_claim_waiting=[1.0, 10.0, 20.0, due - 1])
    assert (lift_of(acc, "status_call") == 0).all()


def test_an_overdue_claim_is_worth_a_call_and_more_so_the_longer_it_waited():
    due = float(overdue_after(np.array([20.0]), CFG["effects"])[0])
    acc = rows(days_claim_waiting=[due + 1, due + 20, due + 60])
    lift = lift_of(acc, "status_call")
    assert (lift > 0).all() and (np.diff(lift) > 0).all()
    assert lift[-1] <= 1000 * 0.6 * 0.9 + 1e-9  # never more than the claim's expected payment
    # the posterior that the claim was lost rises with waiting, toward 1
    p = p_lost(np.array([0.0, due, 5 * due]), np.array([20.0] * 3), CFG["effects"])
    assert p[0] == pytest.approx(CFG["effects"]["lost_claim_rate"]) and p[2] > 0.99


def test_a_call_made_lately_and_a_claim_past_its_filing_limit_add_nothing():
    due = float(overdue_after(np.array([20.0]), CFG["effects"])[0])
    acc = rows(days_claim_waiting=due + 30, days_since_status_call=[3.0, np.nan], filing_days_left=[200.0, -1.0])
    assert (lift_of(acc, "status_call") == 0).all()


def test_a_near_filing_deadline_makes_an_early_call_worth_it():
    acc = rows(days_claim_waiting=15.0, filing_days_left=[300.0, 20.0])
    lift = lift_of(acc, "status_call")
    assert lift[0] == 0 and lift[1] > 0


def test_pends_and_front_door_rejections_are_worth_their_fix():
    acc = rows(claim_pended_open=[1.0, 0.0, 0.0], claim_rejected_open=[0.0, 1.0, 1.0],
               filing_days_left=[300.0, 300.0, -5.0])
    assert lift_of(acc, "send_information")[0] == pytest.approx(1000 * 0.6 * 0.9)
    resubmit = lift_of(acc, "resubmit")
    assert resubmit[1] == pytest.approx(1000 * 0.6 * 0.9) and resubmit[2] == 0  # too late to refile


def test_an_appeal_adds_its_expected_overturn_dollars_until_worked():
    acc = rows(pending_adjudication=0.0, open_denial=1.0)
    denial = {"action": np.array(["appeal", "appeal"], dtype=object), "value": np.array([400.0, 400.0]),
              "worked": np.array([False, True])}
    lift = lift_of(pd.concat([acc, acc], ignore_index=True), "appeal", denial=denial)
    assert lift.tolist() == [400.0, 0.0]


def test_more_recent_contact_never_raises_the_lift_of_another_call():
    acc = rows(balance_insurance=0.0, balance_patient=300.0, pending_adjudication=0.0,
               days_since_last_contact=[0.0, 2.0, 7.0, 14.0, 30.0, np.nan])
    for action in ("patient_call", "statement"):
        lift = lift_of(acc, action)
        assert (np.diff(lift) >= 0).all() and 0 < lift[0] < lift[-1]


def test_the_call_limit_and_a_recent_plan_offer_make_those_actions_infeasible():
    acc = rows(balance_insurance=0.0, balance_patient=300.0, pending_adjudication=0.0,
               call_attempts_7d=[7.0, 0.0], days_since_plan_offer=[np.nan, 5.0])
    out = action_lifts(acc, np.full(2, 0.3), None, CFG["rules"], CFG["effects"])
    call, plan = LIFT_ACTIONS.index("patient_call"), LIFT_ACTIONS.index("payment_plan_offer")
    assert not out.feasible[0, call] and out.feasible[1, call]
    assert out.feasible[0, plan] and not out.feasible[1, plan]


def test_insurance_work_on_a_patient_balance_and_patient_work_on_a_claim_are_not_offered():
    acc = rows(balance_insurance=[0.0, 800.0], balance_patient=[200.0, 0.0], pending_adjudication=[0.0, 1.0])
    out = action_lifts(acc, np.full(2, 0.3), None, CFG["rules"], CFG["effects"])
    pat = [LIFT_ACTIONS.index(a) for a in ("statement", "patient_call", "payment_plan_offer")]
    assert out.feasible[0, pat].all() and not out.feasible[1, pat].any()
    assert not out.feasible[0, LIFT_ACTIONS.index("status_call")]


def test_each_earlier_contact_this_month_lowers_what_another_one_adds():
    acc = rows(balance_insurance=0.0, balance_patient=300.0, pending_adjudication=0.0, days_since_last_contact=10.0,
               statements_30d=[1.0, 2.0, 4.0, 8.0], contacts_30d=[0.0, 1.0, 1.0, 3.0])
    for action in ("statement", "patient_call"):
        lift = lift_of(acc, action)
        assert (np.diff(lift) < 0).all() and lift[-1] > 0
