"""MLflow: run logging, the registered bundle (a custom pyfunc), aliases and the promotion gate.

The embedded default is a SQLite store (`./mlflow.db`) with artifacts in `./mlartifacts`;
`--tracking-uri` or `MLFLOW_TRACKING_URI` points elsewhere (a tracking server, or a PostgreSQL
backend store: `postgresql+psycopg://user@host/db`). No PHI reaches MLflow: the input example is
synthetic, and the data is described by counts, dates and a hash.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import mlflow.pyfunc
import pandas as pd

if TYPE_CHECKING:
    from training.settings import TrainingSettings

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """Explicit URI, else MLFLOW_TRACKING_URI, else the embedded SQLite store in the working folder."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def use_tracking(uri: str | None, experiment: str) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns the resolved URI."""
    resolved = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    if mlflow.get_experiment_by_name(experiment) is None:
        location = None
        if resolved.startswith(("sqlite:", "postgresql", "mysql")):
            # a database store keeps artifacts beside the working folder unless a server says otherwise
            location = Path(os.environ.get("RECOUP_ARTIFACT_ROOT", DEFAULT_ARTIFACTS)).resolve().as_uri()
        mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return resolved


class RecoupPyfunc(mlflow.pyfunc.PythonModel):
    """The registered bundle: both models, calibrators, vocabularies, feature spec and stats table.

    `predict` takes account feature rows (as `features.snapshot.account_features` makes them) and
    returns calibrated `p_payment` and `expected_recovery`; JSON input is fine because the bundle
    encodes categories with its own vocabularies.
    """

    def load_context(self, context) -> None:
        with open(context.artifacts["bundle"], "rb") as f:
            self.model = pickle.load(f)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.score_accounts(model_input).reset_index(drop=True)


def _flatten(d: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else str(v)
    return out


@dataclass
class Registered:
    name: str
    version: str
    alias: str
    run_id: str


def log_training_run(model, settings: TrainingSettings, fingerprint: dict, reports: list, input_example: pd.DataFrame,
                     tracking_uri: str | None = None) -> Registered:
    """Log config, fingerprint, features, metrics, plots and the bundle; register it with an alias."""
    use_tracking(tracking_uri, settings.mlflow.experiment)
    name = settings.mlflow.registered_model
    from mlflow.models import infer_signature

    cfg = settings.as_dict()
    with mlflow.start_run(run_name="train") as run:
        mlflow.log_params(_flatten(cfg))
        mlflow.log_dict(cfg, "config.json")
        mlflow.log_dict(fingerprint, "data_fingerprint.json")
        mlflow.set_tags({"data_sha256": fingerprint["sha256"], "extract_date": fingerprint["extract_date"]})
        mlflow.log_dict({"account_features": model.account_features_, "denial_features": model.denial_features_,
                         "categorical": {c: v for c, v in model.account_encoder_.vocab_.items()}},
                        "feature_spec.json")
        for rep in reports:
            mlflow.log_metrics({k: float(v) for k, v in rep.metrics.items()})
            for fig_name, fig in rep.figures.items():
                mlflow.log_figure(fig, f"plots/{fig_name}.png")
            for table_name, df in rep.tables.items():
                mlflow.log_text(df.to_csv(index=False), f"evaluation/{table_name}.csv")
            for note_name, text in getattr(rep, "notes", {}).items():
                mlflow.log_text(text, f"evaluation/notes/{note_name}.txt")
        with tempfile.TemporaryDirectory() as tmp:
            bundle = Path(tmp) / "bundle.pkl"
            with open(bundle, "wb") as f:
                pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)
            output = model.score_accounts(input_example)
            info = mlflow.pyfunc.log_model(
                name="model", python_model=RecoupPyfunc(), artifacts={"bundle": str(bundle)},
                signature=infer_signature(input_example, output), input_example=input_example,
                registered_model_name=name,
            )
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        alias = CHALLENGER if _alias_version(client, name, CHAMPION) else CHAMPION
        client.set_registered_model_alias(name, alias, version)
        client.set_model_version_tag(name, version, "data_sha256", fingerprint["sha256"])
        log.info("registered %s version %s as %s", name, version, alias)
        return Registered(name, version, alias, run.info.run_id)


