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
    notes: dict[str, str] = field(default_factory=dict)  # what could not be measured, and why

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "metrics.json").write_text(json.dumps(self.metrics, indent=2, sort_keys=True))
        if self.notes:
            (folder / "notes.json").write_text(json.dumps(self.notes, indent=2, sort_keys=True))
        for name, df in self.tables.items():
            df.to_csv(folder / f"{name}.csv", index=False)
        for name, fig in self.figures.items():
            fig.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        return folder


def save_reports(reports: list[Report], folder: str | Path) -> Path:
    """Several reports in one folder: their tables and figures, and one metrics.json (and notes.json) with
    all of their metrics (each report's own `save` would overwrite the others')."""
    merged = Report()
    for rep in reports:
        merged.metrics.update(rep.metrics)
        merged.tables.update(rep.tables)
        merged.figures.update(rep.figures)
        merged.notes.update(rep.notes)
    return merged.save(folder)


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


# ----------------------------------------------------------------------------- dollars that work brings (lift)
#
# The account report above checks predictions (who pays); this one checks the worklist's choice of work
# against the simulator's exact truth: each ordering's suggestions are worked top down until a budget of
# collector minutes is spent, and every piece of work earns its *true* lift (`_truth/actions`).

PERSON_ACTIONS = ("statement", "patient_call", "payment_plan_offer")  # one contact covers the guarantor
NO_WORK = ("wait", "hold", "idle", "covered")  # covered: by the contact on its guarantor's row
# recoup's next actions in the truth's (the `work` table's) terms; "call" depends on the balance (below)
ACTION_ALIASES = {"bill_patient": "statement", "payment_plan": "payment_plan_offer"}
PREMATURE_ACTIONS = ("status_call", "resubmit")
LIFT_ORDERINGS = ("lift", "expected_recovery", "largest_balance", "random", "oracle")
# the capacity at which the share of premature claim work is reported (issue 13: at most 2%)
CAPACITY_PERCENT = 20

OFFPOLICY_NOTE = (
    "No off-policy estimate of the lift ranking: training/offpolicy.py's ips and doubly_robust need, for every "
    "decision (each account or guarantor on each day), the logged probability of what was done, doing nothing "
    "included. The `work` table records only work done (its `action` has no idle), so the probability of the "
    "account-days nobody worked is not in the data, and the history's office (a per-account random rule) does not "
    "log it either. An office that logs every row of recoup's worklists with its `propensity` gives it; on "
    "simulated data the arena and the truth above measure the same thing exactly.")


def _day_key(as_of) -> np.ndarray:
    """As-of dates as day numbers (truth and snapshots store different datetime units)."""
    return pd.to_datetime(pd.Series(as_of)).to_numpy().astype("datetime64[D]").astype(np.int64)


def obvious_actions(acc: pd.DataFrame) -> np.ndarray:
    """The action an office works each account with today, from what it can see (the arena's obvious rule:
    appeal a denial, fix a rejection, send what a pend asks for, call about a claim, call the patient);
    None for an account on hold or with nothing to work."""
    def num(c: str) -> np.ndarray:
        return pd.to_numeric(acc[c], errors="coerce").fillna(0).to_numpy(float) if c in acc else np.zeros(len(acc))

    held = (num("in_bankruptcy") > 0) | (num("fa_pending") > 0) | (num("plan_in_good_standing") > 0)
    denial = (num("open_denial") > 0) & (num("pending_appeal") == 0)
    window_closed = pd.to_numeric(acc.get("appeal_deadline_days_left"), errors="coerce").to_numpy(float) < 0 \
        if "appeal_deadline_days_left" in acc else np.zeros(len(acc), dtype=bool)
    insurance = (num("balance_insurance") > 0.005) | (num("pending_adjudication") > 0)
    out = np.select(
        [held, denial & window_closed, denial, num("claim_rejected_open") > 0, num("claim_pended_open") > 0,
         insurance & (num("n_claims") > 0), insurance, num("balance_patient") > 0.005],
        # a closed denial and an unbilled balance have nothing to work (the arena's rule too)
        [None, None, "appeal", "resubmit", "send_information", "status_call", None, "patient_call"], default=None)
    return out.astype(object)


