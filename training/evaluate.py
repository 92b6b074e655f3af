"""Evaluation a collections director understands: calibration, discrimination, and dollars captured
by the top of the worklist against the orderings billing offices use today."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

if TYPE_CHECKING:
    from training.settings import TrainingSettings

log = logging.getLogger(__name__)

BALANCE_BANDS = [0, 100, 500, 2_000, 10_000, np.inf]
BALANCE_LABELS = ["<$100", "$100-500", "$500-2k", "$2k-10k", "$10k+"]
AGING_BUCKETS = [-1, 30, 60, 90, 180, 365, np.inf]
AGING_LABELS = ["0-30", "31-60", "61-90", "91-180", "181-365", "365+"]


@dataclass
class Report:
    metrics: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict = field(default_factory=dict)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True))
        for name, df in self.tables.items():
            df.to_csv(folder / f"{name}.csv", index=False)
        for name, fig in self.figures.items():
            fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        return folder


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-count bins (DESIGN.md): mean |observed - predicted| weighted by bin size."""
    table = reliability_table(p, y, bins)
    return float((table["n"] * (table["observed"] - table["predicted"]).abs()).sum() / table["n"].sum())


def reliability_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    return pd.DataFrame([{"bin": i + 1, "n": len(g), "predicted": float(p[g].mean()), "observed": float(y[g].mean())}
                         for i, g in enumerate(groups) if len(g)])


def _stable_random(keys: pd.Series, seed: int) -> np.ndarray:
    return pd.util.hash_pandas_object(keys.astype(str) + f"|{seed}", index=False).to_numpy() / 2.0**64


def captured_by_top(df: pd.DataFrame, score: str, value: str, ks: list[int], key: str,
                    group: str = "as_of") -> dict[int, float]:
    """Dollars of `value` in the top k% of each `group`'s list ordered by `score` (ties by key)."""
    out = {k: 0.0 for k in ks}
    for _, g in df.groupby(group, sort=True):
        g = g.sort_values([score, key], ascending=[False, True], kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(g[value].to_numpy())])
        for k in ks:
            out[k] += float(cum[int(np.ceil(len(g) * k / 100))])
    return out


def recovery_curve(df: pd.DataFrame, orderings: dict[str, str], value: str, key: str,
                   group: str = "as_of") -> pd.DataFrame:
    pct = list(range(0, 101, 2))
    total = df[value].sum()
    rows = []
    for name, col in orderings.items():
        got = captured_by_top(df, col, value, pct, key, group)
        rows += [{"ordering": name, "percent_worked": k, "share_captured": got[k] / total if total else 0.0}
                 for k in pct]
    return pd.DataFrame(rows)


def baseline_orderings(df: pd.DataFrame, kind: str, seed: int) -> dict[str, str]:
    """The orderings a worklist is compared with (model, largest, oldest, random; perfect when the
    truth is there) as columns of `df` (added to it): name -> column."""
    if kind == "accounts":
        df["_largest_balance"] = df["balance"]
        df["_oldest"] = df["days_since_service"]
        order = {"model": "expected_recovery", "largest_balance": "_largest_balance", "oldest": "_oldest"}
    else:
        df["_largest_balance"] = df["billed"]
        df["_oldest"] = df["days_since_denial"]
        order = {"model": "expected_recovery", "largest_billed": "_largest_balance", "oldest": "_oldest"}
    df["_random"] = _stable_random(df[df.columns[0]] + "|" + df["as_of"].astype(str), seed)
    order["random"] = "_random"
    if "true_expected" in df and df["true_expected"].notna().all():
        order["perfect"] = "true_expected"
    return order


