"""The closed loop: each morning a policy sees the day's data and returns a worklist, the staff works
it (`features.arena.rules`), the simulator applies the work and the day passes.

Every policy runs from the same office (the simulator's state at the extract date) on the same
random streams: an account's draw on a day is keyed by (seed, account, day), so two policies differ
only where their work differs (common random numbers). "Because of work" is measured against the
same office doing nothing, on the same streams. Everything is deterministic for a seed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.arena.office import Office, observed_accounts
from features.arena.rules import Executed, Staff, execute
from features.sources import chain as ch
from features.sources import engine as en
from features.sources import ledger
from features.sources import truth as tr

log = logging.getLogger(__name__)

Policy = Callable[["ArenaDay"], pd.DataFrame]  # the day's view -> a worklist in priority order
_S_POLICY = 9  # draws a policy may take (the random order), apart from the simulator's


@dataclass
class ArenaDay:
    """What a policy sees on the morning of `day`: the data known through `as_of` (yesterday)."""

    day: int
    as_of: pd.Timestamp
    seed: int
    staff: Staff
    run: _Run = field(repr=False)
    _accounts: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def accounts(self) -> pd.DataFrame:
        """One row per open account: what the office can see of it (status, balances, the claim in
        play, the denial's CARC and deadline, the filing deadline, whether agency is allowed, and the
        obvious action)."""
        if self._accounts is None:
            self._accounts = observed_accounts(self.run.P, self.run.mem, self.day, self.run.office.start)
        return self._accounts

    @property
    def dataset(self):
        """The contract tables as known on `as_of` (a `features.contract.Dataset`), history and arena days."""
        return self.run.dataset(self.as_of)

    @property
    def minutes(self) -> dict[str, float]:
        return dict(zip(ch.ACTIONS, self.run.minutes_of.tolist(), strict=True))

    def uniform(self, keys, salt: int = 0) -> np.ndarray:
        """A uniform per key for a policy's own randomness: fixed by (seed, key, day, salt)."""
        codes = pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False).astype(np.int64)
        return en.uniforms(self.seed, codes, self.day * 16 + salt, _S_POLICY)

    def true_lifts(self) -> pd.DataFrame:
        """The oracle's view (nothing else should call it): for every open account and feasible
        action, the exact expected dollars within H that the action adds if done this morning and the
        account is then left alone (`lift`), and its minutes."""
        run = self.run
        _, act = tr.truth_at(run.P, run.mem.state, run.mem.clocks(run.P), self.day - 1, run.office.horizon, None)
        return pd.DataFrame({
            "account_id": run.P["account_id"][act["acct"]], "guarantor_id": run.P["guarantor_id"][act["acct"]],
            "action": np.array(ch.ACTIONS, dtype=object)[act["action"]], "minutes": act["minutes"],
            "lift": act["lift"],
        })


@dataclass
class PolicyResult:
    policy: str
    daily: pd.DataFrame                  # day, date, collected, forfeited, minutes_used, items
    collected_by_account: pd.Series      # dollars per account over the run
    work: pd.DataFrame                   # the `work` rows the arena logged
    worklists: list[pd.DataFrame] = field(default_factory=list)  # (kept on request) each day's list, `executed`
    seconds: float = 0.0


class _Run:
    """One policy's copy of the office, and the tables it has grown."""

    def __init__(self, office: Office, seed: int):
        self.office, self.P, self.seed = office, office.P, seed
        self.mem = office.mem.take()
        self.minutes_of = self.P["mech"].minutes_of()
        self.row_of = pd.Index(self.P["account_id"])
        self.rec = en.Recorder()
        self.pending: list[tuple[pd.DataFrame, pd.DataFrame]] = []
        self.tables = {k: [v] for k, v in office.history.items()}
        self.attempts = _history_attempts(office)  # (day, guarantor) of every call attempt
        self.collected = np.zeros(self.P["n"])
        self.work_rows: list[pd.DataFrame] = []

    def dataset(self, as_of: pd.Timestamp):
        from features.contract import Dataset, coerce_table

        if self.pending:
            ev = pd.concat([e for e, _ in self.pending], ignore_index=True)
            wk = pd.concat([w for _, w in self.pending], ignore_index=True)
            self.pending.clear()
            new = ledger.build_tables(self.P, ev, wk, self.office.start)
            # typed as the history was read: every contract column, optional ones at their default
            new = {name: coerce_table(name, df)[0] for name, df in new.items()}
            for name, df in new.items():
                if name == "appeals":
                    old = pd.concat(self.tables["appeals"], ignore_index=True)
                    self.tables["appeals"] = [ledger.decide_appeals(self.P, old, ev, self.office.start), df]
                elif len(df):
                    self.tables.setdefault(name, []).append(df)
        frames = {}
        for name, parts in self.tables.items():
            parts = [p for p in parts if len(p)] or parts[:1]
            self.tables[name] = [pd.concat(parts, ignore_index=True)] if len(parts) > 1 else parts
            frames[name] = self.tables[name][0]
        frames["payers"] = self.office.payers
        return Dataset(frames, extract_date=as_of, source=f"arena:{self.office.folder}")

    def attempts_7d(self, day: int) -> dict:
        recent = [g for d, g in self.attempts if day - 7 <= d < day]
        return pd.Series(recent, dtype="int64").value_counts().to_dict() if recent else {}

    def work(self, day: int, ex: Executed) -> None:
        rows, actions, minutes, prop, expl, person, collector = ex.arrays()
        if not len(rows):
            return
        keys = np.where(person, self.P["guarantor_gid"][rows], self.P["gid"][rows])
        draws = np.where(person, en.uniforms(self.seed, keys, day, en.S_CONTACT),
                         en.uniforms(self.seed, keys, day, en.S_JUMP))
        en.do_work(self.P, self.mem, day, self.seed, self.rec, rows, actions, prop, expl, draws=draws,
                   collector=collector, minutes=minutes)
        calls = rows[(actions == ch.PATIENT_CALL) & (minutes > 0)]
        self.attempts += [(day, int(g)) for g in self.P["guarantor_gid"][calls]]

    def end_of_day(self) -> tuple[float, float, pd.DataFrame]:
        ev, wk = self.rec.frames()
        self.rec.clear()
        pay = ev[ev["kind"].isin(ch.PAYMENT_EVENTS)]
        np.add.at(self.collected, pay["acct"].to_numpy(dtype=np.int64), pay["amount"].to_numpy())
        forfeited = float(ev.loc[ev["kind"] == ch.EV_FORFEIT, "amount"].sum())
        self.pending.append((ev, wk))
        if len(wk):
            self.work_rows.append(ledger.work_rows(self.P, wk, self.office.start))
        return float(pay["amount"].sum()), forfeited, wk