def score_suggestions(worklist: pd.DataFrame, truth_actions: pd.DataFrame,
                      guarantors: pd.DataFrame | None = None, minutes_of: dict[str, float] | None = None
                      ) -> pd.DataFrame:
    """Each suggestion's true lift and minutes when a worklist is worked top down.

    `worklist`: `account_id`, `as_of`, `action` (a `work` action or one of recoup's next actions), in priority
    order within each as-of date, optionally `guarantor_id`. `truth_actions`: `_truth/actions` (`account_id`,
    `as_of`, `action`, `minutes`, `lift`); `guarantors`: `account_id`, `as_of`, `guarantor_id` (`_truth/accounts`),
    else the worklist's own. `minutes_of`: minutes of an action the truth has no row for.

    Returns the worklist with `work_action` (the truth's name; None for wait, hold or idle), `feasible`,
    `counted`, `true_lift` and `minutes`:
    - `call` is a status call on an insurance balance and a patient call on a patient balance (whichever the
      truth lists for the account), `bill_patient` a statement;
    - an action the truth does not list for the account (infeasible) adds 0 but costs its minutes: the list
      spent a collector's time on it (the arena skips it free);
    - work on the person covers all of the guarantor's balances: its lift is the sum of their true lifts, and
      it is counted once, on the guarantor's first row; a later row of the same unit of work, or of an account
      already worked that day, adds nothing and costs nothing."""
    minutes_of = dict(minutes_of or {})
    wl = worklist.reset_index(drop=True)
    day = _day_key(wl["as_of"])
    ids = wl["account_id"].astype(str).to_numpy(dtype=object)
    ta = truth_actions
    t_day, t_ids = _day_key(ta["as_of"]), ta["account_id"].astype(str).to_numpy(dtype=object)
    t_act = ta["action"].astype(str).to_numpy(dtype=object)
    for a, m in ta.groupby("action", sort=True)["minutes"].first().items():
        minutes_of[str(a)] = float(m)  # the truth's minutes win: they are what the work takes

    # the guarantor of each account and date (the truth's when given: the same person as its contact sums)
    g_of: dict[tuple, str] = {}
    if guarantors is None and "guarantor_id" in wl:  # else the worklist's, for its truth rows too
        guarantors = wl[wl["guarantor_id"].notna()]
    if guarantors is not None and len(guarantors):
        g_of = dict(zip(zip(guarantors["account_id"].astype(str), _day_key(guarantors["as_of"]), strict=True),
                        guarantors["guarantor_id"].astype(str), strict=True))
    own = wl["guarantor_id"].astype(object).where(wl["guarantor_id"].notna(), wl["account_id"]).astype(str) \
        if "guarantor_id" in wl else wl["account_id"].astype(str)
    guarantor = np.array([g_of.get((a, d), o) for a, d, o in zip(ids, day, own, strict=True)], dtype=object)
    t_guar = np.array([g_of.get((a, d), a) for a, d in zip(t_ids, t_day, strict=True)], dtype=object)

    claim_lift = dict(zip(zip(t_ids, t_day, t_act, strict=True), ta["lift"].to_numpy(float), strict=True))
    person = np.isin(t_act, PERSON_ACTIONS)
    person_lift = pd.Series(ta["lift"].to_numpy(float)[person]).groupby(
        [t_guar[person], t_day[person], t_act[person]]).sum().to_dict()

    raw = wl["action"].to_numpy(dtype=object)
    work = np.empty(len(wl), dtype=object)
    for i, (a, d, act) in enumerate(zip(ids, day, raw, strict=True)):
        if act is None or (isinstance(act, float) and np.isnan(act)) or act in NO_WORK:
            work[i] = None
        elif act == "call":
            work[i] = "status_call" if (a, d, "status_call") in claim_lift else "patient_call"
        else:
            work[i] = ACTION_ALIASES.get(act, act)
    is_work = np.array([w is not None for w in work])
    is_person = np.isin(work, PERSON_ACTIONS)
    lift = np.zeros(len(wl))
    feasible = np.zeros(len(wl), dtype=bool)
    for i in np.flatnonzero(is_work):
        key = (guarantor[i], day[i], work[i]) if is_person[i] else (ids[i], day[i], work[i])
        v = (person_lift if is_person[i] else claim_lift).get(key)
        feasible[i] = v is not None
        lift[i] = 0.0 if v is None else v

    # one piece of work per unit (the guarantor for a contact, else the account) and per account a day
    unit = np.where(is_person, "g|" + guarantor.astype(str), "a|" + ids.astype(str))
    keys = pd.DataFrame({"day": day, "unit": unit, "account": ids})
    counted = is_work & ~keys.duplicated(["day", "unit"]).to_numpy()
    counted[counted] = ~keys[counted].duplicated(["day", "account"]).to_numpy()
    minutes = np.array([minutes_of.get(w if f else r, minutes_of.get(w, 0.0)) if c else 0.0
                        for w, r, f, c in zip(work, raw, feasible, counted, strict=True)])
    # object, not pandas' string dtype: no work stays None
    return wl.assign(work_action=pd.Series(work, index=wl.index, dtype=object), feasible=feasible, counted=counted,
                     true_lift=np.where(counted, lift, 0.0), minutes=minutes)


