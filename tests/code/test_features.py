"""Point-in-time features and labels (features/snapshot/): X12 facts, labels on hand examples,
no look-ahead (hypothesis), agreement with a slow per-account reference, and input order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from features.catalogue import (
    account_feature_names,
    categorical_features,
    denial_feature_names,
    routine_carcs,
)
from features.contract import TABLES
from features.snapshot import STATS_COLUMNS, Horizons, account_features, denial_features, pooled_stats
from tests.builders import Builder, dataset_from_frames, random_history

ACCOUNT_KEY = ["account_id", "as_of"]


def _one(df: pd.DataFrame, account_id: str) -> pd.Series:
    rows = df[df["account_id"] == account_id]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _base(payer_class: str = "commercial") -> Builder:
    b = Builder()
    b.payer("P1", payer_class, 90, 60)
    return b


# ------------------------------------------------------------------ catalogue and shape


def test_columns_follow_the_catalogue():
    ds = random_history(3, 10).build()
    f = account_features(ds, ["2024-04-01", "2024-06-01"])
    assert list(f.columns) == [
        "account_id",
        "as_of",
        *account_feature_names(),
        "guarantor_id",  # carried beside the features (ACCOUNT_CONTEXT), not a model input
        "label_paid",
        "label_recovered",
    ]
    d = denial_features(ds, "2024-06-01")
    assert list(d.columns) == [
        "claim_id",
        "account_id",
        "as_of",
        "denial_date",
        *denial_feature_names(),
        "worked",
        "label_overturn",
    ]
    for c in categorical_features("account"):
        assert f[c].map(lambda v: isinstance(v, str)).all(), c
    assert not f.duplicated(ACCOUNT_KEY).any()
    assert f[ACCOUNT_KEY].equals(f[ACCOUNT_KEY].sort_values(["as_of", "account_id"]).reset_index(drop=True))


def test_stats_table_shape_and_smoothing():
    ds = random_history(5, 30).build()
    s = pooled_stats(ds, ["2024-05-01", "2024-08-01"])
    assert list(s.columns) == STATS_COLUMNS
    assert set(s["level"]) == {"global", "payer", "payer_carc_group", "proc_family", "carc"}
    carc = s[s["level"] == "carc"]
    # per CARC seen by T: how its worked denials were worked, and each way's (smoothed) overturn rate
    assert carc["carc"].notna().all() and (carc["n_denials"] > 0).all()
    assert (carc["n_corrected"] <= carc["n_worked"]).all()
    for c in ("overturn_rate", "appeal_overturn_rate", "correct_overturn_rate"):
        assert carc[c].between(0, 1).all(), c
    s = s[s["level"] != "carc"]
    for c in ("denial_rate", "overturn_rate", "paid_to_billed"):
        assert s[c].between(0, 1).all(), c
    # an empty cell falls back to (about) the global rate, never 0/0
    assert s["denial_rate"].notna().all() and s["days_to_pay"].notna().all()


def test_stats_given_equals_stats_computed_for_one_date():
    ds = random_history(7, 20).build()
    t = "2024-06-15"
    a = account_features(ds, t)
    b = account_features(ds, t, stats=pooled_stats(ds, t))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(denial_features(ds, t), denial_features(ds, t, stats=pooled_stats(ds, t)))
    # a stacked table of several dates: each snapshot uses its own date's statistics
    dates = ["2024-03-01", "2024-06-15", "2024-09-01"]
    pd.testing.assert_frame_equal(
        account_features(ds, dates), account_features(ds, dates, stats=pooled_stats(ds, dates))
    )


# ------------------------------------------------------------------ X12 facts


def test_co45_and_pr_are_not_denials():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(
        c,
        "2024-02-01",
        "processed_primary",
        500.0,
        300.0,
        [("CO", "45", 200.0), ("PR", "1", 100.0), ("PR", "2", 150.0), ("PR", "3", 50.0)],
    )
    ds = b.build("2024-12-31")
    f = _one(account_features(ds, "2024-02-10"), a)
    assert f["n_denials"] == 0 and f["open_denial"] == 0 and f["last_denial_carc"] == "none"
    assert f["balance"] == 300.0 and f["balance_patient"] == 300.0 and f["balance_insurance"] == 0.0
    assert len(denial_features(ds, "2024-02-10")) == 0
    assert {"45", "1", "2", "3"} <= routine_carcs()


def test_zero_paid_non_routine_carc_is_a_denial_and_line_level_is_partial():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "processed_primary", 0.0, 0.0, [("CO", "16", 1000.0, None, "M51")])
    a2 = b.account(service_date="2024-01-01", total_charges=800.0)
    c2 = b.claim(a2, "2024-01-05", billed_amount=800.0)
    b.remit(c2, "2024-02-01", "processed_primary", 500.0, 0.0, [("CO", "45", 100.0, 1), ("CO", "97", 200.0, 2)])
    ds = b.build("2024-12-31")
    d = denial_features(ds, "2024-02-10").set_index("claim_id")
    assert d.loc[c, "carc"] == "16" and d.loc[c, "carc_group"] == "missing_info"
    assert d.loc[c, "partial_denial"] == 0 and d.loc[c, "rarc_present"] == 1
    assert d.loc[c, "denied_amount"] == 1000.0
    assert d.loc[c2, "partial_denial"] == 1 and d.loc[c2, "carc"] == "97" and d.loc[c2, "denied_amount"] == 200.0
    assert d.loc[c2, "carc_group"] == "coding"


def test_reversal_undoes_its_payment():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "processed_primary", 600.0, 0.0, [("CO", "45", 400.0)])
    b.remit(c, "2024-02-20", "reversal", -600.0, 0.0, [("CR", "129", -600.0)])
    ds = b.build("2024-12-31")
    assert a not in set(account_features(ds, "2024-02-10")["account_id"])  # paid in full: closed
    after = _one(account_features(ds, "2024-02-21"), a)  # the reversal re-opens it
    assert after["balance"] == 600.0 and after["remit_paid"] == 0.0 and after["last_remit_status"] == "reversal"
    assert after["insurance_paid"] == 600.0 and after["payments_30d"] == 0.0  # net of the reversal
    # a label window holding the payment and its reversal: nothing recovered
    early = _one(account_features(ds, "2024-01-20", horizons=Horizons(horizon_days=40)), a)
    assert early["label_recovered"] == 0.0 and early["label_paid"] == 0.0
    mid = _one(account_features(ds, "2024-01-20", horizons=Horizons(horizon_days=20)), a)
    assert mid["label_recovered"] == 600.0 and mid["label_paid"] == 1.0


def test_corrected_claim_works_and_resolves_the_denial():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "denied", 0.0, 0.0, [("CO", "16", 1000.0)])
    c2 = b.claim(a, "2024-02-10", billed_amount=1000.0, frequency="corrected", original_claim_id=c)
    b.remit(c2, "2024-03-01", "processed_primary", 700.0, 100.0, [("CO", "45", 200.0), ("PR", "2", 100.0)])
    ds = b.build("2024-12-31")
    d1 = denial_features(ds, "2024-02-05")
    assert list(d1["claim_id"]) == [c] and d1["already_worked"].iloc[0] == 0
    assert d1["worked"].iloc[0] == 1 and d1["label_overturn"].iloc[0] == 1
    d2 = denial_features(ds, "2024-02-15")
    assert d2["already_worked"].iloc[0] == 1
    assert len(denial_features(ds, "2024-03-02")) == 0  # paid on the replacement: closed
    f = account_features(ds, ["2024-02-15", "2024-03-02"])
    assert f["open_denial"].tolist() == [1.0, 0.0] and f["n_corrected_claims"].tolist() == [1, 1]


def test_unworked_denial_has_no_overturn_label_and_timely_filing_is_late():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "denied", 0.0, 0.0, [("CO", "29", 1000.0)])
    ds = b.build("2024-12-31")
    d = denial_features(ds, "2024-02-05").iloc[0]
    assert d["carc_group"] == "timely_filing" and d["worked"] == 0 and np.isnan(d["label_overturn"])
    assert d["appeal_deadline_days_left"] == 60 - 4
    f = _one(account_features(ds, "2024-02-05"), a)
    assert f["timely_filing_days_left"] == 90 - 35 and f["appeal_deadline_days_left"] == 56


# ------------------------------------------------------------------ labels


def test_labels_by_hand_and_missing_after_extract():
    b = _base()
    a = b.account(service_date="2024-01-01", total_charges=1000.0)
    c = b.claim(a, "2024-01-05", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "processed_primary", 400.0, 200.0, [("CO", "45", 400.0), ("PR", "2", 200.0)])
    b.txn(a, "2024-03-15", "patient_payment", 50.0)
    b.txn(a, "2024-03-20", "refund", 10.0)
    b.txn(a, "2024-05-20", "patient_payment", 100.0)
    ds = b.build("2024-06-30")
    f = account_features(ds, ["2024-01-20", "2024-02-15", "2024-04-01", "2024-05-15"]).set_index("as_of")
    assert f.loc["2024-01-20", "label_recovered"] == 440.0  # (Jan 20, Mar 20]: 400 + 50 - 10
    assert f.loc["2024-02-15", "label_recovered"] == 40.0  # 50 paid - 10 refunded
    assert f.loc["2024-04-01", "label_recovered"] == 100.0 and f.loc["2024-04-01", "label_paid"] == 1.0
    assert np.isnan(f.loc["2024-05-15", "label_recovered"]) and np.isnan(f.loc["2024-05-15", "label_paid"])
    assert f.loc["2024-02-15", "balance"] == 200.0 and f.loc["2024-02-15", "days_since_last_payment"] == 14
    assert f.loc["2024-04-01", "balance_patient"] == 150.0  # PR 200 - 50 paid (balance 160)
    assert f.loc["2024-04-01", "balance_insurance"] == 10.0


def test_closed_accounts_are_left_out():
    b = _base()
    a_bd = b.account(service_date="2024-01-01", total_charges=100.0)
    b.txn(a_bd, "2024-03-01", "bad_debt_writeoff", 40.0)
    a_ag = b.account(service_date="2024-01-01", total_charges=100.0)
    b.activity(a_ag, "2024-03-01", "agency_placement")
    a_paid = b.account(service_date="2024-01-01", total_charges=100.0)
    b.txn(a_paid, "2024-02-01", "patient_payment", 100.0)
    a_future = b.account(service_date="2024-05-01", total_charges=100.0)
    ds = b.build()
    ids = set(account_features(ds, "2024-03-15")["account_id"])
    assert ids == set()
    assert set(account_features(ds, "2024-01-15")["account_id"]) == {a_bd, a_ag, a_paid}
    assert a_future in set(account_features(ds, "2024-05-01")["account_id"])


def test_discharge_and_appeal_outcome_unknown_until_their_dates():
    b = _base()
    a = b.account(service_date="2024-01-01", discharge_date="2024-01-10", total_charges=1000.0)
    c = b.claim(a, "2024-01-15", billed_amount=1000.0)
    b.remit(c, "2024-02-01", "denied", 0.0, 0.0, [("CO", "197", 1000.0)])
    b.appeal(c, "2024-02-05", 1, "overturned", "2024-03-01", 800.0)
    ds = b.build("2024-12-31")
    f = account_features(ds, ["2024-01-05", "2024-02-10", "2024-03-01"]).set_index("as_of")
    assert np.isnan(f.loc["2024-01-05", "days_since_discharge"])
    assert f.loc["2024-02-10", "pending_appeal"] == 1 and f.loc["2024-02-10", "n_overturned"] == 0
    assert f.loc["2024-03-01", "pending_appeal"] == 0 and f.loc["2024-03-01", "n_overturned"] == 1


# ------------------------------------------------------------------ no look-ahead (hypothesis)


def _event_day(name: str, frames: dict[str, pd.DataFrame]) -> pd.Series:
    """Each row's event time; children take their parent's (as DESIGN.md says)."""
    spec = TABLES[name]
    df = frames[name]
    if df.empty:
        return pd.Series([], dtype="datetime64[ns]")
    if spec.event_time:
        return pd.to_datetime(df[spec.event_time])
    fk, parent, col = spec.time_from
    parent_times = pd.to_datetime(frames[parent].set_index(TABLES[parent].key[0])[col])
    return df[fk].map(parent_times)


def _future_variants(frames: dict[str, pd.DataFrame], t: pd.Timestamp, seed: int):
    """(rows after T deleted, rows after T changed, everything shuffled)."""
    rng = np.random.default_rng(seed)
    deleted, changed, shuffled = {}, {}, {}
    for name, df in frames.items():
        df = df.copy()
        if name == "payers":
            deleted[name] = changed[name] = df
            shuffled[name] = df.sample(frac=1, random_state=seed)
            continue
        future = (_event_day(name, frames) > t).to_numpy()
        deleted[name] = df[~future]
        ch = df.copy()
        for col, c in TABLES[name].columns.items():
            if c.type in ("money", "signed_money") and col in ch:
                ch.loc[future, col] = (ch.loc[future, col] * rng.uniform(0.1, 3)).round(2)
        if name == "accounts":  # a later-known field is only changeable while unknown
            late = pd.to_datetime(ch["discharge_date"]) > t
            ch.loc[late, "discharge_date"] = (
                pd.to_datetime(ch.loc[late, "discharge_date"]) + pd.Timedelta(days=7)
            ).dt.strftime("%Y-%m-%d")
            deleted[name] = deleted[name].assign(
                discharge_date=deleted[name]["discharge_date"].where(
                    pd.to_datetime(deleted[name]["discharge_date"]) <= t, None
                )
            )
        if name == "appeals":
            late = pd.to_datetime(ch["decision_date"]) > t
            ch.loc[late, "outcome"] = "upheld"
            kept = deleted[name]
            hide = pd.to_datetime(kept["decision_date"]) > t
            deleted[name] = kept.assign(
                outcome=kept["outcome"].where(~hide, None),
                decision_date=kept["decision_date"].where(~hide, None),
                recovered_amount=kept["recovered_amount"].where(~hide, None),
            )
        if name == "remittances":
            ch.loc[future, "claim_status"] = "denied"
        if name == "adjustments":
            ch.loc[future, "reason_code"] = "50"
        changed[name] = ch
        shuffled[name] = df.sample(frac=1, random_state=seed)
    return deleted, changed, shuffled


# no shrinking: an example is a seed, already small; shrinking it only costs minutes
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), t_offset=st.integers(0, 330))
def test_no_look_ahead(seed, n, t_offset):
    frames = random_history(seed, n).frames()
    full = dataset_from_frames(frames, "2025-06-30")
    t = pd.Timestamp("2024-01-01") + pd.Timedelta(days=t_offset)
    want_a = account_features(full, t, with_labels=False)
    want_d = denial_features(full, t, with_labels=False)
    want_s = pooled_stats(full, t)
    for variant in _future_variants(frames, t, seed):
        ds = dataset_from_frames(variant, "2025-06-30")
        pd.testing.assert_frame_equal(account_features(ds, t, with_labels=False), want_a)
        pd.testing.assert_frame_equal(denial_features(ds, t, with_labels=False), want_d)
        pd.testing.assert_frame_equal(pooled_stats(ds, t), want_s)


def test_input_row_order_never_matters_including_labels():
    frames = random_history(11, 40).frames()
    dates = ["2024-03-01", "2024-05-01", "2024-07-01"]
    a = dataset_from_frames(frames)
    b = dataset_from_frames({k: v.sample(frac=1, random_state=1) for k, v in frames.items()})
    pd.testing.assert_frame_equal(account_features(a, dates), account_features(b, dates))
    pd.testing.assert_frame_equal(denial_features(a, dates), denial_features(b, dates))


# ------------------------------------------------------------------ slow, obviously correct reference


LEDGER_UP = {"charge", "refund", "payment_reversal"}
RECOVER = {"insurance_payment": 1, "patient_payment": 1, "payment_reversal": -1, "refund": -1}


def _ref_tools(ds):
    """Plain-Python views of a dataset: rows as dicts, claim families, the denial rule."""
    routine = routine_carcs()
    tables = {n: df.to_dict("records") for n, df in ds.tables.items()}
    claims = {c["claim_id"]: c for c in tables["claims"]}
    adjs: dict[str, list] = {}
    for x in tables["adjustments"]:
        adjs.setdefault(x["remit_id"], []).append(x)

    def root(cid):
        while claims[cid].get("original_claim_id") and claims[cid]["original_claim_id"] in claims:
            cid = claims[cid]["original_claim_id"]
        return cid

    def is_denial(r):
        bad = [
            x
            for x in adjs.get(r["remit_id"], [])
            if x["group_code"] in ("CO", "PI", "OA") and str(x["reason_code"]).strip() not in routine
        ]
        st_ = r["claim_status"]
        if st_ == "denied":
            return True
        if st_ in ("reversal", "pended"):
            return False
        if r["paid_amount"] <= 0:
            return bool(bad)
        return any(pd.notna(x["line_number"]) for x in bad)

    def paid_between(fam, lo, hi):
        """The family is paid (or an appeal overturned) in (lo, hi]."""
        fam_claims = {cid for cid in claims if root(cid) == fam}
        paid = any(
            x["claim_id"] in fam_claims
            and x["claim_status"].startswith("processed")
            and x["paid_amount"] > 0
            and lo < x["received_date"] <= hi
            for x in tables["remittances"]
        )
        over = any(
            x["claim_id"] in fam_claims
            and x["outcome"] in ("overturned", "partially_overturned")
            and pd.notna(x["decision_date"])
            and lo < x["decision_date"] <= hi
            for x in tables["appeals"]
        )
        return paid or over

    def worked_between(fam, lo, hi):
        """An appeal or a corrected/replacement claim of the family in [lo, hi]."""
        fam_claims = {cid for cid in claims if root(cid) == fam}
        fixes = any(
            claims[c]["frequency"] in ("corrected", "replacement")
            and claims[c].get("original_claim_id") in claims
            and lo <= claims[c]["submitted_date"] <= hi
            for c in fam_claims
        )
        appeals = any(x["claim_id"] in fam_claims and lo <= x["submitted_date"] <= hi for x in tables["appeals"])
        return fixes or appeals

    def closed_between(fam, account_id, lo, hi):
        fam_claims = {cid for cid in claims if root(cid) == fam}
        void = any(claims[c]["frequency"] == "void" and lo <= claims[c]["submitted_date"] <= hi for c in fam_claims)
        wo = any(
            x["account_id"] == account_id
            and x["txn_type"] in ("denial_writeoff", "bad_debt_writeoff")
            and lo <= x["posted_date"] <= hi
            for x in tables["transactions"]
        )
        return void or wo

    def open_denials(account_ids, t):
        """claim family -> its latest denial remit on or before t, when still open at t."""
        latest: dict[str, dict] = {}
        rows = [
            r
            for r in tables["remittances"]
            if claims[r["claim_id"]]["account_id"] in account_ids and r["received_date"] <= t and is_denial(r)
        ]
        for r in sorted(rows, key=lambda r: r["received_date"]):
            latest[root(r["claim_id"])] = r
        out = {}
        for fam, r in latest.items():
            d0, aid = r["received_date"], claims[r["claim_id"]]["account_id"]
            if not (paid_between(fam, d0, t) or closed_between(fam, aid, d0, t)):
                out[fam] = r
        return out

    return tables, claims, root, is_denial, paid_between, worked_between, open_denials


def _reference_denials(ds, t: pd.Timestamp, h2: int) -> dict[str, dict]:
    tables, claims, root, _, paid_between, worked_between, open_denials = _ref_tools(ds)
    out = {}
    end_known = ds.extract_date
    for fam, r in open_denials({a["account_id"] for a in tables["accounts"]}, t).items():
        d0 = r["received_date"]
        end = d0 + pd.Timedelta(days=h2)
        worked = worked_between(fam, d0, min(end, end_known))
        complete = end <= end_known
        out[r["claim_id"]] = {
            "days_since_denial": float((t - d0).days),
            "already_worked": float(worked_between(fam, d0, t)),
            "worked": 1.0 if worked else (0.0 if complete else np.nan),
            "label_overturn": float(paid_between(fam, d0, end)) if (worked and complete) else np.nan,
        }
    return out


def _reference_accounts(ds, t: pd.Timestamp, h: int) -> dict[str, dict]:
    """Per account, per row, in plain Python: the main features and labels."""
    tables, claims, root, is_denial, paid_between, worked_between, open_denials = _ref_tools(ds)
    out = {}
    for acc in tables["accounts"]:
        aid = acc["account_id"]
        if acc["service_date"] > t:
            continue
        txns = [x for x in tables["transactions"] if x["account_id"] == aid]
        known = [x for x in txns if x["posted_date"] <= t]
        acts = [x for x in tables["activities"] if x["account_id"] == aid and x["activity_date"] <= t]
        balance = round(sum(x["amount"] if x["txn_type"] in LEDGER_UP else -x["amount"] for x in known), 2)
        if (
            balance <= 0
            or any(x["txn_type"] == "bad_debt_writeoff" for x in known)
            or any(x["activity_type"] == "agency_placement" for x in acts)
        ):
            continue
        my_claims = [c for c in tables["claims"] if c["account_id"] == aid and c["submitted_date"] <= t]
        my_remits = [
            r
            for r in tables["remittances"]
            if r["claim_id"] in {c["claim_id"] for c in my_claims} and r["received_date"] <= t
        ]
        pays = [x for x in known if x["txn_type"] in ("insurance_payment", "patient_payment")]
        pp = [x for x in known if x["txn_type"] == "patient_payment"]

        def win(rows, days, key, value=lambda x: 1):
            return sum(value(x) for x in rows if t - pd.Timedelta(days=days) < x[key] <= t)

        answered = {r["claim_id"] for r in my_remits}
        waiting = [c for c in my_claims if c["frequency"] != "void" and c["claim_id"] not in answered]
        denials = [r for r in my_remits if is_denial(r)]
        n_open = len(open_denials({aid}, t))
        appeals = [
            x
            for x in tables["appeals"]
            if x["claim_id"] in {c["claim_id"] for c in my_claims} and x["submitted_date"] <= t
        ]
        decided = [x for x in appeals if pd.notna(x["decision_date"]) and x["decision_date"] <= t]
        statements = [x for x in acts if x["activity_type"] == "statement"]
        calls = [x for x in acts if x["activity_type"] == "call_attempt"]
        plan_start = max((x["activity_date"] for x in acts if x["activity_type"] == "payment_plan_start"), default=None)
        plan_default = max(
            (x["activity_date"] for x in acts if x["activity_type"] == "payment_plan_default"), default=None
        )
        future = [x for x in txns if t < x["posted_date"] <= t + pd.Timedelta(days=h)]
        rec = round(sum(RECOVER.get(x["txn_type"], 0) * x["amount"] for x in future), 2)
        label_known = t + pd.Timedelta(days=h) <= ds.extract_date
        days = lambda d: float((t - d).days) if d is not None else np.nan  # noqa: E731
        out[aid] = {
            "balance": balance,
            "charges_posted": round(sum(x["amount"] for x in known if x["txn_type"] == "charge"), 2),
            "days_since_service": days(acc["service_date"]),
            "days_since_last_payment": days(max((x["posted_date"] for x in pays), default=None)),
            "payments_30d": round(
                win(known, 30, "posted_date", lambda x: RECOVER.get(x["txn_type"], 0) * x["amount"]), 2
            ),
            "payments_365d": round(
                win(known, 365, "posted_date", lambda x: RECOVER.get(x["txn_type"], 0) * x["amount"]), 2
            ),
            "n_claims": len(my_claims),
            "n_corrected_claims": sum(c["frequency"] in ("corrected", "replacement") for c in my_claims),
            "has_secondary_claim": float(any(c["payer_sequence"] > 1 for c in my_claims)),
            "n_remits": len(my_remits),
            "remit_paid": round(sum(r["paid_amount"] for r in my_remits), 2),
            "pending_adjudication": float(bool(waiting)),
            "days_claim_waiting": days(min((c["submitted_date"] for c in waiting), default=None)),
            "n_denials": len(denials),
            "open_denial": float(n_open > 0),
            "n_appeals": len(appeals),
            "pending_appeal": float(len(decided) < len(appeals)),
            "n_overturned": sum(x["outcome"] in ("overturned", "partially_overturned") for x in decided),
            "n_patient_payments": len(pp),
            "patient_paid": round(sum(x["amount"] for x in pp), 2),
            "statements_90d": win(statements, 90, "activity_date"),
            "call_attempts_7d": win(calls, 7, "activity_date"),
            "days_since_first_statement": days(min((x["activity_date"] for x in statements), default=None)),
            "plan_active": float(plan_start is not None and (plan_default is None or plan_start > plan_default)),
            "in_bankruptcy": float(any(x["activity_type"] == "bankruptcy_notice" for x in acts)),
            "label_recovered": rec if label_known else np.nan,
            "label_paid": float(rec > 0) if label_known else np.nan,
        }
    return out


def _reference_guarantors(ds, t: pd.Timestamp, open_rows: pd.DataFrame) -> dict[str, dict]:
    """Per open account, in plain Python: its guarantor's features over the guarantor's accounts
    (`open_rows`: the feature rows at `t`, for the open accounts' patient balances)."""
    tables = {n: df.to_dict("records") for n, df in ds.tables.items()}
    state = {}
    for acc in tables["accounts"]:
        aid = acc["account_id"]
        g = acc.get("guarantor_id")
        g = acc["patient_id"] if g is None or pd.isna(g) else g
        txns = [x for x in tables["transactions"] if x["account_id"] == aid and x["posted_date"] <= t]
        acts = [x for x in tables["activities"] if x["account_id"] == aid and x["activity_date"] <= t]
        kinds = [x["activity_type"] for x in acts]
        gone = any(x["txn_type"] == "bad_debt_writeoff" for x in txns) or "agency_placement" in kinds
        statements = sorted(x["activity_date"] for x in acts if x["activity_type"] == "statement")
        pays = sorted(x["posted_date"] for x in txns if x["txn_type"] == "patient_payment")
        to_pay = None
        if statements:
            after = [d for d in pays if d >= statements[0]]
            to_pay = (after[0] - statements[0]).days if after else None
        year = [d for d in pays if d > t - pd.Timedelta(days=365)]
        touches = [x["activity_date"] for x in acts
                   if x["activity_type"] in ("statement", "call_contact", "letter", "portal_message")]
        state[aid] = {
            "g": g, "known": acc["service_date"] <= t, "open": aid in open_rows.index, "gone": gone,
            "to_pay": to_pay, "plans": kinds.count("payment_plan_start"),
            "calls_7d": sum(x["activity_type"] == "call_attempt" and x["activity_date"] > t - pd.Timedelta(days=7)
                            for x in acts),
            "last_touch": max(touches, default=None), "payments_365d": len(year), "last_pay": max(pays, default=None),
        }
    out = {}
    for aid in open_rows.index:
        mine = state[aid]
        same = [(b, s) for b, s in state.items() if s["g"] == mine["g"] and s["known"]]
        other = [s for b, s in same if b != aid]
        waits = [s["to_pay"] for s in other if s["to_pay"] is not None]
        last = max((s["last_touch"] for _, s in same if s["last_touch"] is not None), default=None)
        last_pay = max((s["last_pay"] for s in other if s["last_pay"] is not None), default=None)
        out[aid] = {
            "guarantor_prior_accounts": len(other),
            "guarantor_closed_accounts": sum(not s["open"] for s in other),
            "guarantor_open_accounts": sum(s["open"] for s in other),
            "guarantor_agency_accounts": sum(s["gone"] for s in other),
            "guarantor_plans_started": sum(s["plans"] for s in other),
            "guarantor_median_days_to_pay": float(np.median(waits)) if waits else np.nan,
            "guarantor_call_attempts_7d": sum(s["calls_7d"] for _, s in same),
            "guarantor_patient_payments_365d": sum(s["payments_365d"] for s in other),
            "guarantor_days_since_last_payment": float((t - last_pay).days) if last_pay is not None else np.nan,
            "guarantor_days_since_last_contact": float((t - last).days) if last is not None else np.nan,
            "guarantor_open_patient_balance": round(
                sum(open_rows.loc[b, "balance_patient"] for b, s in same if s["open"]), 2),
        }
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_agrees_with_the_per_account_reference(seed):
    ds = random_history(seed, 40).build("2024-09-30")
    for t in ["2024-02-01", "2024-04-15", "2024-07-01", "2024-09-01"]:
        t = pd.Timestamp(t)
        got = account_features(ds, t).set_index("account_id")
        want = _reference_accounts(ds, t, 60)
        assert set(got.index) == set(want), t
        guarantors = _reference_guarantors(ds, t, got)
        for aid, feats in want.items():
            for name, value in {**feats, **guarantors[aid]}.items():
                g = got.loc[aid, name]
                assert (np.isnan(value) and np.isnan(g)) or g == pytest.approx(value, abs=1e-6), (t, name)
        got_d = denial_features(ds, t).set_index("claim_id")
        want_d = _reference_denials(ds, t, 120)
        assert set(got_d.index) == set(want_d), t
        for cid, feats in want_d.items():
            for name, value in feats.items():
                g = got_d.loc[cid, name]
                assert (np.isnan(value) and np.isnan(g)) or g == value, (t, cid, name)


@pytest.mark.slow
def test_agrees_with_the_reference_on_simulated_data(tmp_path):
    simulate = pytest.importorskip("features.sources.simulate")
    from features.contract import read_dataset

    simulate.simulate_to_folder(tmp_path / "sim", 150, 3, "2024-01-01", "2024-12-31", truth=False)
    ds = read_dataset(tmp_path / "sim")
    for t in ["2024-04-01", "2024-09-01"]:
        t = pd.Timestamp(t)
        got = account_features(ds, t).set_index("account_id")
        want = _reference_accounts(ds, t, 60)
        assert set(got.index) == set(want)
        guarantors = _reference_guarantors(ds, t, got)
        for aid, feats in want.items():
            for name, value in {**feats, **guarantors[aid]}.items():
                g = got.loc[aid, name]
                assert (np.isnan(value) and np.isnan(g)) or g == pytest.approx(value, abs=1e-6), (t, name)
        got_d = denial_features(ds, t).set_index("claim_id")
        want_d = _reference_denials(ds, t, 120)
        assert set(got_d.index) == set(want_d), t
        for cid, feats in want_d.items():
            for name, value in feats.items():
                g = got_d.loc[cid, name]
                assert (np.isnan(value) and np.isnan(g)) or g == value, (t, cid, name)


# ------------------------------------------------------------------ command line


def test_features_command_writes_parquet_and_csv(tmp_path):
    from typer.testing import CliRunner

    from features.contract import write_dataset
    from recoup_cli import app

    ds = random_history(4, 30).build("2024-12-31")
    write_dataset(ds, tmp_path / "data")
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "features",
            str(tmp_path / "data"),
            "--as-of",
            "2024-05-01",
            "--out",
            str(tmp_path / "f.parquet"),
            "--denials-out",
            str(tmp_path / "d.csv"),
        ],
    )
    assert res.exit_code == 0, res.output
    f = pd.read_parquet(tmp_path / "f.parquet")
    assert "as_of" not in f.columns and f["account_id"].is_unique  # one date: key account_id
    assert list(f.columns[:1]) == ["account_id"] and "label_paid" in f.columns
    assert list(pd.read_csv(tmp_path / "d.csv").columns[:3]) == ["claim_id", "account_id", "as_of"]
    res = runner.invoke(
        app, ["features", str(tmp_path / "data"), "--as-of", "2024-05-01,2024-07-01", "--out", str(tmp_path / "f2.csv")]
    )
    assert res.exit_code == 0, res.output
    f2 = pd.read_csv(tmp_path / "f2.csv")
    assert not f2.duplicated(["account_id", "as_of"]).any() and f2["as_of"].nunique() == 2