def _history_attempts(office: Office) -> list[tuple[int, int]]:
    """The call attempts of the history's last week (they count toward the call limit)."""
    act = office.history.get("activities")
    if act is None or not len(act):
        return []
    recent = act[(act["activity_type"] == "call_attempt")
                 & (act["activity_date"] > office.date(office.last_day - 7))]
    rows = pd.Index(office.P["account_id"]).get_indexer(recent["account_id"].to_numpy(dtype=object))
    days = (recent["activity_date"] - office.start).dt.days.to_numpy()
    return [(int(d), int(g)) for d, g in zip(days[rows >= 0], office.P["guarantor_gid"][rows[rows >= 0]], strict=True)]


def run_policy(office: Office, name: str, policy: Policy | None, days: int, staff: Staff, seed: int = 0,
               work_days: int | None = None, keep_worklists: bool = False) -> PolicyResult:
    """Run one policy (None: the office doing nothing) for `days` days; it works on the first
    `work_days` mornings (all by default), then the days pass with nothing done."""
    t0 = time.perf_counter()
    run = _Run(office, seed)
    work_days = days if work_days is None else work_days
    rows, worklists = [], []
    for k in range(days):
        d = office.last_day + 1 + k
        en.note_forfeits(run.P, run.mem, d, run.rec)
        minutes, items = 0.0, 0
        if policy is not None and k < work_days:
            day = ArenaDay(d, office.date(d - 1), seed, staff, run)
            wl = policy(day)
            ex = execute(wl, run.P, run.mem.state, run.mem.clocks(run.P), d, run.row_of, staff, run.attempts_7d(d),
                         run.minutes_of)
            run.work(d, ex)
            minutes, items = float(np.sum(ex.minutes)), len(set(ex.worklist_row))
            if keep_worklists:
                kept = wl.reset_index(drop=True).copy()
                kept["executed"] = np.isin(np.arange(len(kept)), ex.worklist_row)
                kept["day"] = d
                worklists.append(kept)
        en.natural_step(run.P, run.mem, d, seed, run.rec)
        collected, forfeited, _ = run.end_of_day()
        rows.append({"day": k + 1, "date": office.date(d), "collected": collected, "forfeited": forfeited,
                     "minutes_used": minutes, "items": items})
    work = pd.concat(run.work_rows, ignore_index=True) if run.work_rows else pd.DataFrame()
    seconds = time.perf_counter() - t0
    log.info("arena: %s ran %d days in %.1fs", name, days, seconds)
    return PolicyResult(name, pd.DataFrame(rows), pd.Series(run.collected, index=run.P["account_id"]), work,
                        worklists, seconds)


def summarize(results: list[PolicyResult], baseline: PolicyResult, staff: Staff, work_days: int) -> list[dict]:
    """One figure set per policy (the baseline "nothing" first): dollars collected, because of work,
    forfeited to missed deadlines, minutes used, and per collector hour."""
    staffed_hours = staff.collectors * staff.minutes * work_days / 60.0
    base = float(baseline.daily["collected"].sum())
    out = []
    for r in [baseline, *results]:
        collected = float(r.daily["collected"].sum())
        minutes = float(r.daily["minutes_used"].sum())
        because = collected - base
        out.append({
            "policy": r.policy, "collected": round(collected, 2), "collected_because_of_work": round(because, 2),
            "forfeited": round(float(r.daily["forfeited"].sum()), 2), "minutes_used": round(minutes, 1),
            "dollars_per_collector_hour": round(because / staffed_hours, 2) if staffed_hours else 0.0,
            "dollars_per_hour_worked": round(because / (minutes / 60.0), 2) if minutes else 0.0,
            "items_worked": int(r.daily["items"].sum()), "seconds": round(r.seconds, 1),
        })
    return out
