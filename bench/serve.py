"""Benchmark of the real-time service (run by hand; prints JSON).

  .venv/bin/python bench/serve.py [--seconds 30] [--rates 20,50,100] [--data DIR --tracking-uri URI]
  .venv/bin/python bench/serve.py --data DIR --prepare-only [--verify]   # request bodies only, timed

The request bodies (one account's history for /score, 1,000 accounts' for /worklist) are built from
the dataset's tables grouped once (`_Histories`), linear in the dataset: 60,000 accounts take seconds.

Without --data it simulates 3,000 accounts, trains a small model and registers it in a temporary
SQLite MLflow store. Then, all over loopback on this machine:
- `recoup serve` in a subprocess; an open-loop load generator (asyncio + aiohttp, send times fixed in
  advance, so a slow answer never delays the next request: latency counts from the scheduled send
  time) posts single-account /score requests at each rate for --seconds; p50/p99 and errors;
- /worklist with 1,000 accounts a request: accounts/s;
- where the time of one request goes, in-process (parse, checks, dataset, features, rank, response);
- anchors: bare LightGBM `predict` of one prepared row in-process, and `mlflow models serve` (one
  worker, --env-manager local) on the registered model answering the same account's precomputed
  feature row at the same rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOKEN = "bench-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    import httpx

    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {seconds}s")


def _prepare(args) -> tuple[str, str]:
    if args.data and args.tracking_uri:
        return args.data, args.tracking_uri
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.tracking import log_training_run
    from training.train import data_fingerprint, synthetic_input_example, train_model

    tmp = Path(tempfile.mkdtemp(prefix="recoup-bench-serve-"))
    os.environ["RECOUP_ARTIFACT_ROOT"] = str(tmp / "artifacts")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    simulate_to_folder(tmp / "data", 3000, 5, "2024-01-01", "2025-06-30")
    ds = read_dataset(tmp / "data")
    cfg = load_settings(overrides={"payment_model": {"n_estimators": 60}, "amount_model": {"n_estimators": 60},
                                 "overturn_model": {"n_estimators": 40}})
    model, _ = train_model(ds, cfg)
    log_training_run(model, cfg, data_fingerprint(ds), [], synthetic_input_example(model), uri)
    return str(tmp / "data"), uri


_EMPTY = np.zeros(0, dtype=np.intp)
# what `history_from_dataset` puts in one account's history, and the column each table is reached by
_HISTORY_TABLES = ("claims", "claim_lines", "remittances", "appeals", "adjustments", "transactions", "activities",
                   "claim_acks", "work")
_GROUP_KEYS = {"accounts": "account_id", "claims": "account_id", "claim_lines": "claim_id",
               "remittances": "claim_id", "appeals": "claim_id", "adjustments": "remit_id",
               "transactions": "account_id", "activities": "account_id", "payers": "payer_id",
               "claim_acks": "claim_id", "work": "account_id"}


class _Groups:
    """Row positions per key of one column, in table order (`groupby(column).indices`, from one
    factorize and one stable sort: ~15x faster than `indices` on an object column)."""

    def __init__(self, column: pd.Series) -> None:
        codes, keys = pd.factorize(column)  # missing keys: code -1, in no group (as groupby drops them)
        self.order = np.argsort(codes, kind="stable")
        self.bounds = np.searchsorted(codes[self.order], np.arange(len(keys) + 1))
        self.code = dict(zip(keys, range(len(keys)), strict=True))

    def __contains__(self, key) -> bool:
        return key in self.code

    def __getitem__(self, key) -> np.ndarray:
        c = self.code[key]
        return self.order[self.bounds[c]:self.bounds[c + 1]]

    def get(self, key, default: np.ndarray) -> np.ndarray:
        return self[key] if key in self.code else default


class _Histories:
    """Request bodies from a dataset's tables, the same bytes as `serving.api.request.history_from_dataset`
    but linear in the dataset: every table is grouped once by the key that reaches it (row positions
    per account / claim / remit / payer), and each body converts only its own rows, all tables' rows of
    a body in one pass. `history_from_dataset` filters whole tables per account (`isin` on claim_lines,
    remittances, appeals, adjustments, payers) and regroups them per call: fine for one request, ~20-40
    minutes for this benchmark's 1,600 accounts of a 60,000-account dataset.
    `--prepare-only --verify` compares the two."""

    def __init__(self, ds) -> None:
        self.tables = ds.tables
        self.groups = {name: _Groups(self.tables[name][key]) for name, key in _GROUP_KEYS.items()
                       if name in self.tables}
        self.claim_ids = self.tables["claims"]["claim_id"].to_numpy(dtype=object)
        self.remit_ids = (self.tables["remittances"]["remit_id"].to_numpy(dtype=object)
                          if "remittances" in self.tables else None)
        self.payer_cols = {n: self.tables[n][c].to_numpy(dtype=object) for n, c in
                           (("accounts", "primary_payer_id"), ("claims", "payer_id"), ("transactions", "payer_id"))
                           if n in self.tables}

    def _union(self, name: str, keys) -> np.ndarray:
        """Positions of `name`'s rows whose key is one of `keys`, in table order (as an `isin` mask)."""
        g = self.groups.get(name)
        if g is None:
            return _EMPTY
        parts = [g[k] for k in dict.fromkeys(keys) if k in g]
        return np.sort(np.concatenate(parts)) if parts else _EMPTY

    def positions(self, account_id: str) -> dict[str, np.ndarray]:
        """Row positions of one account's history in each table, as `history_from_dataset` selects them."""
        g = self.groups
        pos = {"accounts": g["accounts"][account_id][:1], "claims": g["claims"].get(account_id, _EMPTY)}
        cids = self.claim_ids[pos["claims"]]
        for name in ("claim_lines", "remittances", "appeals", "claim_acks"):
            pos[name] = self._union(name, cids)
        rids = self.remit_ids[pos["remittances"]] if self.remit_ids is not None else ()
        pos["adjustments"] = self._union("adjustments", rids)
        for name in ("transactions", "activities", "work"):
            pos[name] = g[name].get(account_id, _EMPTY) if name in g else _EMPTY
        pids = [v for name, p in (("accounts", pos["accounts"]), ("claims", pos["claims"]),
                                  ("transactions", pos["transactions"])) if name in self.payer_cols
                for v in self.payer_cols[name][p]]
        pos["payers"] = self._union("payers", [v for v in pids if not pd.isna(v)])
        return pos

    def ledger_rows(self, account_id: str) -> int:
        """The account row plus its history's rows (payers aside)."""
        pos = self.positions(account_id)
        return 1 + sum(len(pos[name]) for name in _HISTORY_TABLES)

    def body(self, account_ids, as_of) -> dict:
        """`history_from_dataset(ds, account_ids, as_of)`."""
        from serving.api.request import table_records

        pos = [self.positions(a) for a in account_ids]
        names = ("accounts", *_HISTORY_TABLES, "payers")
        recs: dict[str, list[list[dict]]] = {}
        for name in names:
            if name not in self.tables:
                recs[name] = [[] for _ in pos]
                continue
            sizes = [len(p[name]) for p in pos]
            rows = self.tables[name].iloc[np.concatenate([p[name] for p in pos]) if pos else _EMPTY]
            flat = table_records(rows, name)
            bounds = np.cumsum([0, *sizes])
            recs[name] = [flat[bounds[i]:bounds[i + 1]] for i in range(len(pos))]
        histories = []
        for i in range(len(pos)):
            h: dict = {"account": recs["accounts"][i][0]}
            for name in (*_HISTORY_TABLES, "payers"):
                h[name] = recs[name][i]
            histories.append(h)
        return {"as_of": pd.Timestamp(as_of).strftime("%Y-%m-%d"), "accounts": histories}


