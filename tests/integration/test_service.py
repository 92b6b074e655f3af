"""The BentoML scoring service: through the real ASGI app (auth, bad input, limits, health, reload,
parity with the nightly batch, a hypothesis fuzz), plus `recoup serve` in a subprocess and
`bentoml build`.

One small model is simulated, trained and registered (twice: versions 1 and 2) per module.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.paths import REPO
from tests.servers import recoup_serve

pytestmark = pytest.mark.slow

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
AS_OF = pd.Timestamp("2025-06-01")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Simulated data, a small model registered twice in a temp SQLite MLflow store, service env."""
    tmp = tmp_path_factory.mktemp("service")
    saved = dict(os.environ)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ.update(RECOUP_ARTIFACT_ROOT=str(tmp / "artifacts"), MLFLOW_TRACKING_URI=uri,
                      RECOUP_API_TOKEN=TOKEN, RECOUP_MODEL_ALIAS="champion")
    for k in ("RECOUP_NO_AUTH", "RECOUP_MODEL_VERSION", "RECOUP_MAX_ACCOUNTS", "RECOUP_MAX_BODY_BYTES"):
        os.environ.pop(k, None)
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.tracking import log_training_run
    from training.train import data_fingerprint, synthetic_input_example, train_model

    simulate_to_folder(tmp / "data", 1500, 11, "2024-01-01", "2025-06-30")
    ds = read_dataset(tmp / "data")
    cfg = load_settings(overrides={"payment_model": {"n_estimators": 60}, "amount_model": {"n_estimators": 60},
                                 "overturn_model": {"n_estimators": 40}, "snapshots": {"max_as_of_dates": 9}})
    model, _ = train_model(ds, cfg)
    reg1 = log_training_run(model, cfg, data_fingerprint(ds), [], synthetic_input_example(model), uri)
    reg2 = log_training_run(model, cfg, data_fingerprint(ds), [], synthetic_input_example(model), uri)
    assert (reg1.alias, reg2.alias) == ("champion", "challenger")
    yield {"tmp": tmp, "uri": uri, "ds": ds, "model": model, "cfg": cfg, "versions": (reg1.version, reg2.version)}
    os.environ.clear()
    os.environ.update(saved)


def _settings(env, **changes):
    from serving.api.settings import ServiceSettings

    return ServiceSettings(api_token=TOKEN, tracking_uri=env["uri"], **changes)


