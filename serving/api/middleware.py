"""The service's ASGI middleware: request ids, clients and scopes (bearer tokens), the body-size limit
(413), one log line and one audit line per request (no PHI), error bodies that name the field and carry
the request id, and the OpenAPI document made truthful.

`serving.api.service` registers it on the BentoML service (`add_asgi_middleware`, BentoML's own way
to add one); BentoML builds it, with its settings, when the app starts. `UnknownPathGuard` goes around
the whole app (`serving.api.service.build_app`): BentoML's metrics label each request by its path, so
every unknown path becomes one path before they see it.

What is logged names the route (`/score`, `/admin/*`, `<other>`), never the path as sent: a path is
the client's text (an encoded newline in it would forge a log line). BentoML's own traceback for a
request it rejects (a 4xx) is dropped, and its message for an internal error names the route.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import traceback
import uuid

from serving.api.audit import AuditLog, RequestInfo
from serving.api.clients import Client, ClientRegistry
from serving.api.openapi import API_ROUTES, DOCS_PAGE, DOCS_PAGE_CSP, truthful_document
from serving.api.settings import ServiceSettings

log = logging.getLogger("recoup.service")

# paths that need no token (GET/HEAD only): health, metrics, the OpenAPI document (and page, when on)
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json"})
DOCS_PATHS = frozenset({"/", "/schema.json"})  # the page, and BentoML's own schema view: off by default
OPEN_PREFIXES = ("/static_content/",)  # the page's files (Swagger UI), with the page
KNOWN_PATHS = OPEN_PATHS | DOCS_PATHS | frozenset(API_ROUTES)
UNKNOWN_PATH = "/_unknown"  # what `UnknownPathGuard` makes of every other path
OTHER_ROUTE = "<other>"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("recoup_request_id", default="-")
request_info_var: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar("recoup_request_info",
                                                                                       default=None)
client_var: contextvars.ContextVar[Client | None] = contextvars.ContextVar("recoup_client", default=None)


def route_of(path: str) -> str:
    """The route a path is logged, audited and labelled by: a known path, a family, or `<other>`."""
    if path in KNOWN_PATHS:
        return path
    if path.startswith(OPEN_PREFIXES):
        return OPEN_PREFIXES[0] + "*"
    if path.startswith("/admin/"):
        return "/admin/*"
    return OTHER_ROUTE


def required_scope(path: str) -> str | None:
    """The scope a client needs for a path (None: any client)."""
    return API_ROUTES.get(path) or ("admin" if path.startswith("/admin/") else None)


def current_client() -> Client | None:
    """The client of the request being handled (None without authentication)."""
    return client_var.get()


def note(model_version: str | None = None, **counts: int) -> None:
    """Add counts (and the model version) to this request's audit line."""
    info = request_info_var.get()
    if info is not None:
        info.note(model_version, **counts)


class UnknownPathGuard:
    """Outermost: a path the service does not serve becomes `UNKNOWN_PATH` before BentoML's metrics label
    the request by it (300 unknown paths made 300 labels on the open /metrics page)."""

    def __init__(self, app, docs: bool = False) -> None:
        self.app = app
        self.docs = docs

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            if path not in KNOWN_PATHS and not (self.docs and path.startswith(OPEN_PREFIXES)):
                scope = {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode()}
        await self.app(scope, receive, send)


class _BentoErrorFilter(logging.Filter):
    """BentoML logs a traceback under the raw path for every request its handler rejects: drop those of
    the client's errors (a 4xx: the request line says it), and name the route, not the path, with the
    frames but not the message (it could carry a value) for the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != "Exception on %s [%s]":
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if _is_client_error(exc):
            return False
        info = request_info_var.get()
        frames = "".join(traceback.format_tb(exc.__traceback__)) if exc is not None else ""
        record.msg = "request %s: %s %s failed in BentoML with %s\n%s"
        record.args = (info.request_id if info else "-", info.method if info else "-",
                       info.endpoint if info else OTHER_ROUTE, type(exc).__name__, frames)
        record.exc_info = None
        record.exc_text = None
        return True


def _is_client_error(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    code = getattr(getattr(exc, "error_code", None), "value", None)  # BentoML's exceptions
    code = code if code is not None else getattr(exc, "status_code", None)  # Starlette's HTTPException
    return isinstance(code, int) and code < 500


_FILTER = _BentoErrorFilter()


def install_log_filter() -> None:
    """Attach the filter to BentoML's request-error logger (once)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


