"""The shipped policies. A policy is any callable from the morning's `ArenaDay` to a worklist (a
DataFrame in priority order with `account_id` and `action`); see `features.arena.rules`.

- `largest_balance`, `oldest`, `random`: how billing offices sort today, each with the obvious action
  (appeal a denial, call about a claim, send what a pend asks for, call the patient);
- `oracle`: knows the simulator's truth; works first what adds the most dollars within H per minute
  (the exact lift of each feasible action; a contact's lift summed over the guarantor's balances);
- `randomized(share)`: a logging office for off-policy evaluation: every unit of work (an account's
  claim, or a guarantor) gets a uniformly random feasible action with probability `share`, else none;
  every row, the idle ones too, carries the probability of what was chosen.

recoup's own model ranking (`expected_recovery`) lives above the simulator: the CLI builds it
(`serving.arena_policy`) and hands the arena a callable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.sources import chain as ch


def _obvious(accounts: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    wl = accounts.iloc[order]
    wl = wl[wl["obvious_action"].notna()]
    return pd.DataFrame({"account_id": wl["account_id"].to_numpy(), "action": wl["obvious_action"].to_numpy()})


def largest_balance(day) -> pd.DataFrame:
    acc = day.accounts
    return _obvious(acc, np.lexsort((acc["account_id"].to_numpy(), -acc["balance"].to_numpy())))


def oldest(day) -> pd.DataFrame:
    acc = day.accounts
    return _obvious(acc, np.lexsort((acc["account_id"].to_numpy(), acc["service_date"].to_numpy())))


def random_order(day) -> pd.DataFrame:
    acc = day.accounts
    return _obvious(acc, np.argsort(day.uniform(acc["account_id"].to_numpy()), kind="stable"))


def work_units(lifts: pd.DataFrame) -> pd.DataFrame:
    """Per unit of work, its actions' lifts: work on the person summed over the guarantor's balances
    (listed under the guarantor's first account), other work per account."""
    person = lifts["action"].isin([ch.ACTIONS[a] for a in ch.PATIENT_ACTIONS])
    per_account = lifts[~person].assign(unit=lambda f: f["account_id"])
    grouped = lifts[person].groupby(["guarantor_id", "action"], sort=True).agg(
        account_id=("account_id", "min"), minutes=("minutes", "first"), lift=("lift", "sum")).reset_index()
    grouped["unit"] = grouped["guarantor_id"]
    return pd.concat([per_account, grouped], ignore_index=True)[["unit", "account_id", "action", "minutes", "lift"]]


def oracle(day) -> pd.DataFrame:
    units = work_units(day.true_lifts())
    units = units[units["lift"] > 0].assign(per_minute=lambda f: f["lift"] / f["minutes"])
    best = units.sort_values(["per_minute", "account_id"], ascending=[False, True], kind="stable")
    best = best.drop_duplicates("unit").drop_duplicates("account_id")
    return best[["account_id", "action", "lift", "per_minute"]].reset_index(drop=True)


def nothing(day) -> pd.DataFrame:
    return pd.DataFrame({"account_id": pd.Series([], dtype=object), "action": pd.Series([], dtype=object)})


def randomized(share: float = 0.5, salt: int = 7):
    """A logging policy: each unit gets a random feasible action with probability `share`."""

    def policy(day) -> pd.DataFrame:
        acc = day.accounts
        acc = acc[acc["status"] != "hold"]
        insurance = acc[acc["status"].isin(ch.INSURANCE_STATUSES)]
        patients = acc[acc["status"] == "patient"].sort_values("account_id").drop_duplicates("guarantor_id")
        rows = []
        for units, person in ((insurance, False), (patients, True)):
            if not len(units):
                continue
            options = [[ch.ACTIONS[a] for a in ch.feasible_actions(_state_of(status))
                        if (a in ch.PATIENT_ACTIONS) == person] for status in units["status"]]
            u = day.uniform(units["account_id"].to_numpy(), salt)
            v = day.uniform(units["account_id"].to_numpy(), salt + 1)
            for acct, opts, ui, vi in zip(units["account_id"], options, u, v, strict=True):
                if not opts:
                    continue
                if ui < share:
                    rows.append((acct, opts[int(vi * len(opts))], share / len(opts)))
                else:
                    rows.append((acct, "idle", 1.0 - share))
        return pd.DataFrame(rows, columns=["account_id", "action", "propensity"])

    return policy


def _state_of(status: str) -> int:
    """A chain state with this observed status (the feasible actions depend on the status only)."""
    return int(np.flatnonzero(ch.OBSERVED == status)[0])


SHIPPED = {"largest_balance": largest_balance, "oldest": oldest, "random": random_order, "oracle": oracle}