def test_small_and_large_id_lookup_paths_agree(monkeypatch):
    import features.snapshot.arrays as arrays

    ds = random_history(9, 40).build()
    dates = ["2024-03-01", "2024-06-01"]
    small_a, small_d = account_features(ds, dates), denial_features(ds, dates)
    monkeypatch.setattr(arrays, "SMALL", 0)  # force the Arrow lookups of large datasets
    pd.testing.assert_frame_equal(account_features(ds, dates), small_a)
    pd.testing.assert_frame_equal(denial_features(ds, dates), small_d)


def test_snapshot_features_equals_the_two_calls():
    from features.snapshot import snapshot_features

    ds = random_history(12, 30).build()
    dates = ["2024-04-01", "2024-07-01"]
    a, d = snapshot_features(ds, dates)
    pd.testing.assert_frame_equal(a, account_features(ds, dates))
    pd.testing.assert_frame_equal(d, denial_features(ds, dates))
    s = pooled_stats(ds, "2024-05-01")
    a, d = snapshot_features(ds, dates, stats=s, with_labels=False)
    pd.testing.assert_frame_equal(a, account_features(ds, dates, stats=s, with_labels=False))
    pd.testing.assert_frame_equal(d, denial_features(ds, dates, stats=s, with_labels=False))


@pytest.mark.parametrize("small_lookups", [True, False])
def test_numpy_tables_and_columns_give_the_dataframe_numbers(monkeypatch, small_lookups):
    """The API's form (ColumnTable inputs, dicts of NumPy arrays out) runs the same feature code as
    the batch's DataFrames and gives the same frame, exactly."""
    import features.snapshot.arrays as arrays
    from features.contract import ColumnTable, Dataset
    from features.snapshot import snapshot_features

    if not small_lookups:
        monkeypatch.setattr(arrays, "SMALL", 0)  # the lookups of large inputs
    for seed in (3, 21):
        ds = random_history(seed, 40).build()
        as_numpy = Dataset({k: ColumnTable.from_frame(v) for k, v in ds.tables.items()}, extract_date=ds.extract_date)
        dates = ["2024-04-01", "2024-08-01"]
        stats = pooled_stats(ds, "2024-05-01")
        for kw in ({}, {"stats": stats, "with_labels": False}):
            a, d = snapshot_features(ds, dates, **kw)
            na, nd = snapshot_features(as_numpy, dates, frames=False, **kw)
            assert isinstance(na, dict) and len(a) > 3 and len(d) > 0
            pd.testing.assert_frame_equal(pd.DataFrame(na), a)
            pd.testing.assert_frame_equal(pd.DataFrame(nd), d)
