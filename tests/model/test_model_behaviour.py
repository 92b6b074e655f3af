"""Model tests (behaviour, as Made-With-ML calls them): direction (a fixable denial scores above a
timely-filing one, a larger balance never lowers the expected dollars), invariance (row order,
unseen categories), minimum function on simulated data, reproducibility, and the drift reference."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_timely_filing_denial_scores_below_missing_information(small_model):
    """The same open denials, once with a timely-filing CARC and once with a missing-information CARC,
    built through the feature code (so the pooled rates follow the CARC as they would in real data)."""
    from features.contract import Dataset
    from features.snapshot import denial_features

    model, _, ds, _ = small_model
    as_of = pd.Timestamp("2025-05-01")
    den = denial_features(ds, as_of, stats=model.stats_, with_labels=False)
    assert len(den) >= 10
    remits = ds["remittances"]
    denied_remits = remits.loc[remits["claim_id"].isin(den["claim_id"]) & (remits["claim_status"] == "denied"),
                               "remit_id"]

    def with_carc(code: str) -> pd.DataFrame:
        adj = ds["adjustments"].copy()
        hit = adj["remit_id"].isin(denied_remits) & (adj["group_code"].isin(["CO", "OA"]))
        adj.loc[hit, "reason_code"] = code
        tables = {**ds.tables, "adjustments": adj}
        return denial_features(Dataset(tables, extract_date=ds.extract_date), as_of, stats=model.stats_,
                               with_labels=False)

    missing, timely = with_carc("16"), with_carc("29")
    assert (missing["carc_group"] == "missing_info").all() and (timely["carc_group"] == "timely_filing").all()
    p_missing = model.score_denials(missing)["p_overturn"].to_numpy()
    p_timely = model.score_denials(timely)["p_overturn"].to_numpy()
    assert np.all(p_timely <= p_missing + 1e-12)
    assert p_timely.mean() < p_missing.mean() - 0.2


def test_larger_balance_never_lowers_expected_recovery(small_model):
    model, snaps, _, _ = small_model
    rows = snaps.part("test").sample(300, random_state=0)
    base = model.score_accounts(rows)["expected_recovery"].to_numpy()
    for factor in (1.1, 2.0, 10.0):
        bigger = rows.copy()
        for col in ("balance", "balance_patient", "balance_insurance"):
            bigger[col] = rows[col] * factor
        got = model.score_accounts(bigger)["expected_recovery"].to_numpy()
        assert np.all(got >= base - 1e-9)
        base = got


def test_row_order_changes_nothing(small_model):
    from features.contract import Dataset
    from features.snapshot import account_features

    model, _, ds, _ = small_model
    as_of = pd.Timestamp("2025-03-01")
    a = account_features(ds, as_of, stats=model.stats_, with_labels=False)
    shuffled = Dataset({n: df.sample(frac=1.0, random_state=3).reset_index(drop=True) for n, df in ds.tables.items()},
                       extract_date=ds.extract_date)
    b = account_features(shuffled, as_of, stats=model.stats_, with_labels=False)
    sa, sb = model.score_accounts(a), model.score_accounts(b)
    np.testing.assert_allclose(sa.to_numpy(), sb.to_numpy(), rtol=0, atol=1e-9)
    # and scoring the rows in another order gives each row the same score
    perm = np.random.default_rng(0).permutation(len(a))
    sp = model.score_accounts(a.iloc[perm])
    np.testing.assert_allclose(sp.to_numpy(), sa.to_numpy()[perm], rtol=0, atol=1e-12)


def test_unseen_and_missing_categories_do_not_crash(small_model):
    model, snaps, _, _ = small_model
    rows = snaps.part("test").head(5).copy()
    rows["primary_payer_id"] = ["NEW-PAYER", None, "NEW-PAYER", None, "X"]
    rows["financial_class"] = None
    out = model.score_accounts(rows)
    assert list(out.columns) == ["p_payment", "expected_recovery"] and np.isfinite(out.to_numpy()).all()


def test_minimum_function_on_simulated_data(small_model, small_data):
    """Even on the small test dataset the model beats the orderings billing offices use today."""
    from training.evaluate import evaluate_accounts
    from training.train import read_truth

    model, snaps, _, cfg = small_model
    m = evaluate_accounts(model, snaps.part("test"), cfg, read_truth(small_data)[0]).metrics
    assert m["roc_auc"] > 0.75
    assert m["recovery_at_20_model"] > m["recovery_at_20_oldest"] + 0.3
    assert m["recovery_at_20_model"] > m["recovery_at_20_random"] + 0.3
    assert m["recovery_at_20_model"] >= 0.9 * m["recovery_at_20_perfect"]
    assert m["ece"] < 0.06
    assert abs(m["expected_to_actual_dollars"] - 1) < 0.25


def test_training_is_reproducible(small_model):
    from training.train import train_model

    model, snaps, ds, cfg = small_model
    again, _ = train_model(ds, cfg, snapshots=snaps)
    test = snaps.part("test")
    np.testing.assert_array_equal(model.score_accounts(test).to_numpy(), again.score_accounts(test).to_numpy())


def test_fit_learns_everything_and_older_bundles_still_load(small_model):
    import pickle

    from features.catalogue import Horizons
    from training.model import RecoupModel

    model, snaps, _, cfg = small_model
    assert vars(RecoupModel(cfg)) == {"settings": cfg}  # __init__ only keeps its parameter
    learned = {k for k in vars(model) if k != "settings"}
    assert learned and all(k.endswith("_") for k in learned) and "drift_reference_" in learned
    # a bundle pickled before `horizons_`: the two horizons were separate attributes, the config a dict
    state = {k: v for k, v in vars(model).items() if k not in ("settings", "horizons_")}
    old = RecoupModel.__new__(RecoupModel)
    old.__dict__.update(state, config=cfg.as_dict(), horizon_days_=45, overturn_horizon_days_=90)
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.horizons_ == Horizons(45, 90) and not hasattr(loaded, "horizon_days_")
    test = snaps.part("test")
    np.testing.assert_array_equal(loaded.score_accounts(test).to_numpy(), model.score_accounts(test).to_numpy())


def test_drift_reference_is_quiet_on_its_own_population_and_warns_on_a_shift(small_model):
    from features.snapshot import account_features
    from training.drift import drift_report

    model, _, ds, _ = small_model
    feats = account_features(ds, "2025-05-01", stats=model.stats_, with_labels=False)
    scores = model.score_accounts(feats)
    quiet = drift_report(model.drift_reference_, feats, {c: scores[c].to_numpy() for c in scores})
    assert not quiet["warn"].any(), quiet.head()
    shifted = feats.assign(balance=feats["balance"] * 10, financial_class="commercial")
    loud = drift_report(model.drift_reference_, shifted, {c: scores[c].to_numpy() for c in scores}).set_index("name")
    assert loud.loc["balance", "warn"] and loud.loc["financial_class", "warn"]
    assert not loud.loc["patient_age", "warn"]
    # the reference holds aggregates only: no row of the data
    assert set(model.drift_reference_) == {"numeric", "categorical", "scores", "rows"}


def test_a_guarantor_who_paid_before_scores_above_one_who_never_did(small_model):
    """Direction: the same patient balances, once owed by a person who paid off their earlier balances here
    and once by one whose earlier balances went to an agency unpaid."""
    model, snaps, _, _ = small_model
    rows = snaps.part("test")
    rows = rows[(rows["balance_patient"] > 0) & (rows["balance_insurance"] <= 0)].head(400)
    assert len(rows) >= 100
    earlier = dict(guarantor_prior_accounts=2.0, guarantor_closed_accounts=2.0, guarantor_open_accounts=0.0)
    paid = rows.assign(**earlier, guarantor_paid_in_full_share=1.0, guarantor_patient_paid_share=1.0,
                       guarantor_agency_accounts=0.0, guarantor_patient_payments_365d=2.0,
                       guarantor_days_since_last_payment=90.0, guarantor_median_days_to_pay=20.0)
    never = rows.assign(**earlier, guarantor_paid_in_full_share=0.0, guarantor_patient_paid_share=0.0,
                        guarantor_agency_accounts=2.0, guarantor_patient_payments_365d=0.0,
                        guarantor_days_since_last_payment=np.nan, guarantor_median_days_to_pay=np.nan)
    p_paid = model.score_accounts(paid)["p_payment"].to_numpy()
    p_never = model.score_accounts(never)["p_payment"].to_numpy()
    assert p_paid.mean() > p_never.mean() + 0.05, (p_paid.mean(), p_never.mean())
    assert (p_paid >= p_never - 1e-9).mean() > 0.9
