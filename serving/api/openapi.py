"""The OpenAPI document the service publishes (`/docs.json`), made to tell the truth: BentoML's own says
neither that a bearer token is needed, nor which errors each endpoint answers, nor that the request body
is required, and its description loads third-party badges. `truthful_document` rewrites it (once per
process; the middleware serves the result), and `DOCS_PAGE` is a self-contained page for it (the Swagger
UI files BentoML ships, served by the service itself: no third-party script, tag manager or image).
"""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from features.contract import TABLES, Bounds
from serving.api.clients import SCOPES
from serving.api.request import row_class_name

# route -> the scope a client needs for it (the middleware's authorization table)
API_ROUTES = {"/score": "score", "/worklist": "score", "/work": "work:write", "/admin/reload": "admin"}

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Error",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong and where (never a submitted value)"},
        "request_id": {"type": "string", "description": "quote it to the operator"},
        "fields": {"type": "array", "items": {"type": "string"}, "description": "JSON paths of the fields at fault"},
        "detail": {"type": "array", "items": {"type": "object", "required": ["field", "msg"], "properties": {
            "field": {"type": "string"}, "msg": {"type": "string"}, "type": {"type": "string"}}}},
        "work_ids": {"type": "array", "items": {"type": "string"},
                     "description": "409: the work_ids already stored with other content"},
    },
}

_COMMON = {
    "400": "Malformed JSON, or the Authorization header given more than once.",
    "401": "No bearer token, or one that no client has (`WWW-Authenticate: Bearer`).",
    "403": "The client lacks the endpoint's scope, or sends an account of a facility it is not allowed.",
    "415": "The body is not JSON (Content-Type other than application/json).",
    "413": "The body is over RECOUP_MAX_BODY_BYTES, or it holds more than RECOUP_MAX_ACCOUNTS accounts or rows.",
    "422": "A field is missing, of the wrong type or outside the accepted values (dates within RECOUP_MIN_DATE "
           "… RECOUP_MAX_DATE, amounts finite and at most RECOUP_MAX_AMOUNT), or a reference inside the request "
           "is broken: `fields` names each by its JSON path.",
    "500": "An internal error: the body carries the request id to quote, and no internals.",
}
_EXTRA = {
    "/work": {"409": "A work_id is already stored with different content; nothing of the request was written.",
              "503": "No work store is configured, or it cannot be written now; nothing was written."},
    "/admin/reload": {"503": "The registry could not give the model; the old model keeps serving."},
}

DESCRIPTION = """Collections prioritization for healthcare accounts receivable.

Every endpoint but the health checks, `/metrics` and this document needs `Authorization: Bearer <token>`,
once. A client's token carries scopes: `score` for `/score` and `/worklist`, `work:write` for `/work`,
`admin` for `/admin/*`; a client may be limited to some facilities. Errors are JSON bodies that name the
fields at fault by their JSON path and carry the request id."""


def year_pattern(first: dt.date, last: dt.date) -> str:
    """A regex of the ISO dates of the years `first.year` … `last.year` (whole centuries as `19\\d\\d`)."""
    parts: list[str] = []
    year = first.year
    while year <= last.year:
        century = year // 100
        if year % 100 == 0 and last.year >= century * 100 + 99:
            parts.append(f"{century:02d}\\d\\d")
            year += 100
        else:
            parts.append(f"{year:04d}")
            year += 1
    return rf"^({'|'.join(parts)})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


def _openapi30(node: Any) -> Any:
    """Pydantic's JSON Schema in OpenAPI 3.0's dialect (the document says 3.0): `anyOf [X, null]` is X with
    `nullable`, a numeric `exclusiveMinimum` is a `minimum` with the flag, a property that defaults to null
    is nullable (BentoML leaves the null out of `capacity_minutes`)."""
    if isinstance(node, list):
        return [_openapi30(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30(v) for k, v in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [o for o in options if o != {"type": "null"}]
        node.pop("anyOf")
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    if "default" in node and node["default"] is None and "type" in node:
        node["nullable"] = True
    return node


def _bound_request_values(schema: dict, table: str | None, bounds: Bounds, pattern: str) -> None:
    """Dates of a request schema to the accepted years, and (for a contract table's row) amounts to the ceiling."""
    for col, prop in schema.get("properties", {}).items():
        if prop.get("format") == "date":
            prop["pattern"] = pattern
        c = TABLES[table].columns.get(col) if table else None
        if c is not None and c.type in ("money", "signed_money"):
            prop["maximum"] = bounds.max_amount
            if c.type == "signed_money":
                prop["minimum"] = -bounds.max_amount


def truthful_document(spec: dict, auth: bool, bounds: Bounds | None = None) -> dict:
    """BentoML's OpenAPI document with the bearer scheme (when `auth`), every status code each endpoint
    answers, required request bodies, the accepted dates and amounts (`bounds`), and a description of
    our own, in OpenAPI 3.0's dialect."""
    bounds = bounds if bounds is not None else Bounds()
    doc = _openapi30(copy.deepcopy(spec))
    pattern = year_pattern(bounds.min_date, bounds.max_date)
    rows = {row_class_name(t): t for t in TABLES}
    for name, schema in doc.get("components", {}).get("schemas", {}).items():
        if name in rows:
            _bound_request_values(schema, rows[name], bounds, pattern)
    doc["info"] = {"title": "recoup", "version": str(spec.get("info", {}).get("version") or "1"),
                   "description": DESCRIPTION}
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    if auth:
        components["securitySchemes"] = {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": f"A client's token (scopes: {', '.join(SCOPES)}), or RECOUP_API_TOKEN."}}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, item in doc.get("paths", {}).items():
        for op in item.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if path not in API_ROUTES:
                op["security"] = []  # open: health, metrics
                if path == "/metrics":
                    op["responses"]["200"] = {"description": "Prometheus metrics",
                                              "content": {"text/plain": {"schema": {"type": "string"}}}}
                continue
            if auth:
                op["security"] = [{"bearer": []}]
                op["description"] = (op.get("description") or "").rstrip() + (
                    f"\n\nScope: `{API_ROUTES[path]}`.")
            if path == "/admin/reload":
                op.pop("requestBody", None)  # it reads none
            if "requestBody" in op:
                op["requestBody"]["required"] = True
                for media in op["requestBody"].get("content", {}).values():
                    _bound_request_values(media.get("schema", {}), None, bounds, pattern)
            responses = op["responses"]
            responses.pop("404", None)  # a known route is never a 404
            statuses = {**_COMMON, **_EXTRA.get(path, {})}
            if not auth:
                statuses = {k: v for k, v in statuses.items() if k not in ("401", "403")}
            for code, text in statuses.items():
                responses[code] = {"description": text, "content": error}
    return doc


DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>recoup API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({url: "./docs.json", dom_id: "#swagger-ui", validatorUrl: null,
                                     presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
                                     layout: "StandaloneLayout"});
      };
    </script>
  </body>
</html>
"""

# the page loads only the service's own files (and its inline start-up script): no third-party origin
DOCS_PAGE_CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                 "img-src 'self' data:; connect-src 'self'")