def _request_bodies(ds, open_ids: list[str], as_of) -> dict:
    """The benchmark's two request bodies, with the time each step took: the single-account /score
    body (the open account, among the first 600, whose history is nearest 50 rows) and the /worklist
    body (1,000 accounts: the open ones first, then the others by id)."""
    t0 = time.perf_counter()
    hist = _Histories(ds)
    t1 = time.perf_counter()
    rows = {a: hist.ledger_rows(a) for a in open_ids[:600]}
    account = min(rows, key=lambda a: (abs(rows[a] - 50), a))
    one = json.dumps(hist.body([account], as_of)).encode()
    t2 = time.perf_counter()
    open_set = set(open_ids)
    wl_ids = open_ids[:1000]
    if len(wl_ids) < 1000:
        wl_ids += [a for a in sorted(ds["accounts"]["account_id"]) if a not in open_set][:1000 - len(wl_ids)]
    worklist = json.dumps(hist.body(wl_ids, as_of)).encode()
    t3 = time.perf_counter()
    # a guarantor's accounts together (10 of them: the person with the most accounts, then the most open)
    from features.contract import person_of_accounts

    acc = ds["accounts"]
    person = person_of_accounts(acc)
    size = pd.DataFrame({"g": person, "open": acc["account_id"].isin(open_set).to_numpy()}).groupby("g").agg(
        open=("open", "sum"), n=("open", "size")).sort_values(["n", "open"], ascending=False, kind="stable")
    g_ids = sorted(acc["account_id"][person == size.index[0]])[:10]
    guarantor = json.dumps(hist.body(g_ids, as_of)).encode()
    return {"account": account, "history_rows": rows[account], "one": one, "wl_ids": wl_ids,
            "guarantor_ids": g_ids, "guarantor": guarantor,
            "open_in_worklist": sum(a in open_set for a in wl_ids), "worklist": worklist,
            "seconds": {"group_tables": round(t1 - t0, 3), "single_request": round(t2 - t1, 3),
                        "worklist_request": round(t3 - t2, 3), "total": round(t3 - t0, 3)}}


