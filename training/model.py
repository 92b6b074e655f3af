"""The recoup model bundle: payment, amount and overturn LightGBM models with their calibrators,
category vocabularies, feature spec and the point-in-time statistics table.

`RecoupModel` follows scikit-learn's conventions (no work in `__init__`, `fit` returns self, learned
attributes end in `_`). It works on the feature frames of `features.snapshot` and encodes them to
a float matrix itself, so pandas categorical dtypes never cross a process boundary: an unseen or
missing category becomes NaN (LightGBM's "missing"), never a new column or a crash.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from features.catalogue import Horizons, account_feature_names, categorical_features, denial_feature_names
from features.contract import float_column

if TYPE_CHECKING:
    from training.settings import BoosterSettings, TrainingSettings

log = logging.getLogger(__name__)


@dataclass
class Calibrator:
    """A monotone map from raw score to probability, stored as plain arrays (fast, portable)."""

    kind: str
    x: np.ndarray
    y: np.ndarray

    @classmethod
    def fit(cls, kind: str, raw: np.ndarray, label: np.ndarray) -> Calibrator:
        if kind == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, label)
            return cls("isotonic", np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))
        if kind == "sigmoid":
            lr = LogisticRegression(C=1e6).fit(_logit(raw).reshape(-1, 1), label)
            return cls("sigmoid", np.array([lr.coef_[0, 0]]), np.array([lr.intercept_[0]]))
        raise ValueError(f"unknown calibration {kind!r} (isotonic or sigmoid)")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            return np.interp(raw, self.x, self.y)
        return 1.0 / (1.0 + np.exp(-(self.x[0] * _logit(raw) + self.y[0])))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


class FeatureEncoder:
    """Feature frame -> float matrix with stored category vocabularies."""

    def __init__(self, columns: list[str], categorical: list[str]):
        self.columns = columns
        self.categorical = categorical

    def fit(self, df: pd.DataFrame) -> FeatureEncoder:
        self.vocab_ = {}
        for col in self.categorical:
            counts = df[col].dropna().astype(str).value_counts()
            # most frequent first, ties by name: the same data always gives the same codes
            self.vocab_[col] = sorted(counts.index, key=lambda v: (-counts[v], v))
        self.cat_index_ = [self.columns.index(c) for c in self.categorical]
        self.codes_ = _code_tables(self.vocab_)
        return self

    def transform(self, df) -> np.ndarray:
        """The float matrix of a feature table (a DataFrame, or a dict of NumPy columns as the API's
        path builds it): category codes from the stored vocabularies (NaN, LightGBM's "missing", for
        a missing or unseen category) and numeric columns as float64. One dict lookup per
        categorical value and one copy per numeric column; no per-column pandas work for dicts."""
        missing = [c for c in self.columns if c not in df]
        if missing:
            raise ValueError(f"feature frame lacks columns: {', '.join(missing)}")
        codes_by_col = self.__dict__.get("codes_")
        if codes_by_col is None:  # bundles pickled before the lookup tables existed
            codes_by_col = self.codes_ = _code_tables(self.vocab_)
        frame = isinstance(df, pd.DataFrame)
        n = len(df) if frame else (len(df[self.columns[0]]) if self.columns else 0)
        X = np.empty((n, len(self.columns)), dtype=np.float64)
        nan = np.nan
        todo = list(enumerate(self.columns))
        if frame:  # a DataFrame's numeric columns in one pandas call (the batch's case)
            kinds = dict(zip(df.columns, df.dtypes, strict=True))
            numeric = [(j, c) for j, c in todo if c not in codes_by_col and kinds[c].kind in "fiub"]
            if numeric:
                X[:, [j for j, _ in numeric]] = df[[c for _, c in numeric]].to_numpy(dtype=np.float64, na_value=nan)
                done = {j for j, _ in numeric}
                todo = [(j, c) for j, c in todo if j not in done]
        for j, col in todo:
            values = df[col]
            codes = codes_by_col.get(col)
            if codes is not None:
                seq = values.to_numpy(dtype=object) if frame else np.asarray(values, dtype=object)
                X[:, j] = [codes.get(v, nan) if isinstance(v, str) else nan for v in seq.tolist()]
            else:
                X[:, j] = float_column(values)
        return X


def _predict(estimator, X: np.ndarray, **kwargs) -> np.ndarray:
    """The booster's raw prediction at its best iteration, with `_threads` OpenMP threads."""
    return estimator.booster_.predict(X, num_iteration=estimator.best_iteration_ or None, num_threads=_threads(X),
                                      **kwargs)


