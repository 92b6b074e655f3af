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

from features.contract import TABLES, ContractError, KeyConflict, append_table, coerce_table, unknown_references
from serving.api.middleware import request_id_var
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


def record(store: str, rows: list[dict]) -> WorkResponse | JSONResponse:
    """Append the request's rows to the store (blocking I/O and a lock: the service runs it on a thread)."""
    rid = request_id_var.get()
    started = time.perf_counter()
    unique, index, problems = _fold_repeats(rows)
    if problems:
        return error_response(422, _message(problems), problems)
    try:
        typed, violations = coerce_table("work", pd.DataFrame(unique, columns=COLUMNS))
        if violations:  # pydantic has checked every value: this would be a gap between the two
            return error_response(422, "; ".join(str(v) for v in violations[:SHOWN]))
        checked = time.perf_counter()
        bad = unknown_references(store, typed)
        if bad:
            problems = [(f"work[{index[j]}].{col}", f"references an unknown {target}")
                        for col, target, mask in bad for j in np.flatnonzero(mask)]
            return error_response(422, _message(problems), problems)
        done = append_table(store, "work", typed)
    except KeyConflict as err:
        where = {row["work_id"]: i for row, i in zip(unique, index, strict=True)}
        problems = [(f"work[{where[w]}].work_id", "already stored with different content") for w in err.ids]
        log.info("request %s: work received=%d conflicts=%d written=0", rid, len(rows), len(err.ids))
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
    log.info("request %s: work received=%d written=%d duplicates=%d timings_ms=%s", rid, len(rows), done.written,
             done.duplicates + repeats, json.dumps(timings))
    return WorkResponse(received=len(rows), written=done.written, duplicates=done.duplicates + repeats,
                        request_id=rid)
