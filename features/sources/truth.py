"""Exact expected dollars within H: under the office's usual work, left alone, and after each action.

For the open accounts at the end of day T, the chain (`features.sources.chain`) is solved backwards
from T + H to T + 1: U_d(x) is the expected dollars paid on days d..T+H from state x at the start of
day d, and Z_d(x) the probability that nothing is paid. One day is
  Q_d(y) = sum_z N_d(y, z) (dollars(y -> z) + U_{d+1}(z))     (the natural move)
  U_d(x) = Q_d(x)                                              (left alone)
  U_d(x) = Q_d(x) + sum_a pi_a(x, d) sum_o p_o (Q_d(dst_o) - Q_d(x))   (the office's usual work)
and an action a done on the morning of T + 1, then nothing: E_a = Q_{T+1}(x) + sum_o p_o (Q_{T+1}(dst_o)
- Q_{T+1}(x)). Every sum is exact (no sampling); an identity jump adds exactly 0, so where the
mechanism has no effect the lift is exactly 0.0. One backward pass gives the value of every state
at once, so every action's truth costs one weighted sum on top of it.

Each account's state distribution only ever reaches the states its start can reach; the pass works,
state by state, only on the accounts for which that state is reachable.
"""

from __future__ import annotations

import numpy as np

from features.sources import chain as ch
from features.sources.office import OfficeConfig, office_probabilities

# rows of the stacked value array: U and Z left alone, U and Z under the office's usual work
_KEEP_IF_PAID = np.array([1.0, 0.0, 1.0, 0.0])[:, None]  # Z of a path that pays is 0
_ADD_IF_PAID = np.array([1.0, 0.0, 1.0, 0.0])[:, None]


def transition_graph(P: dict) -> tuple[np.ndarray, np.ndarray]:
    """(reach, moves) of the chunk's accounts: reach[s0, s] when state s can follow s0 (under any
    work), moves[a, s] when action a is feasible in state s and can move an account out of it. A
    superset graph (every
    destination any account could take on any day), built once per set of accounts."""
    if "graph" in P:
        return P["graph"]
    ix = np.arange(P["n"])
    clk = ch.clocks(P, np.zeros(P["n"], np.int64), np.zeros(P["n"], np.int64))
    succ = [set() for _ in range(ch.N_STATES)]
    moves = np.zeros((len(ch.ACTIONS), ch.N_STATES), dtype=bool)
    for s in range(ch.N_STATES):
        for dst, _, _, _ in ch.natural_edges(s, 0, P, ix, clk):
            succ[s].update(np.unique(np.broadcast_to(dst, len(ix))).tolist())
        for a in range(len(ch.ACTIONS)):
            for dst, _, _ in ch.jump(a, s, 0, P, ix, clk):
                targets = set(np.unique(np.broadcast_to(dst, len(ix))).tolist()) - {s}
                succ[s].update(targets)
                moves[a, s] |= bool(targets) and a in ch.feasible_actions(s)
        succ[s].discard(s)
    reach = np.eye(ch.N_STATES, dtype=bool)
    for s0 in range(ch.N_STATES):
        todo = [s0]
        while todo:
            s = todo.pop()
            for nxt in succ[s]:
                if not reach[s0, nxt]:
                    reach[s0, nxt] = True
                    todo.append(nxt)
    P["graph"] = (reach, moves)
    return P["graph"]


def _groups(live: list[np.ndarray]) -> list[tuple[object, np.ndarray]]:
    """(state, accounts) to process: one per state, the patient states as one block of pairs."""
    out = [(s, live[s]) for s in range(ch.N_STATES)
           if len(live[s]) and s not in ch.CLOSED_STATES and not ch.is_patient(s)]
    pat = [s for s in ch.PAT_STATES if len(live[s])]
    if pat:
        out.append((np.concatenate([np.full(len(live[s]), s) for s in pat]), np.concatenate([live[s] for s in pat])))
    return out


def _natural_backup(A: np.ndarray, d: int, P: dict, ix: np.ndarray, clk: dict, groups) -> np.ndarray:
    Q = A.copy()
    for s, sub in groups:
        edges = ch.natural_edges(s, d, P, ix[sub], clk)
        if not edges:
            continue
        stay = np.ones(len(sub))
        acc = np.zeros((A.shape[0], len(sub)))
        for dst, prob, _ev, dollars in edges:
            stay -= prob
            nxt = A[:, dst, sub]
            if dollars is not None:
                nxt = nxt * _KEEP_IF_PAID + np.asarray(dollars)[None, :] * _ADD_IF_PAID
            acc += prob[None, :] * nxt
        Q[:, s, sub] = acc + stay[None, :] * A[:, s, sub]
    return Q


