"""Exact expected dollars within H: under the office's usual work, left alone, and after each action.

For the open accounts at the end of day T, the chain (`features.sources.chain`) is solved backwards
from T + H to T + 1: U_d(x) is the expected dollars paid on days d..T+H from state x at the start of
day d, and Z_d(x) the probability that nothing is paid. One day is
  Q_d(y) = sum_z N_d(y, z) (dollars(y -> z) + U_{d+1}(z))     (the natural move)
  U_d(x) = Q_d(x)                                              (left alone)
  U_d(x) = Q_d(x) + sum_a pi_a(x, d) sum_o p_o (Q_d(dst_o) - Q_d(x))   (the office's usual work)
and an action a done on the morning of T + 1, then nothing: E_a = Q_{T+1}(x) + sum_o p_o (Q_{T+1}(dst_o)
- Q_{T+1}(x)). Every sum is exact (no sampling); an outcome that leaves the account where it is adds
exactly nothing, so where the mechanism has no effect the lift is exactly 0.0. One backward pass
gives the value of every state at once, so each action's truth is one weighted sum on top of it.

Each pass works only on the (state, account) pairs the account can reach: left alone, the states
natural moves lead to from the start or from where a first action can put it (engagement never
rises on its own); under the office's work, everything its work can lead to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.sources import chain as ch
from features.sources import ledger
from features.sources.office import OfficeConfig, office_probabilities

# rows of the stacked value array: U and Z left alone, U and Z under the office's usual work
_KEEP_IF_PAID = np.array([1.0, 0.0, 1.0, 0.0])[:, None]  # Z of a path that pays is 0
_ADD_IF_PAID = np.array([1.0, 0.0, 1.0, 0.0])[:, None]
_CLOSED = np.array([0.0, 1.0, 0.0, 1.0])[:, None]  # a closed account: no more dollars, no payment


def _closure(succ: list[set[int]]) -> np.ndarray:
    reach = np.eye(ch.N_STATES, dtype=bool)
    for s0 in range(ch.N_STATES):
        todo = [s0]
        while todo:
            s = todo.pop()
            for nxt in succ[s]:
                if not reach[s0, nxt]:
                    reach[s0, nxt] = True
                    todo.append(nxt)
    return reach


def transition_graph(P: dict) -> dict[str, np.ndarray]:
    """Which states can follow which, for the accounts of P (a superset: every destination any
    account could take on any day), built once: `natural[s0, s]` by natural moves alone, `reach`
    under any work, `first[s0, s]` s0 itself or where one feasible action can lead, `moves[a, s]`
    action a is feasible in state s and can move an account out of it."""
    if "graph" in P:
        return P["graph"]
    ix = np.arange(P["n"])
    clk = ch.clocks(P, np.zeros(P["n"], np.int64), np.zeros(P["n"], np.int64))
    natural = [set() for _ in range(ch.N_STATES)]
    worked = [set() for _ in range(ch.N_STATES)]
    moves = np.zeros((len(ch.ACTIONS), ch.N_STATES), dtype=bool)
    for s in range(ch.N_STATES):
        for dst, _, _, _ in ch.natural_edges(s, 0, P, ix, clk):
            natural[s].update(np.unique(np.broadcast_to(dst, len(ix))).tolist())
        for a in ch.feasible_actions(s):
            for dst, _, _ in ch.jump(a, s, 0, P, ix, clk):
                targets = set(np.unique(np.broadcast_to(dst, len(ix))).tolist()) - {s}
                worked[s].update(targets)
                moves[a, s] |= bool(targets)
    first = np.eye(ch.N_STATES, dtype=bool)
    for s in range(ch.N_STATES):
        first[s, sorted(worked[s])] = True
    P["graph"] = {"natural": _closure(natural), "reach": _closure([natural[s] | worked[s] for s in range(ch.N_STATES)]),
                  "first": first, "moves": moves}
    return P["graph"]


def _groups(live: list[np.ndarray]) -> list[tuple[object, np.ndarray]]:
    """(state, accounts) to process: one per state, the patient states as one block of pairs."""
    out = [(s, live[s]) for s in range(ch.N_STATES)
           if len(live[s]) and s not in ch.CLOSED_STATES and not ch.is_patient(s)]
    pat = [s for s in ch.PAT_STATES if len(live[s])]
    if pat:
        out.append((np.concatenate([np.full(len(live[s]), s) for s in pat]), np.concatenate([live[s] for s in pat])))
    return out


class _Pass:
    """One backward pass over a set of (state, account) pairs, the values flat: row r, entry
    state * m + account. Destinations of moves do not change from day to day (only probabilities
    do), so their flat indices are computed once."""

    def __init__(self, m: int, groups, rows: int) -> None:
        self.m, self.groups = m, groups
        self.here = [np.asarray(s) * m + sub for s, sub in groups]
        self.cache: dict = {}
        self.A = np.zeros((rows, ch.N_STATES * m))
        self.A[1::2] = 1.0  # P(no payment) after the horizon's end
        self.B = self.A.copy()

    def index(self, key, dst, sub) -> np.ndarray:
        idx = self.cache.get(key)
        if idx is None:
            idx = self.cache[key] = np.broadcast_to(dst, len(sub)) * self.m + sub
        return idx

    def natural_backup(self, d: int, P: dict, ix: np.ndarray, clk: dict) -> None:
        """B <- one natural day backed up from A; then B is the current A."""
        A, B = self.A, self.B
        k = A.shape[0]
        for gi, (s, sub) in enumerate(self.groups):
            here = self.here[gi]
            edges = ch.natural_edges(s, d, P, ix[sub], clk)
            stay = np.ones(len(sub))
            acc = np.zeros((k, len(sub)))
            for ei, (dst, prob, _ev, dollars) in enumerate(edges):
                if dollars is None and (dst is s or (np.ndim(dst) == 0 and np.ndim(s) == 0 and dst == s)):
                    continue  # a self-loop (a reversal pair) is the same as staying
                stay -= prob
                if np.ndim(dst) == 0 and dst in ch.CLOSED_STATES:  # nothing more: U = 0, Z = 1
                    nxt = _CLOSED[:k]
                else:
                    nxt = A[:, self.index((gi, ei), dst, sub)]
                if dollars is not None:
                    nxt = nxt * _KEEP_IF_PAID[:k] + np.asarray(dollars)[None, :] * _ADD_IF_PAID[:k]
                acc += prob[None, :] * nxt
            B[:, here] = acc + stay[None, :] * A[:, here]
        self.A, self.B = B, A

    def jump_delta(self, gi: int, a: int, d: int, P: dict, ix: np.ndarray, clk: dict) -> np.ndarray:
        """sum_o p_o (A(dst_o) - A(s)) for the accounts of group gi (exactly 0 for an identity jump)."""
        s, sub = self.groups[gi]
        return _delta(self.A, self.here[gi], ch.jump(a, s, d, P, ix[sub], clk), s,
                      lambda oi, dst: self.index((gi, "jump", a, oi), dst, sub))

    def office_mix(self, d: int, P: dict, ix: np.ndarray, clk: dict, office: OfficeConfig, moves: np.ndarray) -> None:
        """A <- A + the office's work of day d (computed from A before any of it is added)."""
        updates = []
        for gi, (s, sub) in enumerate(self.groups):
            can = moves[:, ch.PAT_FIRST] if ch.is_patient(s) else moves[:, s]
            if not can.any():
                continue
            total = None
            for a, p_rule, p_exp in office_probabilities(s, d, P, ix[sub], clk, office):
                pi = p_rule + p_exp
                if not can[a] or not pi.any():
                    continue
                part = pi[None, :] * self.jump_delta(gi, a, d, P, ix, clk)
                total = part if total is None else total + part
            if total is not None:
                updates.append((self.here[gi], total))
        for here, total in updates:
            self.A[:, here] += total


