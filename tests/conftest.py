"""Fixtures shared by every kind of test (Made-With-ML's split: `code/` on small inline data, `data/`
contract and dataset checks, `model/` behavioural tests, `integration/` Postgres, Spark, HTTP and
notebooks). Each dataset and model is built once per session, in pytest's own temporary folders, so
nothing is left behind.

- `small_data`: a 10,000-account simulated dataset (Parquet folder with `_truth/`);
- `small_dataset`: the same, read (`features.contract.Dataset`);
- `small_model`: a small model trained on it: `(model, snapshots, dataset, settings)`;
- `small_office`: a 2,500-account office with a year of history, for the truth, arena and off-policy
  tests (Parquet folder with `_truth/` and what the arena needs to continue it);
- `benv`: a 3,000-account dataset and a small model registered in a SQLite MLflow store, for the
  batch, Spark and Postgres tests (`BatchEnv`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest

SMALL_SIM = dict(n_accounts=10000, seed=11, start="2024-01-01", end="2025-06-30")
SMALL_TRAINING = {
    "payment_model": {"n_estimators": 120, "learning_rate": 0.1},
    "amount_model": {"n_estimators": 120, "learning_rate": 0.1},
    "overturn_model": {"n_estimators": 60, "learning_rate": 0.1, "min_child_samples": 10},
}
OFFICE_SIM = dict(n_accounts=2500, seed=5, start="2024-01-01", end="2024-12-31")
BATCH_SIM = dict(n_accounts=3000, seed=23, start="2024-01-01", end="2025-06-30")
BATCH_TRAINING = {
    "payment_model": {"n_estimators": 60},
    "amount_model": {"n_estimators": 60},
    "overturn_model": {"n_estimators": 40},
}


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    from features.sources.simulate import simulate_to_folder

    return simulate_to_folder(tmp_path_factory.mktemp("small") / "data", **SMALL_SIM)


@pytest.fixture(scope="session")
def small_dataset(small_data):
    from features.contract import read_dataset

    return read_dataset(small_data)


@pytest.fixture(scope="session")
def small_office(tmp_path_factory) -> Path:
    from features.sources.simulate import simulate_to_folder

    return simulate_to_folder(tmp_path_factory.mktemp("office") / "data", **OFFICE_SIM)


class SmallModel(NamedTuple):
    model: object  # training.model.RecoupModel
    snapshots: object  # training.train.Snapshots
    dataset: object  # features.contract.Dataset
    settings: object  # training.settings.TrainingSettings


@pytest.fixture(scope="session")
def small_model(small_dataset) -> SmallModel:
    from training.settings import load_settings
    from training.train import train_model

    settings = load_settings(overrides=SMALL_TRAINING)
    model, snaps = train_model(small_dataset, settings)
    return SmallModel(model, snaps, small_dataset, settings)


@dataclass
class BatchEnv:
    root: Path
    data: Path  # the simulated dataset (Parquet folder)
    dataset: object  # features.contract.Dataset of `data`
    model: object  # the fitted RecoupModel (registered as recoup/1)
    tracking_uri: str
    artifact_root: Path

    @property
    def version_label(self) -> str:
        return f"{self.model.registry_name_}/{self.model.registry_version_}"

    def env(self) -> dict[str, str]:
        """Environment for a subprocess running `recoup score` against this registry."""
        return {**os.environ, "MLFLOW_TRACKING_URI": self.tracking_uri,
                "RECOUP_ARTIFACT_ROOT": str(self.artifact_root)}


@pytest.fixture(scope="session")
def benv(tmp_path_factory) -> BatchEnv:
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.tracking import log_training_run
    from training.train import data_fingerprint, synthetic_input_example, train_model

    root = tmp_path_factory.mktemp("batch")
    data = simulate_to_folder(root / "data", **BATCH_SIM)
    ds = read_dataset(data)
    settings = load_settings(overrides=BATCH_TRAINING)
    model, _ = train_model(ds, settings)
    artifacts = root / "artifacts"
    artifacts.mkdir()
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECOUP_ARTIFACT_ROOT", str(artifacts))
        reg = log_training_run(model, settings, data_fingerprint(ds), [], synthetic_input_example(model),
                               tracking_uri)
    model.registry_name_, model.registry_version_ = reg.name, reg.version
    return BatchEnv(root, data, ds, model, tracking_uri, artifacts)


@pytest.fixture(scope="session", autouse=True)
def prometheus_folder(tmp_path_factory):
    """In-process service apps keep their multiprocess metrics here, not in a folder of their own in /tmp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path_factory.mktemp("prometheus")))
        yield


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()
