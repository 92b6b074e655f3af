"""Effect models: what each action adds, learned from the office's own logged work.

Why this estimator (the README argues it at length):

- **The prior gives the shape, the log gives the size.** `serving.lift` builds each action's lift
  from how A/R works (a status call matters only for a claim the payer probably lost, a statement
  only for a person not contacted lately, ...). What no mechanism can say is how large the effect is
  in *this* office: how often its patients respond to a statement, how often its payers lose
  claims. That is one number per action, `scale_`, learned here. A few parameters learned from a
  few thousand logged actions are estimated tightly; a free-form model of every account's lift from
  the same data would mostly learn noise (the dollars that come in whatever is done are far larger
  than what one piece of work adds).
- **Regression adjustment with LightGBM, weighted by the logged propensities.** Snapshots are
  weekly as-of dates of the training period; a snapshot is treated by an action when that action is
  the work done on the account on the morning after T (a window of one day by default), idle when
  nothing is. Both arms then go on under the office's usual work, so the effect is that of doing the
  work now rather than not now, which is what a morning's worklist decides. A LightGBM Tweedie model of the dollars in H
  on the idle snapshots gives each treated snapshot its expected dollars had it been left alone
  (`idle_model_`); the difference is the treated snapshot's realised effect (the first stage of
  Kunzel et al.'s X-learner, which is built for few treated and many untreated units). Treated
  snapshots are weighted by the inverse of the probability that the office chose that work within the
  window (from the `work` log's `propensity`), so that the estimate describes the open accounts, not
  the ones the office's rule prefers. The scale is the ratio of the weighted realised effects to the
  weighted prior lifts, with a bootstrap standard error.
- **Unidentified effects say so.** An action the office never varied (no logged propensity below 1),
  or with fewer than `min_treated` treated snapshots, or whose estimate is too noisy, keeps its prior
  (scale 1) and the worklist's `effect_source` says `prior`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from training.settings import EffectSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActionEffect:
    """What the log says of one action."""

    action: str
    n_treated: int
    scale: float          # learned multiplier of the prior lift (1.0 when unidentified)
    stderr: float
    identified: bool
    why: str              # why it is (not) identified, in words
    mean_realised: float  # weighted mean realised effect per treated snapshot, dollars
    mean_prior: float     # weighted mean prior lift per treated snapshot, dollars


def _prior(action: str, n_treated: int, why: str) -> ActionEffect:
    """An action the log does not identify: it keeps its prior (scale 1), and says why."""
    return ActionEffect(action, n_treated, 1.0, np.nan, False, why, np.nan, np.nan)


def treatments(snapshots: pd.DataFrame, work: pd.DataFrame | None, window_days: int) -> pd.DataFrame:
    """Per snapshot (rows of `snapshots`, with `account_id`, `as_of`): the first logged work on the
    account in (as_of, as_of + window] (`action`, its `propensity`), `idle` when none. Only the window
    decides the arm, never what happened after it: an account left alone for a whole outcome window
    is mostly one that paid early (and so was not worked), and comparing with those would credit the
    payment to doing nothing."""
    n = len(snapshots)
    out = pd.DataFrame({"action": np.full(n, "idle", dtype=object), "propensity": np.full(n, np.nan)})
    if work is None or not len(work) or not n:
        return out
    w = work[["account_id", "worked_date", "action", "propensity"]].copy()
    w["worked_date"] = pd.to_datetime(w["worked_date"])
    snap = pd.DataFrame({"account_id": snapshots["account_id"].to_numpy(dtype=object),
                         "as_of": pd.to_datetime(snapshots["as_of"]).to_numpy(), "row": np.arange(n)})
    m = snap.merge(w, on="account_id", how="inner")
    days = (m["worked_date"] - m["as_of"]).dt.days
    m = m[(days > 0) & (days <= window_days)]
    m = m.assign(days=days[m.index]).sort_values(["row", "days", "action"], kind="stable").drop_duplicates("row")
    out.loc[m["row"].to_numpy(), "action"] = m["action"].to_numpy(dtype=object)
    out.loc[m["row"].to_numpy(), "propensity"] = m["propensity"].to_numpy(dtype=float)
    return out


class EffectModel:
    """Learned scales of the prior lifts (see the module's docstring). `settings` are the training
    settings' `effects` section; everything else is learned by `fit`."""

    def __init__(self, settings: EffectSettings, seed: int = 0):
        self.settings = settings
        self.seed = seed

    def fit(self, features: pd.DataFrame, valid: pd.DataFrame, work: pd.DataFrame | None,
            prior_lifts: np.ndarray, actions: tuple[str, ...], encoder) -> EffectModel:
        """`features`: labelled account snapshots (with `label_recovered`); `valid`: later ones for the
        idle model's early stopping; `work`: the `work` log (None: no log); `prior_lifts`: the prior
        lift of each of `actions` per snapshot (n x k, `serving.lift.action_lifts`); `encoder`: the
        payment model's fitted `FeatureEncoder`."""
        st = self.settings
        self.actions_ = tuple(actions)
        arm = treatments(features, work, st.window_days)
        arm_v = treatments(valid, work, st.window_days)
        y = np.clip(features["label_recovered"].to_numpy(float), 0, None)
        idle = arm["action"].to_numpy(dtype=object) == "idle"
        self.effects_: dict[str, ActionEffect] = {}
        self.idle_model_ = None
        if work is None or not len(work) or idle.all():
            for a in self.actions_:
                self.effects_[a] = _prior(a, 0, "no work log")
            return self
        X = encoder.transform(features)
        idle_v = arm_v["action"].to_numpy(dtype=object) == "idle"
        Xv, yv = encoder.transform(valid)[idle_v], np.clip(valid["label_recovered"].to_numpy(float), 0, None)[idle_v]
        im = st.idle_model
        params = im.lgbm_params()
        params.update(objective="tweedie", tweedie_variance_power=1.4, random_state=self.seed, n_jobs=2, verbose=-1,
                      deterministic=True, force_col_wise=True)
        self.idle_model_ = lgb.LGBMRegressor(**params)
        fit_kw = {"categorical_feature": encoder.cat_index_}
        if len(Xv) and len(np.unique(yv)) > 1:
            fit_kw.update(eval_X=(Xv,), eval_y=(yv,),
                          callbacks=[lgb.early_stopping(im.early_stopping_rounds, verbose=False)])
        self.idle_model_.fit(X[idle], y[idle], **fit_kw)
        pred_v = self.idle_model_.predict(Xv) if len(Xv) else np.zeros(0)
        self.idle_scale_ = float(yv.sum() / pred_v.sum()) if pred_v.sum() > 0 else 1.0
        realised = y - self.idle_model_.predict(X) * self.idle_scale_
        rng = np.random.default_rng(self.seed)
        acts = arm["action"].to_numpy(dtype=object)
        for j, a in enumerate(self.actions_):
            self.effects_[a] = self._one(a, acts == a, arm["propensity"].to_numpy(float), realised,
                                         prior_lifts[:, j], rng)
        log.info("effects: %d of %d actions identified from %d treated snapshots", sum(
            e.identified for e in self.effects_.values()), len(self.actions_), int((~idle).sum()))
        return self

    def _one(self, action: str, treated: np.ndarray, propensity: np.ndarray, realised: np.ndarray,
             prior: np.ndarray, rng: np.random.Generator) -> ActionEffect:
        st = self.settings
        n = int(treated.sum())
        if n < st.min_treated:
            return _prior(action, n, f"{n} treated snapshots (< {st.min_treated})")
        p = propensity[treated]
        if not (p < 1.0).any():
            return _prior(action, n, "the office never varied it (propensity 1)")
        # the chance that the office chose this work at least once in the window, from its daily probability
        p_window = 1.0 - (1.0 - np.clip(p, 0, 1)) ** st.window_days
        w = 1.0 / np.clip(p_window, st.min_propensity, 1.0)
        r, q = realised[treated], prior[treated]
        if (w * q).sum() <= 0:
            return _prior(action, n, "the prior gives these snapshots no lift")
        lo, hi = st.scale_bounds
        scale = float(np.clip((w * r).sum() / (w * q).sum(), lo, hi))
        boot = []
        for _ in range(st.bootstrap):
            i = rng.integers(0, n, n)
            den = (w[i] * q[i]).sum()
            if den > 0:  # unclipped: a clipped estimate's spread would hide how uncertain it is
                boot.append((w[i] * r[i]).sum() / den)
        se = float(np.std(boot, ddof=1)) if len(boot) > 1 else np.inf
        mean_r, mean_q = float(np.average(r, weights=w)), float(np.average(q, weights=w))
        if se > st.max_relative_stderr * max(scale, 1.0):  # judged against the prior's scale when below it
            return ActionEffect(action, n, 1.0, se, False, f"too noisy (scale {scale:.2f} +- {se:.2f})", mean_r,
                                mean_q)
        return ActionEffect(action, n, scale, se, True, "learned from the work log", mean_r, mean_q)

    def adjust(self, acc, lifts: np.ndarray, feasible: np.ndarray, actions: tuple[str, ...]):
        """The prior lifts (n x k for `actions`) with each identified action's learned scale, and where
        each column's figure came from."""
        out = lifts.copy()
        source = {}
        for j, a in enumerate(actions):
            e = self.effects_.get(a)
            if e is not None and e.identified:
                out[:, j] = lifts[:, j] * e.scale
                source[a] = "learned"
            else:
                source[a] = "prior"
        return out, source

    def table(self) -> pd.DataFrame:
        """One row per action: what was learned and why (MLflow logs it; the README shows it)."""
        return pd.DataFrame([e.__dict__ for e in self.effects_.values()])
