"""Off-policy evaluation: what a new policy would collect because of work, estimated from an
office's logged decisions and the probabilities with which they were made (no simulator needed).

The unit is one decision: a piece of work that could have been done on a day (on an account's claim,
or on a guarantor: one contact covers the person's balances), the action the office took (`idle`
when nothing), the probability that its policy took it (`propensity`: the `work` log's column for
work done; for work not done, the probability of doing nothing, which a worklist that logs every
row's probability gives), and what it brought in over the outcome window (`reward`, dollars).
For the policy to evaluate, `target_prob` is its probability of the logged action and
`target_work` its probability of doing any work on the unit.

The value of the new policy *because of work* (what the arena reports against doing nothing) is
  V = sum over units of sum_{a != idle} pi(a | x) (mu(x, a) - mu(x, idle)),
estimated by
- inverse propensity (IPS): each unit contributes
  [1{A != idle} pi(A | x) / p - 1{A = idle} pi(work | x) / p] * Y,
  unbiased whenever every action the policy could take had a positive logged probability (the
  office's random share is what guarantees that);
- doubly robust (DR): an outcome model's lift plus the IPS correction of its error,
  sum_{a != idle} pi(a | x)(m(x, a) - m(x, idle)) + [same weights] * (Y - m(x, A)),
  unbiased if either the propensities or the model are right, and much tighter when the model is
  good (it removes the dollars that come in whatever is done, which dominate IPS's variance).
Totals are per period (a day's decisions): the estimate is the mean of the period totals, its
standard error their spread over the square root of the number of periods (so work on one day may
be correlated in any way), and the interval normal. Fit an outcome model on other periods than the
ones it corrects (cross-fitting), or its own noise biases DR.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

REQUIRED = ("action", "propensity", "reward", "target_prob", "target_work")


@dataclass(frozen=True)
class Estimate:
    method: str
    value: float      # dollars because of work per period
    stderr: float
    low: float
    high: float
    level: float
    n_units: int
    n_periods: int

    def as_dict(self) -> dict:
        return asdict(self)


def _check(decisions: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    missing = [c for c in (*REQUIRED, *extra) if c not in decisions]
    if missing:
        raise ValueError(f"off-policy decisions lack columns: {', '.join(missing)}")
    p = decisions["propensity"].to_numpy(dtype=float)
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} decision(s) have a propensity outside (0, 1]: off-policy estimates need "
                         "the logged probability of every decision, idle ones included")
    return decisions


def ips_weights(decisions: pd.DataFrame) -> np.ndarray:
    """The weight of each unit's reward in the estimate of the value because of work."""
    idle = decisions["action"].to_numpy(dtype=object) == "idle"
    p = decisions["propensity"].to_numpy(dtype=float)
    pi_logged = decisions["target_prob"].to_numpy(dtype=float)
    pi_work = decisions["target_work"].to_numpy(dtype=float)
    return np.where(idle, -pi_work / p, pi_logged / p)


def _estimate(method: str, contrib: np.ndarray, periods: np.ndarray | None, level: float) -> Estimate:
    z = NormalDist().inv_cdf(0.5 + level / 2)
    if periods is None or len(np.unique(periods)) < 2:
        total = float(contrib.sum())
        se = float(np.sqrt(len(contrib) * contrib.var(ddof=1))) if len(contrib) > 1 else float("nan")
        n_periods = 1
    else:
        totals = pd.Series(contrib).groupby(periods).sum().to_numpy()
        n_periods = len(totals)
        total = float(totals.mean())
        se = float(totals.std(ddof=1) / np.sqrt(n_periods))
    return Estimate(method, total, se, total - z * se, total + z * se, level, len(contrib), n_periods)


def ips(decisions: pd.DataFrame, period: str | None = "period", level: float = 0.95) -> Estimate:
    """Inverse-propensity estimate of the dollars per period the target policy's work adds."""
    d = _check(decisions)
    contrib = ips_weights(d) * d["reward"].to_numpy(dtype=float)
    return _estimate("ips", contrib, d[period].to_numpy() if period and period in d else None, level)


def doubly_robust(decisions: pd.DataFrame, period: str | None = "period", level: float = 0.95) -> Estimate:
    """Doubly robust estimate; needs the outcome model's prediction for the logged action
    (`model_logged`) and its lift for the target's work (`model_lift`: sum over the target's
    actions of pi(a | x) (m(x, a) - m(x, idle)))."""
    d = _check(decisions, ("model_logged", "model_lift"))
    residual = d["reward"].to_numpy(dtype=float) - d["model_logged"].to_numpy(dtype=float)
    contrib = d["model_lift"].to_numpy(dtype=float) + ips_weights(d) * residual
    return _estimate("doubly_robust", contrib, d[period].to_numpy() if period and period in d else None, level)
