"""The lift evaluation's bookkeeping on tiny hand-made frames: which true lift each suggestion earns
(aliases, wait and hold, infeasible work, one contact per guarantor), budgets of minutes, the oracle,
premature claim work and the obvious action (the model-level checks are in
tests/model/test_lift_evaluation.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training import evaluate as ev

T = pd.Timestamp("2025-03-01")
MINUTES = {"status_call": 10.0, "resubmit": 12.0, "send_information": 15.0, "appeal": 45.0,
           "correct_and_resubmit": 20.0, "statement": 2.0, "patient_call": 8.0, "payment_plan_offer": 6.0}
CFG_MINUTES = {**MINUTES, "call": 8.0, "bill_patient": 2.0, "wait": 0.0, "hold": 0.0}


def _truth() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A1 a claim in normal adjudication, A2 a lost claim, P1 and P2 two balances of guarantor G1, P3 of
    G2, D1 an open denial."""
    lifts = [
        ("A1", "status_call", 0.0), ("A1", "resubmit", 0.0),
        ("A2", "status_call", 500.0), ("A2", "resubmit", 0.0),
        ("P1", "statement", 10.0), ("P1", "patient_call", 30.0), ("P1", "payment_plan_offer", 0.0),
        ("P2", "statement", 20.0), ("P2", "patient_call", 40.0), ("P2", "payment_plan_offer", 0.0),
        ("P3", "statement", 5.0), ("P3", "patient_call", 6.0),
        ("D1", "appeal", 300.0), ("D1", "correct_and_resubmit", 100.0), ("D1", "status_call", 0.0),
    ]
    actions = pd.DataFrame(lifts, columns=["account_id", "action", "lift"]).assign(
        as_of=T, minutes=lambda f: f["action"].map(MINUTES), claim_id=None)
    guarantors = pd.DataFrame({"account_id": ["A1", "A2", "P1", "P2", "P3", "D1"], "as_of": T,
                               "guarantor_id": ["A1", "A2", "G1", "G1", "G2", "D1"]})
    return actions, guarantors


def _worklist(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "action"]).assign(as_of=T)


def test_each_suggestion_earns_its_true_lift_once():
    actions, guarantors = _truth()
    wl = _worklist([
        ("P1", "bill_patient"),      # alias: a statement to G1, covering P1 and P2
        ("P2", "bill_patient"),      # G1 again: already contacted, nothing more
        ("P2", "call"),              # a call to G1 the same day: the same unit of work, not counted
        ("A2", "call"),              # a call on an insurance balance is a status call
        ("A1", "wait"),
        ("D1", "send_information"),  # the truth lists no such work for D1: infeasible
        ("P3", "hold"),
        ("A2", "resubmit"),          # A2 is already worked today
        ("P3", "call"),              # a call on a patient balance is a patient call
    ])
    out = ev.score_suggestions(wl, actions, guarantors, CFG_MINUTES)
    assert out["work_action"].tolist() == ["statement", "statement", "patient_call", "status_call", None,
                                           "send_information", None, "resubmit", "patient_call"]
    assert out["counted"].tolist() == [True, False, False, True, False, True, False, False, True]
    np.testing.assert_allclose(out["true_lift"], [30.0, 0, 0, 500.0, 0, 0, 0, 0, 6.0])
    np.testing.assert_allclose(out["minutes"], [2.0, 0, 0, 10.0, 0, 15.0, 0, 0, 8.0])
    assert out["feasible"].tolist() == [True, True, True, True, False, False, False, True, True]
    # the same order with the worklist's own guarantor ids (no truth table of guarantors) gives the same
    wl["guarantor_id"] = wl["account_id"].map({"P1": "G1", "P2": "G1", "P3": "G2"})
    again = ev.score_suggestions(wl, actions, None, CFG_MINUTES)
    np.testing.assert_allclose(again["true_lift"], out["true_lift"])


def test_budget_of_minutes_takes_the_prefix_that_fits():
    actions, guarantors = _truth()
    out = ev.score_suggestions(_worklist([("P1", "statement"), ("A2", "status_call"), ("D1", "appeal")]),
                               actions, guarantors, CFG_MINUTES)
    day = int(ev._day_key(pd.Series([T]))[0])
    assert ev.lift_within(out, {day: 12.0}) == (530.0, 12.0)
    assert ev.lift_within(out, {day: 11.0}) == (30.0, 2.0)  # the call does not fit: the list stops there
    assert ev.lift_within(out, {day: 1000.0}) == (830.0, 57.0)
    curve = ev.lift_curve({"x": out}, {day: 57.0}, percents=range(0, 101, 50))
    assert curve["true_lift"].tolist() == [0.0, 530.0, 830.0]


def test_oracle_works_each_unit_best_per_minute():
    actions, guarantors = _truth()
    wl = ev.oracle_worklist(actions, guarantors)
    # A2's call ($50/min), G1's statement ($15/min over both balances), D1's appeal ($6.7/min), G2's statement
    assert list(zip(wl["account_id"], wl["action"], strict=True)) == [
        ("A2", "status_call"), ("P1", "statement"), ("D1", "appeal"), ("P3", "statement")]
    out = ev.score_suggestions(wl, actions, guarantors, CFG_MINUTES)
    assert out["true_lift"].tolist() == [500.0, 30.0, 300.0, 5.0] and out["counted"].all()


