"""The office the arena continues: a dataset written by `recoup simulate`, its simulator state at
the extract date, and what a policy may see of it on a given morning.

`Office.load(folder)` reads `_truth/simulation.json` and `_truth/latent.parquet` (every account's
latent draw, chain state and clocks at the extract date) and the contract tables. Only the accounts
open at the extract date can still change; they and their guarantors' other accounts (whose history a
model may read) are kept, every other account is left out of the simulation and of the day's data.
Leaving accounts out changes nothing for the others: each account's random draws are keyed by its
own id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.sources import chain as ch
from features.sources import latent
from features.sources.engine import Memory
from features.sources.office import OfficeConfig

# the obvious rule: appeal a denial, call about a claim, fix a rejection, send what a pend asks for,
# call the patient
OBVIOUS_ACTION = {"at_payer": "status_call", "in_review": "status_call", "secondary": "status_call",
                  "rejected": "resubmit", "pended": "send_information", "denied": "appeal", "patient": "patient_call"}


def subset(P: dict, rows: np.ndarray) -> dict:
    out = {k: (v[rows] if isinstance(v, np.ndarray) and len(v) == P["n"] else v) for k, v in P.items() if k != "graph"}
    out["n"] = len(rows)
    return out


@dataclass
class Office:
    """A simulated office at its extract date, ready to be continued."""

    folder: Path
    config: dict
    P: dict
    mem: Memory
    office: OfficeConfig
    start: pd.Timestamp     # day 0 of the simulation
    last_day: int           # the extract date's day number
    history: dict[str, pd.DataFrame]  # the contract tables of the kept accounts
    payers: pd.DataFrame

    @classmethod
    def load(cls, folder: str | Path, read_tables: bool = True) -> Office:
        from features.contract import read_dataset

        folder = Path(folder)
        cfg, P, mem, _, office = latent.read_office(folder)
        start = pd.Timestamp(cfg["start"])
        last_day = int((pd.Timestamp(cfg["end"]) - start).days)
        open_now = np.isin(mem.state, ch.OPEN_STATES)
        keep = np.flatnonzero(np.isin(P["guarantor_gid"], P["guarantor_gid"][open_now]))
        P = subset(P, keep)
        mem = mem.take(keep)
        history, payers = {}, pd.DataFrame()
        if read_tables:
            ds = read_dataset(folder)
            history = _tables_of(ds.tables, set(P["account_id"].tolist()))
            payers = ds["payers"]
        return cls(folder, cfg, P, mem, office, start, last_day, history, payers)

    def with_arrivals(self, days: int, seed: int) -> Office:
        """The office with the new patients of the next `days` days (at the history's daily rate):
        an office keeps receiving accounts while it works the old ones. The same for every policy."""
        from features.sources.simulate import draw_arrivals

        n_history = int(self.config["n_accounts"])
        n = int(round(n_history / max(self.last_day - 6, 1) * days))
        if n <= 0:
            return self
        new = draw_arrivals(self.config, n, n_history, self.last_day + 1, days, seed)
        P = {k: (np.concatenate([v, new[k]]) if isinstance(v, np.ndarray) else v) for k, v in self.P.items()}
        P["n"] = self.P["n"] + n
        mem = Memory.concat([self.mem, Memory.fresh(n)])
        return Office(self.folder, self.config, P, mem, self.office, self.start, self.last_day, self.history,
                      self.payers)

    @property
    def horizon(self) -> int:
        return int(self.config["horizon_days"])

    def date(self, day: int) -> pd.Timestamp:
        return self.start + pd.Timedelta(days=int(day))


def _tables_of(tables: dict[str, pd.DataFrame], accounts: set) -> dict[str, pd.DataFrame]:
    """The rows of the given accounts (through their claims and remits where a table has no account)."""
    out = {}
    for name in ("accounts", "claims", "transactions", "activities", "work"):
        if name in tables:
            out[name] = tables[name][tables[name]["account_id"].isin(accounts)].reset_index(drop=True)
    claims = set(out["claims"]["claim_id"].tolist())
    for name in ("claim_lines", "remittances", "appeals", "claim_acks"):
        if name in tables:
            out[name] = tables[name][tables[name]["claim_id"].isin(claims)].reset_index(drop=True)
    remits = set(out["remittances"]["remit_id"].tolist())
    out["adjustments"] = tables["adjustments"][tables["adjustments"]["remit_id"].isin(remits)].reset_index(drop=True)
    return out


def observed_accounts(P: dict, mem: Memory, day: int, start: pd.Timestamp) -> pd.DataFrame:
    """What the office can see of each open account on the morning of `day` (all of it follows from
    the contract tables known that day: a lost claim looks like any claim with no answer yet)."""
    ix = np.flatnonzero(np.isin(mem.state, ch.OPEN_STATES))
    state = mem.state[ix].astype(np.int64)
    status = ch.OBSERVED[state]
    bal = np.zeros(len(ix))
    for s in np.unique(state):
        m = state == s
        bal[m] = ch.balance(P, int(s), ix[m])
    clk = mem.clocks(P)
    insurance = np.isin(status, ch.INSURANCE_STATUSES)
    denied = np.isin(status, ("denied", "denial_closed"))

    def dates(days: np.ndarray) -> np.ndarray:
        ok = days < ch.BIG
        return np.where(ok, (start + pd.to_timedelta(np.where(ok, days, 0), unit="D")).to_numpy(),
                        np.datetime64("NaT", "ns"))

    carc = np.where(state == ch.TF_DENIED, "29", P["carc_code"][ix])
    return pd.DataFrame({
        "account_id": P["account_id"][ix], "guarantor_id": P["guarantor_id"][ix], "status": status,
        "balance": np.round(bal, 2), "insurance_balance": np.where(insurance, np.round(bal, 2), 0.0),
        "patient_balance": np.where(insurance, 0.0, np.round(bal, 2)),
        "service_date": dates(P["service_day"][ix]), "payer_id": P["payer_id"][ix],
        "claim_id": P["claim_base"][ix] + np.array(["-1", "-R", "-2"], dtype=object)[mem.claim[ix]],
        "denial_carc": np.where(denied, carc, None),
        "appeal_deadline": dates(np.where(state == ch.DENIED, clk["appeal_deadline"][ix], ch.BIG)),
        "timely_filing_deadline": dates(np.where(insurance, P["tf_day"][ix], ch.BIG)),
        "agency_allowed": day >= clk["agency_day"][ix],
        "obvious_action": pd.Series(status, dtype=object).map(OBVIOUS_ACTION).to_numpy(dtype=object),
    })
