"""`recoup arena`: run every policy on the same office and the same random streams, and write what
a collections director reads: `arena.json` (one object per policy), `daily.csv`, the work each policy
did (`work.parquet`) and a plot of the cumulative dollars collected because of work by day."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.arena.office import Office
from features.arena.rules import Staff
from features.arena.run import Policy, PolicyResult, run_policy, summarize
from features.sources import chain as ch

log = logging.getLogger(__name__)


def run_arena(data: str | Path, policies: dict[str, Policy], days: int, collectors: int, minutes: float,
              seed: int = 0, out: str | Path | None = None, work_days: int | None = None,
              inflow: bool = True) -> dict:
    """Continue the office written by `recoup simulate` at `data` for `days` days under each policy
    (and doing nothing), with new patients arriving as in its history (`inflow`); returns
    {"summary": [...], "results": [PolicyResult], "seconds": ..., "office": {...}} and, with `out`,
    writes the report there."""
    t0 = time.perf_counter()
    office = Office.load(data)
    if inflow:
        office = office.with_arrivals(days, seed)
    staff = Staff(collectors, minutes)
    baseline = run_policy(office, "nothing", None, days, staff, seed, work_days)
    results = [run_policy(office, name, p, days, staff, seed, work_days) for name, p in policies.items()]
    summary = summarize(results, baseline, staff, days if work_days is None else work_days)
    seconds = time.perf_counter() - t0
    report = {"summary": summary, "results": [baseline, *results], "seconds": seconds,
              "office": {"open_accounts": int(np.isin(office.mem.state, ch.OPEN_STATES).sum()),
                         "first_day": str(office.date(office.last_day + 1).date()), "days": days,
                         "collectors": collectors, "minutes": minutes, "seed": seed}}
    if out is not None:
        write_report(report, out)
    return report


def write_report(report: dict, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "arena.json").write_text(json.dumps(report["summary"], indent=2))
    results: list[PolicyResult] = report["results"]
    base = results[0].daily["collected"].cumsum()
    daily = []
    for r in results:
        d = r.daily.assign(policy=r.policy)
        d["cumulative_collected"] = d["collected"].cumsum()
        d["cumulative_because_of_work"] = d["cumulative_collected"] - base.to_numpy()
        daily.append(d)
    daily_df = pd.concat(daily, ignore_index=True)
    daily_df.to_csv(out / "daily.csv", index=False, date_format="%Y-%m-%d")
    work = [r.work.assign(policy=r.policy) for r in results if len(r.work)]
    if work:
        pd.concat(work, ignore_index=True).to_parquet(out / "work.parquet", index=False)
    plot_cumulative(daily_df).savefig(out / "cumulative.png", dpi=110, bbox_inches="tight")
    return out


def plot_cumulative(daily: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, d in daily.groupby("policy", sort=False):
        if name == "nothing":
            continue
        ax.plot(d["day"], d["cumulative_because_of_work"] / 1000.0, label=name,
                linewidth=2.2 if name == "oracle" else 1.5, linestyle="--" if name == "oracle" else "-")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("day of the arena")
    ax.set_ylabel("dollars collected because of work ($ thousands)")
    ax.set_title("Cumulative dollars collected because of work (vs. the same office doing nothing)")
    ax.legend()
    ax.grid(alpha=0.3)
    return fig