class RecoupMiddleware:
    """Request ids, clients and scopes, the body-size limit (413), request and audit logs (no PHI), error
    bodies that name the field and carry the request id, and the truthful OpenAPI document."""

    def __init__(self, app, settings: ServiceSettings | None = None) -> None:
        self.app = app
        # `recoup serve` hands its settings over; a Bento (`bentoml serve`) reads the environment now
        settings = settings if settings is not None else ServiceSettings.from_env()
        self.clients = ClientRegistry(settings.api_token, settings.clients_file)
        self.max_body = settings.max_body_bytes
        self.docs = settings.docs
        self.bounds = settings.bounds
        self.audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
        self._document: bytes | None = None
        install_log_filter()

    def _is_open(self, method: str, path: str) -> bool:
        if method not in ("GET", "HEAD"):
            return False
        return path in OPEN_PATHS or (self.docs and (path in DOCS_PATHS or path.startswith(OPEN_PREFIXES)))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_headers = scope.get("headers", [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers}
        incoming = headers.get("x-request-id", "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex[:16]
        path, method = scope.get("path", ""), str(scope.get("method", ""))[:16]
        info = RequestInfo(rid, method if method.isalpha() else "?", route_of(path))
        tokens = (request_id_var.set(rid), request_info_var.set(info), client_var.set(None))
        open_path = self._is_open(method, path)
        try:
            await self._handle(scope, receive, send, info, raw_headers, headers, path, method, open_path)
        finally:
            request_id_var.reset(tokens[0])
            request_info_var.reset(tokens[1])
            client_var.reset(tokens[2])
            ms = (time.perf_counter() - started) * 1000
            if not open_path or info.status >= 400:
                log.info("request %s %s %s -> %d in %.1f ms%s", rid, info.method, info.endpoint, info.status, ms,
                         f" client={info.client}" if info.client else "")
            if self.audit is not None and not open_path:
                self.audit.write(info, ms)

    async def _handle(self, scope, receive, send, info: RequestInfo, raw_headers, headers: dict, path: str,
                      method: str, open_path: bool) -> None:
        rid = info.request_id
        if method in ("GET", "HEAD") and not self.docs and (path in DOCS_PATHS or path.startswith(OPEN_PREFIXES)):
            info.status = 404
            await _send_json(send, 404, {"error": "not found (the OpenAPI page is off: RECOUP_DOCS=1 turns it on; "
                                                  "the document is at /docs.json)", "request_id": rid}, rid)
            return
        if not open_path and self.clients.enabled:
            given = sum(1 for k, _ in raw_headers if k.lower() == b"authorization")
            if given > 1:
                info.status = 400
                await _send_json(send, 400, {"error": f"the Authorization header is given {given} times: give it "
                                                      "once", "fields": ["Authorization"], "request_id": rid}, rid)
                return
            client = self.clients.authenticate(_bearer(headers))
            if client is None:
                info.status = 401
                await _send_json(send, 401, {"error": "missing or invalid bearer token (Authorization: Bearer "
                                                      "<token>)", "request_id": rid}, rid,
                                 {"www-authenticate": "Bearer"})
                return
            info.client = client.name
            client_var.set(client)
            scope_needed = required_scope(path)
            if scope_needed is not None and scope_needed not in client.scopes:
                info.status = 403
                await _send_json(send, 403, {"error": f"client {client.name!r} lacks the scope {scope_needed!r} "
                                                      f"that {info.endpoint} needs", "request_id": rid}, rid)
                return
        if method in ("GET", "HEAD") and path == "/docs.json":
            info.status = 200
            await self._send_document(scope, receive, send, rid)
            return
        if method in ("GET", "HEAD") and path == "/" and self.docs:
            info.status = 200
            await _send(send, 200, DOCS_PAGE.encode(), rid, "text/html; charset=utf-8",
                        {"content-security-policy": DOCS_PAGE_CSP})
            return
        if method in ("POST", "PUT", "PATCH"):
            media = headers.get("content-type", "application/json").partition(";")[0].strip().lower()
            if path in API_ROUTES and media != "application/json":
                info.status = 415
                await _send_json(send, 415, {"error": "the body must be JSON (Content-Type: application/json)",
                                             "fields": ["Content-Type"], "request_id": rid}, rid)
                return
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                info.status = 413
                await self._too_large(send, rid, length)
                return
            body, limit = bytearray(), self.max_body
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body += msg.get("body", b"")
                if len(body) > limit:
                    info.status = 413
                    await self._too_large(send, rid, None)
                    return
                if not msg.get("more_body", False):
                    break
            receive = _replay(bytes(body), receive)
        await self.app(scope, receive, _ErrorRewriter(send, rid, info))

    async def _send_document(self, scope, receive, send, rid: str) -> None:
        """BentoML's OpenAPI document, rewritten (`truthful_document`) once per process."""
        if self._document is None:
            chunks: list[bytes] = []
            status = {"code": 500}

            async def collect(message) -> None:
                if message["type"] == "http.response.start":
                    status["code"] = int(message["status"])
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await self.app({**scope, "method": "GET"}, receive, collect)
            if status["code"] != 200:
                await _send_json(send, 500, {"error": f"internal error; quote request id {rid}",
                                             "request_id": rid}, rid)
                return
            spec = json.loads(b"".join(chunks))
            self._document = json.dumps(truthful_document(spec, self.clients.enabled, self.bounds)).encode()
        await _send(send, 200, self._document, rid, "application/json")

    async def _too_large(self, send, rid: str, length) -> None:
        await _send_json(send, 413, {
            "error": f"request body too large: at most {self.max_body:,} bytes (RECOUP_MAX_BODY_BYTES)"
                     + (f", got {int(length):,}" if length and str(length).isdigit() else ""),
            "fields": ["body"], "request_id": rid}, rid)


def _bearer(headers: dict[str, str]) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


async def _send(send, status: int, data: bytes, rid: str, content_type: str, extra: dict | None = None) -> None:
    hdrs = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()),
            (b"x-request-id", rid.encode())]
    hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


