"""Training: snapshots at monthly as-of dates, time-based splits, fit, evaluate, log to MLflow."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.contract import Dataset
from features.snapshot import account_features, pooled_stats, snapshot_features
from training.settings import TrainingSettings

log = logging.getLogger(__name__)


@dataclass
class Snapshots:
    """Training material: account and denial snapshots with labels, split by as-of date."""

    accounts: pd.DataFrame
    denials: pd.DataFrame
    train_dates: list[pd.Timestamp]
    valid_dates: list[pd.Timestamp]
    test_dates: list[pd.Timestamp]
    # every open denial at the test dates, labelled or not: the lift evaluation ranks them all (the labelled
    # `denials` keep only worked ones with a complete window)
    test_open_denials: pd.DataFrame | None = None

    def part(self, which: str, kind: str = "accounts") -> pd.DataFrame:
        dates = {"train": self.train_dates, "valid": self.valid_dates, "test": self.test_dates}[which]
        df = self.accounts if kind == "accounts" else self.denials
        return df[df["as_of"].isin(dates)].reset_index(drop=True)


def as_of_dates(ds: Dataset, settings: TrainingSettings) -> list[pd.Timestamp]:
    """Monthly as-of dates whose payment label window ends by the extract date."""
    snap = settings.snapshots
    first_service = ds["accounts"]["service_date"].min()
    start = first_service + pd.Timedelta(days=snap.warmup_days)
    last = ds.extract_date - pd.Timedelta(days=settings.horizon_days)
    dates = list(pd.date_range(start, last, freq=snap.frequency))
    return dates[-snap.max_as_of_dates:]


def split_dates(dates: list[pd.Timestamp], settings: TrainingSettings) -> tuple[list, list, list]:
    """Train / validation / test as-of dates; a training label window ends by the first validation date."""
    n_test, n_valid = settings.split.test_dates, settings.split.valid_dates
    if len(dates) < n_test + n_valid + 2:
        raise ValueError(
            f"the data gives {len(dates)} as-of dates with complete labels; training needs at least "
            f"{n_test + n_valid + 2} (test {n_test}, validation {n_valid}, 2 to train): use a longer history")
    test, valid = dates[-n_test:], dates[-n_test - n_valid:-n_test]
    cut = valid[0]
    h = pd.Timedelta(days=settings.horizon_days)
    train = [t for t in dates[:-n_test - n_valid] if t + h <= cut]
    if not train:
        raise ValueError("no training as-of date has its label window end before the validation period")
    return train, valid, test


def build_snapshots(ds: Dataset, settings: TrainingSettings) -> Snapshots:
    """Labelled account and denial snapshots at the training, validation and test as-of dates; the
    pooled statistics of each date use the settings' overturn horizon, as the stored table does."""
    dates = as_of_dates(ds, settings)
    train, valid, test = split_dates(dates, settings)
    used = train + valid + test
    t0 = time.perf_counter()
    acc, den = snapshot_features(ds, used, horizons=settings.horizons)  # one preparation, one table per date
    acc = acc[acc["label_paid"].notna()].reset_index(drop=True)
    open_test_denials = den[den["as_of"].isin(test)].reset_index(drop=True)
    den = den[den["label_overturn"].notna()].reset_index(drop=True)
    # a training denial's label window must also end before validation starts
    h2 = pd.Timedelta(days=settings.overturn_horizon_days)
    in_train = den["as_of"].isin(train)
    den = den[~in_train | (den["denial_date"] + h2 <= valid[0])].reset_index(drop=True)
    log.info("built %d account and %d denial snapshots at %d as-of dates in %.1fs",
             len(acc), len(den), len(used), time.perf_counter() - t0)
    return Snapshots(acc, den, train, valid, test, open_test_denials)


