"""API clients: the clients file, token hashing and rotation (`serving.api.clients`), the middleware's
authentication and scopes, the route templates and the docs page, around a bare ASGI app."""

from __future__ import annotations

import json
import os

import pytest

from serving.api.clients import ClientRegistry, ClientsFileError, hash_token, parse_clients, write_client


def test_a_client_token_is_stored_only_as_its_hash(tmp_path):
    path = tmp_path / "clients.json"
    token = write_client(path, "queue", ["score", "work:write"], ["F01"])
    text = path.read_text()
    assert token not in text and hash_token(token) in text
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    client = ClientRegistry(None, path).authenticate(token)
    assert client.name == "queue" and client.scopes == {"score", "work:write"} and client.facilities == {"F01"}
    assert ClientRegistry(None, path).authenticate(token + "x") is None


def test_rotation_and_revocation_are_seen_without_a_restart(tmp_path):
    path = tmp_path / "clients.json"
    old = write_client(path, "queue", ["score"])
    registry = ClientRegistry("legacy-token", path)
    assert registry.authenticate(old).name == "queue"
    new = write_client(path, "queue", ["score"])  # rotation: the same client, a new token
    assert registry.authenticate(old) is None and registry.authenticate(new).name == "queue"
    assert registry.authenticate("legacy-token").name == "default"  # RECOUP_API_TOKEN: every scope
    assert registry.authenticate("legacy-token").scopes == {"score", "work:write", "admin"}
    path.write_text(json.dumps({"clients": []}))  # revocation
    assert registry.authenticate(new) is None
    path.write_text("{not json")  # a broken file keeps the clients last read, and says why in the log
    assert registry.authenticate(new) is None
    again = write_client(tmp_path / "other.json", "queue", ["score"])
    (tmp_path / "other.json").replace(path)
    assert registry.authenticate(again).name == "queue"
    path.write_text("{not json")
    assert registry.authenticate(again).name == "queue"  # kept: a half-written file is no revocation
    path.unlink()  # deleting the file revokes its clients
    assert registry.authenticate(again) is None and registry.authenticate("legacy-token").name == "default"


@pytest.mark.parametrize("entry,problem", [
    ({"name": "a b", "token_sha256": "0" * 64, "scopes": ["score"]}, "clients[0].name"),
    ({"name": "a", "token_sha256": "abc", "scopes": ["score"]}, "clients[0].token_sha256"),
    ({"name": "a", "token_sha256": "0" * 64, "scopes": ["root"]}, "clients[0].scopes"),
    ({"name": "a", "token_sha256": "0" * 64, "scopes": ["score"], "facilities": []}, "clients[0].facilities"),
])
def test_a_broken_clients_file_is_named(entry, problem):
    with pytest.raises(ClientsFileError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parse_clients(json.dumps({"clients": [entry]}), "clients.json")


def test_the_cli_prints_the_token_once_and_refuses_unknown_scopes(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "c.json"
    out = subprocess.run([sys.executable, "-m", "recoup_cli", "client-token", "ops", "--scopes", "admin",
                          "--clients-file", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert ClientRegistry(None, path).authenticate(token).scopes == {"admin"}
    bad = subprocess.run([sys.executable, "-m", "recoup_cli", "client-token", "ops", "--scopes", "root",
                          "--clients-file", str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown scope(s) root" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------- the middleware, around a bare app


async def _echo(scope, receive, send) -> None:
    from starlette.responses import PlainTextResponse

    if scope["type"] == "http":
        await PlainTextResponse(f"ok {scope['path']}")(scope, receive, send)


def _client(tmp_path, **settings):
    from starlette.testclient import TestClient

    from serving.api.middleware import RecoupMiddleware
    from serving.api.settings import ServiceSettings

    return TestClient(RecoupMiddleware(_echo, ServiceSettings(**settings)))


def test_scopes_and_a_single_authorization_header(tmp_path):
    path = tmp_path / "clients.json"
    scorer = write_client(path, "scorer", ["score"])
    writer = write_client(path, "writer", ["work:write"])
    c = _client(tmp_path, api_token="legacy", clients_file=path, audit_log=tmp_path / "audit.jsonl")
    bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    assert c.post("/score", json={}, headers=bearer(scorer)).status_code == 200
    assert c.post("/worklist", json={}, headers=bearer(scorer)).status_code == 200
    r = c.post("/work", json={}, headers=bearer(scorer))
    assert r.status_code == 403 and "lacks the scope 'work:write'" in r.json()["error"]
    assert c.post("/work", json={}, headers=bearer(writer)).status_code == 200
    for path_ in ("/admin/reload", "/admin/anything"):
        assert c.post(path_, json={}, headers=bearer(writer)).status_code == 403
        assert c.post(path_, json={}, headers=bearer("legacy")).status_code == 200
    two = [("authorization", f"Bearer {scorer}"), ("authorization", "Bearer legacy")]
    r = c.post("/score", json={}, headers=two)
    assert r.status_code == 400 and "given 2 times" in r.json()["error"]
    r = c.post("/score", content=b"a=1", headers={**bearer(scorer), "content-type": "text/plain"})
    assert r.status_code == 415
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(a["client"], a["endpoint"], a["status"]) for a in audit[:3]] == [
        ("scorer", "/score", 200), ("scorer", "/worklist", 200), ("scorer", "/work", 403)]
    assert {"ts", "request_id", "method", "ms"} <= set(audit[0]) and audit[-2]["client"] is None  # the 400
    assert scorer not in (tmp_path / "audit.jsonl").read_text()


def test_logs_name_the_route_not_the_path(tmp_path, caplog):
    c = _client(tmp_path, api_token="t")
    with caplog.at_level("INFO", logger="recoup.service"):
        assert c.get("/x%0A2026-12-08 01:00:00 ERROR forged line").status_code == 401
        assert c.post("/admin/x%0Ay", json={}, headers={"Authorization": "Bearer t"}).status_code == 200
    messages = [r.getMessage() for r in caplog.records]
    assert all("forged" not in m and "\n" not in m for m in messages), messages
    text = "\n".join(messages)
    assert "GET <other> -> 401" in text and "POST /admin/* -> 200" in text


def test_unknown_paths_share_one_path_before_the_metrics_see_them(tmp_path):
    from starlette.testclient import TestClient

    from serving.api.middleware import UNKNOWN_PATH, UnknownPathGuard

    seen = []

    async def app(scope, receive, send):
        seen.append(scope["path"])
        await _echo(scope, receive, send)

    c = TestClient(UnknownPathGuard(app))
    for p in ("/score", "/metrics", "/nope", "/a/b%0Ac", "/static_content/x.js"):
        c.get(p)
    assert seen == ["/score", "/metrics", UNKNOWN_PATH, UNKNOWN_PATH, UNKNOWN_PATH]


def test_the_docs_page_is_off_by_default_and_self_contained_when_on(tmp_path):
    from serving.api.openapi import DOCS_PAGE

    off = _client(tmp_path, api_token="t")
    for p in ("/", "/static_content/swagger-ui-bundle.js", "/schema.json"):
        assert off.get(p).status_code == 404
    on = _client(tmp_path, api_token="t", docs=True)
    r = on.get("/")
    assert r.status_code == 200 and r.text == DOCS_PAGE
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "http" not in DOCS_PAGE.replace("http-equiv", "")  # no third-party origin: only the service's files
    assert on.get("/static_content/swagger-ui.css").text == "ok /static_content/swagger-ui.css"
