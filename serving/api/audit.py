"""The audit log: one JSON line per request to the API (not per health check or metrics scrape), in
the file the operator names (RECOUP_AUDIT_LOG, `recoup serve --audit-log`): when, which client, which
endpoint (the route, never the raw path), the request id, the status, the milliseconds, the counts
(accounts, scored, rows received, written, duplicates) and the model version. Never an identifier, a
name, a date of service or an amount: the audit log holds no PHI.

Lines are appended (the file is opened per line, so an operator's log rotation needs no signal).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("recoup.service")

# the counts a handler may note (`RequestInfo.counts`): integers only
COUNT_KEYS = frozenset({"accounts", "scored", "received", "written", "duplicates", "conflicts"})


@dataclass
class RequestInfo:
    """What the audit line of one request says; the middleware makes it, the handlers add to it."""

    request_id: str
    method: str
    endpoint: str  # the route template
    client: str | None = None
    status: int = 0
    model_version: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def note(self, model_version: str | None = None, **counts: int) -> None:
        unknown = set(counts) - COUNT_KEYS
        if unknown:  # a guard: nothing but these counts may reach the audit log
            raise ValueError(f"not an audit count: {', '.join(sorted(unknown))}")
        self.counts.update({k: int(v) for k, v in counts.items()})
        if model_version is not None:
            self.model_version = model_version


class AuditLog:
    """Appends one JSON line per request to a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._failed = False

    def write(self, info: RequestInfo, ms: float) -> None:
        record = {"ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "request_id": info.request_id,
                  "client": info.client, "method": info.method, "endpoint": info.endpoint, "status": info.status,
                  "ms": round(ms, 1), **info.counts}
        if info.model_version is not None:
            record["model_version"] = info.model_version
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._failed = False
        except OSError as err:
            if not self._failed:  # once per outage, not once per request
                log.error("the audit log %s cannot be written (%s)", self.path, type(err).__name__)
            self._failed = True