def lift_within(scored: pd.DataFrame, budgets: dict[int, float]) -> tuple[float, float]:
    """(true lift, minutes) of the prefix of each date's list whose minutes fit that date's budget
    (`budgets`: day number -> minutes), summed over the dates."""
    got = used = 0.0
    for d, g in scored.groupby(_day_key(scored["as_of"]), sort=True):
        cum_m = np.cumsum(g["minutes"].to_numpy())
        fit = cum_m <= budgets.get(int(d), 0.0) + 1e-9
        got += float(g["true_lift"].to_numpy()[fit].sum())
        used += float(g["minutes"].to_numpy()[fit].sum())
    return got, used


def oracle_worklist(truth_actions: pd.DataFrame, guarantors: pd.DataFrame | None) -> pd.DataFrame:
    """The arena's oracle on each date: each unit's best positive true lift per minute, best first."""
    from features.arena.policies import oracle

    ta = truth_actions.assign(_day=_day_key(truth_actions["as_of"]))
    if guarantors is not None and len(guarantors):
        g = guarantors[["account_id", "as_of", "guarantor_id"]].assign(_day=lambda f: _day_key(f["as_of"]))
        ta = ta.merge(g.drop(columns="as_of"), on=["account_id", "_day"], how="left")
    if "guarantor_id" not in ta:
        ta["guarantor_id"] = ta["account_id"]
    ta["guarantor_id"] = ta["guarantor_id"].fillna(ta["account_id"])
    parts = []
    for _, day in ta.groupby("_day", sort=True):
        wl = oracle(_TruthDay(day))
        parts.append(wl.assign(as_of=day["as_of"].iloc[0])[["account_id", "as_of", "action"]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["account_id", "as_of", "action"])


class _TruthDay:
    """What `features.arena.policies.oracle` reads of a day: its true lifts."""

    def __init__(self, lifts: pd.DataFrame) -> None:
        self._lifts = lifts

    def true_lifts(self) -> pd.DataFrame:
        return self._lifts


def evaluate_lift(model, test_accounts: pd.DataFrame, test_denials: pd.DataFrame | None, ranking_cfg: dict,
                  truth_actions: pd.DataFrame, truth_accounts: pd.DataFrame | None, settings: TrainingSettings,
                  work: pd.DataFrame | None = None) -> Report:
    """True lift (dollars within H that the work adds) captured by each ordering within the top k% of minutes,
    against the oracle; the share of premature claim work in a capacity-cut worklist; the Qini-style curve.

    The minutes base of a date is its workload: every open account worked once with its obvious action (a
    contact once per guarantor). k% of it is the budget each ordering's list is worked down to. `test_denials`
    should hold every open denial at the test dates (not only the labelled ones), or denial work is missed."""
    from serving.ranking import Ranked, finalize, score_rows, take

    rep = Report()
    m = rep.metrics
    ks = list(settings.evaluation.top_k_percent)
    days = np.intersect1d(np.unique(_day_key(test_accounts["as_of"])), np.unique(_day_key(truth_actions["as_of"])))
    m["offpolicy_available"] = 0.0
    rep.notes["offpolicy"] = OFFPOLICY_NOTE if work is None or "propensity" in work else (
        OFFPOLICY_NOTE + " This data's work log has no propensities at all.")
    if not len(days):
        rep.notes["lift"] = "the truth covers none of the test as-of dates: no lift evaluation"
        return rep
    acc = test_accounts[np.isin(_day_key(test_accounts["as_of"]), days)].reset_index(drop=True)
    den = None
    if test_denials is not None and len(test_denials):
        den = test_denials[np.isin(_day_key(test_denials["as_of"]), days)].reset_index(drop=True)
    ta = truth_actions[np.isin(_day_key(truth_actions["as_of"]), days)].reset_index(drop=True)
    tg = None
    if truth_accounts is not None and "guarantor_id" in truth_accounts:
        tg = truth_accounts[np.isin(_day_key(truth_accounts["as_of"]), days)][["account_id", "as_of", "guarantor_id"]]
    minutes_of = {a: float(s["minutes"]) for a, s in ranking_cfg["actions"].items()}
    m["lift_test_dates"] = float(len(days))
    known = truth_accounts if truth_accounts is not None else ta  # the truth's open accounts
    m["lift_truth_coverage"] = float(pd.Index(zip(acc["account_id"].astype(str), _day_key(acc["as_of"]), strict=True))
                                     .isin(pd.Index(zip(known["account_id"].astype(str), _day_key(known["as_of"]),
                                                        strict=True))).mean())

    # the orderings: recoup's by lift and by expected net recovery per minute, the two baselines, the oracle
    lists: dict[str, pd.DataFrame] = {}
    scored_by: dict[str, tuple[dict, Ranked]] = {}
    for name, priority in (("lift", "lift"), ("expected_recovery", "net_per_minute")):
        cfg = {**ranking_cfg, "priority": priority}
        scored = score_rows(model, acc, den, cfg)
        ranked = finalize(model, acc, scored, cfg, "evaluation", "evaluation", reasons_rows=0).accounts
        scored_by[name] = (cfg, scored)
        lists[name] = ranked[["account_id", "as_of", "next_action", "guarantor_id"]].rename(
            columns={"next_action": "action"})
    base = acc[["account_id", "as_of", "balance"]].assign(action=obvious_actions(acc), _day=_day_key(acc["as_of"]))
    if "guarantor_id" in acc:
        base["guarantor_id"] = acc["guarantor_id"].to_numpy()
    base["_random"] = _stable_random(base["account_id"].astype(str) + "|" + base["_day"].astype(str), settings.seed)
    base["_neg_balance"] = -base["balance"].fillna(0)
    for name, col in (("largest_balance", "_neg_balance"), ("random", "_random")):
        lists[name] = base.sort_values(["_day", col, "account_id"], kind="stable").drop(
            columns=["_day", "_random", "_neg_balance", "balance"])
    lists["oracle"] = oracle_worklist(ta, tg)
    scored_lists = {name: score_suggestions(wl, ta, tg, minutes_of) for name, wl in lists.items()}

    # the minutes base: the workload of the obvious list (largest balance's and random's are the same work)
    workload = scored_lists["largest_balance"].groupby(_day_key(scored_lists["largest_balance"]["as_of"]))[
        "minutes"].sum().to_dict()
    m["lift_workload_minutes"] = float(sum(workload.values()))
    oracle_all = scored_lists["oracle"]
    m["lift_oracle_total"] = float(oracle_all["true_lift"].sum())
    m["lift_oracle_minutes"] = float(oracle_all["minutes"].sum())
    rows = []
    for k in ks:
        budgets = {d: w * k / 100 for d, w in workload.items()}
        got = {name: lift_within(s, budgets) for name, s in scored_lists.items()}
        best = got["oracle"][0]
        for name, (dollars, used) in got.items():
            share = dollars / best if best > 0 else float("nan")
            rows.append({"ordering": name, "top_percent_minutes": k, "budget_minutes": sum(budgets.values()),
                         "minutes_used": used, "true_lift": dollars, "share_of_oracle": share})
            suffix = "" if name == "lift" else f"_{name}"
            m[f"lift_captured_at_{k}{suffix}"] = dollars
            m[f"lift_share_of_oracle_at_{k}{suffix}"] = share
    rep.tables["lift_at_k"] = pd.DataFrame(rows)

    # what each ordering spends its minutes on within the capacity
    k_cap = CAPACITY_PERCENT
    budgets = {d: w * k_cap / 100 for d, w in workload.items()}
    mix = []
    for name, s in scored_lists.items():
        inside = _within_mask(s, budgets) & s["counted"].to_numpy()
        g = s[inside].assign(action=lambda f: f["work_action"].where(f["feasible"], f["work_action"] + " (infeasible)"))
        for a, part in g.groupby("action", sort=True):
            mix.append({"ordering": name, "top_percent_minutes": k_cap, "action": a, "pieces_of_work": len(part),
                        "minutes": float(part["minutes"].sum()), "true_lift": float(part["true_lift"].sum())})
    rep.tables["lift_work_mix"] = pd.DataFrame(mix)

    # premature claim work in the capacity-cut worklists (rank's own cut: exploration share, greedy by priority)
    prem = []
    for name, (cfg, scored) in scored_by.items():
        s_days = _day_key(scored.accounts["as_of"])
        parts = []
        for d in days:
            rows_d = np.flatnonzero(s_days == d)
            cut = finalize(model, acc, Ranked(take(scored.accounts, rows_d), {}), cfg, "evaluation", "evaluation",
                           reasons_rows=0, capacity_minutes=budgets.get(int(d), 0.0)).accounts
            parts.append(cut[["account_id", "as_of", "next_action", "guarantor_id"]])
        cut = pd.concat(parts, ignore_index=True).rename(columns={"next_action": "action"})
        sc = score_suggestions(cut, ta, tg, minutes_of)
        # issue 13's measure: work on a claim still inside its payer's normal adjudication time with no
        # filing deadline near (near: fewer than the margin's days would be left to refile at the normal
        # time's end, the ranking's own rule); beside it, all claim work the truth says adds nothing
        zero = premature_claim_work(sc, acc, float(ranking_cfg["effects"]["filing_margin_days"]))
        before_normal_time, deadline_near = _claim_clock(sc, acc, ranking_cfg["effects"])
        early = zero & before_normal_time
        flag = early & ~deadline_near
        pieces = sc["counted"].to_numpy()
        share = float(flag[pieces].mean()) if pieces.any() else 0.0
        minutes_share = float(sc["minutes"][flag].sum() / max(sc["minutes"].sum(), 1e-9))
        suffix = "" if name == "lift" else f"_{name}"
        m[f"premature_claim_work_share_at_{k_cap}{suffix}"] = share
        m[f"premature_claim_minutes_share_at_{k_cap}{suffix}"] = minutes_share
        m[f"zero_lift_claim_work_share_at_{k_cap}{suffix}"] = float(zero[pieces].mean()) if pieces.any() else 0.0
        m[f"lift_captured_capacity_{k_cap}{suffix}"] = float(sc["true_lift"].sum())
        prem.append({"ordering": name, "top_percent_minutes": k_cap, "pieces_of_work": int(pieces.sum()),
                     "premature": int(flag.sum()), "zero_lift_claim_work": int(zero.sum()),
                     "zero_lift_before_normal_time": int(early.sum()),
                     "zero_lift_overdue_not_lost": int(zero.sum() - early.sum()), "share": share,
                     "minutes_share": minutes_share,
                     "true_lift": float(sc["true_lift"].sum()), "minutes": float(sc["minutes"].sum())})
    rep.tables["premature_claim_work"] = pd.DataFrame(prem)

    curve = lift_curve(scored_lists, workload)
    rep.tables["lift_curve"] = curve
    rep.figures["lift_qini"] = plot_lift_curve(curve)
    return rep


def _within_mask(scored: pd.DataFrame, budgets: dict[int, float]) -> np.ndarray:
    day = _day_key(scored["as_of"])
    out = np.zeros(len(scored), dtype=bool)
    for d in np.unique(day):
        rows = np.flatnonzero(day == d)
        out[rows] = np.cumsum(scored["minutes"].to_numpy()[rows]) <= budgets.get(int(d), 0.0) + 1e-9
    return out


def premature_claim_work(scored: pd.DataFrame, accounts: pd.DataFrame, filing_margin_days: float) -> np.ndarray:
    """Pieces of work (of `score_suggestions`' output) that call about or resubmit a claim the payer is still
    adjudicating in its normal time: the truth says the work adds nothing, the claim sits at the payer (no
    rejection or pend open; or an appeal under review), and no filing deadline is near (within the margin
    the ranking itself allows)."""
    num = _features_of(scored, accounts)
    at_payer = (((num("pending_adjudication") > 0) & ~(num("claim_rejected_open") > 0)
                 & ~(num("claim_pended_open") > 0)) | (num("pending_appeal") > 0))
    deadline_near = num("filing_days_left") < filing_margin_days  # NaN (no limit) is never near
    return (scored["counted"].to_numpy() & np.isin(scored["work_action"].to_numpy(dtype=object), PREMATURE_ACTIONS)
            & scored["feasible"].to_numpy() & (scored["true_lift"].to_numpy() <= 1e-9) & at_payer & ~deadline_near)


def _features_of(scored: pd.DataFrame, accounts: pd.DataFrame):
    """A reader of each scored row's own feature values (by account and date): `num(column)` gives them
    as floats, NaN where the column or the row is missing."""
    feats = accounts.assign(_day=_day_key(accounts["as_of"]), account_id=accounts["account_id"].astype(str))
    feats = feats.drop_duplicates(["account_id", "_day"]).set_index(["account_id", "_day"])
    f = feats.reindex(pd.MultiIndex.from_arrays([scored["account_id"].astype(str).to_numpy(),
                                                 _day_key(scored["as_of"])]))

    def num(c: str) -> np.ndarray:
        return pd.to_numeric(f[c], errors="coerce").to_numpy(float) if c in f else np.full(len(f), np.nan)

    return num


def _claim_clock(scored: pd.DataFrame, accounts: pd.DataFrame, effects: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per scored row, as the ranking reads its claim (`serving.lift.claim_clock`): whether the claim has
    waited less than its payer's normal adjudication time, and whether the filing deadline would be near
    by the time it runs out. With `premature_claim_work` the first tells the calls made early for such a
    deadline from calls on overdue claims the payer had not lost."""
    from serving.lift import claim_clock

    num = _features_of(scored, accounts)
    waited = num("days_claim_waiting")
    due, _, deadline_near = claim_clock(waited, num("payer_days_to_pay"), num("filing_days_left"), effects)
    return waited < due, deadline_near


def lift_curve(scored_lists: dict[str, pd.DataFrame], workload: dict[int, float],
               percents: range = range(0, 101)) -> pd.DataFrame:
    """Cumulative true lift against cumulative minutes (as % of the workload), summed over the dates."""
    rows = []
    for name, s in scored_lists.items():
        day = _day_key(s["as_of"])
        per_day = []
        for d, w in workload.items():
            g = s[day == d]
            cum_m = np.r_[0.0, np.cumsum(g["minutes"].to_numpy())]
            cum_l = np.r_[0.0, np.cumsum(g["true_lift"].to_numpy())]
            last = np.searchsorted(cum_m, np.array(percents) / 100 * w + 1e-9, side="right") - 1
            per_day.append(cum_l[last])
        total = np.sum(per_day, axis=0) if per_day else np.zeros(len(percents))
        rows += [{"ordering": name, "percent_minutes": p, "minutes": sum(workload.values()) * p / 100,
                  "true_lift": float(v)} for p, v in zip(percents, total, strict=True)]
    return pd.DataFrame(rows)


_LIFT_STYLES = {"lift": dict(linewidth=2.5), "oracle": dict(color="black", linestyle="--"),
                "random": dict(color="grey", linestyle=":")}
_LIFT_LABELS = {"lift": "recoup by lift", "expected_recovery": "recoup by expected recovery (net per minute)",
                "largest_balance": "largest balance, obvious action", "random": "random, obvious action",
                "oracle": "oracle (true lift per minute)"}


def plot_lift_curve(curve: pd.DataFrame):
    fig, ax = _figure()
    for name, g in curve.groupby("ordering", sort=False):
        ax.plot(g["percent_minutes"], g["true_lift"] / 1000, label=_LIFT_LABELS.get(name, name),
                **_LIFT_STYLES.get(name, {}))
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(title="True lift captured by minutes of work (test period)",
           xlabel="collector minutes, % of the workload (every open account once)",
           ylabel="true lift within 60 days ($ thousands)", xlim=(0, 100))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return fig
