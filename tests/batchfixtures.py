"""One small simulated dataset and one small registered model for the batch, Spark and Postgres
tests (built once per session, in temp folders; `batch_env()` is cached)."""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

BATCH_SIM = dict(n_accounts=3000, seed=23, start="2024-01-01", end="2025-06-30")
BATCH_TRAINING = {
    "payment_model": {"n_estimators": 60},
    "amount_model": {"n_estimators": 60},
    "overturn_model": {"n_estimators": 40},
}
AS_OF = "2025-06-01"
AS_OF_2 = "2025-05-01"


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


@functools.cache
def batch_env() -> BatchEnv:
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.tracking import log_training_run
    from training.train import data_fingerprint, synthetic_input_example, train_model

    root = Path(tempfile.mkdtemp(prefix="recoup-batch-"))
    data = simulate_to_folder(root / "data", **BATCH_SIM)
    ds = read_dataset(data)
    cfg = load_settings(overrides=BATCH_TRAINING)
    model, _ = train_model(ds, cfg)
    artifacts = root / "artifacts"
    artifacts.mkdir()
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    old = os.environ.get("RECOUP_ARTIFACT_ROOT")
    os.environ["RECOUP_ARTIFACT_ROOT"] = str(artifacts)
    try:
        reg = log_training_run(model, cfg, data_fingerprint(ds), [], synthetic_input_example(model), tracking_uri)
    finally:
        if old is None:
            os.environ.pop("RECOUP_ARTIFACT_ROOT", None)
        else:
            os.environ["RECOUP_ARTIFACT_ROOT"] = old
    model.registry_name_, model.registry_version_ = reg.name, reg.version
    return BatchEnv(root, data, ds, model, tracking_uri, artifacts)


def assert_worklists_equal(a, b, atol: float = 1e-9) -> None:
    """Row by row, every column but run_id; floats to `atol`; any missing value equals any other."""
    import numpy as np
    import pandas as pd

    assert list(a.columns) == list(b.columns), (list(a.columns), list(b.columns))
    assert len(a) == len(b), (len(a), len(b))
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    for col in a.columns:
        if col == "run_id":
            continue
        x, y = a[col], b[col]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            same = (np.isnan(xv) & np.isnan(yv)) | (xv == yv) | (np.abs(xv - yv) <= atol)
            assert same.all(), f"{col}: {int((~same).sum())} rows differ"
            continue
        xs = [None if (not isinstance(v, list | np.ndarray) and pd.isna(v)) else v for v in x.astype(object)]
        ys = [None if (not isinstance(v, list | np.ndarray) and pd.isna(v)) else v for v in y.astype(object)]
        xs = [list(v) if isinstance(v, np.ndarray) else v for v in xs]
        ys = [list(v) if isinstance(v, np.ndarray) else v for v in ys]
        bad = [i for i, (u, v) in enumerate(zip(xs, ys, strict=True)) if u != v]
        assert not bad, f"{col}: {len(bad)} rows differ, first at row {bad[0]}: {xs[bad[0]]!r} != {ys[bad[0]]!r}"


try:
    import pytest

    @pytest.fixture(scope="session")
    def benv() -> BatchEnv:
        """The session's small dataset and registered model (see `batch_env`)."""
        return batch_env()
except ImportError:  # pragma: no cover - bench/ imports this module without pytest
    pass
