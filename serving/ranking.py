"""Ranking in one place: expected recovery, the cost of the work, deadlines, rules, next actions,
reasons and exploration. The nightly batch and the HTTP service both call `rank`.

Inputs are the feature tables of `features.snapshot` (DataFrames, or `Columns`: a dict of equal-length
NumPy arrays) and a fitted `training.model.RecoupModel`. The feature rows keep the shape they come in;
the scored rows are `Columns` from `score_rows` to the end of `finalize`, which makes DataFrames only
when asked (`frames=True`, the batch). Everything is vectorised NumPy with no per-row Python and no
pandas work between the inputs and the output, so one account costs about as little as the arithmetic
(the API's path) and a million cost one pass (the batch's); TreeSHAP reasons are computed only for the
rows that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import float_column
from features.dates import DAY_KEY, add_days, day_numbers

DEFAULT_RANKING_PATH = Path(__file__).with_name("ranking.yaml")
ACTIONS = ("appeal", "correct_and_resubmit", "call", "bill_patient", "send_to_agency", "write_off", "hold",
           "status_call", "resubmit", "send_information", "statement", "patient_call", "payment_plan_offer", "wait",
           "covered")
# `covered`: the account's balance is covered by the contact its guarantor gets on another row (one contact
# per person, DESIGN.md); that row carries the contact's minutes

WORKLIST_COLUMNS = [
    "account_id", "as_of", "rank", "priority", "p_payment", "expected_recovery", "expected_net", "next_action",
    "action_minutes", "reasons", "is_exploration", "hold_reason", "appeal_deadline", "timely_filing_deadline",
    "balance", "expected_if_idle", "expected_lift", "best_action", "follow_up_date", "propensity", "guarantor_id",
    "guarantor_rank", "effect_source", "model_version", "run_id",
]
DENIAL_COLUMNS = [
    "claim_id", "account_id", "as_of", "rank", "priority", "p_overturn", "expected_recovery", "next_action",
    "appeal_deadline", "carc", "is_exploration", "model_version", "run_id",
]

Columns = dict  # column name -> 1-D NumPy array, every array the same length
Table = pd.DataFrame | dict


def load_ranking_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """The ranking defaults (`ranking.yaml`), updated by the YAML file at `path` and then by `overrides`."""
    from training.settings import load_yaml_with_defaults

    return load_yaml_with_defaults(DEFAULT_RANKING_PATH, path, overrides)


@dataclass
class Ranked:
    """A worklist and denial list: `Columns` as scored (`score_rows`), DataFrames or `Columns` as ranked
    (`finalize`'s `frames`)."""

    accounts: Table
    denials: Table


# ----------------------------------------------------------------------------- columns


def n_rows(t: Table) -> int:
    if isinstance(t, pd.DataFrame):
        return len(t)
    return len(next(iter(t.values()))) if t else 0


def column(t: Table, name: str) -> np.ndarray:
    """One column as a NumPy array (object for text, datetime64[ns] for dates)."""
    v = t[name]
    return v.to_numpy() if isinstance(v, (pd.Series, pd.Index)) else np.asarray(v)


def concat_rows(parts: list[Columns]) -> Columns:
    """Scored rows of several chunks as one `Columns` (chunks without rows are left out)."""
    parts = [p for p in parts if n_rows(p)]
    if len(parts) <= 1:
        return parts[0] if parts else {}
    return {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}


def take(t: Table, rows: np.ndarray) -> Table:
    if isinstance(t, pd.DataFrame):
        return t.iloc[rows]
    return {c: v[rows] for c, v in t.items()}


def _num(t: Table, col: str, default: float = 0.0) -> np.ndarray:
    """A numeric column as float64, missing (or non-numeric) values as `default`."""
    if col not in t:
        return np.full(n_rows(t), default)
    v = float_column(t[col])
    return np.where(np.isnan(v), default, v)


def _dates(t: Table, col: str) -> np.ndarray:
    v = t[col]
    if isinstance(v, pd.Series) and v.dtype.kind != "M":
        v = pd.to_datetime(v)
    return np.asarray(v, dtype="datetime64[ns]")


def _match(a_ids: np.ndarray, a_days: np.ndarray, b_ids: np.ndarray, b_days: np.ndarray) -> np.ndarray:
    """For each (id, day) of `a`: the row of `b` with the same key (keys of `b` are unique), or -1."""
    if not len(a_ids) or not len(b_ids):
        return np.full(len(a_ids), -1, dtype=np.int64)
    codes, _ = pd.factorize(np.concatenate([a_ids.astype(object), b_ids.astype(object)]))
    ka = codes[:len(a_ids)] * DAY_KEY + day_numbers(a_days)
    kb = codes[len(a_ids):] * DAY_KEY + day_numbers(b_days)
    order = np.argsort(kb, kind="stable")
    pos = np.minimum(np.searchsorted(kb[order], ka), len(kb) - 1)
    return np.where(kb[order][pos] == ka, order[pos], -1)


def _id_order(ids: np.ndarray) -> np.ndarray:
    """Integer codes that sort as the ids do (the tie-break of every ordering)."""
    return np.unique(ids.astype(object), return_inverse=True)[1].reshape(-1)


def exploration_draw(keys, as_of, seed: int, salt: str = "explore") -> np.ndarray:
    """A uniform number per (id, as_of) from a hash: the same rows on every engine and partitioning."""
    keys = np.asarray(keys.to_numpy(dtype=object) if isinstance(keys, pd.Series) else keys, dtype=object)
    if isinstance(as_of, pd.Series) and as_of.dtype.kind != "M":
        as_of = pd.to_datetime(as_of)
    days = np.datetime_as_string(np.asarray(as_of, dtype="datetime64[ns]").astype("datetime64[D]"))
    tail = f"|{seed}|{salt}"
    text = np.array([f"{k}|{d}{tail}" for k, d in zip(keys.tolist(), days.tolist(), strict=True)], dtype=object)
    # categorize=False: the same hashes, without building a pandas Categorical on every call
    return pd.util.hash_array(text, hash_key="recoup-explore01", categorize=False) / 2.0**64


def _urgent(days_left: np.ndarray, window: float) -> np.ndarray:
    return np.isfinite(days_left) & (days_left >= 0) & (days_left <= window)


def _priority(net: np.ndarray, minutes: np.ndarray, urgent: np.ndarray, cfg: dict) -> np.ndarray:
    base = net / np.maximum(minutes, 1.0) if cfg["priority"] == "net_per_minute" else net.copy()
    return np.where(urgent & (base > 0), base * float(cfg["urgency"]["boost"]), base)


def _action_minutes_cost(action: np.ndarray, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    minutes = np.zeros(len(action))
    fixed = np.zeros(len(action))
    for name, spec in cfg["actions"].items():
        m = action == name
        minutes[m], fixed[m] = float(spec["minutes"]), float(spec["cost"])
    return minutes, minutes * cfg["cost_per_minute"] + fixed


# ----------------------------------------------------------------------------- ranking


def rank(model, accounts: Table, denials: Table | None, cfg: dict, model_version: str, run_id: str,
         reasons_rows: int | None = None, capacity_minutes: float | None = None, frames: bool = True,
         reasons_minutes: float | None = None) -> Ranked:
    """Score, prioritise and order one worklist (ranks are per as-of date), with reasons for the
    first `reasons_rows` rows (all rows when None; with `reasons_minutes`, only those within that many
    minutes of work). `frames=False` returns `Columns`, not DataFrames."""
    scored = score_rows(model, accounts, denials, cfg)
    return finalize(model, accounts, scored, cfg, model_version, run_id, reasons_rows, capacity_minutes, frames,
                    reasons_minutes)


def score_rows(model, accounts: Table, denials: Table | None, cfg: dict) -> Ranked:
    """Row-wise part of the ranking (scores, actions, priorities) as `Columns`: chunks can be scored
    apart (and joined with `concat_rows`)."""
    den = denials if denials is not None and n_rows(denials) else None
    den_scored = None
    if den is not None:
        dscores = model.score_denials(den)
        den_scored = _score_denials(den, column(dscores, "p_overturn"), column(dscores, "expected_recovery"), cfg)
    scores = model.score_accounts(accounts)
    p, er = column(scores, "p_payment"), column(scores, "expected_recovery")
    if cfg["priority"] == "lift":
        acc = _score_by_lift(accounts, p, er, den_scored, cfg, getattr(model, "effects_", None))
    else:
        acc = _score_accounts(accounts, p, er, den_scored, cfg)
    return Ranked(acc, den_scored if den_scored is not None else {})


def finalize(model, accounts: Table, scored: Ranked, cfg: dict, model_version: str, run_id: str,
             reasons_rows: int | None = None, capacity_minutes: float | None = None, frames: bool = True,
             reasons_minutes: float | None = None) -> Ranked:
    """Order the scored rows (`score_rows`' `Columns`: capacity, exploration), add reasons and the run's
    columns. Reasons go to the top `reasons_rows` rows of each date (all when None) and, with
    `reasons_minutes`, only to those within that many minutes of work from the top (what a capacity cut
    of that size keeps to be read: TreeSHAP is the cost)."""
    seed, share = int(cfg["exploration_seed"]), float(cfg["exploration_share"])
    rows = scored.accounts
    if cfg["priority"] == "lift" and "held" in rows:
        rows = _choose_by_lift(rows, cfg)
    acc = _order(rows, "account_id", capacity_minutes, seed, share,
                 positive_only=cfg["priority"] == "lift")
    acc["priority"] = np.where(np.isneginf(acc["priority"]), np.nan, acc["priority"])
    acc["guarantor_rank"] = guarantor_ranks(acc["guarantor_id"], acc["as_of"], acc["rank"])
    acc["reasons"] = _reasons(model, accounts, acc, _explained(acc, reasons_rows, reasons_minutes),
                              int(cfg["reasons"]["top_n"]), cfg["reasons"].get("max_trees"))
    den = _order(scored.denials, "claim_id", None, seed) if n_rows(scored.denials) else {}
    if not frames:
        for t in (acc, den):
            if t:
                size = n_rows(t)
                t["model_version"], t["run_id"] = np.full(size, model_version, object), np.full(size, run_id, object)
        return Ranked({c: acc[c] for c in WORKLIST_COLUMNS},
                      {c: den[c] for c in DENIAL_COLUMNS} if den else {c: np.zeros(0, object) for c in DENIAL_COLUMNS})
    acc_df = pd.DataFrame({c: acc[c] for c in WORKLIST_COLUMNS if c not in ("model_version", "run_id")})
    den_df = pd.DataFrame({c: den[c] for c in DENIAL_COLUMNS if c in den}) if den else None
    for df in (acc_df, den_df):
        if df is not None:
            df["model_version"], df["run_id"] = model_version, run_id
    if den_df is None:
        den_df = pd.DataFrame(columns=DENIAL_COLUMNS)
    return Ranked(acc_df[WORKLIST_COLUMNS], den_df[DENIAL_COLUMNS])


def _best_denial_rows(den: Columns, cost: np.ndarray) -> np.ndarray:
    """The best open denial (value per minute, ties by claim id) of each (account, as-of): its rows."""
    per_min = (den["expected_recovery"] - cost) / np.maximum(den["action_minutes"], 1)
    acct = pd.factorize(den["account_id"].astype(object))[0]
    order = np.lexsort((_id_order(den["claim_id"]), -per_min, day_numbers(den["as_of"]), acct))
    first = np.r_[True, (acct[order][1:] != acct[order][:-1]) | (den["as_of"][order][1:] != den["as_of"][order][:-1])]
    return order[first]


def _score_accounts(acc: Table, p: np.ndarray, er: np.ndarray, den: Columns | None, cfg: dict) -> Columns:
    rules = cfg["rules"]
    n = n_rows(acc)
    p, er = np.asarray(p, dtype=np.float64), np.asarray(er, dtype=np.float64)
    bal_pat, bal_ins, balance = _num(acc, "balance_patient"), _num(acc, "balance_insurance"), _num(acc, "balance")
    pending = _num(acc, "pending_adjudication") > 0
    since_stmt = _num(acc, "days_since_first_statement", np.nan)
    statements_30d = _num(acc, "statements_30d")
    calls_7d = person_call_attempts_7d(acc)
    bankrupt, fa, plan = (_num(acc, c) > 0 for c in ("in_bankruptcy", "fa_pending", "plan_in_good_standing"))
    tf_left = _num(acc, "timely_filing_days_left", np.nan)
    ap_left = _num(acc, "appeal_deadline_days_left", np.nan)
    ids, as_of = column(acc, "account_id").astype(object), _dates(acc, "as_of")

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

    minutes, cost = _action_minutes_cost(action, cfg)
    value = np.where((action == "write_off") | (action == "hold") | (action == "send_to_agency"), 0.0, er)
    net = value - cost
    urgent = _urgent(tf_left, cfg["urgency"]["window_days"]) & pending
    prio = _priority(net, minutes, urgent, cfg)

    # an open denial whose expected value per minute beats the account's other action takes over
    if den is not None and n_rows(den):
        _, d_cost = _action_minutes_cost(den["next_action"], cfg)  # the work's full cost, as the account's
        d_left = (den["appeal_deadline"] - den["as_of"]) / np.timedelta64(1, "D")  # NaT -> NaN
        best = _best_denial_rows(den, d_cost)
        hit = _match(ids, as_of, den["account_id"][best], den["as_of"][best])
        row = np.where(hit >= 0, best[np.maximum(hit, 0)], 0)
        has_d = (hit >= 0) & ~held
        d_val = np.where(has_d, den["expected_recovery"][row], np.nan)
        d_min = np.where(has_d, den["action_minutes"][row], 1.0)
        d_act = np.where(has_d, den["next_action"][row], None)
        d_net = np.where(has_d, d_val - d_cost[row], -np.inf)
        d_urgent = _urgent(np.where(has_d, d_left[row], np.nan), cfg["urgency"]["window_days"])
        d_prio = np.where(has_d, _priority(d_net, d_min, d_urgent, cfg), -np.inf)
        take_d = has_d & (d_prio > prio)
        action = np.where(take_d, d_act, action)
        minutes = np.where(take_d, d_min, minutes)
        net = np.where(take_d, d_net, net)
        prio = np.where(take_d, d_prio, prio)
    prio = np.where(held, -np.inf, prio)  # held accounts are listed last, never worked

    explore = (exploration_draw(ids, as_of, int(cfg["exploration_seed"])) < float(cfg["exploration_share"])) & ~held
    nan = np.full(n, np.nan)
    return {
        "account_id": ids, "as_of": as_of, "priority": prio, "p_payment": p, "expected_recovery": er,
        "expected_net": net, "next_action": action, "action_minutes": minutes, "hold_reason": hold_reason,
        "appeal_deadline": add_days(as_of, ap_left), "timely_filing_deadline": add_days(as_of, tf_left),
        "balance": balance, "is_exploration": explore, "expected_if_idle": nan, "expected_lift": nan,
        "best_action": action, "follow_up_date": add_days(as_of, nan), "propensity": _propensity(explore, cfg),
        "guarantor_id": _guarantors(acc, ids), "effect_source": np.full(n, None, dtype=object),
    }


def _propensity(explore: np.ndarray, cfg: dict) -> np.ndarray:
    """The probability that the policy put the row on the list: the exploration share for a row drawn
    at random, 1 for a row the deterministic order chose."""
    return np.where(explore, float(cfg["exploration_share"]), 1.0)


def _guarantors(acc: Table, ids: np.ndarray) -> np.ndarray:
    if "guarantor_id" not in acc:
        return ids.copy()
    g = column(acc, "guarantor_id").astype(object)
    return np.where(pd.isna(g), ids, g).astype(object)


def guarantor_ranks(guarantor: np.ndarray, as_of: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Per row: its guarantor's place (1 = first) among the guarantors of its as-of date's list, by the
    guarantor's first row."""
    n = len(rank)
    if not n:
        return np.zeros(0, dtype=np.int64)
    days = day_numbers(as_of)
    key = pd.factorize(np.asarray(guarantor, dtype=object))[0].astype(np.int64) * DAY_KEY + days
    keys, inv = np.unique(key, return_inverse=True)
    inv = inv.reshape(-1)
    first = np.full(len(keys), np.iinfo(np.int64).max)
    np.minimum.at(first, inv, np.asarray(rank, dtype=np.int64))
    key_day = np.empty(len(keys), dtype=np.int64)
    key_day[inv] = days
    order = np.lexsort((first, key_day))
    starts = np.r_[0, np.flatnonzero(key_day[order][1:] != key_day[order][:-1]) + 1]
    place = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))
    out = np.empty(len(keys), dtype=np.int64)
    out[order] = place + 1
    return out[inv]


def person_call_attempts_7d(acc: Table) -> np.ndarray:
    """Call attempts in the last 7 days to the person: the guarantor's across all their accounts (the
    call limit counts per guarantor, DESIGN.md), never fewer than the account's own."""
    return np.maximum(_num(acc, "call_attempts_7d"), _num(acc, "guarantor_call_attempts_7d", 0.0))


def _group_sum(codes: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row: the sum of `values` (n, k) over the masked rows with the same group code (0 outside the
    mask)."""
    out = np.zeros_like(values)
    if not mask.any():
        return out
    sums = np.zeros((codes.max() + 1, values.shape[1]))
    np.add.at(sums, codes[mask], values[mask])
    out[mask] = sums[codes[mask]]
    return out


def prior_lifts(model, accounts: Table, denials: Table | None, cfg: dict):
    """The prior lift of every action (`serving.lift.action_lifts`, no learned scales) for feature rows:
    what the effect model (`training.effects`) learns to scale."""
    from serving.lift import action_lifts

    den_scored = None
    if denials is not None and n_rows(denials):
        dscores = model.score_denials(denials)
        den_scored = _score_denials(denials, column(dscores, "p_overturn"), column(dscores, "expected_recovery"), cfg)
    p = column(model.score_accounts(accounts), "p_payment")
    ids, as_of = column(accounts, "account_id").astype(object), _dates(accounts, "as_of")
    return action_lifts(accounts, p, account_denials(ids, as_of, den_scored, cfg), cfg["rules"], cfg["effects"])


def account_denials(ids: np.ndarray, as_of: np.ndarray, den: Columns | None, cfg: dict) -> dict | None:
    """Per account row (`ids`, `as_of`): its best open denial (`_score_denials`' rows) as the lift
    reads it: the work it calls for (`action`), its expected overturn dollars while the appeal window
    is open (`value`), and whether it was already appealed or corrected (`worked`); None without
    denials."""
    if den is None or not n_rows(den):
        return None
    _, d_cost = _action_minutes_cost(den["next_action"], cfg)
    best = _best_denial_rows(den, d_cost)
    hit = _match(ids, as_of, den["account_id"][best], den["as_of"][best])
    row = np.where(hit >= 0, best[np.maximum(hit, 0)], 0)
    has = hit >= 0
    d_left = (den["appeal_deadline"] - den["as_of"]) / np.timedelta64(1, "D")
    open_window = ~(d_left[row] < 0)
    return {"action": np.where(has, den["next_action"][row], None),
            "value": np.where(has & open_window, den["expected_recovery"][row], 0.0),
            "worked": has & (den["already_worked"][row] > 0)}


def _score_by_lift(acc: Table, p: np.ndarray, er: np.ndarray, den: Columns | None, cfg: dict, learned) -> Columns:
    """The row-wise half of the lift order: each row's lift and feasibility of every action
    (`serving.lift`), its holds and clocks, as columns (`lift:<action>`, `feasible:<action>`,
    `source:<action>`). Choosing the action needs the guarantor's other accounts, which another chunk
    or partition may hold, so `_choose_by_lift` does it in `finalize`, over every row."""
    from serving.lift import LIFT_ACTIONS, action_lifts

    n = n_rows(acc)
    p, er = np.asarray(p, dtype=np.float64), np.asarray(er, dtype=np.float64)
    ids, as_of = column(acc, "account_id").astype(object), _dates(acc, "as_of")
    bankrupt, fa, plan = (_num(acc, c) > 0 for c in ("in_bankruptcy", "fa_pending", "plan_in_good_standing"))
    hold_reason = np.full(n, None, dtype=object)
    for mask, why in ((plan, "payment plan in good standing"), (fa, "financial assistance pending"),
                      (bankrupt, "bankruptcy")):
        hold_reason[mask] = why
    lifts = action_lifts(acc, p, account_denials(ids, as_of, den, cfg), cfg["rules"], cfg["effects"], learned)
    out = {
        "account_id": ids, "as_of": as_of, "p_payment": p, "expected_recovery": er, "hold_reason": hold_reason,
        "held": bankrupt | fa | plan, "balance": _num(acc, "balance"),
        "appeal_deadline": add_days(as_of, _num(acc, "appeal_deadline_days_left", np.nan)),
        "timely_filing_deadline": add_days(as_of, _num(acc, "timely_filing_days_left", np.nan)),
        "guarantor_id": _guarantors(acc, ids), "calls_7d": _num(acc, "call_attempts_7d"),
        "guarantor_calls_7d": person_call_attempts_7d(acc),
        "follow_up_days": np.asarray(lifts.follow_up_days, dtype=np.float64),
    }
    for j, a in enumerate(LIFT_ACTIONS):
        out[f"lift:{a}"] = lifts.lift[:, j]
        out[f"feasible:{a}"] = lifts.feasible[:, j]
        out[f"source:{a}"] = np.full(n, lifts.source[a], dtype=object)
    return out


def _choose_by_lift(rows: Columns, cfg: dict) -> Columns:
    """DESIGN.md's priority over every scored row: for each feasible action, (lift - minutes x cost per
    minute - out-of-pocket cost) / minutes, the best action taken; an account where no action adds value
    waits, with a follow-up date. Holds and call limits as in the other orders; work on the person is
    valued over all of the guarantor's balances and its minutes are spent once (on the guarantor's first
    account), however the rows were chunked."""
    from serving.lift import LIFT_ACTIONS, PATIENT_ACTIONS

    rules = cfg["rules"]
    n = n_rows(rows)
    ids, as_of, held = rows["account_id"], rows["as_of"], rows["held"].astype(bool)
    lift = np.column_stack([rows[f"lift:{a}"] for a in LIFT_ACTIONS]) if n else np.zeros((0, len(LIFT_ACTIONS)))
    feasible0 = (np.column_stack([rows[f"feasible:{a}"] for a in LIFT_ACTIONS]).astype(bool) if n
                 else np.zeros((0, len(LIFT_ACTIONS)), dtype=bool))
    minutes = np.array([float(cfg["actions"][a]["minutes"]) for a in LIFT_ACTIONS])
    fixed = np.array([float(cfg["actions"][a]["cost"]) for a in LIFT_ACTIONS])
    guarantor = rows["guarantor_id"]
    pat_cols = np.array([a in PATIENT_ACTIONS for a in LIFT_ACTIONS])
    # one contact covers the person: patient work is worth the sum over the guarantor's open balances
    person = feasible0[:, pat_cols].any(axis=1) & ~held
    key = (pd.factorize(guarantor)[0].astype(np.int64) * DAY_KEY + day_numbers(as_of) if n
           else np.zeros(0, np.int64))  # (guarantor, as-of)
    group = np.unique(key, return_inverse=True)[1].reshape(-1)  # the same, as codes from 0
    value = lift.copy()
    value[:, pat_cols] = _group_sum(group, lift[:, pat_cols], person)
    feasible = feasible0.copy()
    feasible[:, pat_cols] = _group_sum(group, feasible0[:, pat_cols].astype(float), person) > 0
    # the person's attempts: their guarantor's count, or the sum over the rows at hand where that is higher
    calls = _group_sum(group, np.asarray(rows["calls_7d"], dtype=np.float64)[:, None], person)[:, 0]
    calls = np.maximum(calls, np.asarray(rows.get("guarantor_calls_7d", calls), dtype=np.float64))
    feasible[:, LIFT_ACTIONS.index("patient_call")] &= ~(calls >= float(rules["max_call_attempts_7d"]))
    per_minute = (value - minutes * cfg["cost_per_minute"] - fixed) / minutes
    per_minute = np.where(feasible & ~held[:, None], per_minute, -np.inf)
    best = np.argmax(per_minute, axis=1) if n else np.zeros(0, dtype=np.int64)
    best_pm = per_minute[np.arange(n), best]
    worth = best_pm > 0
    listed = worth.copy()  # rows that get an action (the others wait)
    below = cfg.get("below_cost_work") or {}
    if below.get("enabled", False) and n:
        # work that brings more than its out-of-pocket cost but less than the collector's time: listed after
        # all worthwhile work, at its (negative) priority, for an office with hands to spare; a capacity cut
        # never spends minutes on it
        useful = np.isfinite(per_minute) & (value - fixed > float(below.get("min_lift", 0.0)))
        pm_useful = np.where(useful, per_minute, -np.inf)
        alt = np.argmax(pm_useful, axis=1)
        extra = ~worth & np.isfinite(pm_useful[np.arange(n), alt])
        best = np.where(extra, alt, best)
        best_pm = per_minute[np.arange(n), best]
        listed |= extra
    best_action = np.where(listed, np.array(LIFT_ACTIONS, dtype=object)[best], "wait").astype(object)
    own_lift = np.where(listed, lift[np.arange(n), best], 0.0)
    action_minutes = np.where(listed, minutes[best], 0.0)
    # the guarantor's first account carries the contact's minutes; the others are covered by it
    on_person = listed & pat_cols[best]
    contact = np.full(n, -1, dtype=np.int64)  # the contact a row belongs to (`_order` keeps them together)
    covered = np.zeros(0, dtype=np.int64)
    if on_person.any():
        r = np.flatnonzero(on_person)
        by_key = r[np.lexsort((_id_order(ids[r]), key[r]))]  # per guarantor and date, by account id
        follower = np.r_[False, key[by_key][1:] == key[by_key][:-1]]
        covered = by_key[follower]
        action_minutes[covered] = 0.0
        contact[r] = group[r]

    # (a write-off adds no dollars: under this order a small balance waits like any other)
    action = best_action.copy()
    action[covered] = "covered"
    action[held] = "hold"
    best_action[held] = "hold"
    priority = np.where(np.isfinite(best_pm), best_pm, -float(cfg["cost_per_minute"]))
    priority = np.where(held, -np.inf, priority)
    follow_up = add_days(as_of, np.where(listed | held, np.nan, np.ceil(rows["follow_up_days"])))
    net = own_lift - action_minutes * cfg["cost_per_minute"] - np.where(listed, fixed[best], 0.0)
    explore = (exploration_draw(ids, as_of, int(cfg["exploration_seed"])) < float(cfg["exploration_share"])) & ~held
    explore &= worth  # exploration varies which worthwhile work is done, never sends anyone to a `wait`
    sources = (np.column_stack([rows[f"source:{a}"] for a in LIFT_ACTIONS]) if n
               else np.zeros((0, len(LIFT_ACTIONS)), dtype=object))
    source = sources[np.arange(n), best] if n else np.zeros(0, dtype=object)
    er = rows["expected_recovery"]
    return {
        "account_id": ids, "as_of": as_of, "priority": priority, "p_payment": rows["p_payment"],
        "expected_recovery": er, "expected_net": net, "next_action": action, "action_minutes": action_minutes,
        "hold_reason": rows["hold_reason"], "appeal_deadline": rows["appeal_deadline"],
        "timely_filing_deadline": rows["timely_filing_deadline"], "balance": rows["balance"],
        "is_exploration": explore, "expected_if_idle": np.maximum(er - own_lift, 0.0), "expected_lift": own_lift,
        "best_action": best_action, "follow_up_date": follow_up, "propensity": _propensity(explore, cfg),
        "guarantor_id": guarantor, "effect_source": np.where(listed, source, None).astype(object),
        "contact_group": contact,
    }


def denial_work(den: Table, expected: np.ndarray, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
    """How to work each denial, and its expected overturn dollars that way. What the data says of the
    denial's CARC decides: where the office has worked enough such denials both ways, the way worth
    more per minute (each way's own overturn rate); where it mostly used one way, that way (what an
    office does for a CARC is the best evidence it has); with no such history, the configured CARC
    groups (`correct_and_resubmit_groups`)."""
    n = n_rows(den)
    expected = np.asarray(expected, dtype=np.float64)
    dw = cfg["denial_work"]
    fix = np.isin(column(den, "carc_group").astype(object), np.asarray(cfg["correct_and_resubmit_groups"], object))
    worked = _num(den, "carc_worked", 0.0)
    share = np.clip(_num(den, "carc_corrected_share", 0.0), 0, 1)
    r_app, r_fix = _num(den, "carc_appeal_overturn_rate", np.nan), _num(den, "carc_correct_overturn_rate", np.nan)
    known = (worked >= float(dw["min_worked"])) & np.isfinite(r_app) & np.isfinite(r_fix)
    fix = np.where(known, share >= 0.5, fix)
    # both ways tried often enough: compare them, each at its own rate against the office's usual mix
    both = known & (np.minimum(share, 1 - share) * worked >= float(dw["min_each_way"]))
    mix = share * r_fix + (1 - share) * r_app
    ratio_fix = np.divide(r_fix, mix, out=np.ones(n), where=both & (mix > 0))
    ratio_app = np.divide(r_app, mix, out=np.ones(n), where=both & (mix > 0))
    m_fix, m_app = (float(cfg["actions"][a]["minutes"]) for a in ("correct_and_resubmit", "appeal"))
    cpm = float(cfg["cost_per_minute"])
    per_min_fix = (expected * ratio_fix - m_fix * cpm) / m_fix
    per_min_app = (expected * ratio_app - m_app * cpm) / m_app
    fix = np.where(both, per_min_fix >= per_min_app, fix)
    value = np.where(both, expected * np.where(fix, ratio_fix, ratio_app), expected)
    return np.where(fix, "correct_and_resubmit", "appeal").astype(object), value


def _score_denials(den: Table, p_overturn: np.ndarray, expected: np.ndarray, cfg: dict) -> Columns:
    action, expected = denial_work(den, expected, cfg)
    minutes, _ = _action_minutes_cost(action, cfg)
    cost = minutes * cfg["cost_per_minute"]  # a denial's own priority: collector time only
    left = _num(den, "appeal_deadline_days_left", np.nan)
    prio = _priority(expected - cost, minutes, _urgent(left, cfg["urgency"]["window_days"]), cfg)
    as_of = _dates(den, "as_of")
    claim_ids = column(den, "claim_id").astype(object)
    return {
        "claim_id": claim_ids, "account_id": column(den, "account_id").astype(object), "as_of": as_of,
        "priority": prio, "p_overturn": np.asarray(p_overturn, dtype=np.float64), "expected_recovery": expected,
        "next_action": action, "appeal_deadline": add_days(as_of, left), "carc": column(den, "carc").astype(object),
        "action_minutes": minutes, "already_worked": _num(den, "already_worked"),
        "is_exploration": exploration_draw(claim_ids, as_of, int(cfg["exploration_seed"])) < float(
            cfg["exploration_share"]),
    }


def _order(cols: Columns, key: str, capacity_minutes: float | None, seed: int,
           explore_share: float = 0.0, positive_only: bool = False) -> Columns:
    """Rank per as-of date by priority (ties by id). Exploration rows take a random place in the list;
    with a capacity they are kept first, within their share of the minutes, whatever their score
    (that is what makes their outcomes unbiased), and the rest of the minutes go by priority (with
    `positive_only`, only to work that adds more than it costs: a `wait` is never worked)."""
    n = n_rows(cols)
    if n == 0:
        return {**cols, "rank": np.zeros(0, dtype=np.int64)}
    days = day_numbers(cols["as_of"])
    id_rank = _id_order(cols[key])
    prio = cols["priority"]
    # by date, then priority (high first; NaN last), then id
    by_prio = np.lexsort((id_rank, -prio, days))
    picked, ranks = [], []
    bounds = np.flatnonzero(np.r_[True, days[by_prio][1:] != days[by_prio][:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        g = by_prio[lo:hi]
        sort_key = np.arange(len(g), dtype=float)
        explore = cols["is_exploration"][g].astype(bool)
        if explore.any():
            pos = exploration_draw(cols[key][g], cols["as_of"][g], seed, salt="position")
            sort_key[explore] = pos[explore] * len(g) - 0.5  # a random place, stable per (id, as_of)
        contact = cols["contact_group"][g] if "contact_group" in cols else None
        together = contact >= 0 if contact is not None else None
        if together is not None and together.any():
            # a contact's rows sit together, where its first would; ties break by id, so the row that
            # carries the contact's minutes (its guarantor's first account) leads
            sort_key[together] = pd.Series(sort_key[together]).groupby(contact[together]).transform("min").to_numpy()
        if capacity_minutes is not None:
            mins = cols["action_minutes"][g]
            keep = np.zeros(len(g), dtype=bool)
            budget = float(capacity_minutes) * explore_share  # exploration gets its share of the minutes
            for i in np.flatnonzero(explore)[np.argsort(sort_key[explore], kind="stable")]:
                if mins[i] <= budget:
                    keep[i] = True
                    budget -= mins[i]
            budget = float(capacity_minutes) - mins[keep].sum()
            workable = np.isfinite(prio[g]) & ~explore
            if positive_only:
                workable &= prio[g] > 0
            for i in np.flatnonzero(workable):  # greedy by priority
                if mins[i] <= budget:
                    keep[i] = True
                    budget -= mins[i]
            if together is not None and together.any():  # a covered row is listed only with its contact
                leads = together & (mins > 0)
                keep[together] = np.isin(contact[together], contact[leads & keep])
            g, sort_key = g[keep], sort_key[keep]
        g = g[np.lexsort((id_rank[g], sort_key))]
        picked.append(g)
        ranks.append(np.arange(1, len(g) + 1, dtype=np.int64))
    rows = np.concatenate(picked)
    out = {c: v[rows] for c, v in cols.items()}
    out["rank"] = np.concatenate(ranks)
    return out


# ----------------------------------------------------------------------------- reasons


def _explained(ranked: Columns, rows: int | None, minutes: float | None) -> np.ndarray:
    """Which ranked rows get reasons: the top `rows` of each date (all when None) and, with `minutes`,
    of those only the ones whose work, added up from the top of their date's list, fits in `minutes`."""
    n = n_rows(ranked)
    rank = np.asarray(ranked["rank"]) if n else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool) if rows is None else rank <= int(rows)
    if minutes is not None and n:
        days = day_numbers(ranked["as_of"])
        order = np.lexsort((rank, days))
        spent = np.cumsum(np.asarray(ranked["action_minutes"], dtype=np.float64)[order])
        first = np.r_[True, days[order][1:] != days[order][:-1]]
        before = np.maximum.accumulate(np.where(first, np.r_[0.0, spent[:-1]], 0.0))  # spent on earlier dates
        fits = np.empty(n, dtype=bool)
        fits[order] = spent - before <= float(minutes) + 1e-9
        mask &= fits
    return mask


