"""A small trained model shared by the tests (trained once per session on tests.simdata's dataset)."""

from __future__ import annotations

import functools

SMALL_TRAINING = {
    "payment_model": {"n_estimators": 120, "learning_rate": 0.1},
    "amount_model": {"n_estimators": 120, "learning_rate": 0.1},
    "overturn_model": {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 10},
}


@functools.cache
def small_model():
    """(model, snapshots, dataset, config) for the small simulated dataset."""
    from features.contract import read_dataset
    from tests.simdata import small_dataset_dir
    from training.settings import load_settings
    from training.train import train_model

    ds = read_dataset(small_dataset_dir())
    cfg = load_settings(overrides=SMALL_TRAINING)
    model, snaps = train_model(ds, cfg)
    return model, snaps, ds, cfg
