"""How a staff works a worklist on one morning: top down, under DESIGN.md's rules.

A worklist is a DataFrame in priority order with `account_id` and `action` (a `work` action, or one
of recoup's next actions, see `ALIASES`; `idle`, `wait` and `hold` mean no work), and optionally
`propensity` and `is_exploration` (logged with the work; 1.0 and 0 when absent). Row by row:

- an account is worked at most once a day; a closed account, or one on hold (bankruptcy, a financial
  assistance application, a payment plan in good standing), is not worked;
- the action must be feasible in what the office can see of the account (an appeal needs an open
  denial, agency placement the 501(r) wait after the first statement); otherwise the row is skipped;
- work on the person (a patient call, a statement, a payment-plan offer) goes to the guarantor and
  covers all of their open patient balances: one contact per guarantor a day, and no call to a
  guarantor with `call_limit` attempts in the last 7 days;
- K collectors with M minutes each: the row goes to the collector with the most minutes left, and is
  skipped when its minutes do not fit; the day ends when no collector can fit the shortest action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.sources import chain as ch

NO_WORK = ("idle", "wait", "hold", "covered", None)  # covered: by the guarantor's contact on another row
# recoup's next actions (serving/ranking.py) in the simulator's terms; "call" depends on the balance
ALIASES = {"bill_patient": "statement", "appeal": "appeal", "correct_and_resubmit": "correct_and_resubmit",
           "send_to_agency": "send_to_agency", "write_off": "write_off", "payment_plan": "payment_plan_offer"}


@dataclass
class Staff:
    collectors: int
    minutes: float
    call_limit: int = 7  # attempts per guarantor in 7 days (DESIGN.md)


@dataclass
class Executed:
    """The morning's work: one entry per account worked (a contact covering a guarantor's several
    balances is one entry per balance, the minutes on the first)."""

    rows: list = field(default_factory=list)         # account rows (into P)
    actions: list = field(default_factory=list)
    minutes: list = field(default_factory=list)
    propensity: list = field(default_factory=list)
    exploration: list = field(default_factory=list)
    person: list = field(default_factory=list)       # True: keyed by the guarantor (one shared draw)
    collector: list = field(default_factory=list)
    worklist_row: list = field(default_factory=list)  # which worklist row caused it

    def arrays(self):
        return (np.asarray(self.rows, dtype=np.int64), np.asarray(self.actions, dtype=np.int64),
                np.asarray(self.minutes, dtype=np.float64), np.asarray(self.propensity, dtype=np.float64),
                np.asarray(self.exploration, dtype=np.int64), np.asarray(self.person, dtype=bool),
                np.asarray(self.collector, dtype=object))


def resolve(action, status: str) -> int | None:
    """The simulator's action for a worklist action on an account in `status` (None: no work)."""
    if action in NO_WORK or (isinstance(action, float) and np.isnan(action)):
        return None
    if action == "call":  # a call on an insurance balance is a status call; on a patient balance, a patient call
        return ch.STATUS_CALL if status in ch.INSURANCE_STATUSES else ch.PATIENT_CALL
    name = ALIASES.get(action, action)
    if name not in ch.ACTIONS:
        allowed = ", ".join([*ch.ACTIONS, "call", *ALIASES, "idle", "wait", "hold", "covered"])
        raise ValueError(f"a worklist names an unknown action {action!r} (allowed: {allowed})")
    return ch.ACTIONS.index(name)


def check_worklist(worklist: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(worklist, pd.DataFrame) or not {"account_id", "action"} <= set(worklist.columns):
        raise ValueError("a policy must return a DataFrame with columns account_id and action (in priority order)")
    return worklist.reset_index(drop=True)


def execute(worklist: pd.DataFrame, P: dict, state: np.ndarray, clk: dict, day: int, row_of: pd.Index,
            staff: Staff, attempts_7d: dict, minutes_of: np.ndarray) -> Executed:
    """Work the list top down (see the module's rules); `attempts_7d` maps a guarantor to its call
    attempts in the last 7 days and is updated with today's calls."""
    worklist = check_worklist(worklist)
    out = Executed()
    n = len(worklist)
    if not n:
        return out
    rows = row_of.get_indexer(worklist["account_id"].to_numpy(dtype=object))
    acts = worklist["action"].to_numpy(dtype=object)
    prop = worklist["propensity"].to_numpy(dtype=float) if "propensity" in worklist else np.ones(n)
    expl = worklist["is_exploration"].to_numpy(dtype=np.int64) if "is_exploration" in worklist else np.zeros(n, int)
    left = np.full(staff.collectors, float(staff.minutes))
    shortest = float(minutes_of.min())
    worked = np.zeros(P["n"], dtype=bool)
    contacted: set = set()
    guarantor = P["guarantor_gid"]
    open_patient = {}  # guarantor -> its open patient balances not on hold (built when first needed)
    for i in range(n):
        if left.max() < shortest:
            break
        r = rows[i]
        if r < 0 or worked[r] or state[r] not in ch.OPEN_STATES:
            continue
        status = ch.OBSERVED[state[r]]
        a = resolve(acts[i], status)
        if a is None or status == "hold":
            continue
        if not ch.feasible_mask(a, int(state[r]), day, np.array([r]), clk)[0]:
            continue
        cover = [r]
        if a in ch.PATIENT_ACTIONS:
            g = guarantor[r]
            if g in contacted or (a == ch.PATIENT_CALL and attempts_7d.get(g, 0) >= staff.call_limit):
                continue
            if not open_patient:
                pat = np.flatnonzero(np.isin(state, ch.PAT_STATES))
                for rr in pat:
                    open_patient.setdefault(guarantor[rr], []).append(rr)
            cover = [r] + [rr for rr in open_patient.get(g, []) if rr != r and not worked[rr]]
        need = minutes_of[a]
        k = int(np.argmax(left))
        if need > left[k]:
            continue
        left[k] -= need
        if a in ch.PATIENT_ACTIONS:
            contacted.add(guarantor[r])
            if a == ch.PATIENT_CALL:
                attempts_7d[guarantor[r]] = attempts_7d.get(guarantor[r], 0) + 1
        for j, rr in enumerate(cover):
            worked[rr] = True
            out.rows.append(rr)
            out.actions.append(a)
            out.minutes.append(need if j == 0 else 0.0)
            out.propensity.append(prop[i])
            out.exploration.append(expl[i])
            out.person.append(a in ch.PATIENT_ACTIONS)
            out.collector.append(f"K{k + 1}")
            out.worklist_row.append(i)
    return out
