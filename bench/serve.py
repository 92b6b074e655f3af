"""Benchmark of the real-time service (run by hand; prints JSON).

  .venv/bin/python bench/serve.py [--seconds 30] [--rates 20,50,100] [--data DIR --tracking-uri URI]

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


def _ledger_rows(ds, account_id: str) -> int:
    from serving.api.request import history_from_dataset

    h = history_from_dataset(ds, [account_id], "2000-01-01")["accounts"][0]
    return 1 + sum(len(v) for k, v in h.items() if k not in ("account", "payers"))


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


def _breakdown(ds, account_id: str, as_of, uri: str, n: int = 300) -> dict:
    """Where one single-account request's time goes inside the service (in-process, median ms),
    stage by stage as `RecoupService._handle` runs them."""
    from features.snapshot import snapshot_features
    from serving.api.request import ScoreRequest, build_dataset, check_references, history_from_dataset
    from serving.api.response import account_results
    from serving.api.service import load_model
    from serving.api.settings import ServiceSettings
    from serving.ranking import finalize, load_ranking_config, score_rows

    state = load_model(ServiceSettings(no_auth=True, tracking_uri=uri))
    model, cfg = state.model, load_ranking_config()
    raw = json.dumps(history_from_dataset(ds, [account_id], as_of)).encode()
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


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rates", default="20,50,100")
    ap.add_argument("--data")
    ap.add_argument("--tracking-uri")
    ap.add_argument("--as-of", default="2025-06-01")
    ap.add_argument("--skip-mlflow", action="store_true")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    data, uri = _prepare(args)

    import httpx
    import psutil

    from features.contract import read_dataset
    from features.snapshot import account_features
    from serving.api.request import history_from_dataset
    from training.tracking import load_bundle

    ds = read_dataset(data)
    model = load_bundle("recoup", "champion", None, uri)
    as_of = pd.Timestamp(args.as_of)
    feats = account_features(ds, as_of, stats=model.stats_, with_labels=False)
    open_ids = list(feats["account_id"])
    rows = {a: _ledger_rows(ds, a) for a in open_ids[:600]}
    account = min(rows, key=lambda a: (abs(rows[a] - 50), a))
    one = json.dumps(history_from_dataset(ds, [account], as_of)).encode()
    all_ids = sorted(ds["accounts"]["account_id"])
    wl_ids = (open_ids + [a for a in all_ids if a not in set(open_ids)])[:1000]
    worklist = json.dumps(history_from_dataset(ds, wl_ids, as_of)).encode()
    result: dict = {"machine": {"cpus": os.cpu_count(), "load_avg_at_start": list(os.getloadavg())},
                    "model": {"features": len(model.account_features_), "trees": {
                        name: int(getattr(model, f"{name}_").best_iteration_ or getattr(model, f"{name}_").n_estimators)
                        for name in ("payment", "amount", "overturn")}},
                    "single_request": {"history_rows": rows[account], "body_bytes": len(one)},
                    "worklist_request": {"accounts": len(wl_ids), "open": int(sum(a in set(open_ids) for a in wl_ids)),
                                         "body_bytes": len(worklist)}}

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
    result["per_request_breakdown_ms"] = _breakdown(ds, account, as_of, uri)

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
