"""The training settings' overturn horizon H2 reaches every stage: a model trained with a
non-default H2 stores the statistics table of that H2, its training snapshots read the pooled rates
of that H2, and the nightly batch and the HTTP API see the features (and give the scores) that the
training code path computes at the same date. Before the settings reached the features, the account
features used a literal 120-day horizon and training and serving quietly disagreed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.servers import recoup_serve, service_env

pytestmark = pytest.mark.slow

H2 = 75  # not the default 120
TOKEN = "horizons-token"
SMALL = {"payment_model": {"n_estimators": 60}, "amount_model": {"n_estimators": 60},
         "overturn_model": {"n_estimators": 40}, "snapshots": {"max_as_of_dates": 9}, "overturn_horizon_days": H2}
POOLED = ["payer_denial_rate", "payer_overturn_rate", "payer_group_overturn_rate", "payer_paid_to_billed",
          "payer_days_to_pay", "proc_family_denial_rate"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.train import train_model

    tmp = tmp_path_factory.mktemp("horizons")
    ds = read_dataset(simulate_to_folder(tmp / "data", 1500, 11, "2024-01-01", "2025-06-30"))
    settings = load_settings(overrides=SMALL)
    assert settings.horizons.overturn_horizon_days == H2
    model, snaps = train_model(ds, settings)
    return {"tmp": tmp, "ds": ds, "settings": settings, "model": model, "snaps": snaps}


def _by_account(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("account_id").reset_index(drop=True)


def test_the_stored_statistics_are_those_of_the_configured_horizon(trained):
    from features.snapshot import pooled_stats

    ds, model = trained["ds"], trained["model"]
    pd.testing.assert_frame_equal(model.stats_, pooled_stats(ds, ds.extract_date, trained["settings"].horizons))
    default = pooled_stats(ds, ds.extract_date)  # H2 = 120: the horizon must make a difference here
    assert not np.allclose(model.stats_["overturn_rate"], default["overturn_rate"])
    assert model.horizons_ == trained["settings"].horizons


def test_training_snapshots_read_the_pooled_rates_of_the_configured_horizon(trained):
    from features.snapshot import account_features, pooled_stats

    ds, snaps, settings = trained["ds"], trained["snaps"], trained["settings"]
    t = snaps.train_dates[-1]
    got = _by_account(snaps.accounts[snaps.accounts["as_of"] == t])
    want = _by_account(account_features(ds, t, stats=pooled_stats(ds, t, settings.horizons),
                                        horizons=settings.horizons))
    assert len(got) > 100
    pd.testing.assert_frame_equal(got, want)
    other = _by_account(account_features(ds, t, stats=pooled_stats(ds, t), horizons=settings.horizons))
    assert not np.allclose(got["payer_overturn_rate"], other["payer_overturn_rate"])


def _score_over_http(uri: str, body: dict, log_path: Path) -> dict:
    """POST /score to `recoup serve` (a subprocess serving the registry's champion)."""
    import httpx

    env = service_env(RECOUP_API_TOKEN=TOKEN, RECOUP_MODEL_ALIAS="champion")
    with recoup_serve(["--tracking-uri", uri], env, log_path) as (base, _):
        res = httpx.post(f"{base}/score", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert res.status_code == 200, res.text
    return res.json()


def test_batch_and_api_see_what_training_computes(trained, monkeypatch):
    from features.snapshot import account_features
    from serving.api.request import guarantor_account_ids, history_from_dataset
    from serving.batch import run_batch
    from serving.batch.run import features_and_scores
    from serving.ranking import load_ranking_config
    from training.tracking import log_training_run
    from training.train import data_fingerprint, synthetic_input_example

    ds, model, settings, tmp = trained["ds"], trained["model"], trained["settings"], trained["tmp"]
    as_of = ds.extract_date
    # what the training code path computes at this date (per-date statistics with the settings' H2)
    training = _by_account(account_features(ds, as_of, horizons=settings.horizons, with_labels=False))
    expected = model.score_accounts(training).assign(account_id=training["account_id"]).set_index("account_id")

    # the nightly batch: its features, and its worklist's scores
    batch_features = features_and_scores(model, ds, as_of, load_ranking_config()).features
    pd.testing.assert_frame_equal(_by_account(batch_features), training)
    worklist = run_batch(None, as_of, None, model, "recoup/1", dataset=ds, keep_result=True).ranked.accounts
    worklist = worklist.set_index("account_id").loc[expected.index]
    np.testing.assert_allclose(worklist["p_payment"], expected["p_payment"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(worklist["expected_recovery"], expected["expected_recovery"], rtol=1e-9, atol=1e-9)

    # the HTTP API, serving the bundle as registered in MLflow
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    monkeypatch.setenv("RECOUP_ARTIFACT_ROOT", str(tmp / "artifacts"))
    log_training_run(model, settings, data_fingerprint(ds), [], synthetic_input_example(model), uri)
    ids = list(expected.index[:: max(1, len(expected) // 25)])
    # each guarantor whole (their other accounts too), as the batch sees them
    sent = guarantor_account_ids(ds, ids)
    answer = _score_over_http(uri, history_from_dataset(ds, sent, as_of), tmp / "serve.log")
    got = {r["account_id"]: r for r in answer["results"]}
    assert sorted(got) == sorted(sent) and all(got[a]["status"] == "scored" for a in ids)
    np.testing.assert_allclose([got[a]["p_payment"] for a in ids], expected.loc[ids, "p_payment"], rtol=1e-9)
    np.testing.assert_allclose([got[a]["expected_recovery"] for a in ids], expected.loc[ids, "expected_recovery"],
                               rtol=1e-9, atol=1e-9)
