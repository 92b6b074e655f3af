"""One nightly batch run, whatever the engine: its `RunContext` (the inputs, resolved once at the edge,
and what the run measured), the per-chunk work both engines run (`features_and_scores`), and the
driver's finish (global order, reasons, drift, the safe write and the runs record).

The local engine (`serving.batch.local`) works through whole accounts in chunks; the Spark engine
(`serving.batch.spark`) runs the same per-chunk function per group of whole accounts.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from features.contract import Dataset, read_dataset
from features.dates import parse_as_of
from features.snapshot import snapshot_features
from serving.ranking import Columns, Ranked, concat_rows, finalize, load_ranking_config, score_rows

log = logging.getLogger("serving.batch")

# tables that hang off an account, and the key that leads to it
# the work log and the claim acknowledgements are history too (the features read them): a chunk that
# left them out would score without them, unlike training and the API
BY_ACCOUNT = ("accounts", "claims", "transactions", "activities", "work")
BY_CLAIM = ("claim_lines", "remittances", "appeals", "claim_acks")
BY_REMIT = ("adjustments", "remit_lines")
ACCOUNT_TABLES = BY_ACCOUNT + BY_CLAIM + BY_REMIT  # every table whose rows belong to one account

Progress = Callable[[int, int], None]  # (accounts done, accounts in all)


@dataclass(frozen=True)
class ChunkResult:
    """What one chunk (local) or group of accounts (Spark) gives back to the driver."""

    features: pd.DataFrame  # the account feature rows (drift and reasons need them)
    accounts: Columns  # the scored account rows
    denials: Columns  # the scored denial rows
    features_s: float
    predict_s: float


def features_and_scores(model, ds: Dataset, as_of: pd.Timestamp, cfg: dict) -> ChunkResult:
    """The per-chunk work: point-in-time features with the model's stored statistics (one preparation
    of the chunk for both account and denial rows), then the row-wise scores."""
    t0 = time.perf_counter()
    acc, den = snapshot_features(ds, as_of, stats=model.stats_, with_labels=False)
    t1 = time.perf_counter()
    scored = score_rows(model, acc, den, cfg)
    return ChunkResult(acc, scored.accounts, scored.denials, t1 - t0, time.perf_counter() - t1)


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


@dataclass(frozen=True)
class Finished:
    """The driver's part done: the ranked lists, the drift report and its warnings."""

    ranked: Ranked
    drift: pd.DataFrame
    warnings: list[str]


