"""Training: code tests (config, splits, calibration, ECE), model behaviour (direction, invariance,
minimum function) and the MLflow train-register-promote cycle on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid

import numpy as np
import pandas as pd
import pytest

from tests.modelfixtures import small_model
from training.evaluate import expected_calibration_error
from training.model import Calibrator
from training.settings import load_settings
from training.train import split_dates

# ----------------------------------------------------------------------------- code


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


# ----------------------------------------------------------------------------- model behaviour


@pytest.fixture(scope="module")
def fitted():
    return small_model()


def test_timely_filing_denial_scores_below_missing_information(fitted):
    """The same open denials, once with a timely-filing CARC and once with a missing-information CARC,
    built through the feature code (so the pooled rates follow the CARC as they would in real data)."""
    from features.contract import Dataset
    from features.snapshot import denial_features

    model, _, ds, _ = fitted
    as_of = pd.Timestamp("2025-05-01")
    den = denial_features(ds, as_of, stats=model.stats_, with_labels=False)
    assert len(den) >= 10
    remits = ds["remittances"]
    denied_remits = remits.loc[remits["claim_id"].isin(den["claim_id"]) & (remits["claim_status"] == "denied"),
                               "remit_id"]

    def with_carc(code: str) -> pd.DataFrame:
        adj = ds["adjustments"].copy()
        hit = adj["remit_id"].isin(denied_remits) & (adj["group_code"].isin(["CO", "OA"]))
        adj.loc[hit, "reason_code"] = code
        tables = {**ds.tables, "adjustments": adj}
        return denial_features(Dataset(tables, extract_date=ds.extract_date), as_of, stats=model.stats_,
                               with_labels=False)

    missing, timely = with_carc("16"), with_carc("29")
    assert (missing["carc_group"] == "missing_info").all() and (timely["carc_group"] == "timely_filing").all()
    p_missing = model.score_denials(missing)["p_overturn"].to_numpy()
    p_timely = model.score_denials(timely)["p_overturn"].to_numpy()
    assert np.all(p_timely <= p_missing + 1e-12)
    assert p_timely.mean() < p_missing.mean() - 0.2


def test_larger_balance_never_lowers_expected_recovery(fitted):
    model, snaps, _, _ = fitted
    rows = snaps.part("test").sample(300, random_state=0)
    base = model.score_accounts(rows)["expected_recovery"].to_numpy()
    for factor in (1.1, 2.0, 10.0):
        bigger = rows.copy()
        for col in ("balance", "balance_patient", "balance_insurance"):
            bigger[col] = rows[col] * factor
        got = model.score_accounts(bigger)["expected_recovery"].to_numpy()
        assert np.all(got >= base - 1e-9)
        base = got


def test_row_order_changes_nothing(fitted):
    from features.contract import Dataset
    from features.snapshot import account_features

    model, _, ds, _ = fitted
    as_of = pd.Timestamp("2025-03-01")
    a = account_features(ds, as_of, stats=model.stats_, with_labels=False)
    shuffled = Dataset({n: df.sample(frac=1.0, random_state=3).reset_index(drop=True) for n, df in ds.tables.items()},
                       extract_date=ds.extract_date)
    b = account_features(shuffled, as_of, stats=model.stats_, with_labels=False)
    sa, sb = model.score_accounts(a), model.score_accounts(b)
    np.testing.assert_allclose(sa.to_numpy(), sb.to_numpy(), rtol=0, atol=1e-9)
    # and scoring the rows in another order gives each row the same score
    perm = np.random.default_rng(0).permutation(len(a))
    sp = model.score_accounts(a.iloc[perm])
    np.testing.assert_allclose(sp.to_numpy(), sa.to_numpy()[perm], rtol=0, atol=1e-12)


def test_unseen_and_missing_categories_do_not_crash(fitted):
    model, snaps, _, _ = fitted
    rows = snaps.part("test").head(5).copy()
    rows["primary_payer_id"] = ["NEW-PAYER", None, "NEW-PAYER", None, "X"]
    rows["financial_class"] = None
    out = model.score_accounts(rows)
    assert list(out.columns) == ["p_payment", "expected_recovery"] and np.isfinite(out.to_numpy()).all()


def test_minimum_function_on_simulated_data(fitted):
    """Even on the small test dataset the model beats the orderings billing offices use today."""
    from tests.simdata import small_dataset_dir
    from training.evaluate import evaluate_accounts
    from training.train import read_truth

    model, snaps, _, cfg = fitted
    m = evaluate_accounts(model, snaps.part("test"), cfg, read_truth(small_dataset_dir())[0]).metrics
    assert m["roc_auc"] > 0.75
    assert m["recovery_at_20_model"] > m["recovery_at_20_oldest"] + 0.3
    assert m["recovery_at_20_model"] > m["recovery_at_20_random"] + 0.3
    assert m["recovery_at_20_model"] >= 0.9 * m["recovery_at_20_perfect"]
    assert m["ece"] < 0.06
    assert abs(m["expected_to_actual_dollars"] - 1) < 0.25


def test_training_is_reproducible(fitted):
    from training.train import train_model

    model, snaps, ds, cfg = fitted
    again, _ = train_model(ds, cfg, snapshots=snaps)
    test = snaps.part("test")
    np.testing.assert_array_equal(model.score_accounts(test).to_numpy(), again.score_accounts(test).to_numpy())


def test_fit_learns_everything_and_older_bundles_still_load(fitted):
    import pickle

    from features.catalogue import Horizons
    from training.model import RecoupModel

    model, snaps, _, cfg = fitted
    assert vars(RecoupModel(cfg)) == {"settings": cfg}  # __init__ only keeps its parameter
    learned = {k for k in vars(model) if k != "settings"}
    assert learned and all(k.endswith("_") for k in learned) and "drift_reference_" in learned
    # a bundle pickled before `horizons_`: the two horizons were separate attributes, the config a dict
    state = {k: v for k, v in vars(model).items() if k not in ("settings", "horizons_")}
    old = RecoupModel.__new__(RecoupModel)
    old.__dict__.update(state, config=cfg.as_dict(), horizon_days_=45, overturn_horizon_days_=90)
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.horizons_ == Horizons(45, 90) and not hasattr(loaded, "horizon_days_")
    test = snaps.part("test")
    np.testing.assert_array_equal(loaded.score_accounts(test).to_numpy(), model.score_accounts(test).to_numpy())


# ----------------------------------------------------------------------------- MLflow cycle


def _cycle(tracking_uri: str, tmp_path, monkeypatch):
    from training import tracking
    from training.train import data_fingerprint, synthetic_input_example

    monkeypatch.setenv("RECOUP_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    model, snaps, ds, cfg = small_model()
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
def test_train_register_promote_sqlite(tmp_path, monkeypatch):
    _cycle(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.postgres
def test_train_register_promote_postgres(tmp_path, monkeypatch):
    import sqlalchemy as sa

    db = f"recoup_mlflow_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    try:
        _cycle(f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", tmp_path, monkeypatch)
    finally:
        import mlflow

        mlflow.set_tracking_uri(None)
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()


def test_drift_reference_is_quiet_on_its_own_population_and_warns_on_a_shift(fitted):
    from features.snapshot import account_features
    from training.drift import drift_report

    model, _, ds, _ = fitted
    feats = account_features(ds, "2025-05-01", stats=model.stats_, with_labels=False)
    scores = model.score_accounts(feats)
    quiet = drift_report(model.drift_reference_, feats, {c: scores[c].to_numpy() for c in scores})
    assert not quiet["warn"].any(), quiet.head()
    shifted = feats.assign(balance=feats["balance"] * 10, financial_class="commercial")
    loud = drift_report(model.drift_reference_, shifted, {c: scores[c].to_numpy() for c in scores}).set_index("name")
    assert loud.loc["balance", "warn"] and loud.loc["financial_class", "warn"]
    assert not loud.loc["patient_age", "warn"]
    # the reference holds aggregates only: no row of the data
    assert set(model.drift_reference_) == {"numeric", "categorical", "scores", "rows"}