@pytest.fixture(scope="module")
def client(env):
    """The service in this process (one BentoML app per process: see test_body_limit_gives_413), with the
    simulated dataset's folder as its work store, so `/work` checks references against its accounts."""
    from starlette.testclient import TestClient

    from serving.api.service import build_app

    with TestClient(build_app(_settings(env, work_store=str(env["tmp"] / "data"))),
                    raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def open_ids(env):
    from features.snapshot import account_features

    acc = account_features(env["ds"], AS_OF, stats=env["model"].stats_, with_labels=False)
    return sorted(acc["account_id"])


def _body(env, ids) -> dict:
    from serving.api.request import history_from_dataset

    return history_from_dataset(env["ds"], ids, AS_OF)


def _set_alias(env, version: str) -> None:
    import mlflow

    mlflow.MlflowClient(env["uri"]).set_registered_model_alias("recoup", "champion", version)


# ----------------------------------------------------------------------------- unit pieces


def test_encoder_matches_a_plain_categorical_encoding(env):
    """The bundle's encoder (a dict lookup per value, on the per-request path) gives the matrix a plain
    pandas Categorical encoding with the stored vocabularies gives, unseen categories as NaN."""
    from features.snapshot import account_features, denial_features

    model = env["model"]
    acc = account_features(env["ds"], [AS_OF, pd.Timestamp("2025-03-01")], stats=model.stats_, with_labels=False)
    den = denial_features(env["ds"], AS_OF, stats=model.stats_, with_labels=False)
    acc.loc[acc.index[:3], model.account_encoder_.categorical[0]] = "never-seen-category"
    for enc, df in ((model.account_encoder_, acc), (model.denial_encoder_, den)):
        expected = np.empty((len(df), len(enc.columns)))
        for j, col in enumerate(enc.columns):
            if col in enc.vocab_:
                codes = pd.Categorical(df[col].astype(object), categories=enc.vocab_[col]).codes.astype(float)
                expected[:, j] = np.where(codes < 0, np.nan, codes)
            else:
                expected[:, j] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        np.testing.assert_array_equal(enc.transform(df), expected)


def test_request_tables_hold_the_values_coerce_table_gives(env, open_ids):
    """The API's NumPy tables hold what the batch's reader gives (`coerce_table`), in the
    ColumnTable types: text as object, dates as datetime64[ns], numbers as float64 with NaN."""
    from features.contract import ColumnTable, coerce_table
    from serving.api.request import ScoreRequest, build_dataset

    body = _body(env, open_ids[:3])
    ds = build_dataset(ScoreRequest.model_validate_json(json.dumps(body)))  # JSON, as the service validates
    assert sum(len(t) for t in ds.tables.values()) > 10
    for name, table in ds.tables.items():
        assert isinstance(table, ColumnTable)
        rows = [h["account"] for h in body["accounts"]] if name == "accounts" else [
            r for h in body["accounts"] for r in h[name]]
        if name == "payers":
            rows = list({r["payer_id"]: r for r in rows}.values())
        ref, problems = coerce_table(name, pd.DataFrame(rows, columns=list(table.columns)))
        assert not problems
        for col, values in table.columns.items():
            expected = ref[col]
            if expected.dtype.kind == "M":
                assert values.dtype == np.dtype("datetime64[ns]"), (name, col)
                np.testing.assert_array_equal(values, expected.to_numpy(dtype="datetime64[ns]"))
            elif expected.dtype.kind in "fiu":
                assert values.dtype == np.float64, (name, col)
                np.testing.assert_array_equal(values, expected.to_numpy(dtype=np.float64, na_value=np.nan))
            else:
                assert values.dtype == object, (name, col)
                assert [None if pd.isna(v) else v for v in values] == [
                    None if pd.isna(v) else v for v in expected.to_numpy(dtype=object)], (name, col)


# ----------------------------------------------------------------------------- endpoints


def test_score_answers_every_account_with_finite_numbers(env, client, open_ids):
    closed = sorted(set(env["ds"]["accounts"]["account_id"]) - set(open_ids))[:2]
    ids = open_ids[:4] + closed
    r = client.post("/score", json=_body(env, ids), headers=AUTH)
    assert r.status_code == 200, r.text
    data = r.json()
    assert r.headers["x-request-id"] == data["request_id"]
    res = data["results"]
    assert [x["account_id"] for x in res] == ids  # request order
    for x in res[:4]:
        assert x["status"] == "scored" and x["model_version"] == f"recoup/{env['versions'][0]}"
        assert 0 <= x["p_payment"] <= 1 and x["expected_recovery"] >= 0
        assert x["next_action"] and isinstance(x["reasons"], list) and x["rank"] >= 1
        assert set(x["deadlines"]) == {"appeal", "timely_filing"}
    assert any(x["reasons"] for x in res[:4])
    assert sorted(x["rank"] for x in res[:4]) == [1, 2, 3, 4]
    for x in res[4:]:
        assert x["status"] == "not_open" and x["p_payment"] is None
    assert "NaN" not in r.text and "Infinity" not in r.text


def test_worklist_is_ranked_and_cut_by_capacity(env, client, open_ids):
    body = _body(env, open_ids[:12])
    full = client.post("/worklist", json=body, headers=AUTH).json()["results"]
    scored = [x for x in full if x["status"] == "scored"]
    assert [x["rank"] for x in scored] == list(range(1, len(scored) + 1))
    cut = client.post("/worklist", json={**body, "capacity_minutes": 10}, headers=AUTH).json()["results"]
    kept = [x for x in cut if x["status"] == "scored"]
    assert sum(x["action_minutes"] for x in kept) <= 10
    assert len(cut) == 12 and {x["status"] for x in cut} <= {"scored", "over_capacity", "not_open"}


def test_auth(env, client, open_ids):
    body = _body(env, open_ids[:1])
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": "Bearer"}):
        for path in ("/score", "/worklist", "/admin/reload"):
            r = client.post(path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers)
            assert "bearer" in r.json()["error"].lower() and r.headers["www-authenticate"] == "Bearer"
    assert client.post("/score", json=body, headers=AUTH).status_code == 200


def test_health_metrics_and_docs_are_open(client):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    m = client.get("/metrics")
    assert m.status_code == 200 and "bentoml_service_request" in m.text
    spec = client.get("/docs.json")
    assert spec.status_code == 200 and "/score" in spec.json()["paths"]


def _mutate(body: dict, path: tuple, value=None, delete: bool = False) -> dict:
    out = copy.deepcopy(body)
    node = out
    for p in path[:-1]:
        node = node[p]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


BAD_CASES = [
    ("missing field", ("accounts", 0, "transactions", 0, "amount"), None, True,
     "accounts[0].transactions[0].amount"),
    ("missing account", ("accounts", 0, "account"), None, True, "accounts[0].account"),
    ("wrong type", ("accounts", 0, "account", "patient_age"), "forty", False, "accounts[0].account.patient_age"),
    ("unknown enum", ("accounts", 0, "transactions", 0, "txn_type"), "gift", False,
     "accounts[0].transactions[0].txn_type"),
    ("negative amount", ("accounts", 0, "transactions", 0, "amount"), -5.0, False,
     "accounts[0].transactions[0].amount"),
    ("bad date", ("accounts", 0, "transactions", 0, "posted_date"), "06/01/2025", False,
     "accounts[0].transactions[0].posted_date"),
    ("bad as_of", ("as_of",), "2025-13-01", False, "as_of"),
    ("accounts not a list", ("accounts",), {"a": 1}, False, "accounts"),
    ("foreign claim", ("accounts", 0, "claims", 0, "account_id"), "SOMEONE-ELSE", False,
     "accounts[0].claims[0].account_id"),
    ("dangling line", ("accounts", 0, "claim_lines", 0, "claim_id"), "NO-SUCH-CLAIM", False,
     "accounts[0].claim_lines[0].claim_id"),
    ("unknown payer", ("accounts", 0, "claims", 0, "payer_id"), "NO-SUCH-PAYER", False,
     "accounts[0].claims[0].payer_id"),
    ("negative capacity", ("capacity_minutes",), -1, False, "capacity_minutes"),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_is_a_4xx_naming_the_field(env, client, open_ids, case):
    _, path, value, delete, field = case
    body = _body(env, [a for a in open_ids if _has_rows(env, a)][:1])
    route = "/worklist" if path[0] == "capacity_minutes" else "/score"
    r = client.post(route, json=_mutate(body, path, value, delete), headers=AUTH)
    assert 400 <= r.status_code < 500, r.text
    data = r.json()
    assert field in data["fields"] and field in data["error"], data
    assert "Traceback" not in r.text and data["request_id"] == r.headers["x-request-id"]


def _has_rows(env, account_id) -> bool:
    ds = env["ds"]
    claims = ds["claims"][ds["claims"]["account_id"] == account_id]
    return (len(claims) > 0 and ds["claim_lines"]["claim_id"].isin(claims["claim_id"]).any()
            and (ds["transactions"]["account_id"] == account_id).any())


def test_malformed_json_and_duplicates(env, client, open_ids):
    r = client.post("/score", content=b'{"as_of": "2025-06-01", "accounts": [', headers=AUTH)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"] and r.json()["fields"] == ["body"]
    body = _body(env, open_ids[:1])
    body["accounts"].append(copy.deepcopy(body["accounts"][0]))
    r = client.post("/score", json=body, headers=AUTH)
    assert r.status_code == 422 and "accounts[1].account.account_id" in r.json()["fields"]


def test_body_limit_gives_413(env, client, open_ids):
    """The middleware's body limit, around a bare ASGI app (a second BentoML app in this process would
    register its Prometheus metrics twice); the accounts limit is checked through `recoup serve`."""
    from starlette.responses import PlainTextResponse
    from starlette.testclient import TestClient

    from serving.api.middleware import RecoupMiddleware

    body = _body(env, open_ids[:3])
    assert client.post("/score", json=body, headers=AUTH).status_code == 200  # within the default limits

    async def echo(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        received = b""
        while True:
            msg = await receive()
            received += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await PlainTextResponse(f"{len(received)} bytes")(scope, receive, send)

    data = json.dumps(body).encode()
    exact = TestClient(RecoupMiddleware(echo, _settings(env, max_body_bytes=len(data))))  # no lifespan
    assert exact.post("/score", content=data, headers=AUTH).text == f"{len(data)} bytes"
    small = TestClient(RecoupMiddleware(echo, _settings(env, max_body_bytes=1000)))
    r = small.post("/score", content=data, headers=AUTH)
    assert r.status_code == 413 and "too large" in r.json()["error"] and r.json()["fields"] == ["body"]

    def chunks():  # no content-length: the limit holds on the streamed bytes too
        for i in range(0, len(data), 300):
            yield data[i:i + 300]

    r = small.post("/score", content=chunks(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413


def test_settings_from_the_environment():
    """The variables are the documented way in for a Bento: each one reaches its setting, options win
    over them, and a missing token or a bad number is an error that names the variable."""
    from pathlib import Path

    from serving.api.settings import ServiceSettings

    env = {"RECOUP_API_TOKEN": "t0k", "RECOUP_MODEL_NAME": "m", "RECOUP_MODEL_ALIAS": "challenger",
           "RECOUP_MODEL_VERSION": "7", "MLFLOW_TRACKING_URI": "sqlite:///x.db", "RECOUP_RANKING_CONFIG": "r.yaml",
           "RECOUP_MAX_ACCOUNTS": "12", "RECOUP_MAX_BODY_BYTES": "3456", "RECOUP_THREADS": "3"}
    s = ServiceSettings.from_env(env)
    assert (s.api_token, s.no_auth, s.model_name, s.model_alias, s.model_version, s.tracking_uri) == (
        "t0k", False, "m", "challenger", "7", "sqlite:///x.db")
    assert (s.ranking_config, s.max_accounts, s.max_body_bytes, s.threads) == (Path("r.yaml"), 12, 3456, 3)
    assert "t0k" not in repr(s)
    wins = ServiceSettings.from_env(env, model_alias="champion", max_accounts=5)
    assert (wins.model_alias, wins.max_accounts, wins.model_name) == ("champion", 5, "m")
    assert ServiceSettings.from_env({"RECOUP_NO_AUTH": "1"}).api_token is None
    with pytest.raises(ValueError, match="RECOUP_API_TOKEN"):
        ServiceSettings.from_env({})
    with pytest.raises(ValueError, match="RECOUP_MAX_ACCOUNTS='lots'"):
        ServiceSettings.from_env({**env, "RECOUP_MAX_ACCOUNTS": "lots"})
    with pytest.raises(ValueError, match="RECOUP_THREADS=0"):
        ServiceSettings.from_env({**env, "RECOUP_THREADS": "0"})


def test_unexpected_error_is_a_500_with_request_id_and_no_internals(env, client, open_ids, monkeypatch):
    import serving.api.service as service

    def boom(*a, **k):
        raise KeyError("A-SECRET-ACCOUNT-ID")

    monkeypatch.setattr(service, "build_dataset", boom)
    r = client.post("/score", json=_body(env, open_ids[:1]), headers=AUTH)
    assert r.status_code == 500
    assert r.json()["request_id"] in r.json()["error"] and "SECRET" not in r.text and "Traceback" not in r.text


def test_logs_carry_no_ids_or_amounts(env, client, open_ids, caplog):
    body = _body(env, open_ids[:2])
    with caplog.at_level("INFO"):
        assert client.post("/score", json=body, headers=AUTH).status_code == 200
        bad = _mutate(body, ("accounts", 0, "account", "patient_age"), "forty")
        assert client.post("/score", json=bad, headers=AUTH).status_code == 422
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "timings_ms" in text and "accounts=2" in text
    for h in body["accounts"]:
        assert h["account"]["account_id"] not in text and h["account"]["patient_id"] not in text
        assert f"{h['account']['total_charges']}" not in text


def test_reload_swaps_versions(env, client, open_ids):
    v1, v2 = env["versions"]
    body = _body(env, open_ids[:1])
    assert client.post("/score", json=body, headers=AUTH).json()["model_version"] == f"recoup/{v1}"
    _set_alias(env, v2)
    try:
        r = client.post("/admin/reload", json={}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json() == {"old_version": f"recoup/{v1}", "new_version": f"recoup/{v2}", "changed": True}
        assert client.post("/score", json=body, headers=AUTH).json()["results"][0]["model_version"] == f"recoup/{v2}"
    finally:
        _set_alias(env, v1)
        assert client.post("/admin/reload", json={}, headers=AUTH).json()["new_version"] == f"recoup/{v1}"


def test_parity_with_the_nightly_batch(env, client, open_ids):
    """/score gives the same numbers as `run_batch` for the same account at the same as-of date."""
    from serving.api.request import guarantor_account_ids
    from serving.batch import run_batch
    from training.tracking import load_bundle

    v1 = env["versions"][0]
    model = load_bundle("recoup", version=v1, tracking_uri=env["uri"])  # the batch's own copy
    # reasons for every row, as the API gives them
    res = run_batch(None, AS_OF, None, model, f"recoup/{v1}", dataset=env["ds"], keep_result=True,
                    reasons_rows=100_000)
    batch = res.ranked.accounts.set_index("account_id")
    bden = res.ranked.denials
    with_denials = sorted(set(bden["account_id"]) & set(open_ids))[:3]
    # the guarantor with the most open accounts comes whole: their features see all their accounts
    crowd = batch.loc[batch.index.isin(open_ids)].groupby("guarantor_id").size().sort_values(kind="stable")
    people = batch[batch["guarantor_id"] == crowd.index[-1]].index.tolist()
    assert len(people) >= 3, crowd.tail()
    ids = with_denials + [a for a in open_ids if a not in with_denials][:5] + people
    # the batch sees the whole guarantor, so the request carries each guarantor's other accounts too
    ids = guarantor_account_ids(env["ds"], list(dict.fromkeys(ids)))
    answer = client.post("/score", json=_body(env, ids), headers=AUTH).json()
    got = [x for x in answer["results"] if x["status"] == "scored"]
    assert {x["account_id"] for x in got} >= set(people)
    groups = {g["guarantor_id"]: g for g in answer["guarantors"]}
    assert set(groups[crowd.index[-1]]["account_ids"]) >= set(people)
    assert [g["guarantor_rank"] for g in answer["guarantors"]] == list(range(1, len(groups) + 1))
    for x in got:
        b = batch.loc[x["account_id"]]
        for col in ("p_payment", "expected_recovery", "expected_net", "balance"):
            assert x[col] == pytest.approx(float(b[col]), abs=1e-9, rel=0), (x["account_id"], col)
        # a held account has no priority (null in the API, NaN in the batch)
        assert (x["priority"] is None) == (not np.isfinite(b["priority"])), x["account_id"]
        assert x["priority"] is None or x["priority"] == pytest.approx(float(b["priority"]), abs=1e-9, rel=0)
        assert x["next_action"] == b["next_action"] and x["model_version"] == b["model_version"]
        assert x["guarantor_id"] == b["guarantor_id"]
        assert x["is_exploration"] == bool(b["is_exploration"])
        assert x["reasons"] == list(b["reasons"])
        mine = {d["claim_id"]: d for d in x["denials"]}
        theirs = bden[bden["account_id"] == x["account_id"]]
        assert set(mine) == set(theirs["claim_id"])
        for d in theirs.itertuples():
            assert mine[d.claim_id]["p_overturn"] == pytest.approx(d.p_overturn, abs=1e-9, rel=0)
            assert mine[d.claim_id]["expected_recovery"] == pytest.approx(d.expected_recovery, abs=1e-9, rel=0)
    assert with_denials, "the simulated data should have open denials at the as-of date"
    assert any(x["priority"] is not None for x in got) and any(x["reasons"] for x in got)


def test_fuzz_finds_no_5xx(env, client, open_ids):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = _body(env, [a for a in open_ids if _has_rows(env, a)][:1])
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((*path, k))
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:2]):
                paths.append((*path, i))
                walk(v, (*path, i))

    walk(base, ())
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12) | st.sampled_from(["2025-06-01", "2025-02-30", "", "0", "-1", "1e309"]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(st.tuples(st.sampled_from(paths), json_values, st.booleans()), min_size=1, max_size=3),
           st.sampled_from(["/score", "/worklist"]))
    def check(edits, route):
        body = base
        for path, value, delete in edits:
            try:
                body = _mutate(body, path, value, delete)
            except (KeyError, IndexError, TypeError):
                pass
        r = client.post(route, content=json.dumps(body).encode(), headers={**AUTH,
                                                                            "content-type": "application/json"})
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.json()["error"] and "Traceback" not in r.text

    check()


# ----------------------------------------------------------------------------- POST /work


def _work_rows(env, prefix: str, n: int = 3) -> list[dict]:
    """`n` work rows on the dataset's accounts, ids of their own (`prefix`), every column given."""
    accounts = env["ds"]["accounts"]["account_id"].tolist()
    actions = ["status_call", "appeal", "patient_call"]
    return [{"work_id": f"{prefix}-{i}", "account_id": accounts[i], "claim_id": None, "worked_date": "2025-05-30",
             "action": actions[i % 3], "minutes": 5.0 + i, "propensity": 0.5 if i % 2 else 1.0,
             "is_exploration": i % 2, "run_id": "run-7", "suggested_action": actions[i % 3],
             "collector": f"COLLECTOR-{prefix}-{i}"} for i in range(n)]


def _stored_work(env) -> pd.DataFrame:
    return pd.read_parquet(env["tmp"] / "data" / "work.parquet")


def test_work_writes_rows_and_resending_adds_nothing(env, client):
    rows = _work_rows(env, "T-write")
    before = len(_stored_work(env))
    r = client.post("/work", json={"work": rows}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"received": 3, "written": 3, "duplicates": 0, "request_id": r.headers["x-request-id"]}
    stored = _stored_work(env)
    assert len(stored) == before + 3
    mine = stored[stored["work_id"].str.startswith("T-write")].set_index("work_id")
    assert mine.loc["T-write-1", "collector"] == "COLLECTOR-T-write-1" and mine.loc["T-write-1", "minutes"] == 6.0
    assert str(mine.loc["T-write-2", "worked_date"])[:10] == "2025-05-30"
    data = (env["tmp"] / "data" / "work.parquet").read_bytes()
    # the same rows again (one of them twice, with optional columns left out where they are null)
    again = [*rows, rows[0], {k: v for k, v in rows[0].items() if k != "claim_id"}]
    r = client.post("/work", json={"work": again}, headers=AUTH)
    assert r.status_code == 200 and (r.json()["received"], r.json()["written"], r.json()["duplicates"]) == (5, 0, 5)
    assert (env["tmp"] / "data" / "work.parquet").read_bytes() == data  # nothing rewritten
    from features.contract import read_dataset

    ds = read_dataset(env["tmp"] / "data")  # the dataset still validates, work log and all
    assert ds["work"]["work_id"].str.startswith("T-write").sum() == 3


def test_work_conflict_is_a_409_naming_the_work_ids_and_writes_nothing(env, client):
    rows = _work_rows(env, "T-conflict")
    assert client.post("/work", json={"work": rows[:2]}, headers=AUTH).json()["written"] == 2
    data = (env["tmp"] / "data" / "work.parquet").read_bytes()
    changed = [rows[2], {**rows[0], "minutes": 99.0}, {**rows[1], "action": "write_off"}]
    r = client.post("/work", json={"work": changed}, headers=AUTH)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["work_ids"] == ["T-conflict-0", "T-conflict-1"] and body["fields"] == ["work[1].work_id",
                                                                                        "work[2].work_id"]
    assert "T-conflict-0" in body["error"] and "nothing of this request was written" in body["error"]
    assert (env["tmp"] / "data" / "work.parquet").read_bytes() == data  # T-conflict-2 was not written either


WORK_BAD_CASES = [
    ("propensity zero", 1, "propensity", 0, "work[1].propensity"),
    ("propensity above one", 1, "propensity", 1.5, "work[1].propensity"),
    ("negative minutes", 0, "minutes", -1, "work[0].minutes"),
    ("unknown action", 2, "action", "dance", "work[2].action"),
    ("not an ISO date", 1, "worked_date", "05/30/2025", "work[1].worked_date"),
    ("a timestamp for a date", 1, "worked_date", 1748563200, "work[1].worked_date"),
    ("no such day", 1, "worked_date", "2025-02-30", "work[1].worked_date"),
    ("outside pandas' dates", 1, "worked_date", "1500-01-01", "work[1].worked_date"),
    ("missing work_id", 0, "work_id", None, "work[0].work_id"),
    ("empty account", 0, "account_id", "", "work[0].account_id"),
    ("exploration flag", 1, "is_exploration", 2, "work[1].is_exploration"),
    ("number for an id", 1, "collector", 7, "work[1].collector"),
    ("unknown account", 1, "account_id", "NO-SUCH-ACCOUNT", "work[1].account_id"),
    ("unknown claim", 2, "claim_id", "NO-SUCH-CLAIM", "work[2].claim_id"),
    ("repeated with other content", 2, "work_id", "T-bad-0", "work[2].work_id"),
]


@pytest.mark.parametrize("case", WORK_BAD_CASES, ids=[c[0] for c in WORK_BAD_CASES])
def test_work_bad_rows_are_a_422_naming_row_and_field(env, client, case):
    _, i, column, value, field = case
    rows = _work_rows(env, "T-bad")
    if column == "work_id" and value is None:
        del rows[i][column]
    else:
        rows[i][column] = value
    data = (env["tmp"] / "data" / "work.parquet").read_bytes()
    r = client.post("/work", json={"work": rows}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert field in body["fields"] and field in body["error"], body
    assert "Traceback" not in r.text and body["request_id"] == r.headers["x-request-id"]
    assert (env["tmp"] / "data" / "work.parquet").read_bytes() == data


def test_work_needs_a_token_and_keeps_to_the_limits(env, client):
    rows = _work_rows(env, "T-limits")
    assert client.post("/work", json={"work": rows}).status_code == 401
    assert client.post("/work", json={"work": rows}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert not _stored_work(env)["work_id"].str.startswith("T-limits").any()
    limit = _settings(env).max_accounts  # rows count against the accounts limit
    many = [{**rows[0], "work_id": f"T-limits-{i}"} for i in range(limit + 1)]
    r = client.post("/work", json={"work": many}, headers=AUTH)
    assert r.status_code == 413 and "too many rows" in r.json()["error"] and r.json()["fields"] == ["work"]
    assert not _stored_work(env)["work_id"].str.startswith("T-limits").any()
    r = client.post("/work", content=b'{"work": [', headers=AUTH)
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]
    r = client.post("/work", json={"rows": rows}, headers=AUTH)
    assert r.status_code == 422 and r.json()["fields"] == ["work"]


def test_work_logs_carry_counts_not_ids(env, client, caplog):
    rows = _work_rows(env, "T-log")
    with caplog.at_level("INFO"):
        assert client.post("/work", json={"work": rows}, headers=AUTH).status_code == 200
        assert client.post("/work", json={"work": [{**rows[0], "minutes": 1.0}]}, headers=AUTH).status_code == 409
        assert client.post("/work", json={"work": [{**rows[0], "action": "x"}]}, headers=AUTH).status_code == 422
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "received=3 written=3 duplicates=0" in text and "conflicts=1" in text
    for row in rows:
        for col in ("work_id", "account_id", "collector"):
            assert row[col] not in text, col


def test_work_fuzz_finds_no_5xx(env, client):
    """Random edits of a valid /work body, and random JSON bodies: never a 5xx, every error names itself."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = {"work": _work_rows(env, "T-fuzz", 2)}
    paths = [("work",)] + [("work", i) for i in range(2)] + [("work", i, c) for i in range(2) for c in base["work"][0]]
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=12) | st.sampled_from(["2025-06-01", "2025-02-30", "9999-12-31", "0001-01-01", "", "0",
                                                   "-1", "1e309", "T-fuzz-0", "T-fuzz-1"]),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=6)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(st.tuples(st.sampled_from(paths), json_values, st.booleans()), min_size=1, max_size=3),
           json_values, st.booleans())
    def check(edits, random_body, whole):
        body = random_body if whole else base
        if not whole:
            for path, value, delete in edits:
                try:
                    body = _mutate(body, path, value, delete)
                except (KeyError, IndexError, TypeError):
                    pass
        r = client.post("/work", content=json.dumps(body).encode(), headers={**AUTH,
                                                                              "content-type": "application/json"})
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.json()["error"] and "Traceback" not in r.text

    check()


# ----------------------------------------------------------------------------- processes


def test_recoup_serve_end_to_end(env, open_ids, tmp_path):
    """`recoup serve` in a subprocess over HTTP: auth, /score, and SIGHUP reloading a moved alias."""
    import httpx

    v1, v2 = env["versions"]
    log_path = tmp_path / "serve.log"
    penv = {**os.environ, "RECOUP_API_TOKEN": TOKEN, "RECOUP_MAX_ACCOUNTS": "2"}  # a variable as the way in
    body = _body(env, open_ids[:2])
    try:
        with recoup_serve(["--tracking-uri", env["uri"]], penv, log_path) as (base, proc):
            assert httpx.post(f"{base}/score", json=body, timeout=30).status_code == 401
            r = httpx.post(f"{base}/work", json={"work": _work_rows(env, "T-serve")}, headers=AUTH, timeout=30)
            assert r.status_code == 503 and "RECOUP_WORK_STORE" in r.json()["error"]  # no store configured
            r = httpx.post(f"{base}/score", json=body, headers=AUTH, timeout=30)
            assert r.status_code == 200 and r.json()["model_version"] == f"recoup/{v1}"
            r = httpx.post(f"{base}/score", json=_body(env, open_ids[:3]), headers=AUTH, timeout=30)
            assert r.status_code == 413 and "too many accounts" in r.json()["error"]
            assert r.json()["fields"] == ["accounts"]
            _set_alias(env, v2)
            proc.send_signal(signal.SIGHUP)
            for _ in range(120):
                got = httpx.post(f"{base}/score", json=body, headers=AUTH, timeout=30)
                assert got.status_code == 200  # answered all along: no downtime while reloading
                if got.json()["model_version"] == f"recoup/{v2}":
                    break
                time.sleep(0.25)
            else:
                pytest.fail("SIGHUP did not reload the moved alias")
    finally:
        _set_alias(env, v1)
    log_text = log_path.read_text()
    assert "reload on SIGHUP" in log_text
    for h in body["accounts"]:
        assert h["account"]["account_id"] not in log_text


def test_recoup_serve_refuses_to_start_without_a_token(env):
    penv = {k: v for k, v in os.environ.items() if k != "RECOUP_API_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "recoup_cli", "serve", "--port", "1"], cwd=REPO, env=penv,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "RECOUP_API_TOKEN" in out.stderr and "--no-auth" in out.stderr


def test_bentoml_build(tmp_path):
    penv = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).with_name("bentoml")
    out = subprocess.run([str(bentoml), "build", "-f", "serving/bentofile.yaml", "--output", "tag"], cwd=REPO,
                         env=penv, capture_output=True, text=True, timeout=170)
    assert out.returncode == 0, out.stderr[-3000:]
    bento = next((tmp_path / "bentoml" / "bentos" / "recoup").glob("*/bento.yaml"))
    src = bento.parent / "src"
    assert (src / "serving" / "ranking.yaml").exists()
    assert (src / "features" / "reference" / "carc_routine.csv").exists()
    assert "RecoupService" in bento.read_text()
    # the Bento's own source holds everything the service imports (not this checkout's)
    probe = subprocess.run([sys.executable, "-c", "import serving.api.service, features.snapshot, serving.ranking, "
                            "training.tracking; print(serving.api.service.__file__)"], cwd=src,
                           env={**penv, "PYTHONPATH": str(src)}, capture_output=True, text=True,
                           timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert Path(probe.stdout.strip()).resolve().is_relative_to(src.resolve())