@dataclass
class RunContext:
    """One batch run: what it was asked (resolved once, at the edge: the as-of date parsed, the ranking
    configuration loaded, the run id and the number of rows to explain decided) and the seconds each
    step took. Both engines take it whole; `timings` is written only by `timed`/`add_time`."""

    source: str | Path | None  # a folder or a SQL URL (None when the dataset is given in memory)
    as_of: pd.Timestamp
    target: str | None  # where the worklist goes (None: not written)
    model: Any  # a fitted RecoupModel
    model_version: str  # the label every row carries, "<registered name>/<version>"
    ranking: dict  # the ranking configuration
    engine: str  # "local" or "spark"
    run_id: str
    reasons_rows: int  # rows explained (TreeSHAP reasons), from the top
    reasons_minutes: float | None = None  # ... of those, only the rows within this many minutes of work
    extract_date: str | pd.Timestamp | None = None  # the dataset's, when not its latest date
    chunk_size: int = 100_000  # accounts per chunk (local engine)
    progress: Progress | None = None
    keep_result: bool = False  # keep the ranked lists on the result (tests, the demo)
    lock_timeout: float | None = 0.0  # seconds to wait for another run of the same target and date (None: forever)
    started_at: pd.Timestamp = field(default_factory=lambda: pd.Timestamp.now(tz="UTC"))
    timings: dict[str, float] = field(default_factory=dict)
    _store: Any = field(default=None, repr=False)  # the run's writer (serving.batch.store), inside `recorded`

    @classmethod
    def create(cls, source, as_of, target: str | None, model, model_version: str, *, engine: str,
               ranking_cfg: dict | None = None, reasons_rows: int | None = None, run_id: str | None = None,
               **options: Any) -> RunContext:
        """The context of a new run; `options` are the remaining fields (extract_date, chunk_size, ...)."""
        cfg = ranking_cfg or load_ranking_config()
        return cls(source=source, as_of=parse_as_of(as_of), target=target, model=model,
                   model_version=model_version, ranking=cfg, engine=engine, run_id=run_id or uuid.uuid4().hex[:16],
                   reasons_rows=int(cfg["reasons"]["batch_rows"]) if reasons_rows is None else reasons_rows,
                   **{"reasons_minutes": cfg["reasons"].get("batch_minutes"), **options})

    # -- timings

    def add_time(self, name: str, seconds: float) -> None:
        self.timings[name] = self.timings.get(name, 0.0) + seconds

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(name, time.perf_counter() - t0)

    # -- the steps every engine takes

    def read(self, dataset: Dataset | None = None) -> Dataset:
        """The dataset, read and validated (a broken one raises here, before anything is written)."""
        with self.timed("read_validate_s"):
            ds = dataset if dataset is not None else read_dataset(self.source, extract_date=self.extract_date)
        if ds.extract_date is not None and self.as_of > ds.extract_date:
            raise ValueError(f"as-of date {self.as_of.date()} is after the data's extract date "
                             f"{ds.extract_date.date()}")
        return ds

    def run_record(self, status: str, **outcome: Any) -> dict:
        """This run's row of the runs record, as it stands."""
        record = {"run_id": self.run_id, "as_of": self.as_of.strftime("%Y-%m-%d"), "model_version": self.model_version,
                  "engine": self.engine, "started_at": self.started_at.isoformat(), "status": status}
        if status != "running":
            record["finished_at"] = pd.Timestamp.now(tz="UTC").isoformat()
        return {**record, **outcome}

    @contextlib.contextmanager
    def recorded(self) -> Iterator[None]:
        """The body runs holding the lock of (target, as-of date), waiting `lock_timeout` for another run
        (else `LockTimeout`); the run is `running` in the runs record while the body runs, and `failed`
        if it raises (the original error still propagates); `finish` publishes and records success."""
        from serving.batch.store import open_run

        if self.target is None:
            yield
            return
        with open_run(self.target, self.as_of, self.run_id, self.lock_timeout) as store:
            store.record(self.run_record("running"))
            self._store = store
            try:
                yield
            except BaseException:
                try:
                    store.record(self.run_record("failed"))
                except Exception:  # noqa: BLE001 - the original error is the one to report
                    log.exception("could not record the failed run")
                raise
            finally:
                self._store = None

    def finish(self, chunks: list[ChunkResult]) -> Finished:
        """The driver's part of every engine: global order (capacity, exploration), reasons for the top
        rows, drift, then the safe write and the runs record. `chunks` come in any order."""
        from training.drift import WARN_PSI, drift_report

        with self.timed("rank_reasons_s"):
            features = _concat([c.features for c in chunks])
            scored = Ranked(concat_rows([c.accounts for c in chunks]), concat_rows([c.denials for c in chunks]))
            ranked = finalize(self.model, features, scored, self.ranking, self.model_version, self.run_id,
                              reasons_rows=self.reasons_rows, reasons_minutes=self.reasons_minutes)
        drift = drift_report(self.model.drift_reference_, features, {
            "p_payment": ranked.accounts["p_payment"].to_numpy(),
            "expected_recovery": ranked.accounts["expected_recovery"].to_numpy()}) if len(features) else pd.DataFrame(
            columns=["kind", "name", "psi", "warn"])
        warnings = [f"{r.kind} {r.name}: PSI {r.psi:.2f} > {WARN_PSI}" for r in drift.itertuples() if r.warn]
        for w in warnings:
            log.warning("drift: %s", w)
        if self.target is not None:
            if self._store is None:
                raise RuntimeError("a run with a target finishes inside `recorded()` (it holds the run's lock)")
            t0 = time.perf_counter()

            def succeeded() -> dict:  # called once the lists are written, just before they switch in
                timings = {**self.timings, "write_s": time.perf_counter() - t0}
                return self.run_record("succeeded", n_accounts=int(len(ranked.accounts)),
                                       n_denials=int(len(ranked.denials)), drift_warnings=len(warnings),
                                       timings={k: round(v, 3) for k, v in timings.items()})

            self._store.publish(ranked.accounts, ranked.denials, drift.assign(run_id=self.run_id), succeeded)
            self.add_time("write_s", time.perf_counter() - t0)
        return Finished(ranked, drift, warnings)

    def result(self, done: Finished, info: dict | None = None) -> BatchResult:
        ranked = done.ranked
        return BatchResult(self.run_id, self.as_of, len(ranked.accounts), len(ranked.denials), dict(self.timings),
                           done.drift, ranked if self.keep_result else None, done.warnings, info or {})


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