def _alias_version(client, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def load_bundle(name: str = "recoup", alias: str | None = CHAMPION, version: str | None = None,
                tracking_uri: str | None = None):
    """The fitted `RecoupModel` of a registered version (by alias unless a version is given)."""
    resolved = resolve_tracking_uri(tracking_uri)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    client = mlflow.MlflowClient()
    if version is None:
        version = _alias_version(client, name, alias or CHAMPION)
        if version is None:
            raise LookupError(f"registered model {name!r} has no version with alias {alias!r} in {resolved}: "
                              "train one with `recoup train`")
    uri = f"models:/{name}/{version}"
    pyfunc = mlflow.pyfunc.load_model(uri)
    model = pyfunc.unwrap_python_model().model
    model.registry_version_ = str(version)
    model.registry_name_ = name
    return model


@dataclass
class PromotionDecision:
    promoted: bool
    reason: str
    champion_version: str | None
    challenger_version: str | None
    comparison: dict


def promote(data_snapshots, settings: TrainingSettings, tracking_uri: str | None = None, force: bool = False,
            evaluate=None) -> PromotionDecision:
    """Move `champion` to the challenger unless it is worse by more than the configured tolerances.

    Both versions are evaluated on the same, most recent test period (`data_snapshots`)."""
    from training.evaluate import evaluate_accounts

    evaluate = evaluate or evaluate_accounts
    use_tracking(tracking_uri, settings.mlflow.experiment)
    name = settings.mlflow.registered_model
    client = mlflow.MlflowClient()
    champ_v, chall_v = _alias_version(client, name, CHAMPION), _alias_version(client, name, CHALLENGER)
    if chall_v is None:
        return PromotionDecision(False, "there is no challenger to promote", champ_v, None, {})
    if champ_v is None or champ_v == chall_v:
        client.set_registered_model_alias(name, CHAMPION, chall_v)
        client.delete_registered_model_alias(name, CHALLENGER)
        return PromotionDecision(True, "there was no champion", chall_v, chall_v, {})
    test = data_snapshots.part("test")
    res = {}
    for role, version in ((CHAMPION, champ_v), (CHALLENGER, chall_v)):
        model = load_bundle(name, version=version, tracking_uri=tracking_uri)
        m = evaluate(model, test, settings).metrics
        res[role] = {"version": version, "recovery_at_20": m["recovery_at_20_model"], "ece": m["ece"],
                     "roc_auc": m["roc_auc"]}
    tol = settings.promotion
    rec_drop = res[CHAMPION]["recovery_at_20"] - res[CHALLENGER]["recovery_at_20"]
    ece_rise = res[CHALLENGER]["ece"] - res[CHAMPION]["ece"]
    problems = []
    if rec_drop > tol.recovery_at_20_tolerance:
        problems.append(f"recovery captured at 20% is {rec_drop:.4f} lower (tolerance "
                        f"{tol.recovery_at_20_tolerance})")
    if ece_rise > tol.ece_tolerance:
        problems.append(f"calibration error is {ece_rise:.4f} higher (tolerance {tol.ece_tolerance})")
    promoted = force or not problems
    if promoted:
        reason = ("forced: " + "; ".join(problems)) if problems else (
            f"challenger v{chall_v} is within tolerance: recovery at 20% {res[CHALLENGER]['recovery_at_20']:.4f} "
            f"vs {res[CHAMPION]['recovery_at_20']:.4f}, ECE {res[CHALLENGER]['ece']:.4f} vs {res[CHAMPION]['ece']:.4f}")
        client.set_registered_model_alias(name, CHAMPION, chall_v)
        client.delete_registered_model_alias(name, CHALLENGER)
    else:
        reason = f"challenger v{chall_v} stays challenger: " + "; ".join(problems)
    comparison = {"champion": res[CHAMPION], "challenger": res[CHALLENGER], "promoted": promoted,
                  "reason": reason, "test_dates": [str(d.date()) for d in data_snapshots.test_dates]}
    with mlflow.start_run(run_name="promote"):
        mlflow.log_dict(comparison, "promotion.json")
        mlflow.log_metrics({f"{role}_{k}": float(v) for role in (CHAMPION, CHALLENGER)
                            for k, v in res[role].items() if k != "version"})
        mlflow.set_tags({"promoted": str(promoted), "champion_version": champ_v, "challenger_version": chall_v})
    return PromotionDecision(promoted, reason, chall_v if promoted else champ_v, chall_v, comparison)
