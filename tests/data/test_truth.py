"""The simulator's per-action truth is exact: forcing an action on many copies of the same accounts
gives, per decile, what the truth says; work where the mechanism has no effect changes it by exactly
0; the office's logged propensities are the probabilities it draws with; guarantors share their
latent behaviour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.sources import chain as ch
from features.sources import engine as en
from features.sources import latent, truth
from features.sources.office import office_probabilities

H = 30
COPIES = 150


@pytest.fixture(scope="module")
def office(small_office):
    cfg, P, mem, _, office_cfg = latent.read_office(small_office)
    t = (pd.Timestamp(cfg["end"]) - pd.Timestamp(cfg["start"])).days
    return P, mem, t, office_cfg


def _dollars(P, mem, t: int, seed: int, ix=None, action=None) -> tuple[np.ndarray, np.ndarray]:
    """Dollars paid and whether anything was, per account, on days t+1..t+H (the action, if any, on
    the morning of t+1; nothing else done)."""
    mem = mem.take()
    rec = en.Recorder()
    for d in range(t + 1, t + H + 1):
        en.note_forfeits(P, mem, d, rec)
        if d == t + 1 and action is not None:
            en.do_work(P, mem, d, seed, rec, ix, np.full(len(ix), action), np.ones(len(ix)), np.zeros(len(ix), int))
        en.natural_step(P, mem, d, seed, rec)
    ev, _ = rec.frames()
    pay = ev[ev["kind"].isin(ch.PAYMENT_EVENTS)]
    dollars = np.bincount(pay["acct"].to_numpy(dtype=np.int64), pay["amount"].to_numpy(), minlength=P["n"])
    paid = np.bincount(pay["acct"].to_numpy(dtype=np.int64), minlength=P["n"]) > 0
    return dollars, paid.astype(float)


@pytest.mark.slow
@pytest.mark.parametrize("action", [ch.STATUS_CALL, ch.RESUBMIT, ch.SEND_INFORMATION, ch.APPEAL, ch.CORRECT,
                                    ch.PATIENT_CALL, ch.STATEMENT, ch.PLAN_OFFER, ch.WRITE_OFF])
def test_forced_action_matches_the_truth_per_decile(office, action):
    P, mem, t, _ = office
    _, act = truth.truth_at(P, mem.state, mem.clocks(P), t, H, None)
    rows = act["action"] == action
    ix, expected = act["acct"][rows], act["expected_recovery"][rows]
    lift, p_pay = act["lift"][rows], act["p_payment"][rows]
    assert len(ix) >= 3, "the office has accounts where this action is feasible"
    # every copy of an account gets its own random streams; forced and idle runs share them
    RP, rmem = en.replicate(P, mem, COPIES)
    n = P["n"]
    rix = (np.arange(COPIES)[:, None] * n + ix[None, :]).ravel()
    forced, forced_paid = _dollars(RP, rmem, t, seed=17, ix=rix, action=action)
    idle, _ = _dollars(RP, rmem, t, seed=17)
    forced, forced_paid = forced[rix].reshape(COPIES, -1), forced_paid[rix].reshape(COPIES, -1)
    diff = forced - idle[rix].reshape(COPIES, -1)
    bins = np.array_split(np.argsort(expected, kind="stable"), min(10, len(ix)))
    for b in bins:
        for sim, want in ((forced, expected), (diff, lift), (forced_paid, p_pay)):
            got = sim[:, b].mean(axis=0).sum()
            # sampling error; an account whose copies all came out alike still has an outcome of
            # probability < 1/COPIES it may not have shown (so at least want^2 / COPIES of variance)
            var = np.maximum(sim[:, b].var(axis=0, ddof=1), want[b] ** 2 / COPIES)
            if sim is forced_paid:
                var = p_pay[b] * (1 - p_pay[b])  # the binomial variance the truth implies
            se = np.sqrt(var.sum() / COPIES)
            assert abs(got - want[b].sum()) <= 4 * se + 1e-6 * max(1.0, abs(want[b].sum())), (
                ch.ACTIONS[action], got, want[b].sum(), se)


def test_work_where_the_mechanism_has_none_changes_the_truth_by_exactly_zero(office):
    P, mem, t, _ = office
    _, act = truth.truth_at(P, mem.state, mem.clocks(P), t, H, None)
    state = mem.state[act["acct"]]
    status = act["action"] == ch.STATUS_CALL
    in_adjudication = np.isin(state, (ch.INS_1, ch.INS_2, ch.INS_3, ch.PEND_INFO, ch.APPEAL_1, ch.APPEAL_2,
                                       ch.CORR_1, ch.CORR_2, ch.SEC_1, ch.SEC_2))
    assert (status & in_adjudication).sum() > 50
    assert np.all(act["lift"][status & in_adjudication] == 0.0)
    # a lost claim is found and paid only because someone called (inside the filing limit; one that
    # will pend again after its resubmission is not paid within H)
    lost = status & (state == ch.LOST) & (t + 1 <= P["tf_day"][act["acct"]])
    assert lost.any() and np.all(act["lift"][lost] >= 0) and np.mean(act["lift"][lost] > 0) > 0.5
    # an appeal after the window, or a call to a person already at the top of engagement: exactly 0
    clk = mem.clocks(P)
    late = (act["action"] == ch.APPEAL) & (t + 1 > clk["appeal_deadline"][act["acct"]])
    assert np.all(act["lift"][late] == 0.0)
    top = (act["action"] == ch.PATIENT_CALL) & np.isin(state, [ch.pat(k, 2) for k in (1, 2, 3, 4)])
    assert np.all(act["lift"][top] == 0.0)


def test_truth_tables_agree_with_each_other(small_office):
    folder = small_office / "_truth"
    acc = pd.read_parquet(folder / "accounts.parquet")
    act = pd.read_parquet(folder / "actions.parquet")
    assert {"p_payment", "expected_recovery", "p_payment_if_idle", "expected_if_idle", "guarantor_id"} <= set(acc)
    assert list(act.columns) == ["account_id", "as_of", "action", "claim_id", "minutes", "p_payment",
                                 "expected_recovery", "lift"]
    both = act.merge(acc[["account_id", "as_of", "expected_if_idle"]], on=["account_id", "as_of"], how="left")
    assert both["expected_if_idle"].notna().all()
    assert np.allclose(both["expected_recovery"] - both["lift"], both["expected_if_idle"], atol=1e-6)
    assert set(act["action"]) >= {"status_call", "appeal", "correct_and_resubmit", "patient_call", "statement",
                                  "payment_plan_offer", "write_off", "send_to_agency"}
    claim_work = act["action"].isin(["status_call", "resubmit", "appeal", "correct_and_resubmit", "send_information"])
    assert act.loc[claim_work, "claim_id"].notna().all() and act.loc[~claim_work, "claim_id"].isna().all()
    # writing off or placing with an agency never brings money in within H
    assert (act.loc[act["action"].isin(["write_off", "send_to_agency"]), "lift"] <= 1e-9).all()


def test_logged_propensities_are_the_probabilities_the_office_draws_with(office):
    P, mem, t, office_cfg = office
    RP, rmem = en.replicate(P, mem, 400)
    d = t + 1
    clk = rmem.clocks(RP)
    expected = np.zeros(len(ch.ACTIONS))
    for s, rows in en.by_state(rmem.state, en.open_accounts(rmem)):
        ix = en.open_accounts(rmem)[rows]
        for a, p_rule, p_exp in office_probabilities(s, d, RP, ix, clk, office_cfg):
            expected[a] += (p_rule + p_exp).sum()
    rec = en.Recorder()
    en.office_work(RP, rmem, d, 3, rec, office_cfg)
    _, wk = rec.frames()
    counts = np.bincount(wk["action"].to_numpy(dtype=np.int64), minlength=len(ch.ACTIONS))
    for a in np.flatnonzero(expected > 30):
        assert abs(counts[a] - expected[a]) < 4 * np.sqrt(expected[a]), (ch.ACTIONS[a], counts[a], expected[a])
    # each row's propensity is its action's probability for that account, from the rule or the random share
    assert wk["propensity"].between(0, 1).all() and (wk["propensity"] > 0).all()
    assert 0 < wk["is_exploration"].mean() < 0.5


def test_guarantors_share_their_latent_behaviour(small_office, office):
    P = office[0]
    df = pd.DataFrame({"g": P["guarantor_id"], "patient": P["patient_id"], "reach": P["reach"],
                       "accept": P["accept"]})
    per = df.groupby("g").agg(accounts=("patient", "size"), patients=("patient", "nunique"),
                              reach=("reach", "nunique"), accept=("accept", "nunique"))
    assert (per["reach"] == 1).all() and (per["accept"] == 1).all()
    assert (per["accounts"] > 1).mean() > 0.1 and (per["patients"] > 1).any()
    acc = pd.read_parquet(small_office / "accounts.parquet")
    assert acc["guarantor_id"].notna().all()