def _delta(A: np.ndarray, here: np.ndarray, outcomes, s, index) -> np.ndarray:
    """sum_o p_o (A(dst_o) - A(here)) over a jump's outcomes; `index(o, dst)` gives the flat
    entries of outcome o's destinations. Outcomes that stay put add exactly nothing."""
    at = A[:, here]
    delta = np.zeros_like(at)
    for oi, (dst, prob, _) in enumerate(outcomes):
        moving = np.broadcast_to(dst, len(here)) != s
        if not moving.any():
            continue
        idx = index(oi, dst)
        if moving.all():
            delta += prob[None, :] * (A[:, idx] - at)
        else:
            mv = np.flatnonzero(moving)
            delta[:, mv] += prob[mv][None, :] * (A[:, idx[mv]] - at[:, mv])
    return delta


def _live(reach: np.ndarray, start_sets: np.ndarray) -> list[np.ndarray]:
    """The accounts for which each state is reachable from any of their start states."""
    hit = (start_sets.astype(np.int32) @ reach.astype(np.int32)) > 0
    return [np.flatnonzero(hit[:, s]) for s in range(ch.N_STATES)]


def solve(P: dict, ix: np.ndarray, start: np.ndarray, clk: dict, t: int, horizon: int,
          office: OfficeConfig | None) -> tuple[_Pass, _Pass | None]:
    """Backward passes from t + horizon to the start of day t + 1 for accounts ix starting in states
    `start`: left alone (rows U, Z), and under the office's usual work when `office` is given."""
    m = len(ix)
    g = transition_graph(P)
    # left alone: the states reachable by natural moves from the start or where a first action leads
    idle = _Pass(m, _groups(_live(g["natural"], g["first"][start])), 2)
    usual = _Pass(m, _groups(_live(g["reach"], np.eye(ch.N_STATES, dtype=bool)[start])), 2) if office else None
    for d in range(t + horizon, t, -1):
        idle.natural_backup(d, P, ix, clk)
        if usual is not None:
            usual.natural_backup(d, P, ix, clk)
            usual.office_mix(d, P, ix, clk, office, g["moves"])
    return idle, usual


