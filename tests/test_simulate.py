"""The simulator: contract-valid, reproducible, realistic rates, and truth that matches its own outcomes."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.contract import read_dataset
from features.sources.simulate import simulate_to_folder
from tests.simdata import SMALL, small_dataset_dir

SIGN = {"charge": 1, "refund": 1, "payment_reversal": 1}


@pytest.fixture(scope="module")
def ds():
    return read_dataset(small_dataset_dir())


def test_same_seed_same_bytes(tmp_path: Path):
    a = simulate_to_folder(tmp_path / "a", 400, seed=3, start="2024-01-01", end="2024-09-30", chunk_size=150)
    # two worker processes make the same bytes as one
    b = simulate_to_folder(tmp_path / "b", 400, seed=3, start="2024-01-01", end="2024-09-30", chunk_size=150,
                           workers=2)
    c = simulate_to_folder(tmp_path / "c", 400, seed=4, start="2024-01-01", end="2024-09-30")
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert len(files) >= 11
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    assert not filecmp.cmp(a / "transactions.parquet", c / "transactions.parquet", shallow=False)


def test_initial_denial_rate_and_carc_mix(ds):
    claims, remits, adj = ds["claims"], ds["remittances"], ds["adjustments"]
    originals = claims[(claims.frequency == "original") & (claims.payer_sequence == 1)]
    first_remit = remits[remits.claim_id.isin(originals.claim_id)].sort_values("received_date")
    first_remit = first_remit.drop_duplicates("claim_id")
    rate = (first_remit.claim_status == "denied").mean()
    assert 0.10 <= rate <= 0.15
    denied = adj[adj.remit_id.isin(first_remit.loc[first_remit.claim_status == "denied", "remit_id"])]
    share = denied.reason_code.value_counts(normalize=True)
    assert share.index[0] == "16"  # missing information is the most common cause
    assert {"16", "197", "50", "97", "29"} <= set(share.index)
    # routine adjustments ride on paid claims, never on denials
    paid = adj[adj.remit_id.isin(remits.loc[remits.claim_status == "processed_primary", "remit_id"])]
    assert {("CO", "45"), ("PR", "1")} <= set(zip(paid.group_code, paid.reason_code, strict=True))
    assert not denied.reason_code.isin(["45", "1", "2", "3"]).any()


def test_ledger_never_negative_and_closed_accounts_zero(ds):
    tx = ds["transactions"]
    sign = np.where(tx.txn_type.isin(["charge", "refund", "payment_reversal"]), 1.0, -1.0)
    tx = tx.assign(v=tx.amount * sign).sort_values(["account_id", "posted_date", "v"], ascending=[True, True, False])
    running = tx.groupby("account_id")["v"].cumsum().round(2)
    assert running.min() >= 0
    final = tx.groupby("account_id")["v"].sum().round(2)
    closers = tx.loc[tx.txn_type.isin(["bad_debt_writeoff", "denial_writeoff", "charity_adjustment"]), "account_id"]
    assert (final[closers.unique()] == 0).all()


def test_every_kind_of_history_is_present(ds):
    assert set(ds["transactions"].txn_type) >= {
        "charge", "insurance_payment", "patient_payment", "payment_reversal", "contractual_adjustment",
        "denial_writeoff", "bad_debt_writeoff", "administrative_adjustment"}
    assert set(ds["activities"].activity_type) >= {
        "statement", "call_attempt", "call_contact", "payment_plan_start", "agency_placement"}
    assert set(ds["remittances"].claim_status) >= {"processed_primary", "processed_secondary", "denied", "reversal"}
    assert (ds["claims"].frequency == "corrected").any() and len(ds["appeals"]) > 0
    assert set(ds["payers"].financial_class) == {
        "medicare", "medicaid", "commercial", "managed_care", "self_pay", "workers_comp", "other"}


def _recovered(tx: pd.DataFrame, t: pd.Timestamp, h: int) -> pd.Series:
    sign = tx.txn_type.map({"insurance_payment": 1, "patient_payment": 1, "payment_reversal": -1, "refund": -1})
    w = tx[sign.notna() & (tx.posted_date > t) & (tx.posted_date <= t + pd.Timedelta(days=h))]
    return (w.amount * sign[w.index]).groupby(w.account_id).sum()


@pytest.mark.slow
def test_truth_matches_the_simulators_own_outcomes(ds):
    """Truth is exact, so in every band of true probability the realised payment rate agrees with it."""
    truth = pd.read_parquet(small_dataset_dir() / "_truth" / "accounts.parquet")
    rows = []
    for t, g in truth.groupby("as_of"):
        if t + pd.Timedelta(days=60) > pd.Timestamp(SMALL["end"]) or t < pd.Timestamp("2024-03-01"):
            continue
        rec = g.account_id.map(_recovered(ds["transactions"], t, 60)).fillna(0.0)
        rows.append(g.assign(paid=(rec > 0.005).astype(float), dollars=rec.to_numpy()))
    df = pd.concat(rows)
    assert len(df) > 8_000
    assert abs(df.p_payment.mean() - df.paid.mean()) < 0.015
    assert abs(df.expected_recovery.sum() / df.dollars.sum() - 1) < 0.06
    bands = df.groupby(pd.qcut(df.p_payment, 5, duplicates="drop"), observed=True)
    gap = (bands.paid.mean() - bands.p_payment.mean()).abs()
    assert gap.max() < 0.04, gap
    # and the truth ranks: far better than chance
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(df.paid, df.p_payment) > 0.8


def test_denial_truth_is_a_probability_per_denial(ds):
    dt = pd.read_parquet(small_dataset_dir() / "_truth" / "denials.parquet")
    assert dt.claim_id.is_unique and dt.p_overturn_if_worked.between(0, 1).all()
    by_code = dt.groupby("reason_code").p_overturn_if_worked.mean()
    assert by_code["29"] < 0.1 < 0.6 < by_code["16"]  # timely filing almost never, missing info mostly