def effect_snapshots(ds: Dataset, snaps: Snapshots, settings: TrainingSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labelled account snapshots and every open denial at the effect model's as-of dates: every
    `effects.snapshot_every_days` through the training period, each label window ending before
    validation starts (a morning's work is the treatment, so it takes many mornings, not month starts)."""
    eff = settings.effects
    h = pd.Timedelta(days=settings.horizon_days)
    first, cut = snaps.train_dates[0], snaps.valid_dates[0]
    dates = list(pd.date_range(first, cut - h, freq=f"{eff.snapshot_every_days}D"))[-eff.max_snapshot_dates:]
    t0 = time.perf_counter()
    acc, den = snapshot_features(ds, dates, horizons=settings.horizons)
    acc = acc[acc["label_recovered"].notna()].reset_index(drop=True)
    log.info("built %d effect snapshots at %d as-of dates in %.1fs", len(acc), len(dates), time.perf_counter() - t0)
    return acc, den.drop(columns=["worked", "label_overturn"], errors="ignore")


def data_fingerprint(ds: Dataset) -> dict:
    """Row counts, date range and a content hash of the inputs (no row values leave this function)."""
    h = hashlib.sha256()
    for name in sorted(ds.tables):
        df = ds.tables[name]
        h.update(name.encode())
        h.update(pd.util.hash_pandas_object(df.sort_values(list(df.columns[:1])), index=False).to_numpy().tobytes())
    return {
        "rows": {n: int(len(df)) for n, df in sorted(ds.tables.items())},
        "first_service_date": str(ds["accounts"]["service_date"].min().date()),
        "extract_date": str(ds.extract_date.date()),
        "sha256": h.hexdigest(),
    }


def train_model(ds: Dataset, settings: TrainingSettings, snapshots: Snapshots | None = None):
    """Fit the bundle on the training dates; returns (model, snapshots)."""
    from training.model import RecoupModel

    snaps = snapshots or build_snapshots(ds, settings)
    for kind in ("accounts", "denials"):
        for which in ("train", "valid"):
            part = snaps.part(which, kind)
            if len(part) == 0:
                raise ValueError(f"no labelled {kind} snapshots in the {which} period")
            label = "label_paid" if kind == "accounts" else "label_overturn"
            if part[label].nunique() < 2:
                raise ValueError(f"the {which} {kind} snapshots have only one label value")
    stats = pooled_stats(ds, ds.extract_date, settings.horizons)
    # The drift reference is the population as the scoring path sees it at the end of the data: the same
    # features computed with the frozen statistics table (per-date tables would make the pooled rates
    # look drifted in every run).
    reference = account_features(ds, ds.extract_date, stats=stats, with_labels=False)
    t0 = time.perf_counter()
    work = ds.tables.get("work")
    work = work if work is not None and len(work) else None
    effect_snaps = effect_snapshots(ds, snaps, settings) if work is not None else None
    model = RecoupModel(settings).fit(snaps.part("train"), snaps.part("valid"), snaps.part("train", "denials"),
                                      snaps.part("valid", "denials"), stats, drift_features=reference,
                                      work=work, effect_snapshots=effect_snaps)
    log.info("fitted models in %.1fs", time.perf_counter() - t0)
    return model, snaps


def synthetic_input_example(model, n: int = 2) -> pd.DataFrame:
    """Input example for MLflow made from nothing real: medians are replaced by fixed round values."""
    rng = np.random.default_rng(0)
    data = {}
    for col in model.account_features_:
        if col in model.account_encoder_.vocab_:
            vocab = model.account_encoder_.vocab_[col]
            data[col] = [vocab[0] if vocab else None] * n
        else:
            data[col] = np.round(rng.uniform(0, 100, n), 0)
    return pd.DataFrame(data)


# what the evaluation reads of each `_truth/` table (the simulator's); a file without them is ignored
TRUTH_COLUMNS = {
    "accounts": ("account_id", "as_of", "p_payment", "expected_recovery"),
    "denials": ("claim_id", "p_overturn_if_worked", "expected_overturn_dollars"),
    "actions": ("account_id", "as_of", "action", "minutes", "lift"),
}


def read_truth_table(source, name: str) -> pd.DataFrame | None:
    """`_truth/<name>.parquet` beside a dataset folder, or None: no such file, a file that cannot be read,
    or one without the columns the evaluation uses (truth from another generator) is left out of the
    evaluation with a warning that names the file and what it lacks."""
    from pathlib import Path

    path = Path(str(source)) / "_truth" / f"{name}.parquet"
    if "://" in str(source) or not path.exists():
        return None
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:
        log.warning("ignoring %s: it cannot be read (%s)", path, type(err).__name__)
        return None
    missing = [c for c in TRUTH_COLUMNS[name] if c not in df.columns]
    if missing:
        log.warning("ignoring %s: it lacks the column(s) %s that the evaluation uses (truth from another "
                    "generator?)", path, ", ".join(missing))
        return None
    return df


def read_truth(source) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The simulator's `_truth/` accounts and denials beside a dataset folder, when there are any."""
    return read_truth_table(source, "accounts"), read_truth_table(source, "denials")


def read_truth_actions(source) -> pd.DataFrame | None:
    """`_truth/actions` beside a dataset folder (every feasible action's exact lift), when there is one."""
    return read_truth_table(source, "actions")


def evaluate_model(model, snaps: Snapshots, settings: TrainingSettings, source=None, ds: Dataset | None = None,
                   ranking_cfg: dict | None = None) -> list:
    """Account and denial reports on the test dates (with the perfect ordering when truth exists), and, where
    the data has `_truth/actions`, the dollars that the worklist's work brings (`evaluate_lift`, with the
    ranking configuration `ranking_cfg`, default serving/ranking.yaml)."""
    from training.evaluate import evaluate_accounts, evaluate_denials, evaluate_lift

    truth_acc, truth_den = read_truth(source) if source is not None else (None, None)
    test = snaps.part("test")
    reports = [evaluate_accounts(model, test, settings, truth_acc)]
    den_test = snaps.part("test", "denials")
    if len(den_test):
        reports.append(evaluate_denials(model, den_test, settings, truth_den))
    truth_actions = read_truth_actions(source) if source is not None else None
    if truth_actions is not None and len(truth_actions):
        from serving.ranking import load_ranking_config

        open_denials = snaps.test_open_denials if snaps.test_open_denials is not None else den_test
        work = ds.tables.get("work") if ds is not None else None
        reports.append(evaluate_lift(model, test, open_denials, ranking_cfg or load_ranking_config(), truth_actions,
                                     truth_acc, settings, work))
    return reports


def train_and_register(ds: Dataset, settings: TrainingSettings, tracking_uri: str | None = None, report_dir=None):
    """`recoup train`: snapshots, fit, evaluate on the test dates, log and register in MLflow."""
    from training.evaluate import save_reports
    from training.tracking import log_training_run

    model, snaps = train_model(ds, settings)
    reports = evaluate_model(model, snaps, settings, ds.source, ds)
    if report_dir is not None:
        save_reports(reports, report_dir)
    registered = log_training_run(model, settings, data_fingerprint(ds), reports, synthetic_input_example(model),
                                  tracking_uri)
    return model, snaps, reports, registered