async def _open_loop(url: str, rate: float, seconds: float, body: bytes | None, headers: dict | None = None) -> dict:
    """Send rate × seconds requests at fixed times (POST `body`, or GET when None); latency counts
    from the scheduled send time, so a slow answer never hides the queue behind it. aiohttp, not
    httpx: on 2 shared cores httpx's async client added ~3.5 ms to every latency (BentoML's empty
    /livez at 50/s: p50 7.0 ms with httpx, 3.6 ms with aiohttp), which would be charged to the service."""
    import aiohttp

    n = int(rate * seconds)
    lat: list[float] = []
    errors = 0
    method = "GET" if body is None else "POST"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def call() -> bool:
            async with session.request(method, url, data=body, headers=headers) as r:
                await r.read()
                return r.status == 200

        for _ in range(5):  # warm the connection pool and the server
            await call()
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            at = start + i / rate
            await asyncio.sleep(max(0.0, at - loop.time()))
            try:
                ok = await call()
            except Exception:  # noqa: BLE001 - counted
                ok = False
            if ok:
                lat.append(loop.time() - at)
            else:
                errors += 1

        await asyncio.gather(*(one(i) for i in range(n)))
    arr = np.array(lat) * 1000 if lat else np.array([np.nan])
    return {"rate_per_s": rate, "seconds": seconds, "requests": n, "errors": errors,
            "p50_ms": round(float(np.percentile(arr, 50)), 2), "p99_ms": round(float(np.percentile(arr, 99)), 2),
            "max_ms": round(float(arr.max()), 2)}


def _breakdown(raw: bytes, uri: str, n: int = 300) -> dict:
    """Where one single-account request's time goes inside the service (in-process, median ms),
    stage by stage as `RecoupService._handle` runs them."""
    from features.snapshot import snapshot_features
    from serving.api.request import ScoreRequest, build_dataset, check_references
    from serving.api.response import account_results
    from serving.api.service import load_model
    from serving.api.settings import ServiceSettings
    from serving.ranking import finalize, load_ranking_config, score_rows

    state = load_model(ServiceSettings(no_auth=True, tracking_uri=uri))
    model, cfg = state.model, load_ranking_config()
    stages = ("parse_validate", "reference_checks", "dataset", "features", "rank.score_rows",
              "rank.order_reasons", "response", "total")
    t = {k: [] for k in stages}
    for i in range(n + 5):
        c0 = time.perf_counter()
        req = ScoreRequest.model_validate_json(raw)
        c1 = time.perf_counter()
        check_references(req)
        c2 = time.perf_counter()
        d = build_dataset(req)
        c3 = time.perf_counter()
        acc, den = snapshot_features(d, d.extract_date, stats=model.stats_, with_labels=False, frames=False)
        c4 = time.perf_counter()
        scored = score_rows(model, acc, den, cfg)
        c5 = time.perf_counter()
        ranked = finalize(model, acc, scored, cfg, state.version, "bench", frames=False)
        c6 = time.perf_counter()
        account_results(ranked, req.as_of, state.version)
        c7 = time.perf_counter()
        if i >= 5:
            for k, v in zip(stages, (c1 - c0, c2 - c1, c3 - c2, c4 - c3, c5 - c4, c6 - c5, c7 - c6, c7 - c0),
                            strict=True):
                t[k].append(v)
    out = {k: round(float(np.median(v)) * 1000, 3) for k, v in t.items()}
    out["note"] = (f"median ms per stage over {n} runs; rank.score_rows = encode + predict + rules, "
                   "rank.order_reasons = ordering + TreeSHAP reasons")
    return out