def test_premature_claim_work_is_useless_claim_work_at_the_payer_with_no_deadline_near():
    actions, guarantors = _truth()
    actions = pd.concat([actions, pd.DataFrame({"account_id": ["A3"], "action": ["status_call"], "lift": [0.0],
                                                "as_of": [T], "minutes": [10.0], "claim_id": [None]})])
    wl = _worklist([("A1", "status_call"), ("A3", "call"), ("A2", "status_call"), ("D1", "status_call"),
                    ("P1", "statement")])
    scored = ev.score_suggestions(wl, actions, guarantors, CFG_MINUTES)
    feats = pd.DataFrame({
        "account_id": ["A1", "A2", "A3", "D1", "P1"], "as_of": T,
        "pending_adjudication": [1.0, 1.0, 1.0, 0.0, 0.0], "claim_rejected_open": 0.0, "claim_pended_open": 0.0,
        "pending_appeal": 0.0, "filing_days_left": [200.0, 200.0, 10.0, 50.0, np.nan],
        "days_claim_waiting": [5.0, 90.0, 5.0, np.nan, np.nan], "payer_days_to_pay": 30.0,
    })
    flags = ev.premature_claim_work(scored, feats, filing_margin_days=30)
    # A1: nothing to gain, at the payer, deadline far; A3: its filing deadline is near; A2: the payer lost it;
    # D1: a call about a denial is useless but not "at the payer"
    assert flags.tolist() == [True, False, False, False, False]
    effects = {"adjudication_shape": 3, "default_days_to_pay": 30, "overdue_quantile": 0.95, "filing_margin_days": 30}
    assert ev._claim_clock(scored, feats, effects)[0].tolist()[:3] == [True, True, False]


def test_obvious_action_from_what_the_office_sees():
    zero = dict(in_bankruptcy=0.0, fa_pending=0.0, plan_in_good_standing=0.0, open_denial=0.0, pending_appeal=0.0,
                appeal_deadline_days_left=np.nan, claim_rejected_open=0.0, claim_pended_open=0.0,
                pending_adjudication=0.0, balance_insurance=0.0, balance_patient=0.0, n_claims=1.0)
    cases = [
        (dict(in_bankruptcy=1.0, balance_patient=50.0), None),
        (dict(open_denial=1.0, appeal_deadline_days_left=-3.0, balance_insurance=100.0), None),  # window closed
        (dict(open_denial=1.0, appeal_deadline_days_left=20.0, balance_insurance=100.0), "appeal"),
        (dict(open_denial=1.0, pending_appeal=1.0, balance_insurance=100.0), "status_call"),  # in review
        (dict(claim_rejected_open=1.0, balance_insurance=100.0), "resubmit"),
        (dict(claim_pended_open=1.0, pending_adjudication=1.0, balance_insurance=100.0), "send_information"),
        (dict(pending_adjudication=1.0, balance_insurance=100.0), "status_call"),
        (dict(balance_insurance=100.0, n_claims=0.0), None),  # unbilled
        (dict(balance_patient=80.0), "patient_call"),
    ]
    acc = pd.DataFrame([{**zero, **c} for c, _ in cases])
    assert ev.obvious_actions(acc).tolist() == [want for _, want in cases]


def test_reports_saved_together_keep_every_metric(tmp_path):
    a, b = ev.Report(metrics={"roc_auc": 0.8}), ev.Report(metrics={"lift_captured_at_20": 10.0},
                                                          notes={"offpolicy": "why not"})
    ev.save_reports([a, b], tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"lift_captured_at_20": 10.0, "roc_auc": 0.8}
    assert json.loads((tmp_path / "notes.json").read_text()) == {"offpolicy": "why not"}


def test_lift_curve_figure():
    from tests.code.test_plots import check_figure

    actions, guarantors = _truth()
    lists = {"oracle": ev.oracle_worklist(actions, guarantors),
             "lift": _worklist([("P1", "statement"), ("D1", "appeal"), ("A2", "status_call")]),
             "random": _worklist([("A1", "status_call"), ("P3", "call"), ("A2", "status_call")])}
    scored = {n: ev.score_suggestions(wl, actions, guarantors, CFG_MINUTES) for n, wl in lists.items()}
    day = int(ev._day_key(pd.Series([T]))[0])
    check_figure(ev.plot_lift_curve(ev.lift_curve(scored, {day: 100.0})), "lift_qini")


@pytest.mark.parametrize("action", ["dispute_underpayment", "idle"])
def test_work_the_truth_has_no_row_for_adds_nothing(action):
    actions, guarantors = _truth()
    out = ev.score_suggestions(_worklist([("A1", action)]), actions, guarantors, CFG_MINUTES)
    assert out["true_lift"].tolist() == [0.0] and not out["feasible"].any()
