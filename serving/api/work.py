"""`POST /work`: what collectors did, reported back by work-queue systems, appended to the service's
work store (a dataset folder or a SQLAlchemy URL: `recoup serve --work-store`, RECOUP_WORK_STORE).

The request is validated by its pydantic model only (`serving.api.request.WorkRequest`); then it takes
the path `recoup record-work` takes (`features.contract.work`): references checked where the store
holds accounts and claims, and the contract writer's idempotent append (whole or nothing, one at a
time). Statuses: 200 with the counts; 409 naming the `work_id`s stored with different content (and
nothing written); 422 naming the row and field; 503 when no store is configured or it cannot be
written. Log lines carry counts, timings and the request id, never an id, a collector or an amount.
"""

from __future__ import annotations

import json
import logging
import time
import traceback

import numpy as np
import pandas as pd
from starlette.responses import JSONResponse

from features.contract import (
    TABLES,
    Bounds,
    ContractError,
    KeyConflict,
    append_table,
    coerce_table,
    read_raw,
    unknown_references,
)
from serving.api.clients import Client
from serving.api.middleware import note, request_id_var
from serving.api.request import row_defaults
from serving.api.response import WorkResponse, error_response

log = logging.getLogger("recoup.service")

NO_STORE = ("no work store is configured: start the service with `recoup serve --work-store DATA` (a dataset "
            "folder or a SQLAlchemy URL) or set RECOUP_WORK_STORE")
COLUMNS = list(TABLES["work"].columns)
SHOWN = 5  # problems quoted in an error message (all are in `detail`)


def _fold_repeats(rows: list[dict]) -> tuple[list[dict], list[int], list[tuple[str, str]]]:
    """Each work_id once, every column filled (its contract default when left out): (the rows, the
    request index of each, problems). The same row twice is one row; twice with different content is
    a problem naming both places."""
    defaults = row_defaults("work")
    unique: list[dict] = []
    index: list[int] = []
    first: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    for i, row in enumerate(rows):
        full = {c: row.get(c, defaults.get(c)) for c in COLUMNS}
        j = first.setdefault(full["work_id"], len(unique))
        if j == len(unique):
            unique.append(full)
            index.append(i)
        elif unique[j] != full:
            problems.append((f"work[{i}].work_id", f"given twice with different content (first at work[{index[j]}])"))
    return unique, index, problems


def _message(problems: list[tuple[str, str]]) -> str:
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return f"{len(problems)} problem(s) in the request: " + "; ".join(f"{p}: {m}" for p, m in problems[:SHOWN]) + more


def _facility_problems(store: str, typed: pd.DataFrame, index: list[int], client: Client) -> list[tuple[str, str]]:
    """Rows on accounts that the store files under a facility the client may not send."""
    accounts = read_raw(store, ("accounts",)).get("accounts")
    if accounts is None or "facility_id" not in accounts:
        return [("work", "the work store holds no accounts table to check this client's facilities against")]
    facility = dict(zip(accounts["account_id"].astype(str), accounts["facility_id"].astype(str), strict=True))
    return [(f"work[{index[j]}].account_id", "an account of a facility this client may not send")
            for j, a in enumerate(typed["account_id"]) if not client.allows_facility(facility.get(a, ""))]


def record(store: str, rows: list[dict], bounds: Bounds | None = None,
           client: Client | None = None) -> WorkResponse | JSONResponse:
    """Append the request's rows to the store (blocking I/O and a lock: the service runs it on a thread).
    `bounds`: the accepted dates (default the environment's); `client`: the caller, whose facilities (when
    it is limited to some) the rows' accounts must be of."""
    rid = request_id_var.get()
    started = time.perf_counter()
    unique, index, problems = _fold_repeats(rows)
    if problems:
        return error_response(422, _message(problems), problems)
    try:
        typed, violations = coerce_table("work", pd.DataFrame(unique, columns=COLUMNS), bounds)
        if violations:  # pydantic has checked the types: what is left is the bounds (a date out of range)
            where = {row["work_id"]: i for row, i in zip(unique, index, strict=True)}
            problems = [(f"work[{where[w]}].{v.column}" if w in where else f"work.{v.column}", v.problem)
                        for v in violations for w in (v.ids or [""])]
            return error_response(422, _message(problems), problems)
        checked = time.perf_counter()
        bad = unknown_references(store, typed)
        if bad:
            problems = [(f"work[{index[j]}].{col}", f"references an unknown {target}")
                        for col, target, mask in bad for j in np.flatnonzero(mask)]
            return error_response(422, _message(problems), problems)
        if client is not None and client.facilities is not None:
            problems = _facility_problems(store, typed, index, client)
            if problems:
                return error_response(403, f"client {client.name!r} may not record work on accounts of other "
                                           "facilities: " + _message(problems), problems)
        done = append_table(store, "work", typed)
    except KeyConflict as err:
        where = {row["work_id"]: i for row, i in zip(unique, index, strict=True)}
        problems = [(f"work[{where[w]}].work_id", "already stored with different content") for w in err.ids]
        log.info("request %s: work received=%d conflicts=%d written=0", rid, len(rows), len(err.ids))
        note(conflicts=len(err.ids), written=0)
        shown = ", ".join(err.ids[:SHOWN]) + (f" (and {len(err.ids) - SHOWN} more)" if len(err.ids) > SHOWN else "")
        return error_response(409, f"{len(err.ids)} work_id(s) already stored with different content: {shown}; "
                                   "nothing of this request was written", problems, work_ids=err.ids)
    except ContractError as err:  # the stored work table itself breaks the contract
        log.error("request %s: the work store's table breaks the contract in %d place(s); nothing written", rid,
                  len(err.violations))
        return error_response(503, f"the work store's work table breaks the data contract, so nothing was "
                                   f"written: {err}")
    except (OSError, ValueError) as err:  # the store cannot be read or written (a folder, a database)
        log.error("request %s: the work store failed with %s; nothing written", rid, type(err).__name__)
        return error_response(503, f"the work store could not be written ({type(err).__name__}); nothing was "
                                   f"written; quote request id {rid}")
    except Exception as err:  # noqa: BLE001 - a database driver's error, or a bug: no internals leave
        frames = "".join(traceback.format_tb(err.__traceback__))  # no message: it could carry values
        unavailable = type(err).__module__.split(".")[0] in ("sqlalchemy", "psycopg", "sqlite3")
        log.error("request %s: work failed with %s\n%s", rid, type(err).__name__, "" if unavailable else frames)
        if unavailable:
            return error_response(503, f"the work store could not be written ({type(err).__name__}); nothing was "
                                       f"written; quote request id {rid}")
        return error_response(500, f"internal error; quote request id {rid}")
    now = time.perf_counter()
    timings = {"check_ms": round((checked - started) * 1000, 3), "store_ms": round((now - checked) * 1000, 3)}
    repeats = len(rows) - len(unique)
    note(written=done.written, duplicates=done.duplicates + repeats)
    log.info("request %s: work received=%d written=%d duplicates=%d timings_ms=%s", rid, len(rows), done.written,
             done.duplicates + repeats, json.dumps(timings))
    return WorkResponse(received=len(rows), written=done.written, duplicates=done.duplicates + repeats,
                        request_id=rid)
