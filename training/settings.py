"""Training settings: `default_config.yaml` holds every default; a user file overrides keys.

`load_settings` merges the YAML files (an unknown key is an error that names it, as is a mapping
replaced by a value) and validates the result into one frozen, typed `TrainingSettings`. That object
is passed down, unchanged, to every stage: the snapshots and their labels (`settings.horizons` reaches
the feature code), the models, the evaluation, MLflow. Nothing reads a horizon or a window anywhere
else.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from features.catalogue import Horizons

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_config.yaml")


def _merge(base: dict, override: dict, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}{key}"
        if key not in base:
            raise ValueError(f"unknown configuration key {where!r} (see {DEFAULT_CONFIG_PATH.name})")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ValueError(f"configuration key {where!r} must be a mapping")
            out[key] = _merge(base[key], value, where + ".")
        else:
            out[key] = value
    return out


def load_yaml_with_defaults(defaults: Path, path: str | Path | None = None,
                            overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The defaults file, updated by the YAML file at `path` and then by `overrides` (same shape);
    an unknown key is an error that names it."""
    cfg = yaml.safe_load(Path(defaults).read_text())
    if path is not None:
        cfg = _merge(cfg, yaml.safe_load(Path(path).read_text()) or {})
    if overrides:
        cfg = _merge(cfg, overrides)
    return cfg


# ----------------------------------------------------------------------------- the settings


class _Section(BaseModel):
    # every key is declared (and given its default) in default_config.yaml; none is optional here
    model_config = ConfigDict(frozen=True, extra="forbid")


class SnapshotDates(_Section):
    frequency: str  # pandas offset alias of the as-of dates
    warmup_days: int = Field(ge=0)
    max_as_of_dates: int = Field(gt=0)


class SplitSettings(_Section):
    test_dates: int = Field(gt=0)
    valid_dates: int = Field(gt=0)


_OWN_KEYS = frozenset({"early_stopping_rounds", "monotone_increasing"})  # ours, not LightGBM's


class BoosterSettings(_Section):
    """A LightGBM model's parameters, and when to stop."""

    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    subsample: float
    subsample_freq: int
    colsample_bytree: float
    reg_lambda: float
    early_stopping_rounds: int

    def lgbm_params(self) -> dict[str, Any]:
        """The LightGBM keyword arguments (our own keys left out)."""
        return {k: v for k, v in self.model_dump().items() if k not in _OWN_KEYS}


class AmountModelSettings(BoosterSettings):
    objective: str
    tweedie_variance_power: float
    monotone_increasing: tuple[str, ...]


class OverturnModelSettings(BoosterSettings):
    min_data_per_group: int
    cat_smooth: float


class EffectSettings(_Section):
    """How the effect of each action is learned from the office's work log (training/effects.py)."""

    window_days: int = Field(gt=0)
    snapshot_every_days: int = Field(gt=0)
    max_snapshot_dates: int = Field(gt=0)
    min_treated: int = Field(gt=0)
    max_relative_stderr: float = Field(gt=0)
    scale_bounds: tuple[float, float]
    min_propensity: float = Field(gt=0, le=1)
    bootstrap: int = Field(ge=20)
    idle_model: BoosterSettings


class EvaluationSettings(_Section):
    top_k_percent: tuple[int, ...]
    reliability_bins: int = Field(gt=0)


class PromotionSettings(_Section):
    recovery_at_20_tolerance: float
    ece_tolerance: float


class MlflowSettings(_Section):
    experiment: str
    registered_model: str


class TrainingSettings(_Section):
    """Every training option (see `default_config.yaml` for what each means)."""

    seed: int
    horizon_days: int = Field(gt=0)
    overturn_horizon_days: int = Field(gt=0)
    snapshots: SnapshotDates
    split: SplitSettings
    payment_model: BoosterSettings
    amount_model: AmountModelSettings
    overturn_model: OverturnModelSettings
    calibration: Literal["isotonic", "sigmoid"]
    effects: EffectSettings
    evaluation: EvaluationSettings
    promotion: PromotionSettings
    mlflow: MlflowSettings

    @property
    def horizons(self) -> Horizons:
        """The label windows, as the feature code takes them."""
        return Horizons(self.horizon_days, self.overturn_horizon_days)

    def as_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values (what MLflow logs)."""
        return self.model_dump(mode="json")

    def updated(self, overrides: dict[str, Any]) -> TrainingSettings:
        """A copy with `overrides` (a mapping shaped like the YAML) applied and validated again."""
        return settings_from_dict(_merge(self.as_dict(), overrides))


def settings_from_dict(cfg: dict[str, Any]) -> TrainingSettings:
    """Validate a complete configuration mapping; a wrong value is an error that names its key."""
    try:
        return TrainingSettings.model_validate(cfg)
    except ValidationError as err:
        problems = "; ".join(f"configuration key {'.'.join(str(p) for p in e['loc'])!r}: {e['msg']}"
                             for e in err.errors())
        raise ValueError(problems) from None


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainingSettings:
    """The training defaults, updated by the YAML file at `path` and then by `overrides` (a mapping of
    the same shape), as one frozen `TrainingSettings`."""
    return settings_from_dict(load_yaml_with_defaults(DEFAULT_CONFIG_PATH, path, overrides))