def evaluate_accounts(model, test: pd.DataFrame, settings: TrainingSettings,
                      truth: pd.DataFrame | None = None) -> Report:
    """Metrics, slices, recovery at top k% and plots for the payment model on the test snapshots."""
    rep = Report()
    bins = settings.evaluation.reliability_bins
    ks = list(settings.evaluation.top_k_percent)
    df = test.copy()
    scores = model.score_accounts(df)
    df["p_payment"], df["expected_recovery"] = scores["p_payment"].to_numpy(), scores["expected_recovery"].to_numpy()
    y, p = df["label_paid"].to_numpy(float), df["p_payment"].to_numpy()
    dollars = df["label_recovered"].clip(lower=0)
    df["recovered"] = dollars
    m = rep.metrics
    m["test_snapshots"] = float(len(df))
    m["roc_auc"] = float(roc_auc_score(y, p))
    m["pr_auc"] = float(average_precision_score(y, p))
    m["brier"] = float(brier_score_loss(y, p))
    m["ece"] = expected_calibration_error(p, y, bins)
    m["expected_to_actual_dollars"] = float(df["expected_recovery"].sum() / max(dollars.sum(), 1e-9))
    if truth is not None and len(truth):
        df = df.merge(truth.rename(columns={"p_payment": "true_p", "expected_recovery": "true_expected"}),
                      on=["account_id", "as_of"], how="left")
        have = df["true_p"].notna()
        m["truth_coverage"] = float(have.mean())
        if have.any():
            m["truth_roc_auc"] = float(roc_auc_score(y[have.to_numpy()], df.loc[have, "true_p"]))
            m["model_roc_auc_on_truth_rows"] = float(roc_auc_score(y[have.to_numpy()], p[have.to_numpy()]))
    rep.tables["reliability"] = reliability_table(p, y, bins)
    # stability and slices
    rep.tables["auc_by_month"] = _auc_by(df, "as_of")
    df["balance_band"] = pd.cut(df["balance"], BALANCE_BANDS, labels=BALANCE_LABELS, right=False).astype(str)
    df["aging_bucket"] = pd.cut(df["days_since_service"], AGING_BUCKETS, labels=AGING_LABELS).astype(str)
    rep.tables["slices"] = pd.concat([_auc_by(df, c).rename(columns={c: "value"}).assign(slice=c)
                                      for c in ("financial_class", "balance_band", "aging_bucket")])
    # dollars captured
    orderings = baseline_orderings(df, "accounts", settings.seed)
    total = float(dollars.sum())
    rows = []
    for name, col in orderings.items():
        got = captured_by_top(df, col, "recovered", ks, "account_id")
        for k in ks:
            rows.append({"ordering": name, "top_percent": k, "dollars": got[k], "share": got[k] / total})
            m[f"recovery_at_{k}_{name}"] = got[k] / total
    rep.tables["recovery_at_k"] = pd.DataFrame(rows)
    if "perfect" in orderings:
        for k in ks:
            m[f"recovery_at_{k}_vs_perfect"] = m[f"recovery_at_{k}_model"] / m[f"recovery_at_{k}_perfect"]
    curve = recovery_curve(df, orderings, "recovered", "account_id")
    rep.tables["recovery_curve"] = curve
    rep.figures["reliability"] = plot_reliability(rep.tables["reliability"], "Payment model calibration (test period)")
    rep.figures["recovery_curve"] = plot_recovery_curve(
        curve, "Dollars recovered in 60 days by share of worklist worked")
    rep.figures["auc_by_month"] = plot_auc_by_month(rep.tables["auc_by_month"])
    rep.figures["feature_importance"] = plot_importance(model.feature_importance())
    return rep


