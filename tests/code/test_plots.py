"""Every plot the evaluation and the notebooks make has a title, labelled axes with units, and saves
as a readable PNG."""

from __future__ import annotations

import io
import re

import numpy as np
import pandas as pd
import pytest

UNIT = re.compile(r"\(.*\)|%|\$")


def check_figure(fig, name: str) -> None:
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes, f"{name}: no axes"
    colorbar_labels = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
    for ax in axes:
        title, xlabel, ylabel = ax.get_title(), ax.get_xlabel(), ax.get_ylabel()
        assert title.strip(), f"{name}: an axes has no title"
        assert xlabel.strip() and ylabel.strip(), f"{name} ({title}): unlabelled axis"
        assert any(UNIT.search(t) for t in (xlabel, ylabel, *colorbar_labels)), \
            f"{name} ({title}): no unit on either axis: {xlabel!r}, {ylabel!r}"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    png = buf.getvalue()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"{name}: not a PNG"
    assert 10_000 < len(png) < 2_000_000, f"{name}: PNG of {len(png)} bytes"
    img = mpimg.imread(io.BytesIO(png), format="png")
    h, w = img.shape[:2]
    assert 450 <= w <= 2_500 and 300 <= h <= 2_500, f"{name}: {w}x{h} px"
    assert float(img[..., :3].std()) > 0.05, f"{name}: the image is almost blank"
    plt.close(fig)


def _scored(n=3000, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p).astype(float)
    bal = rng.lognormal(6, 1.2, n)
    return pd.DataFrame({
        "account_id": [f"A{i:05d}" for i in range(n)],
        "as_of": pd.to_datetime(rng.choice(["2025-01-01", "2025-02-01", "2025-03-01"], n)),
        "p_payment": p, "label_paid": y, "balance": bal, "days_since_service": rng.integers(0, 400, n),
        "expected_recovery": p * bal * 0.3, "recovered": y * bal * rng.uniform(0.1, 0.5, n),
    })


def test_evaluation_plots_from_tables():
    from training import evaluate as ev

    df = _scored()
    rel = ev.reliability_table(df["p_payment"].to_numpy(), df["label_paid"].to_numpy())
    check_figure(ev.plot_reliability(rel, "Payment model calibration (test period)"), "reliability")
    df["_balance"], df["_random"] = df["balance"], ev._stable_random(df["account_id"], 0)
    curve = ev.recovery_curve(df, {"model": "expected_recovery", "largest_balance": "_balance", "random": "_random"},
                              "recovered", "account_id")
    check_figure(ev.plot_recovery_curve(curve, "Dollars recovered in 60 days"), "recovery_curve")
    check_figure(ev.plot_recovery_curve(curve, "Overturn dollars", items="denials"), "denial_recovery_curve")
    auc = ev._auc_by(df, "as_of")
    auc.loc[1, "roc_auc"] = np.nan  # a month with one label value still draws
    check_figure(ev.plot_auc_by_month(auc), "auc_by_month")
    imp = pd.DataFrame({"feature": [f"feature_{i}" for i in range(30)], "payment_gain": np.arange(30.0),
                        "amount_gain": np.arange(30.0)[::-1]})
    check_figure(ev.plot_importance(imp), "feature_importance")


@pytest.mark.slow
def test_every_evaluation_figure_of_a_trained_model(small_model):
    from training.train import evaluate_model

    model, snaps, ds, cfg = small_model
    reports = evaluate_model(model, snaps, cfg, ds.source, ds)
    names = [n for r in reports for n in r.figures]
    assert set(names) >= {"reliability", "recovery_curve", "auc_by_month", "feature_importance",
                          "denial_recovery_curve", "lift_qini"}
    for r in reports:
        for name, fig in r.figures.items():
            check_figure(fig, name)


@pytest.mark.slow
def test_notebook_plots(small_model):
    """The plots of features.explore, training.backtest and serving.whatif (notebooks 01, 03, 04)."""
    from features import explore
    from features.snapshot import account_features, denial_features
    from serving.ranking import load_ranking_config, rank
    from serving.whatif import action_mix, capacity_table, plot_action_mix, plot_capacity
    from training.backtest import backtest, drift_pivot, month_starts, plot_backtest_quality, plot_backtest_recovery
    from training.backtest import plot_drift as plot_drift_

    model, _, ds, cfg = small_model
    T = pd.Timestamp("2025-03-01")
    ar = explore.open_ar(ds, T)
    check_figure(explore.plot_aging(explore.aging_table(ar), T), "aging")
    check_figure(explore.plot_balance_by_class(explore.balance_by_class(ar), T), "balance_by_class")
    ev = explore.denial_events(ds, T)
    check_figure(explore.plot_denials_by_carc(explore.denials_by_carc(ev)), "denials_by_carc")
    check_figure(explore.plot_payer_rates(explore.payer_rates(ds, T)), "payer_rates")
    check_figure(explore.plot_days_to_pay(explore.days_to_pay(ds, T)), "days_to_pay")

    acc = account_features(ds, T, stats=model.stats_, with_labels=False)
    den = denial_features(ds, T, stats=model.stats_, with_labels=False)
    rcfg = load_ranking_config()
    wl = rank(model, acc, den, rcfg, "t", "t", reasons_rows=0).accounts
    check_figure(plot_action_mix(action_mix(wl)), "action_mix")
    check_figure(plot_capacity(capacity_table(model, acc, den, rcfg, [60, 240, 960])), "capacity")

    bt = backtest(model, ds, month_starts("2025-02-01", "2025-04-01"), cfg)
    check_figure(plot_backtest_quality(bt.monthly, "2025-01-31"), "backtest_quality")
    check_figure(plot_backtest_recovery(bt.recovery), "backtest_recovery")
    check_figure(plot_drift_(drift_pivot(bt.drift)), "drift")
