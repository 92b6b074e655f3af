"""The service's ASGI middleware: request ids, bearer-token auth, the body-size limit (413), one log
line per request (no PHI), and error bodies that name the field and carry the request id.

`serving.api.service` registers it on the BentoML service (`add_asgi_middleware`, BentoML's own way
to add one); BentoML builds it, with its settings, when the app starts.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import time
import uuid

from serving.api.settings import ServiceSettings

log = logging.getLogger("recoup.service")

# paths that need no token (GET/HEAD only): health, metrics, the OpenAPI page
OPEN_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/", "/docs.json", "/schema.json"})
OPEN_PREFIXES = ("/static_content/",)
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("recoup_request_id", default="-")


class RecoupMiddleware:
    """Request ids, bearer-token auth, the body-size limit (413), request logs (no PHI), and error
    bodies that name the field and carry the request id."""

    def __init__(self, app, settings: ServiceSettings | None = None) -> None:
        self.app = app
        # `recoup serve` hands its settings over; a Bento (`bentoml serve`) reads the environment now
        settings = settings if settings is not None else ServiceSettings.from_env()
        self.token_bytes = settings.api_token.encode() if settings.api_token else None
        self.max_body = settings.max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        rid = incoming if _REQUEST_ID_OK.match(incoming) else uuid.uuid4().hex[:16]
        token = request_id_var.set(rid)
        path, method = scope.get("path", ""), scope.get("method", "")
        status_box = {"status": 0}
        try:
            open_path = method in ("GET", "HEAD") and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))
            if not open_path and self.token_bytes is not None and not self._authorized(headers):
                await self._send_json(send, 401, {"error": "missing or invalid bearer token "
                                                           "(Authorization: Bearer <RECOUP_API_TOKEN>)",
                                                  "request_id": rid}, rid, {"www-authenticate": "Bearer"})
                status_box["status"] = 401
                return
            if method in ("POST", "PUT", "PATCH"):
                length = headers.get("content-length")
                if length is not None and (not length.isdigit() or int(length) > self.max_body):
                    await self._too_large(send, rid, length)
                    status_box["status"] = 413
                    return
                body, limit = bytearray(), self.max_body
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        return
                    body += msg.get("body", b"")
                    if len(body) > limit:
                        await self._too_large(send, rid, None)
                        status_box["status"] = 413
                        return
                    if not msg.get("more_body", False):
                        break
                receive = _replay(bytes(body), receive)
            await self.app(scope, receive, _ErrorRewriter(send, rid, status_box, path))
        finally:
            request_id_var.reset(token)
            if path not in OPEN_PATHS or status_box["status"] >= 400:
                log.info("request %s %s %s -> %d in %.1f ms", rid, method, path, status_box["status"],
                         (time.perf_counter() - started) * 1000)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not value:
            return False
        return hmac.compare_digest(value.strip().encode(), self.token_bytes)

    async def _too_large(self, send, rid: str, length) -> None:
        await self._send_json(send, 413, {
            "error": f"request body too large: at most {self.max_body:,} bytes (RECOUP_MAX_BODY_BYTES)"
                     + (f", got {int(length):,}" if length and str(length).isdigit() else ""),
            "fields": ["body"], "request_id": rid}, rid)

    @staticmethod
    async def _send_json(send, status: int, body: dict, rid: str, extra: dict | None = None) -> None:
        data = json.dumps(body).encode()
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                (b"x-request-id", rid.encode())]
        hdrs += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": data})


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

    def __init__(self, send, rid: str, status_box: dict, path: str) -> None:
        self.send, self.rid, self.status_box, self.path = send, rid, status_box, path
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            status = int(message["status"])
            self.status_box["status"] = status
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
            self.status_box["status"] = status
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