def evaluate_denials(model, test: pd.DataFrame, settings: TrainingSettings,
                     truth: pd.DataFrame | None = None) -> Report:
    """Overturn model: discrimination, calibration and overturn dollars captured by the top k%."""
    rep = Report()
    ks = list(settings.evaluation.top_k_percent)
    df = test.copy()
    scores = model.score_denials(df)
    df["p_overturn"], df["expected_recovery"] = scores["p_overturn"].to_numpy(), scores["expected_recovery"].to_numpy()
    y, p = df["label_overturn"].to_numpy(float), df["p_overturn"].to_numpy()
    # realised overturn dollars: what an overturned claim is expected to pay (billed × the payer's ratio)
    df["recovered"] = y * df["billed"].to_numpy() * df["payer_paid_to_billed"].fillna(0).to_numpy()
    m = rep.metrics
    m["denial_test_snapshots"] = float(len(df))
    if len(np.unique(y)) == 2:
        m["overturn_roc_auc"] = float(roc_auc_score(y, p))
        m["overturn_pr_auc"] = float(average_precision_score(y, p))
    m["overturn_brier"] = float(brier_score_loss(y, p)) if len(y) else float("nan")
    m["overturn_ece"] = expected_calibration_error(p, y, settings.evaluation.reliability_bins) if len(y) else 0.0
    if truth is not None and len(truth):
        df = df.merge(truth[["claim_id", "p_overturn_if_worked", "expected_overturn_dollars"]]
                      .rename(columns={"expected_overturn_dollars": "true_expected"}), on="claim_id", how="left")
        have = df["p_overturn_if_worked"].notna().to_numpy()
        if have.any() and len(np.unique(y[have])) == 2:
            m["overturn_truth_roc_auc"] = float(roc_auc_score(y[have], df.loc[have, "p_overturn_if_worked"]))
    orderings = baseline_orderings(df, "denials", settings.seed)
    total = float(df["recovered"].sum())
    rows = []
    for name, col in orderings.items():
        got = captured_by_top(df, col, "recovered", ks, "claim_id")
        for k in ks:
            share = got[k] / total if total else 0.0
            rows.append({"ordering": name, "top_percent": k, "dollars": got[k], "share": share})
            m[f"overturn_recovery_at_{k}_{name}"] = share
    rep.tables["denial_recovery_at_k"] = pd.DataFrame(rows)
    curve = recovery_curve(df, orderings, "recovered", "claim_id")
    rep.tables["denial_recovery_curve"] = curve
    rep.figures["denial_recovery_curve"] = plot_recovery_curve(
        curve, "Overturn dollars captured by share of denials worked", items="denials")
    return rep


def _auc_by(df: pd.DataFrame, col: str) -> pd.DataFrame:
    rows = []
    for value, g in df.groupby(col, sort=True, observed=True):
        y = g["label_paid"].to_numpy(float)
        rows.append({col: str(value.date()) if isinstance(value, pd.Timestamp) else value, "n": len(g),
                     "paid_rate": float(y.mean()),
                     "roc_auc": float(roc_auc_score(y, g["p_payment"])) if len(np.unique(y)) == 2 else np.nan,
                     "dollars_recovered": float(g["recovered"].sum()),
                     "expected_recovery": float(g["expected_recovery"].sum())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- plots


def _figure():
    import os
    import sys

    import matplotlib

    # headless by default, but never switch the backend of a session that chose one (a notebook's inline)
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.4))


def plot_reliability(table: pd.DataFrame, title: str):
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot(table["predicted"], table["observed"], marker="o", label="model (equal-count bins)")
    ax.set(title=title, xlabel="predicted probability of payment within 60 days (0-1)",
           ylabel="observed share paid (0-1)", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    return fig


_CURVE_STYLES = {"model": dict(linewidth=2.5), "perfect": dict(color="black", linestyle="--"),
                 "random": dict(color="grey", linestyle=":")}


def plot_recovery_curve(curve: pd.DataFrame, title: str, items: str = "accounts"):
    fig, ax = _figure()
    for name, g in curve.groupby("ordering", sort=False):
        label = "perfect (simulator's truth)" if name == "perfect" else name.replace("_", " ")
        ax.plot(g["percent_worked"], 100 * g["share_captured"], label=label, **_CURVE_STYLES.get(name, {}))
    ax.set(title=title, xlabel=f"worklist worked, top % of {items}", ylabel="dollars captured (% of all recovered)",
           xlim=(0, 100), ylim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def plot_auc_by_month(table: pd.DataFrame):
    fig, ax = _figure()
    auc = table["roc_auc"].astype(float)
    bars = ax.bar(table["as_of"].astype(str), auc.fillna(0.5))
    ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.3f}" for v in auc], padding=2)
    ax.set(title="Payment model ROC-AUC by as-of date (test period)", xlabel="as-of date",
           ylabel="ROC-AUC (unitless)", ylim=(0.5, 1.0))
    ax.tick_params(axis="x", rotation=45)
    return fig


def plot_importance(importance: pd.DataFrame, top: int = 20):
    fig, ax = _figure()
    top_rows = importance.head(top).iloc[::-1]
    ax.barh(top_rows["feature"], top_rows["amount_gain"] / max(top_rows["amount_gain"].sum(), 1e-12) * 100)
    ax.set(title=f"Top {top} features of the expected-recovery model", xlabel="share of total split gain (%)",
           ylabel="feature")
    fig.set_size_inches(6.4, 6.0)
    return fig
