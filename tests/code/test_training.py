"""Training code tests: settings, time splits, calibration, ECE (model behaviour is in
tests/model/test_model_behaviour.py, the MLflow cycle in tests/integration/test_registry.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluate import expected_calibration_error
from training.model import Calibrator
from training.settings import load_settings
from training.train import split_dates


def test_config_defaults_and_unknown_keys(tmp_path):
    cfg = load_settings()
    assert cfg.horizon_days == 60 and cfg.split.test_dates == 3
    path = tmp_path / "c.yaml"
    path.write_text("payment_model:\n  num_leavs: 3\n")
    with pytest.raises(ValueError, match="payment_model.num_leavs"):
        load_settings(path)
    path.write_text("seed: 7\n")
    assert load_settings(path).seed == 7
    path.write_text("snapshots: 3\n")
    with pytest.raises(ValueError, match="configuration key 'snapshots' must be a mapping"):
        load_settings(path)


def test_settings_are_typed_frozen_and_carry_the_horizons(tmp_path):
    from pydantic import ValidationError

    from features.catalogue import DEFAULT_HORIZONS, Horizons

    settings = load_settings(overrides={"overturn_horizon_days": 90, "payment_model": {"learning_rate": "0.2"}})
    assert settings.horizons == Horizons(horizon_days=60, overturn_horizon_days=90)
    assert settings.payment_model.learning_rate == 0.2  # YAML text that is a number is read as one
    assert load_settings().horizons == DEFAULT_HORIZONS  # the YAML's defaults are the feature code's
    with pytest.raises(ValidationError):
        settings.seed = 1  # frozen: what training was given is what every stage reads
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  test_dates: three\ncalibration: platt\n")
    with pytest.raises(ValueError, match=r"'split.test_dates'.*integer.*'calibration'.*'isotonic' or 'sigmoid'"):
        load_settings(path)
    assert load_settings().as_dict()["amount_model"]["monotone_increasing"][0] == "balance"  # plain lists


def test_time_split_leaves_no_label_overlap():
    cfg = load_settings()
    dates = list(pd.date_range("2024-04-01", "2025-10-01", freq="MS"))
    train, valid, test = split_dates(dates, cfg)
    assert test == dates[-3:] and valid == dates[-5:-3]
    assert all(t + pd.Timedelta(days=cfg.horizon_days) <= valid[0] for t in train)
    assert max(train) < min(valid) < min(test)
    with pytest.raises(ValueError, match="as-of dates"):
        split_dates(dates[:4], cfg)


def test_ece_equal_count_bins():
    p = np.linspace(0.05, 0.95, 1000)
    assert expected_calibration_error(p, (p > 2).astype(float), 10) == pytest.approx(p.mean())
    rng = np.random.default_rng(0)
    y = (rng.random(200_000) < np.repeat(p, 200)).astype(float)
    assert expected_calibration_error(np.repeat(p, 200), y, 10) < 0.01


@pytest.mark.parametrize("kind", ["isotonic", "sigmoid"])
def test_calibrator_fixes_a_distorted_score(kind):
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0.02, 0.98, 50_000)
    y = (rng.random(len(true_p)) < true_p).astype(float)
    raw = true_p**2  # a monotone but badly calibrated score
    cal = Calibrator.fit(kind, raw, y)
    fixed = cal(raw)
    assert expected_calibration_error(fixed, y) < expected_calibration_error(raw, y) / 3
    assert np.all(np.diff(cal(np.sort(raw))) >= -1e-12)  # still monotone