async def _send_json(send, status: int, body: dict, rid: str, extra: dict | None = None) -> None:
    await _send(send, status, json.dumps(body).encode(), rid, "application/json", extra)


def _replay(body: bytes, receive):
    sent = False

    async def inner():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return inner


def _loc_path(loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


class _ErrorRewriter:
    """Adds the request id header to every response; rewrites BentoML's validation errors (400 with
    pydantic's `detail`) into a message that names each field by its JSON path (422), malformed
    JSON stays 400; a 5xx body from BentoML keeps no internals and gains the request id."""

    def __init__(self, send, rid: str, info: RequestInfo) -> None:
        self.send, self.rid, self.info = send, rid, info
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            self.info.status = status
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
            headers.append((b"x-request-id", self.rid.encode()))
            message = {**message, "headers": headers}
            if status in (400, 500):  # BentoML's own error bodies: rewrite them
                self.start = message
                return
            await self.send(message)
            return
        if message["type"] == "http.response.body" and self.start is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status, body = self._rewrite(int(self.start["status"]), b"".join(self.chunks))
            self.info.status = status
            headers = [(k, v) for k, v in self.start["headers"] if k.lower() not in (b"content-length",
                                                                                       b"content-type")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await self.send({**self.start, "status": status, "headers": headers})
            await self.send({"type": "http.response.body", "body": body})
            return
        await self.send(message)

    def _rewrite(self, status: int, raw: bytes) -> tuple[int, bytes]:
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {"error": str(data[0].get("error")) if isinstance(data, list) and data and isinstance(
                data[0], dict) else "bad request"}
        if status >= 500:
            out = {"error": f"internal error; quote request id {self.rid}", "request_id": self.rid}
            return status, json.dumps(out).encode()
        detail = data.get("detail")
        if isinstance(detail, list) and detail and all(isinstance(d, dict) and "loc" in d for d in detail):
            items = [(_loc_path(d.get("loc") or ()), str(d.get("msg", "invalid")), d.get("type", "")) for d in detail]
            if any(t == "json_invalid" for _, _, t in items):
                msg = next(m for _, m, t in items if t == "json_invalid")
                out = {"error": f"malformed JSON: {msg}", "fields": ["body"], "request_id": self.rid}
                return 400, json.dumps(out).encode()
            text = "; ".join(f"{p}: {m}" for p, m, _ in items[:5])
            more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
            out = {"error": f"{len(items)} invalid field(s): {text}{more}", "fields": [p for p, _, _ in items],
                   "detail": [{"field": p, "msg": m, "type": t} for p, m, t in items], "request_id": self.rid}
            return 422, json.dumps(out).encode()
        out = {"error": str(data.get("error") or "bad request"), "request_id": self.rid}
        return status, json.dumps(out).encode()
