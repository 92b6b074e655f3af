"""Stepping accounts through the chain, one day at a time, for the history and for the arena.

Each day: deadlines that passed are noted (forfeits, latent: no table row), the morning's work is
done (`do_work`: each piece of work is one `chain.jump`), then every open account makes its natural
move (`chain.natural_edges`). Everything that happens is recorded as events (and work rows) that
`features.sources.ledger` turns into contract tables.

Random numbers are counter-based: the uniform an account draws on a day for a purpose is a hash of
(seed, account, day, purpose). An account's draws therefore never depend on what other accounts, or
a policy, did: every arena policy runs on the same random streams (common random numbers), and any
subset of accounts can be re-run alone with the same results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.sources import chain as ch
from features.sources.office import OfficeConfig, office_probabilities

# purposes of a draw
S_OFFICE, S_JUMP, S_NATURAL, S_CONTACT = 1, 2, 3, 4

_NEW_CLAIM = {ch.EV_RESUBMIT: 1, ch.EV_CORRECT: 2}  # the claim in play after the event (see Memory.claim)
_MASK = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15


def _mix_int(x: int) -> int:
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(seed: int, keys: np.ndarray, day: int, purpose: int) -> np.ndarray:
    """One uniform in [0, 1) per key: a hash of (seed, key, day, purpose) (splitmix64)."""
    head = np.uint64(_mix_int(_mix_int(seed * _G + purpose) + day * 0xD1B54A32D192ED03))
    x = _mix(np.asarray(keys, dtype=np.int64).astype(np.uint64) * np.uint64(_G) + head)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass
class Memory:
    """What the simulator remembers of each account beyond its latent draw."""

    state: np.ndarray
    den_day: np.ndarray          # day the open denial arrived (BIG: none)
    first_statement: np.ndarray  # day of the first patient statement (BIG: none yet)
    claim: np.ndarray            # the primary claim in play: 0 the original (-1), 1 resubmitted (-R), 2 corrected (-2)
    seq: np.ndarray              # events so far (ids of the account's rows)
    forfeited: np.ndarray        # a deadline already forfeited this account's insurance payment

    @classmethod
    def fresh(cls, n: int) -> Memory:
        return cls(np.full(n, ch.NOT_STARTED, dtype=np.int8), np.full(n, ch.BIG, dtype=np.int64),
                   np.full(n, ch.BIG, dtype=np.int64), np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int64),
                   np.zeros(n, dtype=bool))

    def clocks(self, P: dict) -> dict[str, np.ndarray]:
        return ch.clocks(P, self.den_day, self.first_statement)

    def take(self, rows: np.ndarray | None = None) -> Memory:
        """A copy (of the given accounts only, when `rows` is given)."""
        return Memory(**{k: (v.copy() if rows is None else v[rows].copy()) for k, v in self.__dict__.items()})

    @classmethod
    def concat(cls, parts: list[Memory]) -> Memory:
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in parts[0].__dict__})

    def as_columns(self) -> dict[str, np.ndarray]:
        return {f"mem_{k}": v for k, v in self.__dict__.items()}

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> Memory:
        dtypes = {"state": np.int8, "den_day": np.int64, "first_statement": np.int64, "claim": np.int8,
                  "seq": np.int64, "forfeited": bool}
        return cls(**{k: np.asarray(cols[f"mem_{k}"]).astype(t) for k, t in dtypes.items()})


@dataclass
class Recorder:
    """Events and work rows as they happen (columns kept as lists of arrays until `frames`)."""

    events: list = field(default_factory=list)
    work: list = field(default_factory=list)

    def event(self, mem: Memory, ix: np.ndarray, d: int, kind: int, from_state, amount=None) -> None:
        if not len(ix):
            return
        seq = mem.seq[ix].copy()
        mem.seq[ix] += 1
        if kind == ch.EV_STATEMENT:
            mem.first_statement[ix] = np.minimum(mem.first_statement[ix], d)
        amt = np.full(len(ix), np.nan) if amount is None else np.asarray(amount, dtype=np.float64)
        self.events.append((ix, np.full(len(ix), d), np.full(len(ix), kind), amt,
                            np.broadcast_to(np.asarray(from_state, dtype=np.int64), len(ix)).copy(),
                            mem.claim[ix].astype(np.int64), seq))

    def work_row(self, mem: Memory, ix, d, action, minutes, propensity, exploration, claim, collector) -> None:
        seq = mem.seq[ix].copy()
        mem.seq[ix] += 1
        self.work.append((ix, np.full(len(ix), d), np.asarray(action, dtype=np.int64), minutes, propensity,
                          exploration, claim, seq, collector))

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        ev_cols = ["acct", "day", "kind", "amount", "from_state", "claim", "seq"]
        wk_cols = ["acct", "day", "action", "minutes", "propensity", "is_exploration", "claim", "seq", "collector"]
        ev = pd.DataFrame({c: np.concatenate([e[i] for e in self.events]) if self.events else np.zeros(0, np.int64)
                           for i, c in enumerate(ev_cols)})
        wk = pd.DataFrame({c: np.concatenate([w[i] for w in self.work]) if self.work else np.zeros(0, np.int64)
                           for i, c in enumerate(wk_cols)})
        if not len(wk):
            wk["collector"] = wk["collector"].astype(object)
        return ev, wk

    def clear(self) -> None:
        self.events.clear()
        self.work.clear()


def open_accounts(mem: Memory) -> np.ndarray:
    return np.flatnonzero(np.isin(mem.state, ch.OPEN_STATES))


def by_state(state: np.ndarray, ix: np.ndarray):
    """(state, rows of ix) for each state present (for the patient block: the array of its accounts'
    states, see `chain.is_patient`), in state order."""
    if not len(ix):
        return
    block = ch.blocks(state[ix])
    order = np.argsort(block, kind="stable")
    b_sorted = block[order]
    bounds = np.flatnonzero(np.r_[True, b_sorted[1:] != b_sorted[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]
        b = int(b_sorted[lo])
        yield (state[ix[rows]].astype(np.int64) if b == ch.PAT_FIRST else b), rows


def _part(s, mask: np.ndarray):
    """The states of the masked accounts of a group (an int stays an int)."""
    return s if np.ndim(s) == 0 else s[mask]


def _choose(probs: list[np.ndarray], u: np.ndarray) -> np.ndarray:
    """Index of the outcome each uniform falls in (len(probs) when in none: the mass that stays)."""
    pick = np.full(len(u), len(probs), dtype=np.int64)
    cum = np.zeros(len(u))
    for i, p in enumerate(probs):
        cum = cum + p
        pick = np.where((pick == len(probs)) & (u < cum), i, pick)
    return pick


def note_forfeits(P: dict, mem: Memory, d: int, rec: Recorder) -> None:
    """Deadlines that passed at the end of yesterday: the claim's payable amount is lost (latent)."""
    late_claim = np.isin(mem.state, (ch.PRE_BILL, ch.LOST, ch.REJECTED)) & (P["tf_day"] + 1 == d)
    late_denial = (mem.state == ch.DENIED) & (mem.den_day + P["appeal_window"] + 1 == d)
    ix = np.flatnonzero((late_claim | late_denial) & ~mem.forfeited)
    mem.forfeited[ix] = True
    rec.event(mem, ix, d, ch.EV_FORFEIT, mem.state[ix].astype(np.int64), P["a1"][ix])


