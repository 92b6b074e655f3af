"""Backtest a frozen model month by month (notebooks/04_drift_and_backtest.ipynb).

`extract_at` gives the dataset as its extract would have looked on a past date, so a model can be
trained on what was known then; `backtest` then scores each later month with that model frozen
(its stored statistics table, as every scoring path uses) and reports discrimination, calibration
and dollars captured per month against the baseline orderings, with the PSI drift report of each
month against the reference stored in the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from features.contract import TABLES, Dataset
from features.dates import parse_as_of
from features.snapshot import account_features
from training.drift import WARN_PSI, drift_report
from training.evaluate import baseline_orderings, captured_by_top, expected_calibration_error
from training.settings import TrainingSettings

# fields known only from their own date (DESIGN.md): (table, date column, columns cleared while unknown)
_LATER_KNOWN = {
    "accounts": ("discharge_date", ("discharge_date",)),
    "appeals": ("decision_date", ("outcome", "decision_date", "recovered_amount")),
}


def extract_at(ds: Dataset, cutoff) -> Dataset:
    """The dataset as extracted on `cutoff`: rows whose event time (their own, or their parent's)
    is after it are dropped, later-known fields dated after it are cleared, and the extract date is
    `cutoff`. Truth tables are not carried over."""
    cutoff = parse_as_of(cutoff)
    kept: dict[str, pd.DataFrame] = {}
    for name, spec in TABLES.items():  # declared parents first
        if name not in ds.tables:
            continue
        df = ds.tables[name]
        if spec.event_time is not None:
            df = df[df[spec.event_time] <= cutoff]
        for ref in spec.references:  # a row whose parent is not known yet is not known either
            if ref.table != name and ref.table in kept:
                df = df[df[ref.column].isna() | df[ref.column].isin(kept[ref.table][ref.target])]
        df = df.copy()
        if name in _LATER_KNOWN:
            date_col, cols = _LATER_KNOWN[name]
            late = (df[date_col] > cutoff).fillna(False).to_numpy(dtype=bool)
            for c in cols:
                df.loc[late, c] = None
        kept[name] = df.reset_index(drop=True)
    return Dataset(kept, extract_date=cutoff, source=f"{ds.source} (as extracted on {cutoff.date()})")


def month_starts(first, last) -> list[pd.Timestamp]:
    """First days of the months from `first` to `last` (both included when they are month starts)."""
    return list(pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq="MS"))


@dataclass
class Backtest:
    monthly: pd.DataFrame  # one row per as-of date: metrics and recovery shares per ordering
    recovery: pd.DataFrame  # long: as_of, ordering, top_percent, share
    drift: pd.DataFrame  # long: as_of, kind, name, psi, warn


def backtest(model, ds: Dataset, dates, settings: TrainingSettings, truth: pd.DataFrame | None = None,
             top_percent: int = 20) -> Backtest:
    """Score every open account at each as-of date with `model` frozen and compare with what
    happened in the following `model.horizons_.horizon_days` (dates whose label window passes the
    extract date are skipped). `truth` (the simulator's `_truth/accounts`) adds the perfect ordering."""
    acc = account_features(ds, dates, stats=model.stats_, horizons=model.horizons_)
    acc = acc[acc["label_paid"].notna()].reset_index(drop=True)
    scores = model.score_accounts(acc)
    acc["p_payment"] = scores["p_payment"].to_numpy()
    acc["expected_recovery"] = scores["expected_recovery"].to_numpy()
    acc["recovered"] = acc["label_recovered"].clip(lower=0)
    if truth is not None and len(truth):
        acc = acc.merge(truth[["account_id", "as_of", "expected_recovery"]]
                        .rename(columns={"expected_recovery": "true_expected"}), on=["account_id", "as_of"],
                        how="left")
    bins = settings.evaluation.reliability_bins
    rows, curves, drifts = [], [], []
    for t, g in acc.groupby("as_of", sort=True):
        g = g.reset_index(drop=True)
        y, p = g["label_paid"].to_numpy(float), g["p_payment"].to_numpy()
        total = float(g["recovered"].sum())
        row = {"as_of": t, "accounts": len(g), "paid_rate": float(y.mean()),
               "roc_auc": float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan,
               "ece": expected_calibration_error(p, y, bins), "recovered_dollars": total,
               "expected_dollars": float(g["expected_recovery"].sum())}
        row["expected_to_actual"] = row["expected_dollars"] / total if total else np.nan
        for name, col in baseline_orderings(g, "accounts", settings.seed).items():
            got = captured_by_top(g, col, "recovered", [top_percent], "account_id")[top_percent]
            share = got / total if total else np.nan
            row[f"recovery_at_{top_percent}_{name}"] = share
            curves.append({"as_of": t, "ordering": name, "top_percent": top_percent, "share": share})
        rows.append(row)
        d = drift_report(model.drift_reference_, g, {"p_payment": p, "expected_recovery": g["expected_recovery"]})
        drifts.append(d.assign(as_of=t))
    drift = pd.concat(drifts, ignore_index=True) if drifts else pd.DataFrame(
        columns=["kind", "name", "psi", "warn", "as_of"])
    return Backtest(pd.DataFrame(rows), pd.DataFrame(curves), drift[["as_of", "kind", "name", "psi", "warn"]])


def drift_pivot(drift: pd.DataFrame, top: int = 12) -> pd.DataFrame:
    """PSI by item (rows: the `top` items with the largest PSI in any month) and as-of date (columns)."""
    wide = drift.pivot_table(index="name", columns="as_of", values="psi", aggfunc="max")
    wide.columns = [pd.Timestamp(c).strftime("%Y-%m") for c in wide.columns]
    return wide.loc[wide.max(axis=1).sort_values(ascending=False).index[:top]]


# ----------------------------------------------------------------------------- plots


def _figure(size=(6.4, 4.4)):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def plot_backtest_quality(monthly: pd.DataFrame, cutoff=None):
    """Two panels: ROC-AUC by month, and the model's expected dollars over the dollars recovered."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.0, 4.2))
    ax1.plot(monthly["as_of"], monthly["roc_auc"], marker="o")
    ax1.set(title="Payment model ROC-AUC by month", xlabel="as-of date (month start)", ylabel="ROC-AUC (unitless)",
            ylim=(0.5, 1.0))
    ax2.plot(monthly["as_of"], monthly["expected_to_actual"], marker="o", color="tab:orange")
    ax2.axhline(1.0, color="grey", linestyle="--", label="expected = recovered")
    ax2.set(title="Expected dollars over dollars recovered", xlabel="as-of date (month start)",
            ylabel="ratio (1 = dollars right)", ylim=(0, max(2.0, float(monthly["expected_to_actual"].max()) * 1.1)))
    ax2.legend(loc="lower right")
    for ax in (ax1, ax2):
        if cutoff is not None:
            ax.axvline(pd.Timestamp(cutoff), color="grey", linestyle=":")
        ax.tick_params(axis="x", rotation=35)
    fig.suptitle("The frozen model, month by month (dotted line: its training data ends)")
    fig.tight_layout()
    return fig


def plot_backtest_recovery(recovery: pd.DataFrame, top_percent: int = 20):
    fig, ax = _figure()
    styles = {"model": dict(linewidth=2.5), "perfect": dict(color="black", linestyle="--"),
              "random": dict(color="grey", linestyle=":")}
    for name, g in recovery.groupby("ordering", sort=False):
        ax.plot(g["as_of"], 100 * g["share"], marker="o", label=name.replace("_", " "), **styles.get(name, {}))
    ax.set(title=f"Dollars captured by the top {top_percent}% of each month's worklist",
           xlabel="as-of date (month start)", ylabel="dollars captured in 60 days (% of month's total)",
           ylim=(0, 100))
    ax.legend(loc="center right", fontsize=8)
    fig.autofmt_xdate()
    return fig


def plot_drift(wide: pd.DataFrame):
    """Heatmap of PSI by item and month; a cell above the warning level is marked."""
    fig, ax = _figure((7.0, 0.35 * len(wide) + 2.0))
    values = wide.to_numpy(dtype=float)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    vmax = min(max(WARN_PSI * 2, top), 1.0)  # beyond 1 every PSI means "very different": one colour
    im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax)
    ax.set_xticks(range(wide.shape[1]), wide.columns, rotation=45, ha="right")
    ax.set_yticks(range(wide.shape[0]), [str(i).replace("_", " ") for i in wide.index])
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v) and v > WARN_PSI:
            ax.text(j, i, "!", ha="center", va="center", color="white", fontweight="bold")
    fig.colorbar(im, ax=ax, label="population stability index (PSI, unitless)",
                 extend="max" if top > vmax else "neither")
    ax.set(title=f"Drift against the training reference (! = PSI > {WARN_PSI})", xlabel="as-of month",
           ylabel="feature or score")
    return fig
