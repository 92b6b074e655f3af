"""What a worklist holds and what changes when capacity or costs change
(notebooks/03_worklist_and_reasons.ipynb). Every list here comes from `serving.ranking.rank`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.ranking import rank


def action_mix(worklist: pd.DataFrame) -> pd.DataFrame:
    """Rows, minutes of work and expected dollars per suggested next action."""
    g = worklist.groupby("next_action", observed=True)
    out = pd.DataFrame({
        "accounts": g.size(),
        "minutes": g["action_minutes"].sum(),
        "expected_recovery": g["expected_recovery"].sum(),
        "expected_net": g["expected_net"].sum(),
    })
    return out.sort_values("accounts", ascending=False).reset_index()


def capacity_table(model, accounts: pd.DataFrame, denials: pd.DataFrame | None, cfg: dict,
                   capacities: list[float]) -> pd.DataFrame:
    """For each capacity (collector minutes per day): the accounts the greedy cut keeps, the minutes
    they use and the expected gross and net dollars of working them."""
    rows = []
    for cap in capacities:
        wl = rank(model, accounts, denials, cfg, "whatif", "whatif", reasons_rows=0, capacity_minutes=cap).accounts
        rows.append({"capacity_minutes": float(cap), "accounts_worked": len(wl),
                     "minutes_used": float(wl["action_minutes"].sum()),
                     "expected_recovery": float(wl["expected_recovery"].sum()),
                     "expected_net": float(wl["expected_net"].sum()),
                     "exploration_rows": int(wl["is_exploration"].sum())})
    return pd.DataFrame(rows)


def compare_worklists(a: pd.DataFrame, b: pd.DataFrame, top: int = 100) -> dict[str, float]:
    """How far two rankings of the same accounts agree: overlap of their top `top` rows, the share
    of those rows whose next action changed, and the median rank move of the accounts in both."""
    ta, tb = a.nsmallest(top, "rank"), b.nsmallest(top, "rank")
    both = ta.merge(tb, on="account_id", suffixes=("_a", "_b"))
    moved = b.set_index("account_id")["rank"].reindex(ta["account_id"]).to_numpy() - ta["rank"].to_numpy()
    return {
        "top": float(top),
        "overlap_share": len(both) / max(min(top, len(ta)), 1),
        "action_changed_share": float((both["next_action_a"] != both["next_action_b"]).mean()) if len(both) else 0.0,
        "median_rank_move": float(np.nanmedian(np.abs(moved))) if np.isfinite(moved).any() else float("nan"),
    }


# ----------------------------------------------------------------------------- plots


def plot_capacity(table: pd.DataFrame):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    hours = table["capacity_minutes"] / 60
    ax.plot(hours, table["expected_recovery"] / 1e3, marker="o", label="expected recovery (gross)")
    ax.plot(hours, table["expected_net"] / 1e3, marker="s", linestyle="--", label="expected net of the work's cost")
    ax.set(title="Expected dollars in 60 days by collector time", xlabel="collector capacity (hours per day)",
           ylabel="expected dollars (thousand $)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return fig


def plot_action_mix(mix: pd.DataFrame, title: str = "Suggested next actions on the worklist"):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows = mix.iloc[::-1]
    ax.barh(rows["next_action"].astype(str).str.replace("_", " "), rows["accounts"])
    ax.set(title=title, xlabel="accounts (count)", ylabel="next action")
    return fig
