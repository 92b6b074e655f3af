"""The nightly batch's local engine: score every open account and open denial at an as-of date and
write the ranked worklist safely, working through whole accounts in chunks (all of an account's rows
together) so memory stays bounded. `serving.batch.spark` runs the same per-chunk work on Spark."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from features.contract import Dataset, person_of_accounts
from serving.batch.run import (
    BY_ACCOUNT,
    BY_CLAIM,
    BY_REMIT,
    BatchResult,
    ChunkResult,
    Progress,
    RunContext,
    features_and_scores,
)

log = logging.getLogger("serving.batch")


def partition_by_account(ds: Dataset, chunk_size: int) -> Iterator[Dataset]:
    """Sub-datasets of about `chunk_size` accounts each, every row of an account and every account of a
    guarantor in the same one (the guarantor features look across a person's accounts); a chunk closes
    after the person that fills it, so a chunk may run over by one person's accounts."""
    acc = ds["accounts"]
    person = pd.factorize(person_of_accounts(acc), sort=True)[0] if len(acc) else np.zeros(0, np.int64)
    order = np.lexsort((acc["account_id"].to_numpy(dtype=object), person))
    first_of_person = np.r_[True, person[order][1:] != person[order][:-1]] if len(order) else np.zeros(0, bool)
    starts = np.flatnonzero(first_of_person)
    person_chunk = starts // max(chunk_size, 1)  # the chunk a person's first account falls in
    chunk = np.repeat(person_chunk, np.diff(np.r_[starts, len(order)]))
    chunk_of_account = pd.Series(chunk, index=acc["account_id"].to_numpy(dtype=object)[order])
    n_chunks = int(chunk.max()) + 1 if len(order) else 0
    chunk: dict[str, np.ndarray] = {}
    for name in BY_ACCOUNT:
        if name in ds:
            chunk[name] = ds[name]["account_id"].map(chunk_of_account).to_numpy()
    claim_chunk = pd.Series(chunk["claims"], index=ds["claims"]["claim_id"].to_numpy())
    for name in BY_CLAIM:
        if name in ds:
            chunk[name] = ds[name]["claim_id"].map(claim_chunk).to_numpy()
    remit_chunk = pd.Series(chunk["remittances"], index=ds["remittances"]["remit_id"].to_numpy())
    for name in BY_REMIT:
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


def run_batch(source, as_of, target: str | None, model, model_version: str, *, ranking_cfg: dict | None = None,
              chunk_size: int = 100_000, reasons_rows: int | None = None, extract_date=None,
              run_id: str | None = None, progress: Progress | None = None,
              dataset: Dataset | None = None, keep_result: bool = False,
              lock_timeout: float | None = 0.0) -> BatchResult:
    """Read, validate, featurise, score, rank and (when `target` is given) write one as-of date, one run
    at a time per target and date (another run's lock is waited for `lock_timeout` seconds)."""
    ctx = RunContext.create(source, as_of, target, model, model_version, engine="local", ranking_cfg=ranking_cfg,
                            reasons_rows=reasons_rows, run_id=run_id, extract_date=extract_date,
                            chunk_size=chunk_size, progress=progress, keep_result=keep_result,
                            lock_timeout=lock_timeout)
    return run_local(ctx, dataset)


def run_local(ctx: RunContext, dataset: Dataset | None = None) -> BatchResult:
    """The run `ctx` describes, on the local engine (`dataset`: the data already in memory)."""
    ds = ctx.read(dataset)
    with ctx.recorded():
        done = ctx.finish(score_in_chunks(ctx, ds))
    log.info("scored %d accounts and %d denials in %.1fs", len(done.ranked.accounts), len(done.ranked.denials),
             sum(ctx.timings.values()))
    return ctx.result(done)


def score_in_chunks(ctx: RunContext, ds: Dataset) -> list[ChunkResult]:
    """`features_and_scores` over chunks of whole accounts, reporting progress after each."""
    n_total = len(ds["accounts"])
    chunks, done = [], 0
    for part in partition_by_account(ds, ctx.chunk_size):
        chunks.append(features_and_scores(ctx.model, part, ctx.as_of, ctx.ranking))
        done += len(part["accounts"])
        if ctx.progress is not None:
            ctx.progress(done, n_total)
    ctx.add_time("features_s", sum(c.features_s for c in chunks))
    ctx.add_time("predict_s", sum(c.predict_s for c in chunks))
    return chunks
