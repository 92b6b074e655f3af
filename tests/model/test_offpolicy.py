"""Off-policy evaluation: IPS and doubly robust estimates are right on a bandit with known values,
refuse logs without propensities, and, on the simulated office's logs, agree with what the arena
measures for the same policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.arena import Office, Staff, randomized, run_policy
from features.arena.policies import oracle
from training.offpolicy import doubly_robust, ips


def _bandit(n_periods: int, seed: int) -> tuple[pd.DataFrame, float]:
    """Units with an idle mean of 100 and a lift of 5 for action "a"; the target works every unit
    with x > 0 with "a"; the logging policy does "a" with probability 0.3."""
    rng = np.random.default_rng(seed)
    n = 200
    rows = []
    for t in range(n_periods):
        x = rng.normal(size=n)
        work = rng.random(n) < 0.3
        y = rng.normal(100 + 20 * x, 30) + np.where(work, 5.0, 0.0)
        target = x > 0
        rows.append(pd.DataFrame({
            "period": t, "action": np.where(work, "a", "idle"), "propensity": np.where(work, 0.3, 0.7), "reward": y,
            "target_prob": np.where(work, target, ~target).astype(float), "target_work": target.astype(float),
            "model_logged": 100 + 20 * x + np.where(work, 5.0, 0.0), "model_lift": np.where(target, 5.0, 0.0),
        }))
    return pd.concat(rows, ignore_index=True), 5.0 * n / 2


def test_estimators_recover_a_known_value():
    d, truth = _bandit(40, seed=1)
    for est in (ips(d), doubly_robust(d)):
        assert est.low <= truth <= est.high, est
        assert est.n_periods == 40 and est.n_units == len(d)
    assert doubly_robust(d).stderr < ips(d).stderr / 5  # the model removes what comes in anyway


def test_estimators_need_every_decisions_probability():
    d, _ = _bandit(2, seed=2)
    d.loc[3, "propensity"] = 0.0
    with pytest.raises(ValueError, match="propensity outside"):
        ips(d)
    with pytest.raises(ValueError, match="lack columns: model_logged"):
        doubly_robust(d.drop(columns=["model_logged"]))


H = 30
LOG_RUNS = 80
ARENA_RUNS = 12


def _units(office: Office):
    """Each account's unit of work on the first morning: its guarantor when it is a patient balance
    (one contact covers the person), else the account itself."""
    from features.arena import observed_accounts

    acc = observed_accounts(office.P, office.mem, office.last_day + 1, office.start)
    unit = np.where(acc["status"] == "patient", acc["guarantor_id"], acc["account_id"])
    return pd.Series(unit, index=acc["account_id"].to_numpy())


@pytest.mark.slow
def test_ips_and_dr_agree_with_the_arena_on_simulated_logs(small_office):
    office = Office.load(small_office)
    staff = Staff(collectors=2, minutes=480)
    unit_of = _units(office)
    # the policy to evaluate: the oracle's first morning (the same office every time)
    first = run_policy(office, "target", oracle, 1, staff, seed=0)
    done = first.work[first.work["minutes"] > 0]
    target = dict(zip(done["account_id"].map(unit_of), done["action"], strict=True))
    # what the arena measures: that morning's work, then H days, against the office doing nothing
    gains = []
    for s in range(ARENA_RUNS):
        worked = run_policy(office, "target", oracle, H, staff, seed=500 + s, work_days=1)
        idle = run_policy(office, "nothing", None, H, staff, seed=500 + s)
        gains.append(worked.daily["collected"].sum() - idle.daily["collected"].sum())
    arena, arena_se = float(np.mean(gains)), float(np.std(gains, ddof=1) / np.sqrt(ARENA_RUNS))
    assert arena > 0

    # the logs: a randomized office (each unit worked with probability 1/2, at random) on other seeds
    parts = []
    for r in range(LOG_RUNS):
        res = run_policy(office, "log", randomized(0.5), H, Staff(100, 10_000), seed=1000 + r, work_days=1,
                         keep_worklists=True)
        wl = res.worklists[0]
        assert wl.loc[wl["action"] != "idle", "executed"].all()  # nothing the log shows was left undone
        reward = res.collected_by_account[unit_of.index].groupby(unit_of.to_numpy()).sum()
        unit = wl["account_id"].map(unit_of).to_numpy()
        parts.append(pd.DataFrame({"period": r, "unit": unit, "action": wl["action"].to_numpy(),
                                   "propensity": wl["propensity"].to_numpy(), "reward": reward[unit].to_numpy()}))
    logs = pd.concat(parts, ignore_index=True)
    t_action = logs["unit"].map(target)
    logs["target_work"] = t_action.notna().astype(float)
    logs["target_prob"] = np.where(logs["action"] == "idle", 1 - logs["target_work"],
                                   (t_action == logs["action"]).astype(float))
    _cross_fitted_model(logs, t_action)
    est_ips, est_dr = ips(logs), doubly_robust(logs)
    for est in (est_ips, est_dr):
        # the estimate and the arena's measurement agree within their joint 95% interval ...
        assert abs(est.value - arena) <= 1.96 * np.hypot(est.stderr, arena_se), (est, arena, arena_se)
        # ... and the interval says something: the policy's work pays
        assert est.low > 0, est


def _cross_fitted_model(logs: pd.DataFrame, t_action: pd.Series) -> None:
    """An outcome model fitted on the other half of the periods (cross-fitting): what a unit brings
    in when left alone (its mean idle reward there), plus each action's average effect over all units
    (pooled: few draws of each action per unit, many per action)."""
    fold = logs["period"] % 2
    logs["model_logged"], logs["model_lift"] = 0.0, 0.0
    for f in (0, 1):
        other, here = logs[fold != f], logs[fold == f]
        idle_mean = other[other["action"] == "idle"].groupby("unit")["reward"].mean()
        worked = other[other["action"] != "idle"]
        effect = (worked["reward"] - worked["unit"].map(idle_mean)).groupby(worked["action"]).mean()
        base = here["unit"].map(idle_mean).fillna(0.0).to_numpy()
        logs.loc[here.index, "model_logged"] = base + here["action"].map(effect).fillna(0.0).to_numpy()
        logs.loc[here.index, "model_lift"] = t_action[here.index].map(effect).fillna(0.0).to_numpy()
