"""X12 ingestion bookkeeping: files -> transactions -> rows -> tables, and the data folder they join.

  * every file given (folders: the X12 files inside, by suffix, in a stable order) is read unless its
    sha256 is in the folder's ledger (`_ingested.parquet`): already ingested;
  * each transaction goes to its mapping by ST01 (835, 837, 277 claim acknowledgements, 999); any
    other kind is reported and counted, never silently passed over; a transaction that cannot be read
    is rolled back whole and reported with file and segment number;
  * idempotence is by content: ids are hashes of what the segments say (remit.py, claim.py, acks.py),
    so re-reading a file (or the same interchange re-sent in another file) adds nothing, and files that
    reuse an interchange control number (other senders, wrapped counters) are all read;
  * large interchanges are mapped on several processes (contiguous runs, appended in file order).
Nothing here logs ids or amounts: summaries carry counts only.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.contract import TABLES, DatasetWriter
from features.contract.write import dataset_lock, recover_folder
from features.sources.x12.acks import is_claim_acknowledgement, map_277ca, map_999
from features.sources.x12.claim import map_claims
from features.sources.x12.remit import map_remittance
from features.sources.x12.report import IngestSummary, X12Error
from features.sources.x12.rows import Rows
from features.sources.x12.segments import Interchange, Transaction, iter_transactions, read_interchanges
from features.sources.x12.strict import strict_problems
from features.sources.x12.tables import build_tables

log = logging.getLogger(__name__)

LEDGER = "_ingested"
LEDGER_COLUMNS = ["file_name", "sha256", "interchanges", "ingested_at"]
X12_SUFFIXES = {".835", ".837", ".837i", ".837p", ".277", ".277ca", ".999", ".txt", ".x12", ".edi", ".dat",
                ".era"}
PARALLEL_MIN_BYTES = 8_000_000  # below this, starting a worker costs more than it saves


@contextmanager
def gc_paused() -> Iterator[None]:
    """Millions of small lists (split segments, row tuples) and no reference cycles: the cyclic
    collector would only rescan them over and over (about a third of the parse time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ST01 -> (what the summary calls it, its mapping, the summary's count, what one row it reads is)
MAPPINGS = {
    "835": ("835", map_remittance, "remits", "CLP claim payment"),
    "837": ("837", map_claims, "claims", "CLM claim"),
    "277": ("277CA", map_277ca, "acks", "277CA claim status"),
    "999": ("999", map_999, "acks", "999 transaction set response"),
}


def map_transaction(tx: Transaction, out: Rows, summary: IngestSummary) -> None:
    """Map one transaction into `out`; a failure rolls its rows back and is reported."""
    kind = tx.kind or "?"
    label, mapping, count, what = MAPPINGS.get(kind, (kind, None, "", ""))
    sizes = out.sizes()
    try:
        if not tx.complete:
            raise X12Error(tx.first + tx.nseg - 1, "transaction has no SE trailer (truncated)")
        if mapping is None:
            raise X12Error(tx.first, f"transaction set {kind!r} is not one recoup reads (835, 837, 277CA, 999)")
        if kind == "277" and not is_claim_acknowledgement(tx):
            label = "277"
            raise X12Error(tx.first, "277 that is not a claim acknowledgement (277CA): a claim status "
                                     "response is not read")
        n = mapping(tx, out, summary)
        setattr(summary, count, getattr(summary, count) + n)
        summary.read[what] += n
        summary.transactions_read += 1
        summary.read[f"{label} transaction"] += 1
    except X12Error as err:
        out.truncate(sizes)
        summary.transactions_skipped += 1
        summary.problem(tx.file, err.segment, err.reason, "transaction", f"{label} transaction")
    except (IndexError, ValueError, KeyError, TypeError) as err:  # a malformed segment we did not foresee
        out.truncate(sizes)
        summary.transactions_skipped += 1
        summary.problem(tx.file, tx.first, f"unreadable transaction ({type(err).__name__})", "transaction",
                        f"{label} transaction")


def map_run(jobs: list[Transaction]) -> tuple[Rows, IngestSummary]:
    """Worker side of the parallel path: map a contiguous run of transactions."""
    with gc_paused():
        out, summary = Rows(), IngestSummary()
        for job in jobs:
            map_transaction(job, out, summary)
        return out, summary


def worker_count(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    env = os.environ.get("RECOUP_X12_WORKERS")
    if env and env.strip().isdigit():
        return max(1, int(env))
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _map_parallel(jobs: list[Transaction], workers: int, out: Rows, summary: IngestSummary) -> None:
    """Map transactions on `workers` processes: contiguous runs of about equal size, this process
    taking the first; results are appended in file order, so the output does not depend on it."""
    total = sum(len(j.text) for j in jobs)
    runs: list[list[Transaction]] = [[]]
    size = 0
    for j in jobs:
        if size >= total * len(runs) / workers and len(runs) < workers:
            runs.append([])
        runs[-1].append(j)
        size += len(j.text)
    ctx = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=len(runs) - 1, mp_context=ctx) as pool:
        futures = [pool.submit(map_run, run) for run in runs[1:]]
        for job in runs[0]:
            map_transaction(job, out, summary)
        for fut in futures:
            rows, part = fut.result()
            out.extend(rows)
            summary.merge_counts(part)


def _map_interchange(ic: Interchange, file: str, out: Rows, summary: IngestSummary, workers: int) -> None:
    jobs = iter_transactions(ic, file, summary)
    if workers > 1 and len(ic.text) >= PARALLEL_MIN_BYTES:
        jobs = list(jobs)
        if len(jobs) > 1:
            _map_parallel(jobs, min(workers, len(jobs)), out, summary)
            return
    for job in jobs:
        map_transaction(job, out, summary)


def iter_x12_files(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files given, and the X12 files (by suffix) inside folders given, in a stable order."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in X12_SUFFIXES:
                    yield f
        else:
            yield p


@dataclass
class ParsedFile:
    name: str
    sha256: str
    interchanges: list[str]  # "sender:ISA13"


def parse_files(
    paths: Iterable[str | os.PathLike],
    skip: set[str] | None = None,
    skip_interchanges: set[str] | None = None,
    summary: IngestSummary | None = None,
    workers: int | None = 1,
) -> tuple[Rows, list[ParsedFile], IngestSummary]:
    """Read X12 files into row lists (pure: no writes). Files whose sha256 is in `skip` are counted
    as already ingested. Large interchanges are mapped on `workers` processes (None: one per core)."""
    summary = summary or IngestSummary()
    workers = worker_count(workers)
    out = Rows()
    parsed: list[ParsedFile] = []
    skip = set() if skip is None else skip
    skip_interchanges = set() if skip_interchanges is None else skip_interchanges
    for path in iter_x12_files(paths):
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            summary.files_skipped += 1
            summary.problem(name, None, f"cannot read the file ({err.strerror})", "file", "file")
            continue
        sha = hashlib.sha256(data).hexdigest()
        if sha in skip:
            summary.files_already_ingested += 1
            continue

        def report(seg: int | None, reason: str, what: str, name: str = name) -> None:
            summary.problem(name, seg, reason, "interchange" if what == "interchange" else "segment", what)

        before_problems = len(summary.problems) + sum(summary.not_listed.values())
        try:
            ics = read_interchanges(data, summary.notes, report)
        except X12Error as err:
            summary.files_skipped += 1
            summary.problem(name, err.segment, err.reason, "file", "file")
            continue
        del data
        ids = [ic.key for ic in ics if ic.key]
        if any(i in skip_interchanges for i in ids):
            # control numbers repeat across senders' files and roll over: read the file, and let the
            # content-based keys drop what was already ingested
            summary.notes["interchange control number seen before (rows deduplicated by content)"] += 1
        before = summary.transactions_read
        while ics:
            _map_interchange(ics.pop(0), name, out, summary, workers)  # (each interchange freed when done)
        if summary.transactions_read == before:
            summary.files_skipped += 1
            if len(summary.problems) + sum(summary.not_listed.values()) == before_problems:
                summary.problem(name, None, "no 835, 837, 277CA or 999 transaction in the file", "file", "file")
            continue
        summary.files_read += 1
        skip.add(sha)
        skip_interchanges.update(ids)
        parsed.append(ParsedFile(name, sha, ids))
    return out, parsed, summary


def read_existing(folder: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name in list(TABLES) + [LEDGER]:
        p = folder / f"{name}.parquet"
        if p.exists():
            out[name] = pd.read_parquet(p)
    return out


def write_ingested(folder: Path, tables: dict[str, pd.DataFrame], ledger: pd.DataFrame) -> None:
    """Write the ingested tables and the ledger together, through the contract's one atomic folder
    writer (other files the folder holds are carried over)."""
    with DatasetWriter(folder, keep_existing=True) as writer:
        for name, df in {**tables, LEDGER: ledger}.items():
            writer.write(name, df)


def ingest(
    paths: Iterable[str | os.PathLike],
    out: str | os.PathLike | None = None,
    strict: bool = False,
    workers: int | None = None,
    lock_timeout: float | None = None,
) -> tuple[dict[str, pd.DataFrame], IngestSummary]:
    """Read X12 files; with `out`, append the contract tables there (idempotent, all or nothing).

    Returns the (merged) tables and the summary. Never raises for a bad file: it is reported. One
    ingestion at a time per folder: the folder's lock is held from reading what it holds to the switch
    of the new version (waiting `lock_timeout` seconds for another writer; None: as long as it takes)."""
    if out is None:
        return _ingest(paths, None, strict, workers)
    with dataset_lock(out, lock_timeout):
        if Path(out).resolve().parent.exists():
            recover_folder(Path(out).resolve())  # before reading what the folder holds
        return _ingest(paths, Path(out), strict, workers)


def _ingest(paths: Iterable[str | os.PathLike], folder: Path | None, strict: bool,
            workers: int | None) -> tuple[dict[str, pd.DataFrame], IngestSummary]:
    summary = IngestSummary()
    existing = read_existing(folder) if folder is not None and folder.exists() else {}
    ledger = existing.pop(LEDGER, None)
    seen_sha: set[str] = set()
    seen_ic: set[str] = set()
    if ledger is not None and len(ledger):
        seen_sha = set(ledger["sha256"])
        for ids in ledger["interchanges"].dropna():
            seen_ic.update(i for i in str(ids).split(" ") if i)
    paths = list(paths)
    if strict:
        for p in iter_x12_files(paths):
            for seg, reason in strict_problems(p):
                summary.problem(str(p), seg, reason, "note")
    with gc_paused():
        rows, parsed, summary = parse_files(paths, seen_sha, seen_ic, summary, workers)
        before = {n: len(df) for n, df in existing.items()}
        tables = build_tables(rows, existing, summary)
        del rows
    summary.rows_added = {n: len(df) - before.get(n, 0) for n, df in tables.items()
                          if len(df) - before.get(n, 0)}
    if folder is not None and (parsed or not folder.exists()):
        led = pd.DataFrame({
            "file_name": [Path(p.name).name for p in parsed],
            "sha256": [p.sha256 for p in parsed],
            "interchanges": [" ".join(p.interchanges) for p in parsed],
            "ingested_at": pd.Timestamp.now(tz="UTC").tz_localize(None),
        }, columns=LEDGER_COLUMNS)
        if ledger is not None:
            led = pd.concat([ledger, led], ignore_index=True)
        write_ingested(folder, tables, led)
    log.info("x12 ingestion: %d files read, %d skipped, %d transactions read, %d skipped",
             summary.files_read, summary.files_skipped, summary.transactions_read,
             summary.transactions_skipped)
    return tables, summary
