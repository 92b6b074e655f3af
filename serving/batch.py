"""The nightly batch: score every open account and open denial at an as-of date and write the
ranked worklist safely. The local engine works through whole accounts in chunks (all of an
account's rows together) so memory stays bounded; `serving.spark` runs the same functions on Spark.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.contract import Dataset, read_dataset
from features.dates import parse_as_of
from features.snapshot import account_features, denial_features
from serving.ranking import Ranked, concat_rows, finalize, load_ranking_config, score_rows

log = logging.getLogger(__name__)

# tables that hang off an account, and the key that leads to it
_BY_ACCOUNT = ("accounts", "claims", "transactions", "activities")
_BY_CLAIM = ("claim_lines", "remittances", "appeals")
_BY_REMIT = ("adjustments", "remit_lines")


@dataclass
class BatchResult:
    run_id: str
    as_of: pd.Timestamp
    n_accounts: int
    n_denials: int
    timings: dict[str, float]
    drift: pd.DataFrame
    ranked: Ranked | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # engine details (Spark: how the tables were read, groups)


def partition_by_account(ds: Dataset, chunk_size: int) -> Iterator[Dataset]:
    """Sub-datasets of at most `chunk_size` accounts each, every row of an account in the same one."""
    accounts = ds["accounts"]["account_id"].to_numpy(dtype=object)
    order = np.sort(accounts)
    chunk_of_account = pd.Series(np.arange(len(order)) // max(chunk_size, 1), index=order)
    n_chunks = int(chunk_of_account.max()) + 1 if len(order) else 0
    chunk: dict[str, np.ndarray] = {}
    for name in _BY_ACCOUNT:
        if name in ds:
            chunk[name] = ds[name]["account_id"].map(chunk_of_account).to_numpy()
    claim_chunk = pd.Series(chunk["claims"], index=ds["claims"]["claim_id"].to_numpy())
    for name in _BY_CLAIM:
        if name in ds:
            chunk[name] = ds[name]["claim_id"].map(claim_chunk).to_numpy()
    remit_chunk = pd.Series(chunk["remittances"], index=ds["remittances"]["remit_id"].to_numpy())
    for name in _BY_REMIT:
        if name in ds:
            chunk[name] = ds[name]["remit_id"].map(remit_chunk).to_numpy()
    groups = {}
    for name, c in chunk.items():
        c = np.where(pd.isna(c), -1, c).astype(np.int64)
        idx = np.argsort(c, kind="stable")
        bounds = np.searchsorted(c[idx], np.arange(n_chunks + 1))
        groups[name] = (idx, bounds)
    for k in range(n_chunks):
        tables = {"payers": ds["payers"]}
        for name, (idx, bounds) in groups.items():
            tables[name] = ds[name].iloc[idx[bounds[k]:bounds[k + 1]]].reset_index(drop=True)
        yield Dataset(tables, extract_date=ds.extract_date, source=ds.source)


def features_and_scores(model, ds: Dataset, as_of: pd.Timestamp, cfg: dict):
    """The per-chunk work: point-in-time features with the model's stored statistics, then scores."""
    acc = account_features(ds, as_of, stats=model.stats_, with_labels=False)
    den = denial_features(ds, as_of, stats=model.stats_, with_labels=False)
    return acc, score_rows(model, acc, den, cfg)


def run_batch(source, as_of, target: str | None, model, model_version: str, *, ranking_cfg: dict | None = None,
              chunk_size: int = 100_000, reasons_rows: int | None = None, extract_date=None,
              run_id: str | None = None, progress: Callable[[int, int], None] | None = None,
              dataset: Dataset | None = None, keep_result: bool = False) -> BatchResult:
    """Read, validate, featurise, score, rank and (when `target` is given) write one as-of date."""
    from serving.store import failed_run_recorded, record_run

    cfg = ranking_cfg or load_ranking_config()
    run_id = run_id or uuid.uuid4().hex[:16]
    as_of = parse_as_of(as_of)
    timings: dict[str, float] = {}
    started = pd.Timestamp.now(tz="UTC")
    record = {"run_id": run_id, "as_of": as_of.strftime("%Y-%m-%d"), "model_version": model_version,
              "engine": "local", "started_at": started.isoformat(), "status": "running"}

    t0 = time.perf_counter()
    ds = dataset if dataset is not None else read_dataset(source, extract_date=extract_date)  # raises before writing
    timings["read_validate_s"] = time.perf_counter() - t0
    if ds.extract_date is not None and as_of > ds.extract_date:
        raise ValueError(f"as-of date {as_of.date()} is after the data's extract date {ds.extract_date.date()}")
    if target is not None:
        record_run(target, record)

    with failed_run_recorded(target, record):
        ranked, drift, warnings = _score_and_write(ds, as_of, target, model, model_version, cfg, run_id,
                                                   chunk_size, reasons_rows, progress, record, timings)
    log.info("scored %d accounts and %d denials in %.1fs", len(ranked.accounts), len(ranked.denials),
             sum(timings.values()))
    return BatchResult(run_id, as_of, len(ranked.accounts), len(ranked.denials), timings, drift,
                       ranked if keep_result else None, warnings)


