"""Recording what collectors did: rows of the contract's `work` table, reported back by work-queue
systems (`recoup record-work`, and the service's `POST /work` after its pydantic validation).

The rules, the same for both ways in:
- rows are checked against the contract (`coerce_table`, the pandera schema) and `propensity` must be
  in (0, 1]: it is the probability that the policy which chose the work chose it;
- a reference to an account or claim is checked where the store holds that table (a store may hold
  the `work` table alone);
- idempotent by `work_id`: a row stored with the same content adds nothing (a duplicate), and so does
  the same row repeated in one input; a `work_id` stored (or repeated) with different content is an
  error, and then nothing of the input is written;
- the append is whole or nothing and serialized (`features.contract.write.append_table`).
Nothing here logs ids or amounts: counts only.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract.read import read_known_values
from features.contract.tables import TABLES, ContractError
from features.contract.validate import _violation, coerce_table, table_violations
from features.contract.write import append_table

TABLE = "work"
ROW_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".ndjson": "json",
                ".json": "json"}


@dataclass(frozen=True)
class WorkSummary:
    received: int  # rows given
    written: int  # rows added to the store
    duplicates: int  # rows already stored (or repeated in the input) with the same content

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def text(self) -> str:
        return f"received {self.received:,}, written {self.written:,}, duplicates {self.duplicates:,}"


def read_work_rows(path: str | os.PathLike) -> pd.DataFrame:
    """Work rows from a CSV (read as text: `coerce_table` types it), Parquet or JSON-lines file (one
    object a line; a JSON array of objects, or the API's `{"work": [...]}` body, is read too)."""
    path = Path(path)
    kind = ROW_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unknown kind of file (use {', '.join(sorted(ROW_SUFFIXES))})")
    if kind == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    if kind == "parquet":
        return pd.read_parquet(path)
    text = path.read_text(encoding="utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("[") or (stripped.startswith("{") and _is_one_document(stripped)):
        doc = json.loads(stripped)
        rows = doc.get(TABLE) if isinstance(doc, dict) else doc
        if not isinstance(rows, list):
            raise ValueError(f"{path}: expected JSON lines, a JSON array of rows or {{\"work\": [...]}}")
        return _frame(rows, path, None)
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}: line {n} is not JSON ({err.msg})") from None
    return _frame(rows, path, 1)


def _is_one_document(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _frame(rows: list, path: Path, first_line: int | None) -> pd.DataFrame:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            where = f"line {first_line + i}" if first_line is not None else f"row {i}"
            raise ValueError(f"{path}: {where} is not a JSON object")
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(TABLES[TABLE].columns))


def check_work(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows typed and checked against the contract, each `work_id` once: (rows, how many identical
    repeats were folded). Raises `ContractError` naming table, column, rows and count."""
    typed, problems = coerce_table(TABLE, rows)
    if problems:
        raise ContractError(problems)
    repeats = typed.duplicated(keep="first").to_numpy()  # the same row twice: one row (idempotence)
    typed = typed.loc[~repeats].reset_index(drop=True)
    violations = table_violations(TABLE, typed)  # a work_id repeated with different content is a duplicate key
    p = typed["propensity"]
    outside = ((p <= 0) | (p > 1)).to_numpy()
    if outside.any():
        violations.append(_violation(TABLE, typed, "propensity", "must be in (0, 1]: the probability that the "
                                                                   "policy chose this work", outside))
    if violations:
        raise ContractError(violations)
    return typed, int(repeats.sum())


def unknown_references(store: str | os.PathLike, typed: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(column, "table.column" it references, mask of rows whose value the store does not hold), for
    each reference of `work` whose table the store holds."""
    out = []
    for ref in TABLES[TABLE].references:
        values = typed[ref.column]
        present = values.notna().to_numpy()
        if not present.any():
            continue
        known = read_known_values(store, ref.table, ref.target, values[present].tolist())
        if known is None:  # the store does not hold that table: nothing to check against
            continue
        mask = present & ~values.isin(known).to_numpy()
        if mask.any():
            out.append((ref.column, f"{ref.table}.{ref.target}", mask))
    return out


def store_work(store: str | os.PathLike, typed: pd.DataFrame, received: int | None = None,
               repeats: int = 0) -> WorkSummary:
    """Append checked rows (`check_work`'s, or the API's) to the store: references first, then the
    idempotent append. Raises `ContractError` for unknown references, `KeyConflict` for a `work_id`
    stored with different content (nothing written either way)."""
    bad = unknown_references(store, typed)
    if bad:
        raise ContractError([_violation(TABLE, typed, col, f"references an unknown {target}", mask)
                             for col, target, mask in bad])
    done = append_table(store, TABLE, typed)
    return WorkSummary(len(typed) + repeats if received is None else received, done.written,
                       done.duplicates + repeats)


def record_work(store: str | os.PathLike, rows: pd.DataFrame) -> WorkSummary:
    """`recoup record-work`: check the rows against the contract and append them to the store (a dataset
    folder or a SQLAlchemy URL), idempotently, whole or nothing."""
    typed, repeats = check_work(rows)
    return store_work(store, typed, received=len(rows), repeats=repeats)
