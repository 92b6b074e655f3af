"""The notebooks' package helpers: features.explore, training.backtest, serving.whatif."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow
T = pd.Timestamp("2025-03-01")


@pytest.fixture(scope="module")
def ds():
    from features.contract import read_dataset
    from tests.simdata import small_dataset_dir

    return read_dataset(small_dataset_dir())


def test_open_ar_tables_add_up(ds):
    from features import explore
    from features.snapshot import account_features

    ar = explore.open_ar(ds, T)
    assert len(ar) == len(account_features(ds, T, with_labels=False))
    assert ar["aging_bucket"].notna().all()
    aging, by_class = explore.aging_table(ar), explore.balance_by_class(ar)
    assert list(aging["aging_bucket"]) == explore.AGING_LABELS
    for table in (aging, by_class):
        assert table["balance"].sum() == pytest.approx(ar["balance"].sum())
        assert table["accounts"].sum() == len(ar)
        assert table["share_of_balance"].sum() == pytest.approx(1.0)
    assert explore.aging_by_class(ar).to_numpy().sum() == pytest.approx(ar["balance"].sum())


def test_denial_events_are_point_in_time(ds):
    from features import explore
    from features.snapshot import denial_features

    ev = explore.denial_events(ds, T)
    assert len(ev) and (ev["denial_date"] <= T).all()
    assert (ev["resolved"] == (ev["denial_date"] + pd.Timedelta(days=120) <= T)).all()
    assert ev.loc[~ev["resolved"], ["worked", "overturned"]].isna().all().all()
    assert ev.loc[ev["worked"] != 1, "overturned"].isna().all()
    assert set(denial_features(ds, T, with_labels=False)["claim_id"]) <= set(ev["claim_id"])
    by_carc = explore.denials_by_carc(ev, top=None)
    assert by_carc["denials"].sum() == len(ev)
    rate = by_carc["overturn_rate"].dropna()
    assert ((rate >= 0) & (rate <= 1)).all()


def test_payer_rates_and_days_to_pay(ds):
    from features import explore

    rates = explore.payer_rates(ds, T)
    assert set(rates["payer_id"]) == set(ds["payers"]["payer_id"])
    assert rates["denial_rate"].between(0, 1).all()
    dtp = explore.days_to_pay(ds, T)
    assert len(dtp) and (dtp["days_to_pay"] >= 0).all()
    summary = explore.days_to_pay_summary(dtp)
    assert summary["claims"].sum() == dtp["financial_class"].notna().sum()


def test_extract_at_is_the_data_as_known_then(ds):
    """Nothing known on T changes when the later rows are cut off: features and denials agree."""
    from features import explore
    from features.contract import validate_dataset
    from features.snapshot import account_features
    from training.backtest import extract_at

    past = extract_at(ds, T)
    validate_dataset(past)  # references hold, no row after the extract date
    assert past.extract_date == T
    assert all(len(past[n]) <= len(ds[n]) for n in past.tables)
    assert (past["appeals"]["decision_date"].dropna() <= T).all()
    a = account_features(ds, T, with_labels=False)
    b = account_features(past, T, with_labels=False)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(explore.denial_events(ds, T), explore.denial_events(past, T))


def test_backtest_months_and_drift():
    from tests.modelfixtures import small_model
    from training.backtest import backtest, drift_pivot, month_starts

    model, _, ds, cfg = small_model()
    months = month_starts("2025-02-01", "2025-06-01")  # June 1 + 60 days passes the extract date (June 30)
    bt = backtest(model, ds, months, cfg)
    assert list(bt.monthly["as_of"]) == months[:4]
    assert bt.monthly["roc_auc"].between(0.5, 1).all()
    shares = bt.monthly.filter(like="recovery_at_20_")
    assert ((shares >= 0) & (shares <= 1)).all().all()
    assert set(bt.recovery["ordering"]) >= {"model", "largest_balance", "oldest", "random"}
    assert set(bt.drift["as_of"]) == set(months[:4]) and (bt.drift["psi"] >= 0).all()
    wide = drift_pivot(bt.drift, top=5)
    assert wide.shape == (5, 4)


def test_whatif_capacity_and_comparison():
    from features.snapshot import account_features, denial_features
    from serving.ranking import load_ranking_config, rank
    from serving.whatif import action_mix, capacity_table, compare_worklists
    from tests.modelfixtures import small_model

    model, _, ds, _ = small_model()
    acc = account_features(ds, T, stats=model.stats_, with_labels=False)
    den = denial_features(ds, T, stats=model.stats_, with_labels=False)
    rcfg = load_ranking_config()
    wl = rank(model, acc, den, rcfg, "t", "t", reasons_rows=0).accounts
    mix = action_mix(wl)
    assert mix["accounts"].sum() == len(wl)
    cap = capacity_table(model, acc, den, rcfg, [60, 240, 960])
    assert (cap["minutes_used"] <= cap["capacity_minutes"] + 1e-9).all()
    assert np.all(np.diff(cap["accounts_worked"]) >= 0)
    same = compare_worklists(wl, wl, top=50)
    assert same["overlap_share"] == 1.0 and same["median_rank_move"] == 0.0 and same["action_changed_share"] == 0.0
    other = rank(model, acc, den, load_ranking_config(overrides={"priority": "net"}), "t", "t", reasons_rows=0)
    diff = compare_worklists(wl, other.accounts, top=50)
    assert 0.0 <= diff["overlap_share"] <= 1.0
