"""Reasons a collector can act on (features/reasons.py, serving/ranking.py `_reasons`): every feature that
drives the ranking has a sentence, each action says what it is and what it adds, denials say their CARC's
text, a `wait` says when and why, TreeSHAP picks which features speak, and no sentence prints a raw float."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalogue import CARC_GROUP_NAMES, Horizons, account_feature_names, features_of
from features.contract import CLAIM_STATUSES, ENCOUNTER_TYPES, FINANCIAL_CLASSES
from features.reasons import (
    ACTION_FEATURES,
    ACTION_SENTENCES,
    FEATURE_SENTENCES,
    Values,
    action_sentence,
    carc_text,
    explain,
    reason_keys,
)
from serving.ranking import ACTIONS, load_ranking_config, rank

AS_OF = pd.Timestamp("2025-06-01")
# a raw float ("74070.58", "0.78"), an unformatted big number, or a missing value printed as text
RAW = re.compile(r"\d\.\d|\d{5,}|\b(nan|NaN|inf|None|NaT|<NA>)\b")


def row(**values):
    """One row of `Values` from scalars (features and ranked figures alike)."""
    return Values({k: np.array([v], dtype=object if isinstance(v, str) or v is None else None)
                   for k, v in values.items()}).row(0)


def test_every_feature_the_ranking_reads_has_a_template():
    lift_src = (Path(__file__).resolve().parents[2] / "serving" / "lift.py").read_text()
    read_by_lift = set(re.findall(r'_col\(acc, "(\w+)"', lift_src))
    assert {"claim_pended_open", "filing_days_left", "days_since_last_contact"} <= read_by_lift  # the parse works
    rules = {f.name for f in features_of("account") if f.rule}
    account = set(account_feature_names())
    for name in sorted((read_by_lift | rules) & account):
        assert name in FEATURE_SENTENCES, f"{name}: read by the ranking, no sentence in features/reasons.py"
    assert account <= set(FEATURE_SENTENCES), account - set(FEATURE_SENTENCES)  # the fallback can say any
    for action, names in ACTION_FEATURES.items():
        assert set(names) <= account, (action, set(names) - account)
    for action in ACTIONS:
        assert action in ACTION_SENTENCES and action in ACTION_FEATURES, action


def test_no_sentence_prints_a_raw_float_or_nan():
    rng = np.random.default_rng(0)
    grid = np.array([np.nan, 0.0, 1.0, 2.0, 0.37, 0.004, 0.999, 12.5, 74070.58, -3.7, -0.2, 1.2e7, np.inf])
    texts = {
        "financial_class": [*FINANCIAL_CLASSES, None], "encounter_type": [*ENCOUNTER_TYPES, None],
        "primary_payer_id": ["P01", "self_pay", None], "proc_family": ["em", "surgery", "hcpcs_J", "unknown", None],
        "last_remit_status": [*CLAIM_STATUSES, "none", None],
        "last_denial_carc": ["16", "50", "6", "ZZ9", "none", None],
        "last_denial_group": [*CARC_GROUP_NAMES, "none", None], "hold_reason": ["bankruptcy", None],
    }
    n = 400
    cols: dict = {name: rng.choice(grid, n) for name in account_feature_names() if name not in texts}
    cols |= {name: np.array([v[k] for k in rng.integers(0, len(v), n)], dtype=object) for name, v in texts.items()}
    for name in ("expected_lift", "expected_net", "p_payment", "action_minutes", "is_exploration"):
        cols[name] = rng.choice(grid, n)
    cols["as_of"] = np.full(n, np.datetime64("2025-06-01", "ns"))
    cols["follow_up_date"] = np.where(rng.random(n) < 0.2, np.datetime64("NaT", "ns"),
                                      cols["as_of"] + rng.integers(1, 90, n).astype("timedelta64[D]"))
    values = Values(cols)
    seen = 0
    for i in range(n):
        r = values.row(i)
        for name, t in FEATURE_SENTENCES.items():
            text = t.say(r)
            assert text is None or (text and not RAW.search(text)), (name, text)
            seen += text is not None
        for action in ACTIONS:
            text, _ = action_sentence(r, action)
            assert text and not RAW.search(text), (action, text)
    assert seen > n * 20  # most templates had something to say on most rows


def test_each_action_says_what_the_work_is_and_what_it_adds():
    h = Horizons(60, 120)
    say = {a: action_sentence(row(expected_lift=1847.3, action_minutes=10.0), a, h)[0]
           for a in ("status_call", "resubmit", "send_information", "appeal", "correct_and_resubmit", "statement",
                     "patient_call", "payment_plan_offer")}
    assert say["send_information"] == "send the information the payer asked for: about $1,850 expected within 60 days"
    assert say["status_call"] == ("call the payer about the unanswered claim (it may never have arrived):"
                                  " about $1,850 expected within 60 days")
    assert say["resubmit"] == "fix and resubmit the claim the payer rejected: about $1,850 expected within 60 days"
    # a denial's value is an overturn within the overturn horizon
    assert say["appeal"] == "appeal the denial: about $1,850 expected within 120 days"
    assert say["correct_and_resubmit"].endswith("within 120 days")
    assert say["statement"] == "send the patient a statement: about $1,850 expected within 60 days"
    assert say["patient_call"].startswith("call the patient: about $1,850")
    assert say["payment_plan_offer"].startswith("offer the patient a payment plan: about $1,850")
    # the guarantor's contact is carried by another account: this one rides along
    riding = action_sentence(row(expected_lift=42.0, action_minutes=0.0, best_action="patient_call"), "covered", h)[0]
    assert riding.startswith("covered by the call to the guarantor listed with their first account: one contact") \
        and "$42" in riding
    assert action_sentence(row(expected_lift=0.2), "status_call", h)[0].endswith(": little expected")
    # a status call says why now: the claim is overdue, or the filing clock cannot wait for the payer
    overdue = row(expected_lift=887.0, days_claim_waiting=86.0, payer_days_to_pay=31.0, filing_days_left=12.0)
    assert action_sentence(overdue, "status_call", h) == (
        "call the payer about the unanswered claim (it may never have arrived; 12 days left in the filing limit):"
        " about $887 expected within 60 days", ("filing_days_left",))
    early = row(expected_lift=323.0, days_claim_waiting=5.0, payer_days_to_pay=26.0, filing_days_left=70.0)
    assert action_sentence(early, "status_call", h)[0].startswith(
        "call the payer about the unanswered claim now (70 days left in the filing limit: too few to wait out the"
        " payer's normal time and still refile if the claim never arrived): about $323")
    # the orders before the lift: no lift, the expected net
    assert "about $310 expected within 60 days, net of the work" in action_sentence(
        row(expected_lift=np.nan, expected_net=310.4), "call", h)[0]
    assert action_sentence(row(expected_lift=np.nan, expected_net=-3.0), "call", h)[0] == (
        "call about the open balance: expected to bring less than the work costs")
    held, covers = action_sentence(row(hold_reason="bankruptcy", in_bankruptcy=1.0), "hold", h)
    assert held == "on hold, not worked for collection: bankruptcy" and "in_bankruptcy" in covers
    assert action_sentence(row(expected_lift=90.0, is_exploration=1.0), "statement", h)[0].endswith(
        "; picked at random this time, so the office learns what the work adds")


def test_denial_sentences_say_the_carcs_text_the_days_left_and_what_this_payer_overturns():
    r = row(last_denial_carc="16", appeal_deadline_days_left=23.0, payer_group_overturn_rate=0.78,
            last_denial_group="missing_info", open_denied_amount=4210.0)
    assert FEATURE_SENTENCES["last_denial_carc"].say(r) == (
        "denied with CARC 16 (Claim/service lacks information or has submission/billing error(s) which is needed"
        " for adjudication), 23 days left to appeal")
    assert FEATURE_SENTENCES["last_denial_carc"].needs == ("appeal_deadline_days_left",)
    assert FEATURE_SENTENCES["payer_group_overturn_rate"].say(r) == (
        "this payer overturned 78% of worked missing information denials")
    assert FEATURE_SENTENCES["open_denied_amount"].say(r) == "$4,210 denied and still open"
    late = row(last_denial_carc="197", appeal_deadline_days_left=-4.0)
    assert FEATURE_SENTENCES["last_denial_carc"].say(late) == (
        "denied with CARC 197 (Precertification/authorization/notification absent),"
        " the appeal window closed 4 days ago")
    # the reference list's text, its first sentence, with the source's " for an apostrophe mended
    assert carc_text("6") == "The procedure/revenue code is inconsistent with the patient's age"
    assert carc_text("50") == (
        'These are non-covered services because this is not deemed a "medical necessity" by the payer')
    assert carc_text("ZZ9") is None
    assert FEATURE_SENTENCES["last_denial_carc"].say(row(last_denial_carc="ZZ9")) == "denied with CARC ZZ9"
    assert FEATURE_SENTENCES["last_denial_carc"].say(row(last_denial_carc="none")) is None


def test_claim_and_patient_sentences_in_the_offices_words():
    s = {k: t.say for k, t in FEATURE_SENTENCES.items()}
    assert s["days_claim_waiting"](row(days_claim_waiting=41.0, payer_days_to_pay=19.2)) == (
        "no response from the payer 41 days after submission (this payer answers in 19 on average)")
    assert s["claim_pended_open"](row(claim_pended_open=1.0, days_pended=12.0)) == (
        "the payer pended the claim 12 days ago waiting for information")
    rejected = row(claim_rejected_open=1.0, days_since_rejection=5.0, filing_days_left=140.0)
    assert s["days_since_rejection"](rejected) == (
        "rejected at the payer's front door 5 days ago and not resubmitted; 140 days left to file")
    assert s["claim_rejected_open"](row(claim_rejected_open=0.0, days_since_rejection=np.nan)) is None
    assert s["balance_patient"](row(balance_patient=419.62, days_since_last_contact=45.0)) == (
        "patient owes $420; no statement or contact in 45 days")
    assert s["n_patient_payments"](row(n_patient_payments=2.0)) == (
        "two payments from the patient on this account so far")
    assert s["days_since_last_contact"](row(days_since_last_contact=np.nan)) == "no statement or contact yet"
    assert s["status_calls_30d"](row(status_calls_30d=1.0, days_since_status_call=9.0)) == (
        "one status call to the payer in the last 30 days, the latest 9 days ago")
    assert s["filing_days_left"](row(filing_days_left=-3.0)) == "the payer's filing limit passed 3 days ago"
    assert s["balance"](row(balance=74070.58)) == "balance of $74,071"
    assert s["in_bankruptcy"](row(in_bankruptcy=0.0)) is None


def test_wait_says_until_when_and_why():
    as_of, follow = np.datetime64("2025-06-01", "ns"), np.datetime64("2025-06-20", "ns")
    r = row(as_of=as_of, follow_up_date=follow, pending_adjudication=1.0, days_claim_waiting=12.0,
            payer_days_to_pay=19.0, claim_rejected_open=0.0, claim_pended_open=0.0)
    text, covers = action_sentence(r, "wait")
    assert text == ("nothing to do until 2025-06-20: the payer's normal time to pay has not run out (waiting 12 days;"
                    " this payer answers in 19 on average)")
    assert {"days_claim_waiting", "payer_days_to_pay"} <= set(covers)
    contacted = row(as_of=as_of, follow_up_date=follow, balance_patient=80.0, days_since_last_contact=9.0)
    assert action_sentence(contacted, "wait")[0] == (
        "nothing to do until 2025-06-20: the patient was contacted 9 days ago; another contact this soon adds little")
    appealed = row(as_of=as_of, follow_up_date=follow, pending_appeal=1.0)
    assert action_sentence(appealed, "wait")[0].endswith(": an appeal is waiting for the payer's decision")
    assert action_sentence(row(follow_up_date=None), "wait")[0] == (
        "nothing to do now: no work is expected to add more than it costs")
    # a wait speaks with the features of what it waits on
    on = Values({"pending_adjudication": np.array([1.0, 0, 0, 0, 0]), "open_denial": np.array([0, 1.0, 0, 0, 0]),
                 "balance_patient": np.array([50.0, 50, 50, 0, 50])})
    keys = reason_keys(np.array(["wait", "wait", "wait", "wait", "statement"], dtype=object), on)
    assert keys.tolist() == ["wait:claim", "wait:denial", "wait:patient", "wait", "statement"]


def test_explain_takes_relevant_features_strongest_first_and_falls_back_to_the_overall_top():
    r = row(expected_lift=900.0, claim_pended_open=1.0, days_pended=12.0, filing_days_left=140.0, balance=5000.0,
            patient_age=71.0)
    # days_pended's sentence also says claim_pended_open: it is not said twice
    got = explain(r, "send_information", ["days_pended", "claim_pended_open", "filing_days_left"], ["balance"], 3)
    assert got == ["send the information the payer asked for: about $900 expected within 60 days",
                   "the payer pended the claim 12 days ago waiting for information",
                   "140 days left in the payer's filing limit"]
    assert len(explain(r, "send_information", ["days_pended"], [], 1)) == 1
    # nothing relevant has anything to say: the overall top contributions speak
    quiet = explain(r, "send_information", ["open_denial"], ["open_denial", "balance", "patient_age"], 3)
    assert quiet[1:] == ["balance of $5,000", "patient aged 71"]


class Contributions:
    """A stand-in model: given scores, and TreeSHAP contributions with fixed weights per feature, so which
    features speak is known."""

    horizons_ = Horizons(60, 120)

    def __init__(self, weights: dict[str, float], p: float = 0.5, er: float = 500.0):
        self.account_features_ = list(weights)
        self.w = np.array(list(weights.values()))
        self.p, self.er = p, er

    def score_accounts(self, df):
        n = len(df["account_id"])
        out = {"p_payment": np.full(n, self.p), "expected_recovery": np.full(n, self.er)}
        return pd.DataFrame(out, index=df.index) if isinstance(df, pd.DataFrame) else out

    def score_denials(self, df):
        p = np.full(len(df), 0.6)
        return pd.DataFrame({"p_overturn": p, "expected_recovery": p * df["billed"].to_numpy() * 0.8}, index=df.index)

    def account_contributions(self, df, max_trees=None):
        n = len(df["account_id"])
        return np.c_[np.tile(self.w, (n, 1)), np.zeros(n)]


def worked_accounts() -> pd.DataFrame:
    """One account per kind of work: a pended claim, a front-door rejection, a claim within the payer's normal
    time, a patient balance, a denial, a bankruptcy."""
    base = dict(as_of=AS_OF, balance=5000.0, balance_patient=0.0, balance_insurance=5000.0, pending_adjudication=0.0,
                claim_pended_open=0.0, days_pended=np.nan, claim_rejected_open=0.0, days_since_rejection=np.nan,
                filing_days_left=140.0, days_claim_waiting=np.nan, payer_days_to_pay=19.0, payer_paid_to_billed=0.8,
                payer_denial_rate=0.1, days_since_last_contact=np.nan, n_patient_payments=0.0, in_bankruptcy=0.0,
                fa_pending=0.0, plan_in_good_standing=0.0, call_attempts_7d=0.0, last_denial_carc="none",
                last_denial_group="none", appeal_deadline_days_left=np.nan, payer_group_overturn_rate=0.3,
                financial_class="commercial")
    rows = {
        "A0": dict(claim_pended_open=1.0, days_pended=12.0),
        "A1": dict(claim_rejected_open=1.0, days_since_rejection=5.0, pending_adjudication=1.0, days_claim_waiting=5.0),
        "A2": dict(pending_adjudication=1.0, days_claim_waiting=12.0),
        "A3": dict(balance=420.0, balance_patient=420.0, balance_insurance=0.0, days_since_last_contact=45.0,
                   n_patient_payments=2.0, financial_class="self_pay"),
        "A4": dict(last_denial_carc="16", last_denial_group="missing_info", appeal_deadline_days_left=23.0,
                   payer_group_overturn_rate=0.78, open_denial=1.0),
        "A5": dict(in_bankruptcy=1.0),
    }
    return pd.DataFrame([{"account_id": k, **base, **v} for k, v in rows.items()])


def test_reasons_in_the_worklist_follow_the_action_and_treeshap():
    acc = worked_accounts()
    den = pd.DataFrame({"claim_id": ["C4"], "account_id": ["A4"], "as_of": AS_OF, "carc": ["16"],
                        "carc_group": ["missing_info"], "billed": [9000.0], "appeal_deadline_days_left": [23.0],
                        "already_worked": [0.0]})
    # balance and financial_class contribute most but speak for none of these actions (only as a fallback)
    model = Contributions({"balance": 9.0, "financial_class": 8.0, "days_pended": 5.0, "claim_pended_open": 4.0,
                           "days_since_rejection": 5.0, "filing_days_left": 3.0, "days_claim_waiting": 2.0,
                           "payer_days_to_pay": 1.0, "balance_patient": 5.0, "days_since_last_contact": 1.5,
                           "n_patient_payments": 4.0, "last_denial_carc": 6.0, "appeal_deadline_days_left": 2.0,
                           "payer_group_overturn_rate": 5.0, "in_bankruptcy": 0.0})
    cfg = load_ranking_config(overrides={"exploration_share": 0.0})
    wl = rank(model, acc, den, cfg, "m/1", "r", reasons_rows=None).accounts.set_index("account_id")
    assert wl["next_action"].to_dict() == {"A0": "send_information", "A1": "resubmit", "A2": "wait", "A3": "statement",
                                           "A4": "correct_and_resubmit", "A5": "hold"}
    reasons = wl["reasons"].to_dict()
    assert all(isinstance(r, list) and all(isinstance(s, str) and not RAW.search(s) for s in r)
               for r in reasons.values())
    assert reasons["A0"] == [
        "send the information the payer asked for: about $3,600 expected within 60 days",
        "the payer pended the claim 12 days ago waiting for information",
        "140 days left in the payer's filing limit"]
    assert reasons["A1"][0].startswith("fix and resubmit the claim the payer rejected: about $3,600")
    assert reasons["A1"][1] == (
        "rejected at the payer's front door 5 days ago and not resubmitted; 140 days left to file")
    follow_up = wl.loc["A2", "follow_up_date"].date()  # when this payer's normal time runs out (serving/lift.py)
    assert follow_up > AS_OF.date()
    assert reasons["A2"][0] == (f"nothing to do until {follow_up}: the payer's normal time to pay has not run out"
                                " (waiting 12 days; this payer answers in 19 on average)")
    assert reasons["A2"][1:] == ["140 days left in the payer's filing limit"]  # the claim's waiting is said once
    assert reasons["A3"][0].startswith("send the patient a statement: about $")
    assert reasons["A3"][1:] == ["patient owes $420; no statement or contact in 45 days",
                                 "two payments from the patient on this account so far"]
    assert reasons["A4"][0].startswith("correct the denied claim and resubmit it: about $4,320 expected within 120")
    assert reasons["A4"][1:] == [
        "denied with CARC 16 (Claim/service lacks information or has submission/billing error(s) which is needed for"
        " adjudication), 23 days left to appeal",
        "this payer overturned 78% of worked missing information denials"]
    # a held account: its hold is the reason; the features that speak for a hold have nothing to say here
    # (no patient balance, the bankruptcy is said), so the overall top contributions speak
    assert reasons["A5"] == ["on hold, not worked for collection: bankruptcy", "balance of $5,000",
                             "financial class: commercial insurance"]


@pytest.mark.parametrize("top_n", [1, 2, 4])
def test_top_n_bounds_the_reasons_and_only_the_top_rows_get_them(top_n):
    acc = worked_accounts()
    model = Contributions({"balance": 9.0, "days_pended": 5.0, "filing_days_left": 3.0, "balance_patient": 5.0})
    cfg = load_ranking_config(overrides={"exploration_share": 0.0, "reasons": {"top_n": top_n, "batch_rows": 10}})
    wl = rank(model, acc, None, cfg, "m/1", "r", reasons_rows=3).accounts
    assert [len(r) > 0 for r in wl["reasons"]] == [True] * 3 + [False] * 3
    assert all(1 <= len(r) <= top_n for r in wl["reasons"].iloc[:3])
    cols = rank(model, {c: acc[c].to_numpy() for c in acc}, None, cfg, "m/1", "r", reasons_rows=3, frames=False)
    assert [list(r) for r in cols.accounts["reasons"]] == wl["reasons"].tolist()  # the API's path says the same
