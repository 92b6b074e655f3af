"""Ranking in one place: expected recovery, the cost of the work, deadlines, rules, next actions,
reasons and exploration. The nightly batch and the HTTP service both call `rank`.

Inputs are the feature frames of `features.snapshot` and a fitted `training.model.RecoupModel`.
Everything is vectorised; TreeSHAP reasons are computed only for the rows that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_RANKING_PATH = Path(__file__).with_name("ranking.yaml")
ACTIONS = ("appeal", "correct_and_resubmit", "call", "bill_patient", "send_to_agency", "write_off", "hold")

WORKLIST_COLUMNS = [
    "account_id", "as_of", "rank", "priority", "p_payment", "expected_recovery", "expected_net", "next_action",
    "action_minutes", "reasons", "is_exploration", "hold_reason", "appeal_deadline", "timely_filing_deadline",
    "balance", "model_version", "run_id",
]
DENIAL_COLUMNS = [
    "claim_id", "account_id", "as_of", "rank", "priority", "p_overturn", "expected_recovery", "next_action",
    "appeal_deadline", "carc", "is_exploration", "model_version", "run_id",
]


def load_ranking_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The ranking defaults (`ranking.yaml`), updated by the YAML file at `path` and then by `overrides`."""
    from training.config import load_yaml_with_defaults

    return load_yaml_with_defaults(DEFAULT_RANKING_PATH, path, overrides)


@dataclass
class Ranked:
    accounts: pd.DataFrame
    denials: pd.DataFrame


def exploration_draw(keys: pd.Series, as_of: pd.Series, seed: int, salt: str = "explore") -> np.ndarray:
    """A uniform number per (id, as_of) from a hash: the same rows on every engine and partitioning."""
    text = keys.astype(str) + "|" + pd.to_datetime(as_of).dt.strftime("%Y-%m-%d") + f"|{seed}|{salt}"
    hashed = pd.util.hash_pandas_object(text.astype(object), index=False, hash_key="recoup-explore01")
    return hashed.to_numpy() / 2.0**64


def _num(df: pd.DataFrame, col: str, default: float = 0.0) -> np.ndarray:
    if col not in df:
        return np.full(len(df), default)
    return pd.to_numeric(df[col], errors="coerce").fillna(default).to_numpy(dtype=float)


def _deadline(as_of: pd.Series, days_left: np.ndarray) -> pd.Series:
    out = pd.to_datetime(as_of).to_numpy() + pd.to_timedelta(np.where(np.isfinite(days_left), days_left, 0), "D")
    return pd.Series(np.where(np.isfinite(days_left), out, np.datetime64("NaT")), dtype="datetime64[ns]")


def _urgent(days_left: np.ndarray, window: float) -> np.ndarray:
    return np.isfinite(days_left) & (days_left >= 0) & (days_left <= window)


def _priority(net: np.ndarray, minutes: np.ndarray, urgent: np.ndarray, cfg: dict) -> np.ndarray:
    base = net / np.maximum(minutes, 1.0) if cfg["priority"] == "net_per_minute" else net.copy()
    return np.where(urgent & (base > 0), base * float(cfg["urgency"]["boost"]), base)


def rank(model, accounts: pd.DataFrame, denials: pd.DataFrame | None, cfg: dict, model_version: str,
         run_id: str, reasons_rows: int | None = None, capacity_minutes: float | None = None) -> Ranked:
    """Score, prioritise and order one worklist (ranks are per as-of date), with reasons for the
    first `reasons_rows` rows (all rows when None)."""
    scored = score_rows(model, accounts, denials, cfg)
    return finalize(model, accounts, scored, cfg, model_version, run_id, reasons_rows, capacity_minutes)


def score_rows(model, accounts: pd.DataFrame, denials: pd.DataFrame | None, cfg: dict) -> Ranked:
    """Row-wise part of the ranking (scores, actions, priorities): chunks can be scored apart."""
    acc = accounts.reset_index(drop=True)
    scores = model.score_accounts(acc)
    den = denials.reset_index(drop=True) if denials is not None else pd.DataFrame()
    if len(den):
        dscores = model.score_denials(den)
        den = den.assign(p_overturn=dscores["p_overturn"].to_numpy(),
                         expected_recovery=dscores["expected_recovery"].to_numpy())
    return Ranked(_score_accounts(acc, scores, den, cfg), _score_denials(den, cfg))