def action_values(idle: _Pass, P: dict, ix: np.ndarray, start: np.ndarray, clk: dict, t: int
                  ) -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]:
    """For every feasible action of every account: (rows, action, lift in dollars, P(payment)), the
    action done on the morning of t + 1 and the account left alone after it (lift: against idle)."""
    out = []
    m = idle.m
    for s in np.unique(start):
        s = int(s)
        rows = np.flatnonzero(start == s)
        for a in ch.feasible_actions(s):
            r = rows[ch.feasible_mask(a, s, t + 1, ix[rows], clk)]
            if not len(r):
                continue
            here = s * m + r
            delta = _delta(idle.A, here, ch.jump(a, s, t + 1, P, ix[r], clk), s,
                           lambda _oi, dst, r=r: np.broadcast_to(dst, len(r)) * m + r)
            out.append((r, a, delta[0], 1.0 - (idle.A[1, here] + delta[1])))
    return out


def truth_at(P: dict, state: np.ndarray, clk: dict, t: int, horizon: int, office: OfficeConfig | None
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The truth of every open account at the end of day t: per account (under usual work and left
    alone) and per feasible action (done on the morning of t + 1, then left alone)."""
    ix = np.flatnonzero(np.isin(state, ch.OPEN_STATES))
    start = state[ix].astype(np.int64)
    idle, usual = solve(P, ix, start, clk, t, horizon, office)
    here = start * len(ix) + np.arange(len(ix))
    idle_u, idle_z = idle.A[0, here], idle.A[1, here]
    usual_u, usual_z = (usual.A[0, here], usual.A[1, here]) if usual is not None else (idle_u, idle_z)
    accounts = {"acct": ix, "day": np.full(len(ix), t), "p_payment": 1.0 - usual_z, "expected_recovery": usual_u,
                "p_payment_if_idle": 1.0 - idle_z, "expected_if_idle": idle_u}
    parts = action_values(idle, P, ix, start, clk, t)
    minutes = P["mech"].minutes_of()
    if parts:
        rows = np.concatenate([p[0] for p in parts])
        act = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
        lift = np.concatenate([p[2] for p in parts])
        p_pay = np.concatenate([p[3] for p in parts])
    else:
        rows, act, lift, p_pay = (np.zeros(0, np.int64),) * 4
    actions = {"acct": ix[rows], "day": np.full(len(rows), t), "action": act.astype(np.int64),
               "minutes": minutes[act.astype(np.int64)], "p_payment": p_pay,
               "expected_recovery": idle_u[rows] + lift, "lift": lift}
    return accounts, actions


def truth_frames(P: dict, start: pd.Timestamp, acc: list[dict], act: list[dict]) -> dict[str, pd.DataFrame]:
    """`_truth/accounts` and `_truth/actions` from the month starts' `truth_at` results."""
    def cat(parts: list[dict], key: str) -> np.ndarray:
        return np.concatenate([p[key] for p in parts]) if parts else np.zeros(0)

    ax = cat(acc, "acct").astype(np.int64)
    accounts = pd.DataFrame({
        "account_id": P["account_id"][ax], "as_of": start + pd.to_timedelta(cat(acc, "day").astype(np.int64), unit="D"),
        **{k: cat(acc, k).astype(float) for k in ("p_payment", "expected_recovery", "p_payment_if_idle",
                                                   "expected_if_idle")},
        "guarantor_id": P["guarantor_id"][ax],
    })
    tx = cat(act, "acct").astype(np.int64)
    action = cat(act, "action").astype(np.int64)
    claim = np.where(np.isin(action, ch.CLAIM_ACTIONS),
                     P["claim_base"][tx] + ledger.CLAIM_SUFFIX[cat(act, "claim").astype(np.int64)], None)
    actions = pd.DataFrame({
        "account_id": P["account_id"][tx], "as_of": start + pd.to_timedelta(cat(act, "day").astype(np.int64), unit="D"),
        "action": np.array(ch.ACTIONS, dtype=object)[action], "claim_id": claim,
        **{k: cat(act, k).astype(float) for k in ("minutes", "p_payment", "expected_recovery", "lift")},
    })
    return {"accounts": accounts, "actions": actions}


def denial_truth(P: dict, ev: pd.DataFrame, start: pd.Timestamp, office: OfficeConfig) -> pd.DataFrame:
    """Each first denial: its cause, P(overturn | worked the way its CARC calls for), and the chance
    that the office works it inside the appeal window."""
    den = ev[ev["kind"] == ch.EV_DENY]
    ix = den["acct"].to_numpy(dtype=np.int64)
    feasible = len(ch.FEASIBLE["denied"])
    work = office.intensity * P["work_rate"][ix] + 2 * office.explore / feasible
    drop = office.intensity * office.write_off_denial + office.explore / feasible
    days = P["appeal_window"][ix]
    q = P["q_overturn"][ix]
    return pd.DataFrame({
        "claim_id": P["claim_base"][ix] + ledger.CLAIM_SUFFIX[den["claim"].to_numpy(dtype=np.int64)],
        "account_id": P["account_id"][ix], "denial_date": start + pd.to_timedelta(den["day"].to_numpy(), unit="D"),
        "reason_code": P["carc_code"][ix], "p_overturn_if_worked": q,
        "p_worked": work / (work + drop) * (1 - (1 - work - drop) ** days),
        "expected_overturn_dollars": q * P["a1"][ix],
    })