def _reasons(model, acc: Table, ranked: Columns, explained: np.ndarray, top_n: int, max_trees: int | None = None
             ) -> np.ndarray:
    """Reasons in the office's words (`features/reasons.py`) for the `explained` rows of the ranked list:
    the suggested action's sentence, then up to `top_n - 1` sentences on the features that drove it.
    Those are chosen by the amount model's TreeSHAP contributions (LightGBM's own), strongest first,
    among the features that speak for the row's action (`ACTION_FEATURES`), or among all features when
    none of those has anything to say. Other rows get an empty list."""
    from features.catalogue import DEFAULT_HORIZONS
    from features.reasons import Values, action_features_mask, explain, reason_keys

    n = n_rows(ranked)
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = []
    first = np.flatnonzero(explained)
    if not len(first):
        return out
    rows = _match(ranked["account_id"][first], ranked["as_of"][first], column(acc, "account_id"),
                  _dates(acc, "as_of"))
    if (rows < 0).any():
        raise ValueError("ranked rows without their feature row: the features and the scores do not match")
    sub = take(acc, rows)
    strength = np.abs(model.account_contributions(sub, max_trees)[:, :-1])  # last column is the bias
    names = list(model.account_features_)
    actions = ranked["next_action"][first]
    values = Values(take(ranked, first), sub)  # the ranked row's figures first, then its features
    # per row, the features in order of strength: those that speak for its action, then all of them
    # (a feature that contributes nothing is never a reason)
    relevant = action_features_mask(reason_keys(actions, values), names) & (strength > 0)
    by_relevant = np.argsort(np.where(relevant, -strength, np.inf), axis=1, kind="stable")
    by_strength = np.argsort(-strength, axis=1, kind="stable")
    n_relevant, n_contributing = relevant.sum(axis=1), (strength > 0).sum(axis=1)
    horizons = getattr(model, "horizons_", DEFAULT_HORIZONS)
    for i, r in enumerate(first):
        out[r] = explain(values.row(i), str(actions[i]),
                         (names[j] for j in by_relevant[i, :n_relevant[i]]),
                         (names[j] for j in by_strength[i, :n_contributing[i]]), top_n, horizons)
    return out
