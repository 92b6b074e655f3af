"""Behavioural tests of the effect models and the lift (issue 13): direction, invariance, minimum function.

- a status call on a claim in normal adjudication adds about nothing;
- an appeal adds nothing once the appeal deadline has passed;
- more recent contact never raises the lift of another call;
- the effect model recovers a known effect from randomized logs, and keeps the prior where the log
  cannot identify an effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.lift import LIFT_ACTIONS, action_lifts, overdue_after
from serving.ranking import account_denials, load_ranking_config, rank

CFG = load_ranking_config()


def _snapshot(small_model, as_of: str = "2025-05-01"):
    from features.snapshot import snapshot_features

    model, _, ds, _ = small_model
    return snapshot_features(ds, as_of, stats=model.stats_, with_labels=False)


def _lifts(model, acc, den, learned: bool = True):
    from serving.ranking import _dates, _score_denials, column

    dscores = model.score_denials(den)
    dsc = _score_denials(den, column(dscores, "p_overturn"), column(dscores, "expected_recovery"), CFG)
    p = column(model.score_accounts(acc), "p_payment")
    ids, as_of = column(acc, "account_id").astype(object), _dates(acc, "as_of")
    return action_lifts(acc, p, account_denials(ids, as_of, dsc, CFG), CFG["rules"], CFG["effects"],
                        model.effects_ if learned else None)


@pytest.mark.slow
def test_a_status_call_on_a_claim_in_normal_adjudication_adds_about_nothing(small_model):
    model = small_model.model
    acc, den = _snapshot(small_model)
    due = overdue_after(acc["payer_days_to_pay"].to_numpy(float), CFG["effects"])
    normal = ((acc["pending_adjudication"] > 0) & (acc["days_claim_waiting"] < due) & (acc["filing_days_left"] > 90)
              & (acc["claim_rejected_open"] == 0) & (acc["claim_pended_open"] == 0)).to_numpy()
    assert normal.sum() >= 20
    lifts = _lifts(model, acc, den)
    call = lifts.lift[:, LIFT_ACTIONS.index("status_call")]
    assert np.abs(call[normal]).max() == 0.0
    # ... and the worklist does not send anyone to call about them
    wl = rank(model, acc, den, CFG, "m/1", "r", reasons_rows=0).accounts.set_index("account_id")
    assert not wl.loc[acc["account_id"][normal], "next_action"].isin(["status_call", "resubmit"]).any()


@pytest.mark.slow
def test_an_appeal_adds_nothing_after_the_appeal_deadline(small_model):
    model = small_model.model
    acc, den = _snapshot(small_model)
    den = den[den["already_worked"] == 0].reset_index(drop=True)
    assert len(den) >= 5
    inside = den.assign(appeal_deadline_days_left=30.0)
    after = den.assign(appeal_deadline_days_left=-1.0)
    work = [LIFT_ACTIONS.index(a) for a in ("appeal", "correct_and_resubmit")]
    with_denials = acc[acc["account_id"].isin(den["account_id"])].reset_index(drop=True)
    before = _lifts(model, with_denials, inside).lift[:, work].max(axis=1)
    late = _lifts(model, with_denials, after).lift[:, work].max(axis=1)
    assert (before > 0).mean() > 0.5
    assert (late == 0).all()


@pytest.mark.slow
def test_more_recent_contact_never_raises_the_lift_of_another_call(small_model):
    model = small_model.model
    acc, den = _snapshot(small_model)
    patients = acc[(acc["balance_patient"] > 50) & (acc["balance_insurance"] <= 0)].head(40).reset_index(drop=True)
    assert len(patients) >= 10
    calls = []
    for days, attempts in ((60.0, 0.0), (20.0, 1.0), (5.0, 3.0), (1.0, 6.0), (0.0, 7.0)):
        variant = patients.assign(days_since_last_contact=days, call_attempts_7d=attempts, call_attempts_30d=attempts)
        j = LIFT_ACTIONS.index("patient_call")
        # the prior, and the same with the learned scale (a scale >= 0 keeps the order; it may be 0 here)
        for learned in (False, True):
            out = _lifts(model, variant, den.iloc[:0], learned)
            calls.append(np.where(out.feasible[:, j], out.lift[:, j], 0.0))
    calls = np.array(calls).reshape(5, 2, -1).transpose(1, 0, 2)[0], np.array(calls).reshape(5, 2, -1)[:, 1]
    assert (np.diff(calls[1], axis=0) <= 1e-9).all()
    calls = calls[0]
    assert (np.diff(calls, axis=0) <= 1e-9).all()
    assert (calls[-1] == 0).all() and (calls[0] > 0).any()  # past the call limit: no call at all


@pytest.mark.slow
def test_the_trained_model_reports_every_action_and_keeps_the_prior_where_unidentified(small_model):
    model = small_model.model
    table = model.effects_.table()
    assert list(table["action"]) == list(LIFT_ACTIONS)
    unidentified = table[~table["identified"]]
    assert (unidentified["scale"] == 1.0).all() and unidentified["why"].str.len().gt(0).all()
    acc, den = _snapshot(small_model)
    wl = rank(model, acc, den, CFG, "m/1", "r", reasons_rows=0).accounts
    worked = wl[wl["expected_lift"] > 0]
    learned = set(table.loc[table["identified"], "action"])
    assert set(worked["effect_source"]) <= {"learned", "prior"}
    assert (worked["effect_source"] == np.where(worked["best_action"].isin(learned), "learned", "prior")).all()


def test_the_effect_model_recovers_a_known_effect_from_randomized_logs():
    """Minimum function: accounts whose dollars are base(x) + 0.4 x prior lift when a call is made, calls
    made at random with a logged probability: the learned scale is 0.4 within its error, and an action
    nobody varied keeps its prior."""
    from training.effects import EffectModel
    from training.model import FeatureEncoder
    from training.settings import load_settings

    rng = np.random.default_rng(3)
    n = 40_000
    x = rng.uniform(0, 1, n)
    prior = 200 * x  # the prior lift of a call
    days = rng.integers(0, 60, n)
    snaps = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)],
                          "as_of": pd.Timestamp("2025-01-01") + pd.to_timedelta(days, unit="D"), "x": x})
    p = np.where(x > 0.5, 0.3, 0.1)  # the office calls larger balances more often: confounded, but logged
    called = rng.uniform(0, 1, n) < p
    base = 100 * x + 50
    snaps["label_recovered"] = rng.gamma(4.0, (base + 0.4 * prior * called) / 4.0)
    work = pd.DataFrame({"account_id": snaps["account_id"][called], "worked_date": snaps["as_of"][called]
                         + pd.Timedelta(days=1), "action": "patient_call", "propensity": p[called]})
    valid = snaps.sample(5000, random_state=1)
    lifts = np.zeros((n, 2))
    lifts[:, 0] = prior
    lifts[:, 1] = 50.0  # a statement: the office never sent one
    encoder = FeatureEncoder(["x"], []).fit(snaps)
    settings = load_settings().effects
    fitted = EffectModel(settings, seed=0).fit(snaps, valid, work, lifts, ("patient_call", "statement"), encoder)
    call, statement = fitted.effects_["patient_call"], fitted.effects_["statement"]
    assert call.identified and call.n_treated == int(called.sum())
    assert abs(call.scale - 0.4) < 3 * call.stderr + 0.05
    assert not statement.identified and statement.scale == 1.0
    adjusted, source = fitted.adjust(None, lifts, np.ones_like(lifts, dtype=bool), ("patient_call", "statement"))
    assert np.allclose(adjusted[:, 0], prior * call.scale) and np.allclose(adjusted[:, 1], 50.0)
    assert source == {"patient_call": "learned", "statement": "prior"}
