"""Ranking rules: code tests on small inline frames, each rule alone (with a real model: tests/model/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.ranking import exploration_draw, load_ranking_config, rank

AS_OF = pd.Timestamp("2025-06-01")


class FixedScores:
    """A stand-in for the model bundle that returns given scores, so each rule can be tested alone."""

    account_features_ = ["balance"]

    def __init__(self, p, er, p_overturn=None):
        self.p, self.er, self.po = np.asarray(p, float), np.asarray(er, float), p_overturn

    def score_accounts(self, df):
        return pd.DataFrame({"p_payment": self.p[: len(df)], "expected_recovery": self.er[: len(df)]}, index=df.index)

    def score_denials(self, df):
        p = np.full(len(df), self.po if self.po is not None else 0.5)
        return pd.DataFrame({"p_overturn": p, "expected_recovery": p * df["billed"].to_numpy() * 0.5}, index=df.index)

    def account_contributions(self, df, max_trees=None):
        return np.c_[df["balance"].to_numpy(float) / 1000.0, np.zeros(len(df))]


def accounts(n=6, **cols) -> pd.DataFrame:
    base = {
        "account_id": [f"A{i:03d}" for i in range(n)], "as_of": AS_OF, "balance": 1000.0,
        "balance_patient": 1000.0, "balance_insurance": 0.0, "pending_adjudication": 0.0,
        "days_since_first_statement": 40.0, "statements_30d": 1.0, "call_attempts_7d": 0.0,
        "in_bankruptcy": 0.0, "fa_pending": 0.0, "plan_in_good_standing": 0.0,
        "timely_filing_days_left": np.nan, "appeal_deadline_days_left": np.nan,
    }
    df = pd.DataFrame({k: v if not np.isscalar(v) and not isinstance(v, pd.Timestamp) else [v] * n
                       for k, v in base.items()})
    for k, v in cols.items():
        df[k] = v
    return df


def cfg(**over):
    """The order by expected net recovery per minute (these tests are its rules; the lift order's are below)."""
    c = load_ranking_config()
    c["exploration_share"] = 0.0
    c["priority"] = "net_per_minute"
    c.update(over)
    return c


def test_higher_expected_net_ranks_first_and_ties_break_by_id():
    acc = accounts(4)
    model = FixedScores([0.5] * 4, [100, 300, 300, 50])
    out = rank(model, acc, None, cfg(), "m/1", "r").accounts
    assert out["account_id"].tolist() == ["A001", "A002", "A000", "A003"]
    assert out["rank"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize("flag,why", [("in_bankruptcy", "bankruptcy"), ("fa_pending", "financial assistance pending"),
                                      ("plan_in_good_standing", "payment plan in good standing")])
def test_protected_accounts_are_held_last_and_never_sent_to_agency(flag, why):
    acc = accounts(3, days_since_first_statement=400.0)
    acc.loc[0, flag] = 1.0
    model = FixedScores([0.01] * 3, [5000, 10, 10])  # the held account has the biggest score
    out = rank(model, acc, None, cfg(), "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A000", "next_action"] == "hold" and out.loc["A000", "hold_reason"] == why
    assert out.loc["A000", "rank"] == 3 and np.isnan(out.loc["A000", "priority"])
    assert (out.drop("A000")["next_action"] == "send_to_agency").all()


def test_agency_waits_120_days_after_the_first_statement():
    acc = accounts(3, days_since_first_statement=[100.0, 119.0, 121.0])
    model = FixedScores([0.01] * 3, [20, 20, 20])
    out = rank(model, acc, None, cfg(), "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A002", "next_action"] == "send_to_agency"
    assert (out.loc[["A000", "A001"], "next_action"] != "send_to_agency").all()
    longer = rank(model, acc, None, cfg(rules={**cfg()["rules"], "agency_wait_days": 150}), "m/1", "r").accounts
    assert (longer["next_action"] != "send_to_agency").all()


def test_no_call_after_seven_attempts_in_seven_days():
    acc = accounts(2, balance_patient=0.0, balance_insurance=1000.0, call_attempts_7d=[6.0, 7.0])
    out = rank(FixedScores([0.5] * 2, [400, 400]), acc, None, cfg(), "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A000", "next_action"] == "call"
    assert out.loc["A001", "next_action"] != "call"


def test_open_denial_worth_more_per_minute_takes_the_next_action():
    acc = accounts(2, balance_patient=0.0, balance_insurance=20_000.0)
    den = pd.DataFrame({"claim_id": ["C1", "C2"], "account_id": ["A000", "A001"], "as_of": AS_OF,
                        "carc": ["16", "50"], "carc_group": ["missing_info", "medical_necessity"],
                        "billed": [40_000.0, 400.0], "appeal_deadline_days_left": [30.0, 30.0]})
    out = rank(FixedScores([0.5] * 2, [50, 50], p_overturn=0.8), acc, den, cfg(), "m/1", "r")
    a = out.accounts.set_index("account_id")
    assert a.loc["A000", "next_action"] == "correct_and_resubmit"
    assert a.loc["A001", "next_action"] == "call"  # 0.8 × $200 over 45 minutes loses to the call
    # the account's own expected recovery is not inflated by the denial (no double counting)
    assert a.loc["A000", "expected_recovery"] == 50
    d = out.denials.set_index("claim_id")
    assert d.loc["C1", "rank"] == 1 and d.loc["C2", "next_action"] == "appeal"
    assert d.loc["C1", "appeal_deadline"] == AS_OF + pd.Timedelta(days=30)


def test_close_deadline_is_urgent():
    acc = accounts(2, balance_patient=0.0, balance_insurance=1000.0, pending_adjudication=1.0,
                   timely_filing_days_left=[5.0, 60.0])
    out = rank(FixedScores([0.5] * 2, [300, 400]), acc, None, cfg(), "m/1", "r").accounts
    assert out["account_id"].tolist() == ["A000", "A001"]


def test_capacity_cuts_greedily_by_priority():
    acc = accounts(10, balance_patient=0.0, balance_insurance=1000.0)  # every action is an 8-minute call
    model = FixedScores([0.5] * 10, np.arange(10, 0, -1) * 100.0)
    out = rank(model, acc, None, cfg(), "m/1", "r", capacity_minutes=30).accounts
    assert out["action_minutes"].sum() <= 30 and len(out) == 3
    assert out["account_id"].tolist() == ["A000", "A001", "A002"]


def test_exploration_is_a_seeded_hash_independent_of_partitioning():
    ids = pd.Series([f"A{i:06d}" for i in range(20_000)])
    dates = pd.Series([AS_OF] * len(ids))
    u = exploration_draw(ids, dates, 0)
    assert 0.015 < (u < 0.02).mean() < 0.025
    part = exploration_draw(ids.iloc[::-1].reset_index(drop=True), dates, 0)
    np.testing.assert_array_equal(u[::-1], part)
    assert not np.array_equal(u, exploration_draw(ids, dates + pd.Timedelta(days=1), 0))
    acc = accounts(200)
    out = rank(FixedScores([0.5] * 200, np.linspace(10, 1000, 200)), acc, None, cfg(exploration_share=0.1),
               "m/1", "r").accounts
    marked = out.loc[out["is_exploration"], "account_id"]
    expected = acc.loc[exploration_draw(acc["account_id"], acc["as_of"], 0) < 0.1, "account_id"]
    assert sorted(marked) == sorted(expected) and len(marked) > 5


def test_reasons_for_the_top_rows_only():
    acc = accounts(5, balance=[100.0, 200.0, 300.0, 400.0, 500.0])
    out = rank(FixedScores([0.5] * 5, [5, 4, 3, 2, 1]), acc, None, cfg(), "m/1", "r", reasons_rows=2).accounts
    # the action's sentence, then the one contributing feature in the office's words
    assert [len(r) for r in out["reasons"]] == [2, 2, 0, 0, 0]
    first = out["reasons"].iloc[0]
    assert out["next_action"].iloc[0] == "call"  # $5 expected against 8 minutes of work
    assert first[0] == "call about the open balance: expected to bring less than the work costs"
    assert first[1] == "balance of $100"


def test_no_open_accounts_and_no_denials_give_empty_lists():
    empty = accounts(0)
    out = rank(FixedScores([], []), empty, None, cfg(), "m/1", "r")
    assert len(out.accounts) == 0 and len(out.denials) == 0
    one = rank(FixedScores([0.5], [100.0]), accounts(1), pd.DataFrame(), cfg(), "m/1", "r").accounts
    assert one["rank"].tolist() == [1]


# ----------------------------------------------------------------------------- the lift order (DESIGN.md)


def lift_cfg(**over):
    c = load_ranking_config()
    assert c["priority"] == "lift"  # the default
    c["exploration_share"] = 0.0
    c.update(over)
    return c


def insured(n: int, **cols) -> pd.DataFrame:
    """Accounts with a claim at a payer that pays in 20 days on average."""
    base = accounts(n, balance_patient=0.0, balance_insurance=1000.0, pending_adjudication=1.0,
                    payer_paid_to_billed=0.6, payer_denial_rate=0.1, payer_days_to_pay=20.0, days_claim_waiting=10.0,
                    claim_rejected_open=0.0, claim_pended_open=0.0, filing_days_left=300.0, open_denial=0.0,
                    days_since_status_call=np.nan, days_since_last_contact=np.nan, guarantor_id=None)
    for k, v in cols.items():
        base[k] = v
    return base


def test_a_claim_in_normal_adjudication_waits_until_its_follow_up_date_and_an_overdue_one_is_called():
    from serving.lift import overdue_after

    acc = insured(3, days_claim_waiting=[10.0, 90.0, 5.0], claim_pended_open=[0.0, 0.0, 1.0])
    out = rank(FixedScores([0.9] * 3, [500] * 3), acc, None, lift_cfg(), "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A002", "next_action"] == "send_information" and out.loc["A000", "rank"] == 3
    assert out.loc["A001", "next_action"] == "status_call" and out.loc["A001", "expected_lift"] > 0
    waiting = out.loc["A000"]
    assert waiting["next_action"] == "wait" and waiting["expected_lift"] == 0 and waiting["priority"] < 0
    due = float(overdue_after(np.array([20.0]), load_ranking_config()["effects"])[0])
    assert waiting["follow_up_date"] == AS_OF + pd.Timedelta(days=int(np.ceil(due - 10)))
    assert pd.isna(out.loc["A001", "follow_up_date"])
    # a capacity cut never spends minutes on a wait
    cut = rank(FixedScores([0.9] * 3, [500] * 3), acc, None, lift_cfg(), "m/1", "r", capacity_minutes=600).accounts
    assert sorted(cut["account_id"]) == ["A001", "A002"]


def test_one_contact_covers_a_guarantor_and_its_minutes_are_counted_once():
    acc = insured(3, balance_insurance=0.0, balance_patient=[300.0, 200.0, 250.0], pending_adjudication=0.0,
                  guarantor_id=["G1", "G1", "G2"])
    out = rank(FixedScores([0.2] * 3, [50] * 3), acc, None, lift_cfg(), "m/1", "r").accounts.set_index("account_id")
    g1 = out.loc[["A000", "A001"]]
    # the person gets one contact, on their first account; the other account is covered by it
    assert g1.loc["A000", "next_action"] in ("statement", "patient_call", "payment_plan_offer")
    assert g1.loc["A001", "next_action"] == "covered" and g1.loc["A001", "best_action"] == g1.loc["A000", "next_action"]
    assert g1["priority"].nunique() == 1 and g1.loc["A000", "priority"] > out.loc["A002", "priority"]
    assert g1.loc["A000", "action_minutes"] > 0 and g1.loc["A001", "action_minutes"] == 0
    assert (out["guarantor_id"].to_numpy() == np.array(["G1", "G1", "G2"], dtype=object)).all()
    assert list(out["guarantor_rank"]) == [1, 1, 2] and list(out["rank"]) == [1, 2, 3]
    assert "covered by the" in out.loc["A001", "reasons"][0]
    # each row's lift is its own balance's share: the guarantor's total is counted once
    assert g1.loc["A000", "expected_lift"] > g1.loc["A001", "expected_lift"] > 0


def test_a_capacity_cut_lists_each_person_once_and_a_covered_row_only_with_its_contact():
    n = 40
    rng = np.random.default_rng(3)
    guarantors = [f"G{i}" for i in rng.integers(0, 12, n)]
    acc = insured(n, balance_insurance=0.0, balance_patient=list(rng.uniform(50, 900, n).round(2)),
                  pending_adjudication=0.0, guarantor_id=guarantors)
    cfg = lift_cfg()
    cfg["exploration_share"] = 0.2  # exploration moves rows around: a contact's rows must still stay together
    model = FixedScores(list(rng.uniform(0.05, 0.4, n)), list(rng.uniform(20, 200, n)))
    full = rank(model, acc, None, cfg, "m/1", "r").accounts
    for minutes in (15, 45, 120):
        cut = rank(model, acc, None, cfg, "m/1", "r", capacity_minutes=minutes).accounts
        person = cut[cut["next_action"].isin(["statement", "patient_call", "payment_plan_offer"])]
        assert not person["guarantor_id"].duplicated().any(), minutes
        covered = cut[cut["next_action"] == "covered"]
        assert covered["guarantor_id"].isin(person["guarantor_id"]).all(), minutes
        assert cut["action_minutes"].sum() <= minutes
    # in the full list a person's rows are adjacent, the contact first
    for _, rows in full[full["next_action"].isin(["statement", "patient_call", "payment_plan_offer", "covered"])
                        ].groupby("guarantor_id"):
        ranks = rows.sort_values("rank")
        assert (np.diff(ranks["rank"]) == 1).all() and ranks["next_action"].iloc[0] != "covered"
        assert ranks["guarantor_rank"].nunique() == 1


def test_the_call_limit_counts_the_guarantors_attempts_across_accounts():
    # one attempt on each account, but seven to the person across their other accounts
    acc = insured(2, balance_insurance=0.0, balance_patient=[400.0, 400.0], pending_adjudication=0.0,
                  guarantor_id=["G1", "G2"], call_attempts_7d=[1.0, 1.0], guarantor_call_attempts_7d=[7.0, 1.0])
    for priority in ("lift", "net_per_minute"):
        cfg = lift_cfg(priority=priority)
        cfg["actions"] = {**cfg["actions"], "statement": {**cfg["actions"]["statement"], "minutes": 500.0}}
        free = rank(FixedScores([0.2] * 2, [300] * 2), acc.assign(guarantor_call_attempts_7d=1.0), None, cfg, "m/1",
                    "r").accounts.set_index("account_id")
        assert free.loc["A000", "next_action"] in ("patient_call", "call"), priority  # a call, while the limit allows
        out = rank(FixedScores([0.2] * 2, [300] * 2), acc, None, cfg, "m/1", "r").accounts.set_index("account_id")
        assert out.loc["A000", "next_action"] not in ("patient_call", "call"), priority
        assert out.loc["A001", "next_action"] == free.loc["A001", "next_action"], priority


def test_held_accounts_are_not_worked_under_the_lift_order_either():
    acc = insured(2, balance_insurance=0.0, balance_patient=500.0, pending_adjudication=0.0,
                  in_bankruptcy=[1.0, 0.0])
    out = rank(FixedScores([0.2] * 2, [50] * 2), acc, None, lift_cfg(), "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A000", "next_action"] == "hold" and out.loc["A000", "hold_reason"] == "bankruptcy"
    assert out.loc["A000", "rank"] == 2 and out.loc["A001", "next_action"] != "hold"
    assert set(out["propensity"]) == {1.0}


def test_work_below_the_collectors_cost_is_listed_after_worthwhile_work_and_never_cut_in():
    # a patient balance (its contact adds dollars) and a claim inside its payer's normal time (nothing to add)
    acc = insured(3, balance_insurance=[0.0, 1000.0, 0.0], balance_patient=[400.0, 0.0, 400.0],
                  pending_adjudication=[0.0, 1.0, 0.0], days_claim_waiting=[np.nan, 5.0, np.nan],
                  guarantor_id=["G1", "G2", "G3"])
    model = FixedScores([0.2] * 3, [100] * 3)
    dear = lift_cfg(cost_per_minute=500.0)  # a collector's minute costs more than any of this work brings
    out = rank(model, acc, None, dear, "m/1", "r").accounts.set_index("account_id")
    assert out.loc["A000", "next_action"] in ("statement", "patient_call", "payment_plan_offer")
    assert out.loc["A000", "priority"] < 0 and out.loc["A000", "expected_lift"] > 0
    assert pd.isna(out.loc["A000", "follow_up_date"])
    assert out.loc["A001", "next_action"] == "wait" and out.loc["A001", "rank"] == 3  # adds nothing: waits, last
    assert rank(model, acc, None, dear, "m/1", "r", capacity_minutes=10_000).accounts.empty  # never cut in
    cheap = rank(model, acc, None, lift_cfg(), "m/1", "r").accounts.set_index("account_id")
    assert cheap.loc["A000", "priority"] > 0  # at the usual cost the same work is worthwhile
    off = lift_cfg(cost_per_minute=500.0, below_cost_work={"enabled": False})
    assert set(rank(model, acc, None, off, "m/1", "r").accounts["next_action"]) == {"wait"}


def test_reasons_go_to_the_rows_within_the_given_minutes_of_work():
    n = 12
    acc = insured(n, balance_insurance=0.0, balance_patient=list(np.linspace(200, 900, n)), pending_adjudication=0.0,
                  guarantor_id=[f"G{i}" for i in range(n)])
    model = FixedScores([0.3] * n, [200] * n)
    full = rank(model, acc, None, lift_cfg(), "m/1", "r").accounts.sort_values("rank")
    spent = full["action_minutes"].cumsum()
    budget = float(spent.iloc[4])  # the first five rows' work
    part = rank(model, acc, None, lift_cfg(), "m/1", "r", reasons_minutes=budget).accounts.sort_values("rank")
    explained = part["reasons"].map(len) > 0
    assert (explained.to_numpy() == (spent <= budget + 1e-9).to_numpy()).all() and explained.sum() == 5
    # the same order and figures: only who is explained changes
    pd.testing.assert_frame_equal(part.drop(columns="reasons"), full.drop(columns="reasons"))
    both = rank(model, acc, None, lift_cfg(), "m/1", "r", reasons_rows=3, reasons_minutes=budget).accounts
    assert (both["reasons"].map(len) > 0).sum() == 3
