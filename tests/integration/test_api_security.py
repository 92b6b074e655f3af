"""The service as a hospital's security review would try it, through `recoup serve` in a subprocess:
clients with scopes and facilities, the audit log, bounds on what a request holds (4xx, never a 500),
the open surface (logs, metrics, docs), reload errors, no PHI in logs, metrics or the audit log after
requests over marked data (authenticated or not), and a bounded schemathesis run against the OpenAPI
document the service publishes (0 server errors, 0 schema mismatches).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pandas as pd
import pytest

from serving.api.clients import write_client
from tests.paths import REPO
from tests.servers import recoup_serve, service_env

pytestmark = pytest.mark.slow

LEGACY = "legacy-admin-token"
AS_OF = pd.Timestamp("2025-06-01")
MARK = "PHI7Q"  # every marked identifier carries it
MARKED_AMOUNT = 98765.43  # and this amount is marked too


@pytest.fixture(scope="module")
def served(benv, tmp_path_factory):
    """`recoup serve` on a copy of the batch fixture's registry and data (a copy: the tests move the alias
    and write work rows), with a clients file, an audit log and the legacy token."""
    tmp = tmp_path_factory.mktemp("security")
    shutil.copy(benv.root / "mlflow.db", tmp / "mlflow.db")
    shutil.copytree(benv.data, tmp / "data", ignore=shutil.ignore_patterns("_truth"))
    clients = tmp / "clients.json"
    facility = benv.dataset["accounts"]["facility_id"].iloc[0]
    tokens = {"scorer": write_client(clients, "scorer", ["score"]),
              "writer": write_client(clients, "writer", ["work:write"]),
              "clinic": write_client(clients, "clinic", ["score", "work:write"], [facility])}
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = service_env(RECOUP_API_TOKEN=LEGACY, MLFLOW_TRACKING_URI=uri, RECOUP_ARTIFACT_ROOT=str(benv.artifact_root))
    log_path = tmp / "serve.log"
    with recoup_serve(["--work-store", str(tmp / "data"), "--clients-file", str(clients), "--audit-log",
                       str(tmp / "audit.jsonl")], env, log_path) as (base, _proc):
        yield {"base": base, "tmp": tmp, "tokens": tokens, "clients": clients, "log": log_path, "uri": uri,
               "audit": tmp / "audit.jsonl", "facility": facility, "benv": benv}


def _auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _post(s, path: str, body, token: str | None = LEGACY, **kw) -> httpx.Response:
    headers = _auth(token) if token else {}
    return httpx.post(s["base"] + path, json=body, headers=headers, timeout=60, **kw)


def _open_ids(s, n: int, facility: str | None = None) -> list[str]:
    from features.snapshot import account_features

    benv = s["benv"]
    acc = account_features(benv.dataset, AS_OF, stats=benv.model.stats_, with_labels=False)
    ids = sorted(acc["account_id"])
    if facility is not None:
        accounts = benv.dataset["accounts"].set_index("account_id")["facility_id"]
        ids = [a for a in ids if (accounts[a] == facility)]
    return ids[:n]


def _body(s, ids) -> dict:
    from serving.api.request import history_from_dataset

    return history_from_dataset(s["benv"].dataset, ids, AS_OF)


def _marked(body: dict) -> dict:
    """The body with its ids replaced by marked ones and its charges by a marked amount."""
    out = copy.deepcopy(body)
    for i, h in enumerate(out["accounts"]):
        old = h["account"]["account_id"]
        new = f"ACCT-{MARK}-{i}"
        h["account"].update(account_id=new, patient_id=f"PAT-{MARK}-{i}", guarantor_id=f"GUAR-{MARK}-{i}",
                            total_charges=MARKED_AMOUNT)
        for name in ("claims", "transactions", "activities", "work"):
            for r in h.get(name, []):
                if r["account_id"] == old:
                    r["account_id"] = new
    return out


# ----------------------------------------------------------------------------- clients and scopes


def test_scopes_facilities_and_the_legacy_token(served):
    s = served
    other = next(f for f in s["benv"].dataset["accounts"]["facility_id"].unique() if f != s["facility"])
    mine, theirs = _open_ids(s, 2, s["facility"]), _open_ids(s, 1, other)
    assert _post(s, "/score", _body(s, mine), s["tokens"]["scorer"]).status_code == 200
    assert _post(s, "/score", _body(s, mine), s["tokens"]["clinic"]).status_code == 200
    r = _post(s, "/score", _body(s, mine + theirs), s["tokens"]["clinic"])
    assert r.status_code == 403 and r.json()["fields"] == ["accounts[2].account.facility_id"]
    assert other not in r.text  # the facility itself is not quoted
    assert _post(s, "/score", _body(s, mine), s["tokens"]["writer"]).status_code == 403
    assert _post(s, "/admin/reload", {}, s["tokens"]["scorer"]).status_code == 403
    assert _post(s, "/admin/reload", {}, LEGACY).status_code == 200  # RECOUP_API_TOKEN: every scope
    work = [{"work_id": f"W-{MARK}-sec-0", "account_id": theirs[0], "worked_date": "2025-05-30", "action": "statement",
             "minutes": 2.0, "propensity": 1.0, "is_exploration": 0}]
    r = _post(s, "/work", {"work": work}, s["tokens"]["clinic"])
    assert r.status_code == 403 and r.json()["fields"] == ["work[0].account_id"]
    assert _post(s, "/work", {"work": work}, s["tokens"]["writer"]).status_code == 200
    two = [("Authorization", f"Bearer {s['tokens']['scorer']}"), ("Authorization", f"Bearer {LEGACY}")]
    r = httpx.post(s["base"] + "/admin/reload", json={}, headers=two, timeout=30)
    assert r.status_code == 400  # not last-wins


def test_a_rotated_token_works_at_once_and_the_old_one_stops(served):
    s = served
    body = _body(s, _open_ids(s, 1))
    old = write_client(s["clients"], "rotating", ["score"])
    assert _post(s, "/score", body, old).status_code == 200
    new = write_client(s["clients"], "rotating", ["score"])
    assert _post(s, "/score", body, old).status_code == 401
    assert _post(s, "/score", body, new).status_code == 200


def _audit_line(path, rid: str, seconds: float = 10.0) -> dict:
    """The audit line of request `rid`: it is written once the response has gone out, so a client that
    reads the file at once may be ahead of it."""
    deadline = time.monotonic() + seconds
    while True:
        found = [a for a in map(json.loads, path.read_text().splitlines()) if a["request_id"] == rid]
        if found or time.monotonic() > deadline:
            assert found, f"no audit line for request {rid} after {seconds} s"
            return found[0]
        time.sleep(0.05)


def test_the_audit_log_says_who_called_what_and_holds_no_ids(served):
    s = served
    body = _body(s, _open_ids(s, 3))
    r = _post(s, "/worklist", body, s["tokens"]["scorer"])
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    mine = _audit_line(s["audit"], rid)
    assert (mine["client"], mine["endpoint"], mine["status"], mine["accounts"]) == ("scorer", "/worklist", 200, 3)
    assert mine["scored"] >= 1 and mine["model_version"].startswith("recoup/")
    text = s["audit"].read_text()
    for h in body["accounts"]:
        assert h["account"]["account_id"] not in text and h["account"]["patient_id"] not in text


# ----------------------------------------------------------------------------- bounds: 4xx, never 500


@pytest.mark.parametrize("edit,field", [
    (("transactions", "posted_date", "9999-12-31"), "accounts[0].transactions[0].posted_date"),
    (("transactions", "posted_date", "3025-01-02"), "accounts[0].transactions[0].posted_date"),
    (("transactions", "posted_date", "1850-01-02"), "accounts[0].transactions[0].posted_date"),
    (("account", "service_date", "0001-01-01"), "accounts[0].account.service_date"),
    (("transactions", "amount", 1e300), "accounts[0].transactions[0].amount"),
    (("transactions", "amount", "Infinity"), "accounts[0].transactions[0].amount"),
    (("account", "patient_age", 10**30), "accounts[0].account.patient_age"),
    (("account", "service_date", 0), "accounts[0].account.service_date"),  # a number is no date
])
def test_values_out_of_bounds_are_a_422_naming_the_field(served, edit, field):
    s = served
    ids = [a for a in _open_ids(s, 20) if (s["benv"].dataset["transactions"]["account_id"] == a).any()][:1]
    body = _body(s, ids)
    table, col, value = edit
    row = body["accounts"][0]["account"] if table == "account" else body["accounts"][0][table][0]
    row[col] = value
    data = json.dumps(body).replace('"Infinity"', "Infinity").encode()  # JSON has no inf: Python's encoder writes it
    r = httpx.post(s["base"] + "/score", content=data, headers={**_auth(LEGACY), "content-type": "application/json"},
                   timeout=60)
    assert r.status_code in (400, 422), r.text
    assert r.status_code == 400 or field in r.json()["fields"], r.text
    r = httpx.post(s["base"] + "/score", json={**body, "as_of": "9999-12-31"}, headers=_auth(LEGACY), timeout=60)
    assert r.status_code == 422 and "as_of" in r.json()["fields"]


def test_a_work_date_out_of_bounds_is_a_422(served):
    s = served
    row = {"work_id": "W-bounds", "account_id": _open_ids(s, 1)[0], "worked_date": "2150-01-01",
           "action": "statement", "minutes": 2.0, "propensity": 1.0, "is_exploration": 0}
    r = _post(s, "/work", {"work": [row]})
    assert r.status_code == 422 and r.json()["fields"] == ["work[0].worked_date"], r.text


# ----------------------------------------------------------------------------- the open surface


def test_unknown_paths_share_one_metrics_label_and_forge_no_log_line(served):
    s = served
    for i in range(40):
        httpx.get(f"{s['base']}/probe-{MARK}-{i}", timeout=10)
    httpx.get(s["base"] + "/x%0A2026-12-08 01:00:00,000 ERROR recoup.service: forged", timeout=10)
    metrics = httpx.get(s["base"] + "/metrics", timeout=10).text
    assert "probe-" not in metrics and 'endpoint="/_unknown"' in metrics
    assert "forged" not in s["log"].read_text()
    assert httpx.get(s["base"] + "/", timeout=10).status_code == 404  # the docs page is off by default


def test_a_failed_reload_says_what_failed_without_the_tracking_uri(served):
    import mlflow

    s = served
    client = mlflow.MlflowClient(s["uri"], registry_uri=s["uri"])  # not the process-wide registry
    version = client.get_model_version_by_alias("recoup", "champion").version
    client.delete_registered_model_alias("recoup", "champion")
    try:
        r = _post(s, "/admin/reload", {})
    finally:
        client.set_registered_model_alias("recoup", "champion", version)
    assert r.status_code == 503, r.text
    assert "alias 'champion'" in r.json()["error"] and "still serving" in r.json()["error"]
    for secret in (s["uri"], str(s["tmp"]), "sqlite"):
        assert secret not in r.text
    log = s["log"].read_text()
    assert s["uri"] not in log and str(s["tmp"] / "mlflow.db") not in log


def test_the_openapi_document_tells_the_truth(served):
    doc = httpx.get(served["base"] + "/docs.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                              "description": doc["components"]["securitySchemes"][
                                                                  "bearer"]["description"]}
    for path in ("/score", "/worklist", "/work", "/admin/reload"):
        op = doc["paths"][path]["post"]
        assert op["security"] == [{"bearer": []}]
        assert {"400", "401", "403", "413", "415", "422", "500"} <= set(op["responses"]), path
        assert path == "/admin/reload" or op["requestBody"]["required"] is True
    assert {"409", "503"} <= set(doc["paths"]["/work"]["post"]["responses"])
    assert doc["paths"]["/livez"]["get"]["security"] == []
    assert "http" not in json.dumps(doc["info"])  # no third-party badge


# ----------------------------------------------------------------------------- no PHI anywhere


def test_no_phi_in_logs_metrics_or_audit_after_requests_over_marked_data(served):
    s = served
    marked = _marked(_body(s, _open_ids(s, 2)))
    assert _post(s, "/score", marked).status_code == 200
    assert _post(s, "/worklist", marked, s["tokens"]["scorer"]).status_code == 200
    assert _post(s, "/score", marked, None).status_code == 401  # unauthenticated
    assert _post(s, "/score", marked, "not-a-token").status_code == 401
    bad = copy.deepcopy(marked)
    bad["accounts"][0]["account"]["patient_age"] = "forty"
    assert _post(s, "/score", bad).status_code == 422
    work = [{"work_id": f"W-{MARK}-1", "account_id": f"ACCT-{MARK}-0", "worked_date": "2025-05-30",
             "action": "statement", "minutes": 2.0, "propensity": 1.0, "is_exploration": 0,
             "collector": f"COLL-{MARK}"}]
    assert _post(s, "/work", {"work": work}).status_code == 422  # an unknown account
    assert _post(s, "/work", {"work": work}, None).status_code == 401
    httpx.get(f"{s['base']}/{MARK}/account/ACCT-{MARK}-0", timeout=10)
    surfaces = {"log": s["log"].read_text(), "audit": s["audit"].read_text(),
                "metrics": httpx.get(s["base"] + "/metrics", timeout=10).text}
    for name, text in surfaces.items():
        assert MARK not in text, name
        assert f"{MARKED_AMOUNT}" not in text and "98,765" not in text, name
    assert "accounts=2" in surfaces["log"]  # the log does say what happened, in counts


# ----------------------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(served):
    """A bounded run (a few dozen examples per operation) of every schemathesis check but
    positive_data_acceptance, which `tests/integration/schemathesis_hooks.py` replaces with one that
    allows only the refusals JSON Schema cannot state (cross-row references)."""
    s = served
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or "st"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.integration.schemathesis_hooks",
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([st, "run", f"{s['base']}/docs.json", "-H", f"Authorization: Bearer {LEGACY}",
                          "--max-examples", "25", "--workers", "1", "--seed", "1515",
                          "--exclude-checks", "positive_data_acceptance", "--no-color"],
                         cwd=s["tmp"], env=env, capture_output=True, text=True, timeout=240)  # its cache there
    report = out.stdout[-4000:] + out.stderr[-2000:]
    assert out.returncode == 0, report
    assert "No issues found" in out.stdout, report
    assert "Traceback" not in s["log"].read_text()