def do_work(P: dict, mem: Memory, d: int, seed: int, rec: Recorder, ix: np.ndarray, actions: np.ndarray,
            propensity: np.ndarray, exploration: np.ndarray, draws: np.ndarray | None = None,
            collector: np.ndarray | None = None, minutes: np.ndarray | None = None) -> None:
    """Do one action on each of the accounts ix (distinct) on the morning of day d; `draws` (one
    uniform per account, default its own) decide the outcomes, `minutes` (default the action's) are
    logged with the work."""
    if not len(ix):
        return
    if minutes is None:
        minutes = P["mech"].minutes_of()[actions]
    clk = mem.clocks(P)
    u = uniforms(seed, P["gid"][ix], d, S_JUMP) if draws is None else draws
    rec.work_row(mem, ix, d, actions, minutes, propensity, exploration, mem.claim[ix].astype(np.int64),
                 np.full(len(ix), None, dtype=object) if collector is None else collector)
    keys = actions.astype(np.int64) * 64 + ch.blocks(mem.state[ix].astype(np.int64))
    for key in np.unique(keys):
        g = np.flatnonzero(keys == key)
        a, s = int(key // 64), int(key % 64)
        gix = ix[g]
        if s == ch.PAT_FIRST:
            s = mem.state[gix].astype(np.int64)
        outcomes = ch.jump(a, s, d, P, gix, clk)
        pick = _choose([o[1] for o in outcomes], u[g])
        for i, (dst, _, evs) in enumerate(outcomes):
            hit = pick == i
            if not hit.any():
                continue
            hix = gix[hit]
            for ev in evs:  # a resubmission or correction is recorded on the claim it replaces
                rec.event(mem, hix, d, ev, _part(s, hit))
                if ev in _NEW_CLAIM:
                    mem.claim[hix] = _NEW_CLAIM[ev]
            mem.state[hix] = np.broadcast_to(dst, len(gix))[hit]


def office_work(P: dict, mem: Memory, d: int, seed: int, rec: Recorder, cfg: OfficeConfig) -> None:
    """The history's office: each open account gets at most one action today, drawn with the
    office's probabilities; the work row carries that probability."""
    clk = mem.clocks(P)
    live = open_accounts(mem)
    chosen, acts, props, expl = [], [], [], []
    for s, rows in by_state(mem.state, live):
        ix = live[rows]
        options = office_probabilities(s, d, P, ix, clk, cfg)
        if not options:
            continue
        u = uniforms(seed, P["gid"][ix], d, S_OFFICE)
        # the random share first (uniform over feasible actions), then the rule's actions
        bands = [p_exp for _, _, p_exp in options] + [p_rule for _, p_rule, _ in options]
        pick = _choose(bands, u)
        hit = pick < len(bands)
        if not hit.any():
            continue
        k = pick[hit] % len(options)
        total = np.stack([p_rule + p_exp for _, p_rule, p_exp in options])
        chosen.append(ix[hit])
        acts.append(np.array([options[i][0] for i in k], dtype=np.int64))
        props.append(total[k, np.flatnonzero(hit)])
        expl.append((pick[hit] < len(options)).astype(np.int64))
    if chosen:
        do_work(P, mem, d, seed, rec, np.concatenate(chosen), np.concatenate(acts), np.concatenate(props),
                np.concatenate(expl))


def natural_step(P: dict, mem: Memory, d: int, seed: int, rec: Recorder, live: np.ndarray | None = None) -> None:
    """Every account in `live` (default: all not closed) makes its natural move of day d."""
    state = mem.state
    if live is None:
        live = np.flatnonzero(~np.isin(state, ch.CLOSED_STATES))
    clk = mem.clocks(P)
    new_state = state.copy()
    u_all = uniforms(seed, P["gid"][live], d, S_NATURAL)
    for s, rows in by_state(state, live):
        ix, u = live[rows], u_all[rows]
        if np.ndim(s) == 0 and s == ch.NOT_STARTED:
            today = P["service_day"][ix] == d
            ix, u = ix[today], u[today]
            if not len(ix):
                continue
        if ch.is_patient(s):  # the billing system's statement cycle
            cycle = ((d - P["anchor"][ix]) % 30) == 0
            rec.event(mem, ix[cycle], d, ch.EV_STATEMENT, _part(s, cycle))
        edges = ch.natural_edges(s, d, P, ix, clk)
        if not edges:
            continue
        pick = _choose([e[1] for e in edges], u)
        for i, (dst, _, ev, dollars) in enumerate(edges):
            hit = pick == i
            if not hit.any():
                continue
            hix = ix[hit]
            dst_arr = np.broadcast_to(dst, len(ix))[hit]
            from_state = _part(s, hit)
            new_state[hix] = dst_arr
            if ev != ch.EV_NONE:
                rec.event(mem, hix, d, ev, from_state, None if dollars is None else dollars[hit])
            entering = (dst_arr == ch.DENIED) & (from_state != ch.DENIED)
            mem.den_day[hix[entering]] = d
    mem.state[:] = new_state


def step_day(P: dict, mem: Memory, d: int, seed: int, rec: Recorder, office: OfficeConfig | None) -> None:
    """One day of the history: forfeits, the office's work (if any), the natural moves."""
    note_forfeits(P, mem, d, rec)
    if office is not None:
        office_work(P, mem, d, seed, rec, office)
    natural_step(P, mem, d, seed, rec)


REPLICA_STRIDE = 1 << 40  # account and guarantor keys of copy r are offset by r * this: independent streams


def replicate(P: dict, mem: Memory, copies: int) -> tuple[dict, Memory]:
    """`copies` independent copies of every account (same latent draw and state, their own random
    streams): copy r of account i is row r * n + i. For estimates by simulation over many runs."""
    n = P["n"]
    out: dict = {"n": n * copies, "first": P["first"], "mech": P["mech"]}
    for k, v in P.items():
        if isinstance(v, np.ndarray) and len(v) == n:
            out[k] = np.concatenate([v] * copies)
    offset = np.repeat(np.arange(copies, dtype=np.int64) * REPLICA_STRIDE, n)
    out["gid"] = out["gid"] + offset
    out["guarantor_gid"] = out["guarantor_gid"] + offset
    return out, Memory.concat([mem] * copies)