def finalize(model, accounts: pd.DataFrame, scored: Ranked, cfg: dict, model_version: str, run_id: str,
             reasons_rows: int | None = None, capacity_minutes: float | None = None) -> Ranked:
    """Order the scored rows (capacity, exploration), add reasons and the run's columns."""
    seed, share = int(cfg["exploration_seed"]), float(cfg["exploration_share"])
    acc = _order(scored.accounts, "account_id", capacity_minutes, seed, share)
    acc["priority"] = acc["priority"].replace(-np.inf, np.nan)
    n_reasons = len(acc) if reasons_rows is None else min(int(reasons_rows), len(acc))
    acc["reasons"] = _reasons(model, accounts.reset_index(drop=True), acc, n_reasons, int(cfg["reasons"]["top_n"]))
    den = _order(scored.denials, "claim_id", None, seed) if len(scored.denials) else scored.denials
    for df in (acc, den):
        df["model_version"], df["run_id"] = model_version, run_id
    if not len(den):
        den = pd.DataFrame(columns=DENIAL_COLUMNS)
    return Ranked(acc[WORKLIST_COLUMNS], den[DENIAL_COLUMNS])


def _best_denial_per_account(den: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    if not len(den):  # typed like the non-empty case, so the merge below sees matching key dtypes
        return pd.DataFrame({"account_id": pd.Series(dtype=object), "as_of": pd.Series(dtype="datetime64[ns]"),
                             "d_value": pd.Series(dtype=float), "d_action": pd.Series(dtype=object),
                             "d_minutes": pd.Series(dtype=float), "d_days_left": pd.Series(dtype=float)})
    action = np.where(den["carc_group"].isin(cfg["correct_and_resubmit_groups"]), "correct_and_resubmit", "appeal")
    minutes = np.array([cfg["actions"][a]["minutes"] for a in action], dtype=float)
    cost = minutes * cfg["cost_per_minute"] + np.array([cfg["actions"][a]["cost"] for a in action], dtype=float)
    per_min = (den["expected_recovery"].to_numpy() - cost) / np.maximum(minutes, 1)
    best = den.assign(d_value=den["expected_recovery"].to_numpy(), d_action=action, d_minutes=minutes,
                      d_per_min=per_min, d_days_left=_num(den, "appeal_deadline_days_left", np.nan))
    best = best.sort_values(["account_id", "as_of", "d_per_min", "claim_id"], ascending=[True, True, False, True])
    return best.drop_duplicates(["account_id", "as_of"])[
        ["account_id", "as_of", "d_value", "d_action", "d_minutes", "d_days_left"]]


def _score_accounts(acc: pd.DataFrame, scores: pd.DataFrame, den: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    rules = cfg["rules"]
    n = len(acc)
    p = scores["p_payment"].to_numpy()
    er = scores["expected_recovery"].to_numpy()
    bal_pat, bal_ins, balance = _num(acc, "balance_patient"), _num(acc, "balance_insurance"), _num(acc, "balance")
    pending = _num(acc, "pending_adjudication") > 0
    since_stmt = _num(acc, "days_since_first_statement", np.nan)
    statements_30d = _num(acc, "statements_30d")
    calls_7d = _num(acc, "call_attempts_7d")
    bankrupt, fa, plan = (_num(acc, c) > 0 for c in ("in_bankruptcy", "fa_pending", "plan_in_good_standing"))
    tf_left = _num(acc, "timely_filing_days_left", np.nan)
    ap_left = _num(acc, "appeal_deadline_days_left", np.nan)

    # the account's own next action (no denial work)
    action = np.full(n, "call", dtype=object)
    patient_side = (bal_pat > 0.005) & (bal_ins <= 0.005) & ~pending
    wait = float(rules["statement_if_none_in_days"])
    action[patient_side & (statements_30d == 0) & ~(np.isfinite(since_stmt) & (since_stmt < wait))] = "bill_patient"
    agency_ok = (patient_side & np.isfinite(since_stmt) & (since_stmt >= float(rules["agency_wait_days"]))
                 & (p <= float(rules["agency_max_p_payment"])))
    action[agency_ok] = "send_to_agency"
    too_many_calls = calls_7d >= float(rules["max_call_attempts_7d"])
    action[(action == "call") & too_many_calls & patient_side] = "bill_patient"
    action[(action == "call") & too_many_calls & ~patient_side] = "hold"
    action[(balance < float(rules["small_balance_writeoff"]))] = "write_off"
    hold_reason = np.full(n, None, dtype=object)
    for mask, why in ((plan, "payment plan in good standing"), (fa, "financial assistance pending"),
                      (bankrupt, "bankruptcy")):
        hold_reason[mask] = why
    held = bankrupt | fa | plan
    action[held] = "hold"
    hold_reason[(action == "hold") & ~held] = f"{int(rules['max_call_attempts_7d'])} call attempts in 7 days"

    minutes = np.array([cfg["actions"][a]["minutes"] for a in action], dtype=float)
    cost = minutes * cfg["cost_per_minute"] + np.array([cfg["actions"][a]["cost"] for a in action], dtype=float)
    value = np.where(np.isin(action, ["write_off", "hold", "send_to_agency"]), 0.0, er)
    net = value - cost
    urgent = _urgent(tf_left, cfg["urgency"]["window_days"]) & pending
    prio = _priority(net, minutes, urgent, cfg)

    # an open denial whose expected value per minute beats the account's other action takes over
    best = _best_denial_per_account(den, cfg)
    keys = acc[["account_id", "as_of"]].astype({"account_id": object, "as_of": "datetime64[ns]"})
    keyed = keys.merge(best.astype({"account_id": object, "as_of": "datetime64[ns]"}), on=["account_id", "as_of"],
                       how="left")
    d_val = keyed["d_value"].to_numpy(dtype=float)
    has_d = np.isfinite(d_val) & ~held
    d_min = np.where(has_d, keyed["d_minutes"].to_numpy(dtype=float), 1.0)
    d_act = keyed["d_action"].to_numpy(dtype=object)
    d_cost = d_min * cfg["cost_per_minute"] + np.array(
        [cfg["actions"][a]["cost"] if isinstance(a, str) else 0.0 for a in d_act])
    d_net = np.where(has_d, d_val - d_cost, -np.inf)
    d_urgent = _urgent(keyed["d_days_left"].to_numpy(dtype=float), cfg["urgency"]["window_days"])
    d_prio = np.where(has_d, _priority(d_net, d_min, d_urgent, cfg), -np.inf)
    take = has_d & (d_prio > prio)
    action = np.where(take, d_act, action)
    minutes = np.where(take, d_min, minutes)
    net = np.where(take, d_net, net)
    prio = np.where(take, d_prio, prio)
    prio = np.where(held, -np.inf, prio)  # held accounts are listed last, never worked

    out = pd.DataFrame({
        "account_id": acc["account_id"].to_numpy(), "as_of": pd.to_datetime(acc["as_of"]).to_numpy(),
        "priority": prio, "p_payment": p, "expected_recovery": er, "expected_net": net,
        "next_action": action, "action_minutes": minutes, "hold_reason": hold_reason,
        "appeal_deadline": _deadline(acc["as_of"], ap_left), "timely_filing_deadline": _deadline(acc["as_of"], tf_left),
        "balance": balance,
    })
    u = exploration_draw(out["account_id"], out["as_of"], int(cfg["exploration_seed"]))
    out["is_exploration"] = (u < float(cfg["exploration_share"])) & ~held
    return out


def _order(df: pd.DataFrame, key: str, capacity_minutes: float | None, seed: int,
           explore_share: float = 0.0) -> pd.DataFrame:
    """Rank per as-of date by priority (ties by id). Exploration rows take a random place in the list;
    with a capacity they are kept first, within their share of the minutes, whatever their score
    (that is what makes their outcomes unbiased), and the rest of the minutes go by priority."""
    parts = []
    for _, g in df.groupby("as_of", sort=True):
        g = g.sort_values(["priority", key], ascending=[False, True], kind="stable").reset_index(drop=True)
        sort_key = np.arange(len(g), dtype=float)
        explore = g["is_exploration"].to_numpy()
        if explore.any():
            pos = exploration_draw(g[key], g["as_of"], seed, salt="position")
            sort_key[explore] = pos[explore] * len(g) - 0.5  # a random place, stable per (id, as_of)
        if capacity_minutes is not None:
            mins = g["action_minutes"].to_numpy()
            keep = np.zeros(len(g), dtype=bool)
            budget = float(capacity_minutes) * explore_share  # exploration gets its share of the minutes
            for i in np.flatnonzero(explore)[np.argsort(sort_key[explore], kind="stable")]:
                if mins[i] <= budget:
                    keep[i] = True
                    budget -= mins[i]
            budget = float(capacity_minutes) - mins[keep].sum()
            for i in np.flatnonzero(np.isfinite(g["priority"].to_numpy()) & ~explore):  # greedy by priority
                if mins[i] <= budget:
                    keep[i] = True
                    budget -= mins[i]
            g, sort_key = g[keep], sort_key[keep]
        g = g.iloc[np.lexsort((g[key].to_numpy(), sort_key))].reset_index(drop=True)
        g["rank"] = np.arange(1, len(g) + 1)
        parts.append(g)
    return pd.concat(parts, ignore_index=True) if parts else df.assign(rank=pd.Series(dtype="int64"))


def _score_denials(den: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    if not len(den):
        return pd.DataFrame(columns=[c for c in DENIAL_COLUMNS if c not in ("rank", "model_version", "run_id")]
                            + ["action_minutes"])
    action = np.where(den["carc_group"].isin(cfg["correct_and_resubmit_groups"]), "correct_and_resubmit", "appeal")
    minutes = np.array([cfg["actions"][a]["minutes"] for a in action], dtype=float)
    cost = minutes * cfg["cost_per_minute"]
    left = _num(den, "appeal_deadline_days_left", np.nan)
    prio = _priority(den["expected_recovery"].to_numpy() - cost, minutes, _urgent(left, cfg["urgency"]["window_days"]),
                     cfg)
    out = pd.DataFrame({
        "claim_id": den["claim_id"].to_numpy(), "account_id": den["account_id"].to_numpy(),
        "as_of": pd.to_datetime(den["as_of"]).to_numpy(), "priority": prio,
        "p_overturn": den["p_overturn"].to_numpy(), "expected_recovery": den["expected_recovery"].to_numpy(),
        "next_action": action, "appeal_deadline": _deadline(den["as_of"], left),
        "carc": den["carc"].to_numpy(), "action_minutes": minutes,
    })
    out["is_exploration"] = exploration_draw(out["claim_id"], out["as_of"], int(cfg["exploration_seed"])) < float(
        cfg["exploration_share"])
    return out


# ----------------------------------------------------------------------------- reasons


def _format_value(name: str, value) -> str:
    from features.definitions import carc_descriptions

    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "unknown"
    if name == "last_denial_carc":
        desc = carc_descriptions().get(str(value), "")
        return f"CARC {value}" + (f" ({desc[:80]})" if desc else "")
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _reasons(model, acc: pd.DataFrame, ranked: pd.DataFrame, n_rows: int, top_n: int) -> list[list[str]]:
    """Top TreeSHAP contributions (LightGBM's own) of the expected-recovery model for the first
    `n_rows` of the ranked list; other rows get an empty list."""
    out: list[list[str]] = [[] for _ in range(len(ranked))]
    if n_rows <= 0 or not len(ranked):
        return out
    first = ranked.index[ranked["rank"] <= n_rows] if "rank" in ranked else ranked.index[:n_rows]
    pos = pd.Series(np.arange(len(acc)), index=pd.MultiIndex.from_arrays(
        [acc["account_id"].to_numpy(), pd.to_datetime(acc["as_of"]).to_numpy()]))
    rows = pos.loc[list(zip(ranked.loc[first, "account_id"], ranked.loc[first, "as_of"], strict=True))].to_numpy()
    sub = acc.iloc[rows]
    contrib = model.account_contributions(sub)[:, :-1]  # last column is the bias
    names = model.account_features_
    order = np.argsort(-np.abs(contrib), axis=1, kind="stable")[:, :top_n]
    values = sub[names].to_numpy(dtype=object)
    for i, r in enumerate(first):
        items = []
        for j in order[i]:
            c = contrib[i, j]
            if c == 0:
                continue
            name = names[j]
            items.append(f"{'raises' if c > 0 else 'lowers'}: {name.replace('_', ' ')} = "
                         f"{_format_value(name, values[i, j])}")
        out[r] = items
    return out