def _prepare_only(args) -> dict:
    """--prepare-only: read --data, find its open accounts at --as-of and build the two request bodies,
    timing each step (no model needed: which accounts are open does not depend on the model's stats;
    with --tracking-uri the champion's stats are used, as the full run does)."""
    import hashlib

    from features.contract import read_dataset
    from features.snapshot import account_features

    t0 = time.perf_counter()
    ds = read_dataset(args.data)
    t1 = time.perf_counter()
    stats = None
    if args.tracking_uri:
        from training.tracking import load_bundle

        stats = load_bundle("recoup", "champion", None, args.tracking_uri).stats_
    t2 = time.perf_counter()
    as_of = pd.Timestamp(args.as_of)
    open_ids = list(account_features(ds, as_of, stats=stats, with_labels=False)["account_id"])
    t3 = time.perf_counter()
    req = _request_bodies(ds, open_ids, as_of)
    out = {"data": args.data, "as_of": str(as_of.date()), "rows": ds.row_counts(), "open_accounts": len(open_ids),
           "seconds": {"read_dataset": round(t1 - t0, 3), "load_model": round(t2 - t1, 3),
                       "account_features": round(t3 - t2, 3), "request_bodies": req["seconds"]},
           "single_request": {"account": req["account"], "history_rows": req["history_rows"],
                              "body_bytes": len(req["one"]), "sha256": hashlib.sha256(req["one"]).hexdigest()},
           "worklist_request": {"accounts": len(req["wl_ids"]), "open": req["open_in_worklist"],
                                "body_bytes": len(req["worklist"]),
                                "sha256": hashlib.sha256(req["worklist"]).hexdigest()}}
    if args.verify:
        from serving.api.request import history_from_dataset

        t4 = time.perf_counter()
        same = {"single_request": json.dumps(history_from_dataset(ds, [req["account"]], as_of)).encode() == req["one"],
                "worklist_request": json.dumps(history_from_dataset(ds, req["wl_ids"], as_of)).encode()
                == req["worklist"]}
        out["verify"] = {"identical_to_history_from_dataset": same,
                         "history_from_dataset_seconds": round(time.perf_counter() - t4, 3)}
        if not all(same.values()):
            print(json.dumps(out, indent=2))
            raise SystemExit("request bodies differ from history_from_dataset")
    return out


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rates", default="20,50,100")
    ap.add_argument("--data")
    ap.add_argument("--tracking-uri")
    ap.add_argument("--as-of", default="2025-06-01")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--prepare-only", action="store_true",
                    help="with --data: only read the dataset and build the two request bodies; print their timings")
    ap.add_argument("--verify", action="store_true",
                    help="with --prepare-only: check the bodies byte for byte against history_from_dataset "
                         "(slow on a large dataset)")
    args = ap.parse_args()
    if args.prepare_only:
        if not args.data:
            ap.error("--prepare-only needs --data")
        print(json.dumps(_prepare_only(args), indent=2))
        return
    rates = [float(r) for r in args.rates.split(",")]
    data, uri = _prepare(args)

    import httpx
    import psutil

    from features.contract import read_dataset
    from features.snapshot import account_features
    from training.tracking import load_bundle

    ds = read_dataset(data)
    model = load_bundle("recoup", "champion", None, uri)
    as_of = pd.Timestamp(args.as_of)
    feats = account_features(ds, as_of, stats=model.stats_, with_labels=False)
    req = _request_bodies(ds, list(feats["account_id"]), as_of)
    account, one, wl_ids, worklist = req["account"], req["one"], req["wl_ids"], req["worklist"]
    result: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": list(os.getloadavg())},
                    "model": {"features": len(model.account_features_), "trees": {
                        name: int(getattr(model, f"{name}_").best_iteration_ or getattr(model, f"{name}_").n_estimators)
                        for name in ("payment", "amount", "overturn")}},
                    "single_request": {"history_rows": req["history_rows"], "body_bytes": len(one)},
                    "worklist_request": {"accounts": len(wl_ids), "open": req["open_in_worklist"],
                                         "body_bytes": len(worklist)},
                    "request_preparation_seconds": req["seconds"]}

    # -- anchors: bare LightGBM predict of one prepared row
    X = model.account_encoder_.transform(feats[feats["account_id"] == account])
    booster = model.payment_.booster_
    ts = []
    for _ in range(2000):
        t0 = time.perf_counter()
        booster.predict(X, num_threads=1)  # one thread, as the service predicts a few rows
        ts.append(time.perf_counter() - t0)
    ts_df = []
    frame = pd.DataFrame(X)
    for _ in range(300):
        t0 = time.perf_counter()
        booster.predict(frame, num_threads=1)
        ts_df.append(time.perf_counter() - t0)
    result["anchor_lightgbm_predict_one_row"] = {
        "numpy_p50_us": round(float(np.percentile(ts, 50)) * 1e6, 1),
        "numpy_p99_us": round(float(np.percentile(ts, 99)) * 1e6, 1),
        "dataframe_p50_us": round(float(np.percentile(ts_df, 50)) * 1e6, 1)}

    # -- where the time goes (in-process)
    result["per_request_breakdown_ms"] = _breakdown(one, uri)

    # -- recoup serve
    port = _free_port()
    env = {**os.environ, "RECOUP_API_TOKEN": TOKEN, "MLFLOW_TRACKING_URI": uri}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(Path(tempfile.gettempdir()) / "recoup-bench-serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "recoup_cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", proc)

        base = f"http://127.0.0.1:{port}"
        # the floor of this harness: the same load on BentoML's own /livez (no work, no body)
        result["harness_floor_livez"] = asyncio.run(_open_loop(f"{base}/livez", 50, min(args.seconds, 10), None))
        server = psutil.Process(proc.pid)
        result["recoup_serve_score"] = []
        for r in rates:
            cpu0 = sum(server.cpu_times()[:2])
            row = asyncio.run(_open_loop(f"{base}/score", r, args.seconds, one, headers))
            # the server's own CPU (user + system) per request: what bounds the rate one worker can take
            cpu_s = sum(server.cpu_times()[:2]) - cpu0
            row["server_cpu_ms_per_request"] = round(cpu_s * 1000 / (row["requests"] + 5), 2)  # + 5 warm-ups
            result["recoup_serve_score"].append(row)
        times = []
        with httpx.Client(timeout=300) as c:
            for _ in range(4):
                t0 = time.perf_counter()
                r = c.post(f"http://127.0.0.1:{port}/worklist", content=worklist, headers=headers)
                times.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text[:500]
        med = float(np.median(times[1:]))
        result["recoup_serve_worklist"] = {"accounts_per_request": len(wl_ids), "seconds_median": round(med, 3),
                                           "accounts_per_s": round(len(wl_ids) / med, 1), "requests": len(times)}
        # one guarantor's accounts in one /score request against one account, closed loop, interleaved
        lat: dict[str, list[float]] = {"one": [], "guarantor": []}
        with httpx.Client(timeout=60) as c:
            for i in range(400):
                name = "one" if i % 2 == 0 else "guarantor"
                t0 = time.perf_counter()
                r = c.post(f"{base}/score", content=req[name], headers=headers)
                if i >= 20:  # warm-up
                    lat[name].append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text[:500]
        p50 = {k: float(np.percentile(v, 50)) * 1000 for k, v in lat.items()}
        result["guarantor_request"] = {
            "accounts": len(req["guarantor_ids"]),
            "open": int(feats["account_id"].isin(req["guarantor_ids"]).sum()),
            "single_p50_ms": round(p50["one"], 2), "guarantor_p50_ms": round(p50["guarantor"], 2),
            "guarantor_p99_ms": round(float(np.percentile(lat["guarantor"], 99)) * 1000, 2),
            "ratio_p50": round(p50["guarantor"] / p50["one"], 2), "requests_each": len(lat["one"])}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()

    # -- anchor: mlflow models serve on the registered pyfunc, the same account's feature row
    if not args.skip_mlflow:
        port = _free_port()
        row = feats[feats["account_id"] == account][model.account_features_]
        row = row.astype(object).where(row.notna(), None)
        payload = json.dumps({"dataframe_split": {"columns": list(row.columns), "data": row.values.tolist()}},
                             default=str).encode()
        menv = {**os.environ, "MLFLOW_TRACKING_URI": uri,  # mlflow execs `uvicorn` from PATH
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        mlog = open(Path(tempfile.gettempdir()) / "recoup-bench-mlflow.log", "w")
        mproc = subprocess.Popen([str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m",
                                  "models:/recoup@champion", "--env-manager", "local", "--host", "127.0.0.1",
                                  "-p", str(port), "--workers", "1"], cwd=ROOT, env=menv, stdout=mlog,
                                 stderr=subprocess.STDOUT)
        try:
            _wait(f"http://127.0.0.1:{port}/ping", mproc, 180)
            mh = {"content-type": "application/json"}

            result["anchor_mlflow_models_serve"] = [
                asyncio.run(_open_loop(f"http://127.0.0.1:{port}/invocations", r, args.seconds, payload, mh))
                for r in rates]
        finally:
            mproc.terminate()
            mproc.wait(30)
            mlog.close()
    result["machine"]["load_avg_at_end"] = list(os.getloadavg())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