def _threads(X: np.ndarray) -> int:
    """OpenMP threads for one LightGBM call: one for a few rows (a thread team costs more than it
    saves, and the API's one-account requests are many and small), every core for many rows (a
    worklist's TreeSHAP reasons: 1.6x faster on 2 cores)."""
    return 1 if len(X) < 32 else (os.cpu_count() or 1)


def _code_tables(vocab: dict[str, list[str]]) -> dict[str, dict[str, float]]:
    return {col: {v: float(i) for i, v in enumerate(values)} for col, values in vocab.items()}


def _lgbm_params(booster: BoosterSettings, seed: int) -> dict:
    params = booster.lgbm_params()
    params.update(random_state=seed, n_jobs=2, verbose=-1, deterministic=True, force_col_wise=True)
    return params


class RecoupModel:
    """Both models of recoup in one fitted object (the registered bundle). `settings` is the
    training's `TrainingSettings`; everything else is learned by `fit`."""

    def __init__(self, settings: TrainingSettings):
        self.settings = settings

    def __setstate__(self, state: dict) -> None:
        # bundles pickled before `horizons_` kept the two horizons as separate attributes
        if "horizons_" not in state and "horizon_days_" in state:
            state["horizons_"] = Horizons(state.pop("horizon_days_"), state.pop("overturn_horizon_days_", 120))
        self.__dict__.update(state)

    # ----------------------------------------------------------------- fitting

    def fit(self, acc_train: pd.DataFrame, acc_valid: pd.DataFrame, den_train: pd.DataFrame,
            den_valid: pd.DataFrame, stats: pd.DataFrame, drift_features: pd.DataFrame | None = None,
            work: pd.DataFrame | None = None, effect_snapshots: tuple[pd.DataFrame, pd.DataFrame] | None = None
            ) -> RecoupModel:
        """Fit on the training snapshots (early stopping and calibration on the validation ones).
        `stats` is the statistics table every scoring path will use; `drift_features` the population
        the drift reference describes (the validation snapshots when None); `work` the office's work
        log and `effect_snapshots` (labelled account snapshots, every open denial) at the effect model's
        dates, from which it learns what each action adds (`effects_`; without a log or snapshots every
        action keeps its prior)."""
        settings, seed = self.settings, self.settings.seed
        self.account_features_ = account_feature_names()
        self.denial_features_ = denial_feature_names()
        self.account_encoder_ = FeatureEncoder(self.account_features_, categorical_features("account")).fit(acc_train)
        self.denial_encoder_ = FeatureEncoder(self.denial_features_, categorical_features("denial")).fit(den_train)
        self.stats_ = stats.reset_index(drop=True)
        self.horizons_ = settings.horizons

        Xt, Xv = self.account_encoder_.transform(acc_train), self.account_encoder_.transform(acc_valid)
        yt, yv = acc_train["label_paid"].to_numpy(float), acc_valid["label_paid"].to_numpy(float)
        cats = self.account_encoder_.cat_index_

        pm = settings.payment_model
        self.payment_ = lgb.LGBMClassifier(**_lgbm_params(pm, seed))
        self.payment_.fit(Xt, yt, eval_X=(Xv,), eval_y=(yv,), categorical_feature=cats,
                          callbacks=[lgb.early_stopping(pm.early_stopping_rounds, verbose=False)])
        self.payment_calibrator_ = Calibrator.fit(settings.calibration, self._raw_payment(Xv), yv)

        am = settings.amount_model
        mono = [1 if c in am.monotone_increasing else 0 for c in self.account_features_]
        self.amount_ = lgb.LGBMRegressor(**_lgbm_params(am, seed), monotone_constraints=mono,
                                         monotone_constraints_method="intermediate")
        rt = np.clip(acc_train["label_recovered"].to_numpy(float), 0, None)
        rv = np.clip(acc_valid["label_recovered"].to_numpy(float), 0, None)
        self.amount_.fit(Xt, rt, eval_X=(Xv,), eval_y=(rv,), categorical_feature=cats,
                         callbacks=[lgb.early_stopping(am.early_stopping_rounds, verbose=False)])
        # Tweedie's mean can drift a little; one scalar fitted on validation keeps dollars honest.
        pred_v = self.amount_.predict(Xv)
        self.amount_scale_ = float(rv.sum() / pred_v.sum()) if pred_v.sum() > 0 else 1.0

        om = settings.overturn_model
        Dt, Dv = self.denial_encoder_.transform(den_train), self.denial_encoder_.transform(den_valid)
        dt, dv = den_train["label_overturn"].to_numpy(float), den_valid["label_overturn"].to_numpy(float)
        self.overturn_ = lgb.LGBMClassifier(**_lgbm_params(om, seed))
        self.overturn_.fit(Dt, dt, eval_X=(Dv,), eval_y=(dv,), categorical_feature=self.denial_encoder_.cat_index_,
                           callbacks=[lgb.early_stopping(om.early_stopping_rounds, verbose=False)])
        self.overturn_calibrator_ = Calibrator.fit(settings.calibration, self._raw_overturn(Dv), dv)
        self.drift_reference_ = self._drift_reference(acc_valid if drift_features is None else drift_features)
        self.effects_ = self._fit_effects(acc_valid, work, effect_snapshots)
        return self

    def _fit_effects(self, acc_valid: pd.DataFrame, work: pd.DataFrame | None,
                     snapshots: tuple[pd.DataFrame, pd.DataFrame] | None):
        """The effect model (training.effects), fitted against the ranking's default prior lifts."""
        from serving.lift import LIFT_ACTIONS
        from serving.ranking import load_ranking_config, prior_lifts
        from training.effects import EffectModel

        self.effects_ = None  # the prior lifts themselves, not yet scaled
        acc, den = snapshots if snapshots is not None else (acc_valid.iloc[:0], None)
        prior = prior_lifts(self, acc, den, load_ranking_config()).lift
        return EffectModel(self.settings.effects, self.settings.seed).fit(
            acc, acc_valid, work, prior, LIFT_ACTIONS, self.account_encoder_)

    def _drift_reference(self, features: pd.DataFrame) -> dict:
        """Aggregates (bin edges and shares, never rows) of these features and their scores: the
        reference each scoring run's population is compared with."""
        from training.drift import build_reference

        scores = self.score_accounts(features)
        numeric = [c for c in self.account_features_ if c not in self.account_encoder_.vocab_]
        return build_reference(features, numeric, self.account_encoder_.vocab_, {
            "p_payment": scores["p_payment"].to_numpy(), "expected_recovery": scores["expected_recovery"].to_numpy()})

    # ----------------------------------------------------------------- scoring

    def _raw_payment(self, X: np.ndarray) -> np.ndarray:
        return _predict(self.payment_, X)

    def _raw_overturn(self, X: np.ndarray) -> np.ndarray:
        return _predict(self.overturn_, X)

    def score_accounts(self, features):
        """p_payment (calibrated) and expected_recovery (gross dollars in H) per feature row: a
        DataFrame for a DataFrame, a dict of NumPy columns for a dict of columns (the API's path)."""
        X = self.account_encoder_.transform(features)
        if not isinstance(features, pd.DataFrame):
            return self._account_scores(X)
        return self.score_account_matrix(X, index=features.index)

    def score_account_matrix(self, X: np.ndarray, index=None) -> pd.DataFrame:
        return pd.DataFrame(self._account_scores(X), index=index)

    def _account_scores(self, X: np.ndarray) -> dict[str, np.ndarray]:
        p = self.payment_calibrator_(self._raw_payment(X)) if len(X) else np.zeros(0)
        amount = _predict(self.amount_, X) * self.amount_scale_ if len(X) else np.zeros(0)
        return {"p_payment": p, "expected_recovery": amount}

    def score_denials(self, features):
        """p_overturn (calibrated, given worked) and expected overturn dollars per open denial (a
        DataFrame for a DataFrame, a dict of NumPy columns for a dict of columns)."""
        X = self.denial_encoder_.transform(features)
        p = self.overturn_calibrator_(self._raw_overturn(X)) if len(X) else np.zeros(0)
        ratio = np.nan_to_num(float_column(features["payer_paid_to_billed"]))
        expected_paid = np.nan_to_num(float_column(features["billed"])) * ratio
        out = {"p_overturn": p, "expected_recovery": p * expected_paid}
        return pd.DataFrame(out, index=features.index) if isinstance(features, pd.DataFrame) else out

    def account_contributions(self, features: pd.DataFrame, max_trees: int | None = None) -> np.ndarray:
        """TreeSHAP contributions of the amount model (n × (features + 1)), LightGBM's own; with
        `max_trees`, of its first trees only (boosting fits most of the signal first, and TreeSHAP's
        cost grows with every tree: what reasons need is which features matter, not every cent)."""
        X = self.account_encoder_.transform(features)
        best = self.amount_.best_iteration_ or self.amount_.n_estimators
        trees = best if not max_trees else min(int(max_trees), best)
        return self.amount_.booster_.predict(X, num_iteration=trees, num_threads=_threads(X), pred_contrib=True)

    def feature_importance(self) -> pd.DataFrame:
        return pd.DataFrame({
            "feature": self.account_features_,
            "payment_gain": self.payment_.booster_.feature_importance("gain"),
            "amount_gain": self.amount_.booster_.feature_importance("gain"),
        }).sort_values("amount_gain", ascending=False)
