"""The MLflow cycle on a real store: train, register (champion, then challenger), load the bundle and
its pyfunc flavour, and promote through the gate, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest


def _cycle(small_model, tracking_uri: str, tmp_path, monkeypatch):
    from training import tracking
    from training.train import data_fingerprint, synthetic_input_example

    monkeypatch.setenv("RECOUP_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    model, snaps, ds, cfg = small_model
    cfg = cfg.updated({"mlflow": {"experiment": f"recoup-test-{uuid.uuid4().hex[:6]}", "registered_model": "recoup-t"}})
    fp = data_fingerprint(ds)
    example = synthetic_input_example(model)
    first = tracking.log_training_run(model, cfg, fp, [], example, tracking_uri)
    assert first.alias == "champion"
    second = tracking.log_training_run(model, cfg, fp, [], example, tracking_uri)
    assert second.alias == "challenger" and int(second.version) == int(first.version) + 1
    loaded = tracking.load_bundle("recoup-t", "challenger", tracking_uri=tracking_uri)
    test = snaps.part("test")
    np.testing.assert_allclose(loaded.score_accounts(test).to_numpy(), model.score_accounts(test).to_numpy())
    # the pyfunc flavour answers with probabilities and dollars, from JSON-like input (no categorical dtypes)
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(f"models:/recoup-t/{second.version}")
    out = pyfunc.predict(pd.DataFrame(test.head(3)[model.account_features_].to_dict("records")))
    np.testing.assert_allclose(out["p_payment"].to_numpy(), model.score_accounts(test.head(3))["p_payment"])

    # a challenger that is worse than the tolerance stays challenger, and the gate says why
    from training.evaluate import Report

    def worse(m, _test, _cfg):
        bad = m.registry_version_ == second.version
        return Report(metrics={"recovery_at_20_model": 0.5 if bad else 0.9, "ece": 0.01, "roc_auc": 0.8})

    decision = tracking.promote(snaps, cfg, tracking_uri, evaluate=worse)
    assert not decision.promoted and "recovery captured at 20%" in decision.reason
    # an equal challenger (same model) passes the real gate and becomes champion
    decision = tracking.promote(snaps, cfg, tracking_uri)
    assert decision.promoted, decision.reason
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("recoup-t", "champion").version) == second.version
    runs = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment])
    assert (runs["tags.mlflow.runName"] == "promote").sum() == 2


@pytest.mark.slow
def test_train_register_promote_sqlite(small_model, tmp_path, monkeypatch):
    _cycle(small_model, f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.postgres
def test_train_register_promote_postgres(small_model, tmp_path, monkeypatch):
    import sqlalchemy as sa

    db = f"recoup_mlflow_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    try:
        _cycle(small_model, f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", tmp_path, monkeypatch)
    finally:
        import mlflow

        mlflow.set_tracking_uri(None)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


