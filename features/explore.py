"""The A/R at an as-of date, as a billing office reads it: aging, balances by financial class,
denials by CARC and payer, overturns and days to pay (notebooks/01_explore_ar.ipynb).

Every number here is point-in-time, computed from what was known on the as-of date, and comes
from the one feature code path (`features.snapshot`): the open accounts are `account_features`
rows, the denial events are the snapshot module's own denial definition, the payer rates are the
pooled statistics table the model reads. Nothing here is a second implementation of a feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.catalogue import CARC_GROUP_NAMES, DEFAULT_HORIZONS, Horizons, carc_descriptions
from features.contract import Dataset
from features.dates import NEVER, day_number
from features.snapshot import History, account_features, pooled_stats

AGING_BUCKETS = [-1, 30, 60, 90, 180, 365, np.inf]
AGING_LABELS = ["0-30", "31-60", "61-90", "91-180", "181-365", "365+"]


def open_ar(ds: Dataset, as_of) -> pd.DataFrame:
    """One row per open account at `as_of` (the model's feature rows, no labels) with its aging
    bucket (days since service)."""
    acc = account_features(ds, as_of, with_labels=False)
    acc["aging_bucket"] = pd.Categorical(
        pd.cut(acc["days_since_service"], AGING_BUCKETS, labels=AGING_LABELS).astype(str),
        categories=AGING_LABELS, ordered=True)
    return acc


def aging_table(ar: pd.DataFrame) -> pd.DataFrame:
    """Accounts and dollars per aging bucket, split into insurance and patient balances."""
    g = ar.groupby("aging_bucket", observed=False)
    out = pd.DataFrame({
        "accounts": g.size(),
        "balance": g["balance"].sum(),
        "balance_insurance": g["balance_insurance"].sum(),
        "balance_patient": g["balance_patient"].sum(),
    }).fillna(0.0)
    out["share_of_balance"] = out["balance"] / max(float(out["balance"].sum()), 1e-9)
    return out.reset_index()


def balance_by_class(ar: pd.DataFrame) -> pd.DataFrame:
    """Accounts and dollars per financial class, largest balance first."""
    g = ar.groupby("financial_class", observed=True)
    out = pd.DataFrame({
        "accounts": g.size(),
        "balance": g["balance"].sum(),
        "mean_balance": g["balance"].mean(),
        "balance_patient": g["balance_patient"].sum(),
        "median_days_since_service": g["days_since_service"].median(),
    })
    out["share_of_balance"] = out["balance"] / max(float(out["balance"].sum()), 1e-9)
    return out.sort_values("balance", ascending=False).reset_index()


def aging_by_class(ar: pd.DataFrame) -> pd.DataFrame:
    """Balance dollars: aging buckets (rows) by financial class (columns)."""
    return ar.pivot_table(index="aging_bucket", columns="financial_class", values="balance", aggfunc="sum",
                          observed=False, fill_value=0.0)


def denial_events(ds: Dataset, as_of, horizons: Horizons = DEFAULT_HORIZONS) -> pd.DataFrame:
    """Every denial received on or before `as_of`, as the features define a denial (DESIGN.md), with
    whether it was worked and overturned as known at `as_of`: `resolved` when its
    `horizons.overturn_horizon_days` window had closed; `worked` / `overturned` only count on resolved
    denials (else NaN)."""
    h = History.from_dataset(ds)
    T = day_number(as_of)
    rows = np.flatnonzero(h.known_denials(T))
    resolved, worked, over = (m[rows] for m in h.denial_outcomes(T, horizons.overturn_horizon_days))
    claim = h.d_claim[rows]
    payer = h.c_payer[claim]
    return pd.DataFrame({
        "claim_id": h.c_ids[claim],
        "account_id": h.acct_ids[h.d_acct[rows]],
        "denial_date": h.denial_dates(rows),
        "payer_id": np.where(payer >= 0, h.pay_ids[np.maximum(payer, 0)], None),
        "financial_class": np.where(payer >= 0, h.pay_class[np.maximum(payer, 0)], None),
        "carc": h.denial_carcs(rows),
        "carc_group": np.array(CARC_GROUP_NAMES, dtype=object)[h.d_group[rows]],
        "partial": h.d_partial[rows],
        "denied_amount": h.d_amount[rows],
        "resolved": resolved,
        "worked": np.where(resolved, worked, np.nan),
        "overturned": np.where(worked, over.astype(float), np.nan),
    }).sort_values(["denial_date", "claim_id"], kind="stable").reset_index(drop=True)


def _denial_summary(events: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = events.groupby(by, observed=True, dropna=False)
    out = pd.DataFrame({
        "denials": g.size(),
        "denied_dollars": g["denied_amount"].sum(),
        "resolved": g["resolved"].sum(),
        "worked": g["worked"].sum(),
        "overturned": g["overturned"].sum(),
    })
    out["share_of_denials"] = out["denials"] / max(len(events), 1)
    out["worked_rate"] = out["worked"] / out["resolved"].where(out["resolved"] > 0)
    out["overturn_rate"] = out["overturned"] / out["worked"].where(out["worked"] > 0)
    return out.sort_values(["denials", *by], ascending=[False] + [True] * len(by)).reset_index()


def denials_by_carc(events: pd.DataFrame, top: int | None = 15) -> pd.DataFrame:
    """Denials per CARC (with its group and description): count, dollars, share, overturn rate of
    the worked ones. `top` keeps the most frequent codes."""
    out = _denial_summary(events, ["carc", "carc_group"])
    desc = carc_descriptions()
    out.insert(2, "description", out["carc"].map(lambda c: desc.get(str(c), "")[:70]))
    return out.head(top) if top else out


def denials_by_group(events: pd.DataFrame) -> pd.DataFrame:
    """Denials and overturn rates per CARC group."""
    return _denial_summary(events, ["carc_group"])


def payer_rates(ds: Dataset, as_of, horizons: Horizons = DEFAULT_HORIZONS) -> pd.DataFrame:
    """The payer rows of the point-in-time statistics table the model reads (smoothed denial and
    overturn rates, paid-to-billed, mean days to pay), with the payer's name and class."""
    s = pooled_stats(ds, as_of, horizons)
    s = s[s["level"] == "payer"].drop(columns=["level", "carc_group", "proc_family"])
    names = ds["payers"][["payer_id", "payer_name", "financial_class"]]
    out = names.merge(s, on="payer_id", how="right")
    return out.sort_values("n_claims", ascending=False).reset_index(drop=True)


def days_to_pay(ds: Dataset, as_of) -> pd.DataFrame:
    """One row per claim first paid on or before `as_of`: days from submission to its first
    payment (a processed remittance paying more than zero), with the payer's financial class."""
    h = History.from_dataset(ds)
    T = day_number(as_of)
    first = h.first_payment_day(T)
    rows = np.flatnonzero((first < NEVER) & (h.c_day <= T))
    payer = h.c_payer[rows]
    return pd.DataFrame({
        "claim_id": h.c_ids[rows],
        "payer_id": np.where(payer >= 0, h.pay_ids[np.maximum(payer, 0)], None),
        "financial_class": np.where(payer >= 0, h.pay_class[np.maximum(payer, 0)], None),
        "payer_sequence": h.c_seq[rows],
        "days_to_pay": (first[rows] - h.c_day[rows]).astype(np.int64),
    })


def days_to_pay_summary(dtp: pd.DataFrame, by: str = "financial_class") -> pd.DataFrame:
    """Median, mean and 90th percentile of days to pay per group."""
    g = dtp.groupby(by, observed=True)["days_to_pay"]
    return pd.DataFrame({"claims": g.size(), "median_days": g.median(), "mean_days": g.mean(),
                         "p90_days": g.quantile(0.9)}).sort_values("median_days").reset_index()


# ----------------------------------------------------------------------------- plots


def _figure(size=(6.4, 4.4)):
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def plot_aging(aging: pd.DataFrame, as_of):
    """Stacked bars: insurance and patient balance per aging bucket."""
    fig, ax = _figure()
    x = aging["aging_bucket"].astype(str)
    ax.bar(x, aging["balance_insurance"] / 1e3, label="insurance balance")
    ax.bar(x, aging["balance_patient"] / 1e3, bottom=aging["balance_insurance"] / 1e3, label="patient balance")
    ax.set(title=f"Open A/R by age at {pd.Timestamp(as_of).date()}", xlabel="days since service",
           ylabel="open balance (thousand $)")
    ax.legend()
    return fig


def plot_balance_by_class(by_class: pd.DataFrame, as_of):
    fig, ax = _figure()
    ax.barh(by_class["financial_class"].astype(str)[::-1], by_class["balance"][::-1] / 1e3)
    ax.set(title=f"Open balance by financial class at {pd.Timestamp(as_of).date()}",
           xlabel="open balance (thousand $)", ylabel="financial class of the primary payer")
    return fig


def plot_denials_by_carc(by_carc: pd.DataFrame):
    fig, ax = _figure((6.4, 5.2))
    rows = by_carc.iloc[::-1]
    ax.barh(rows["carc"].astype(str) + " (" + rows["carc_group"].astype(str) + ")", 100 * rows["share_of_denials"])
    ax.set(title="Denials by CARC (most frequent codes)", xlabel="share of all denials (%)",
           ylabel="CARC (group)")
    return fig


def plot_payer_rates(rates: pd.DataFrame):
    """Denial rate against overturn rate per payer; the marker size is the payer's claim count."""
    fig, ax = _figure()
    size = 20 + 300 * rates["n_claims"] / max(float(rates["n_claims"].max()), 1.0)
    ax.scatter(100 * rates["denial_rate"], 100 * rates["overturn_rate"], s=size, alpha=0.6)
    for r in rates.itertuples():
        ax.annotate(str(r.payer_id), (100 * r.denial_rate, 100 * r.overturn_rate), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set(title="Payers: denial rate and overturn rate of worked denials",
           xlabel="denial rate (% of adjudicated claims)", ylabel="overturn rate (% of worked denials)")
    return fig


def plot_days_to_pay(dtp: pd.DataFrame, by: str = "financial_class"):
    fig, ax = _figure()
    groups = sorted(dtp[by].dropna().unique())
    ax.boxplot([dtp.loc[dtp[by] == g, "days_to_pay"] for g in groups], tick_labels=groups, showfliers=False)
    ax.set(title="Days from claim submission to first payment", xlabel=by.replace("_", " "),
           ylabel="days to pay (days)")
    ax.tick_params(axis="x", rotation=30)
    return fig