def _jump_delta(Q: np.ndarray, rows: slice, a: int, s, d: int, P: dict, ix: np.ndarray, clk: dict,
                sub: np.ndarray) -> np.ndarray:
    """sum_o p_o (Q(dst_o) - Q(s)) for accounts sub in state s (exactly 0 for an identity jump)."""
    Qr = Q[rows]
    here = Qr[:, s, sub]
    delta = np.zeros_like(here)
    for dst, prob, _ in ch.jump(a, s, d, P, ix[sub], clk):
        moving = np.broadcast_to(dst, len(sub)) != s
        if not moving.any():
            continue
        if moving.all():
            delta += prob[None, :] * (Qr[:, dst, sub] - here)
        else:
            m = np.flatnonzero(moving)
            delta[:, m] += prob[m][None, :] * (Qr[:, np.broadcast_to(dst, len(sub))[m], sub[m]] - here[:, m])
    return delta


def _office_mix(Q: np.ndarray, d: int, P: dict, ix: np.ndarray, clk: dict, groups, office: OfficeConfig,
                moves: np.ndarray) -> np.ndarray:
    U = Q.copy()
    usual = slice(2, 4)
    for s, sub in groups:
        can = moves[:, ch.PAT_FIRST] if ch.is_patient(s) else moves[:, s]
        if not can.any():
            continue
        for a, p_rule, p_exp in office_probabilities(s, d, P, ix[sub], clk, office):
            if not can[a]:
                continue
            pi = p_rule + p_exp
            if not pi.any():
                continue
            U[usual, s, sub] += pi[None, :] * _jump_delta(Q, usual, a, s, d, P, ix, clk, sub)
    return U


def solve(P: dict, ix: np.ndarray, start: np.ndarray, clk: dict, t: int, horizon: int,
          office: OfficeConfig | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The stacked values at the start of day t + 1 ([U, Z] idle, then [U, Z] usual when `office`)
    for accounts ix starting in states `start`, and the live accounts of each state."""
    m = len(ix)
    reach, moves = transition_graph(P)
    live = [np.flatnonzero(reach[start, s]) for s in range(ch.N_STATES)]
    groups = _groups(live)
    A = np.zeros((4 if office is not None else 2, ch.N_STATES, m))
    A[1::2] = 1.0  # P(no payment) after the horizon's end
    for d in range(t + horizon, t, -1):
        A = _natural_backup(A, d, P, ix, clk, groups)
        if office is not None:
            A = _office_mix(A, d, P, ix, clk, groups, office, moves)
    return A, live


def action_values(A: np.ndarray, P: dict, ix: np.ndarray, start: np.ndarray, clk: dict, t: int
                  ) -> list[tuple[np.ndarray, int, np.ndarray, np.ndarray]]:
    """For every feasible action of every account: (rows, action, lift in dollars, P(payment)), the
    action done on the morning of t + 1 and the account left alone after it (lift: against idle)."""
    out = []
    idle = slice(0, 2)
    for s in np.unique(start):
        rows = np.flatnonzero(start == s)
        for a in ch.feasible_actions(int(s)):
            ok = ch.feasible_mask(a, int(s), t + 1, ix[rows], clk)
            r = rows[ok]
            if not len(r):
                continue
            delta = _jump_delta(A, idle, a, int(s), t + 1, P, ix, clk, r)
            base = A[idle, int(s)][:, r]
            out.append((r, a, delta[0], 1.0 - (base[1] + delta[1])))
    return out


def truth_at(P: dict, state: np.ndarray, clk: dict, t: int, horizon: int, office: OfficeConfig | None
             ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The truth of every open account at the end of day t: per account (under usual work and left
    alone) and per feasible action (done on the morning of t + 1, then left alone)."""
    ix = np.flatnonzero(np.isin(state, ch.OPEN_STATES))
    start = state[ix].astype(np.int64)
    A, _ = solve(P, ix, start, clk, t, horizon, office)
    cols = np.arange(len(ix))
    idle_u, idle_z = A[0, start, cols], A[1, start, cols]
    usual = (A[2, start, cols], A[3, start, cols]) if office is not None else (idle_u, idle_z)
    accounts = {"acct": ix, "day": np.full(len(ix), t), "p_payment": 1.0 - usual[1], "expected_recovery": usual[0],
                "p_payment_if_idle": 1.0 - idle_z, "expected_if_idle": idle_u}
    parts = action_values(A, P, ix, start, clk, t)
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