def _score_and_write(ds, as_of, target, model, model_version, cfg, run_id, chunk_size, reasons_rows, progress,
                     record, timings: dict[str, float]):
    n_total = len(ds["accounts"])
    feats, scored_acc, scored_den = [], [], []
    t_feat = t_score = 0.0
    done = 0
    for part in partition_by_account(ds, chunk_size):
        t1 = time.perf_counter()
        acc = account_features(part, as_of, stats=model.stats_, with_labels=False)
        den = denial_features(part, as_of, stats=model.stats_, with_labels=False)
        t2 = time.perf_counter()
        scored = score_rows(model, acc, den, cfg)
        t3 = time.perf_counter()
        t_feat += t2 - t1
        t_score += t3 - t2
        feats.append(acc)
        scored_acc.append(scored.accounts)
        scored_den.append(scored.denials)
        done += len(part["accounts"])
        if progress is not None:
            progress(done, n_total)
    timings["features_s"], timings["predict_s"] = t_feat, t_score
    return finish_run(feats, scored_acc, scored_den, as_of, target, model, model_version, cfg, run_id, reasons_rows,
                      record, timings)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate chunk results; a text column that is all-missing in one chunk (object dtype) keeps
    the text dtype of the others, so the result does not depend on how the accounts were cut."""
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    for col in out.columns:
        if out[col].dtype == object:
            text = [f[col].dtype for f in frames if col in f and isinstance(f[col].dtype, pd.StringDtype)]
            if text and pd.api.types.infer_dtype(out[col], skipna=True) in ("string", "empty"):
                out[col] = out[col].astype(text[0])
    return out


def finish_run(feats: list[pd.DataFrame], scored_acc: list[dict], scored_den: list[dict], as_of,
               target, model, model_version, cfg, run_id, reasons_rows, record, timings: dict[str, float]):
    """The driver's part of every engine: global order (capacity, exploration), reasons for the top rows,
    drift, then the safe write and the runs record. `feats`/`scored_*` are the per-chunk (or per-group)
    results of `features_and_scores`, in any order."""
    from serving.store import record_run, write_worklist
    from training.drift import WARN_PSI, drift_report

    t4 = time.perf_counter()
    features = _concat(feats)
    scored = Ranked(concat_rows(scored_acc), concat_rows(scored_den))
    reasons = int(cfg["reasons"]["batch_rows"]) if reasons_rows is None else reasons_rows
    ranked = finalize(model, features, scored, cfg, model_version, run_id, reasons_rows=reasons)
    timings["rank_reasons_s"] = time.perf_counter() - t4
    drift = drift_report(model.drift_reference_, features, {
        "p_payment": ranked.accounts["p_payment"].to_numpy(),
        "expected_recovery": ranked.accounts["expected_recovery"].to_numpy()}) if len(features) else pd.DataFrame(
        columns=["kind", "name", "psi", "warn"])
    warnings = [f"{r.kind} {r.name}: PSI {r.psi:.2f} > {WARN_PSI}" for r in drift.itertuples() if r.warn]
    for w in warnings:
        log.warning("drift: %s", w)
    if target is not None:
        t5 = time.perf_counter()
        write_worklist(target, as_of, ranked.accounts, ranked.denials, drift.assign(run_id=run_id))
        timings["write_s"] = time.perf_counter() - t5
        record.update(status="succeeded", finished_at=pd.Timestamp.now(tz="UTC").isoformat(),
                      n_accounts=int(len(ranked.accounts)), n_denials=int(len(ranked.denials)),
                      timings={k: round(v, 3) for k, v in timings.items()}, drift_warnings=len(warnings))
        record_run(target, record)
    return ranked, drift, warnings
