"""Same behaviour before and after a refactor: run the product end to end through its stable interfaces
(the `recoup` console script and the HTTP API only, never internal names, so that the same script runs on
any version of the code) and compare the outputs of two runs. Prints JSON.

    python bench/equivalence.py run  OUT_DIR [--accounts 3000 --seed 23]   # on one version of the code
    python bench/equivalence.py compare OLD_DIR NEW_DIR                      # exit 1 if anything differs

`run` simulates a dataset, trains and registers a small model, scores the nightly batch at two as-of
dates with the default ranking, with exploration off and with a large exploration share, then serves the
model and asks `/score` and `/worklist` (with and without `capacity_minutes`) about a sample of accounts.
`compare` checks every worklist, denial list and drift report column but `run_id` (floats to 1e-9), and
every API answer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

AS_OF_DATES = ("2025-06-01", "2025-05-01")
RANKINGS = {"default": {}, "no_exploration": {"exploration_share": 0.0},
            "much_exploration": {"exploration_share": 0.25, "exploration_seed": 3}}
TRAINING = {"payment_model": {"n_estimators": 60}, "amount_model": {"n_estimators": 60},
            "overturn_model": {"n_estimators": 40}}
HISTORY_BY_ACCOUNT = ("claims", "transactions", "activities")
HISTORY_BY_CLAIM = ("claim_lines", "remittances", "appeals")
API_ACCOUNTS = 40
RUN_SPECIFIC = {"run_id", "request_id"}


def _recoup(*args: str, env: dict) -> None:
    exe = Path(sys.executable).with_name("recoup")
    subprocess.run([str(exe), *args], check=True, env=env, stdout=subprocess.DEVNULL)


def _yaml(path: Path, content: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(content))
    return path


def _json_value(v):
    if v is None or v is pd.NaT or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (pd.Timestamp, dt.date)):
        return v.strftime("%Y-%m-%d")
    return v.item() if isinstance(v, np.generic) else v


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in r.items()} for r in df.astype(object).to_dict(orient="records")]


def _request(data: Path, account_ids: list[str], as_of: str) -> dict:
    t = {p.stem: pd.read_parquet(p) for p in data.glob("*.parquet")}
    accounts = []
    for a in account_ids:
        h = {"account": _records(t["accounts"][t["accounts"]["account_id"] == a])[0]}
        for name in HISTORY_BY_ACCOUNT:
            h[name] = _records(t[name][t[name]["account_id"] == a])
        claims = {c["claim_id"] for c in h["claims"]}
        for name in HISTORY_BY_CLAIM:
            h[name] = _records(t[name][t[name]["claim_id"].isin(claims)])
        remits = {r["remit_id"] for r in h["remittances"]}
        h["adjustments"] = _records(t["adjustments"][t["adjustments"]["remit_id"].isin(remits)])
        payers = {h["account"]["primary_payer_id"]} | {c["payer_id"] for c in h["claims"]}
        h["payers"] = _records(t["payers"][t["payers"]["payer_id"].isin(payers - {None})])
        accounts.append(h)
    return {"as_of": as_of, "accounts": accounts}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api_answers(out: Path, env: dict) -> dict:
    import httpx

    port = _free_port()
    exe = Path(sys.executable).with_name("recoup")
    server = subprocess.Popen([str(exe), "serve", "--no-auth", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the server did not become ready")
        ids = sorted(pd.read_parquet(out / "data" / "accounts.parquet")["account_id"])
        rng = np.random.default_rng(0)
        sample = sorted(rng.choice(ids, API_ACCOUNTS, replace=False).tolist())
        answers = {}
        for as_of in AS_OF_DATES:
            body = _request(out / "data", sample, as_of)
            answers[f"score_{as_of}"] = httpx.post(f"{base}/score", json=body, timeout=120).json()
            one = {"as_of": as_of, "accounts": body["accounts"][:1]}
            answers[f"score_one_{as_of}"] = httpx.post(f"{base}/score", json=one, timeout=120).json()
            answers[f"worklist_{as_of}"] = httpx.post(f"{base}/worklist", json=body, timeout=120).json()
            answers[f"worklist_capacity_{as_of}"] = httpx.post(
                f"{base}/worklist", json={**body, "capacity_minutes": 60}, timeout=120).json()
        return answers
    finally:
        server.terminate()
        server.wait(30)


def run(out: Path, accounts: int, seed: int) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{out.resolve()}/mlflow.db",
           "RECOUP_ARTIFACT_ROOT": str((out / "artifacts").resolve())}
    t0 = time.perf_counter()
    _recoup("simulate", "--out", str(out / "data"), "--accounts", str(accounts), "--seed", str(seed),
            "--end", "2025-06-30", env=env)
    _recoup("train", str(out / "data"), "--config", str(_yaml(out / "train.yaml", TRAINING)), env=env)
    for name, ranking in RANKINGS.items():
        cfg = _yaml(out / f"ranking_{name}.yaml", ranking)
        for as_of in AS_OF_DATES:
            _recoup("score", str(out / "data"), "--as-of", as_of, "--out", str(out / "batch" / name / as_of / "wl"),
                    "--ranking-config", str(cfg), env=env)
    (out / "api.json").write_text(json.dumps(_api_answers(out, env), indent=1, sort_keys=True))
    return {"out": str(out), "seconds": round(time.perf_counter() - t0, 1)}


def _compare_frames(a: pd.DataFrame, b: pd.DataFrame, what: str) -> list[str]:
    a = a.drop(columns=[c for c in RUN_SPECIFIC if c in a.columns])
    b = b.drop(columns=[c for c in RUN_SPECIFIC if c in b.columns])
    if list(a.columns) != list(b.columns):
        return [f"{what}: columns differ: {sorted(set(a.columns) ^ set(b.columns))} or their order"]
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-9)
    except AssertionError as err:
        return [f"{what}: {str(err).splitlines()[0:3]}"]
    return []


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in RUN_SPECIFIC}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _compare_json(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys differ: {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _compare_json(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _compare_json(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, (int, float)):
        return [] if abs(a - b) <= 1e-9 * max(1.0, abs(a)) else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


# a run's versioned outputs (issue 15) are named by its run: `2025-06-01.<hex>/`, `runs.<hex>.parquet`
_RUN_NAMED = re.compile(r"^(?P<stem>\d{4}-\d{2}-\d{2}|runs)\.[0-9a-f]{8,}(?P<ext>\.parquet)?$")


def _outputs(root: Path) -> dict[str, Path]:
    """The batch outputs under `root` by a name without the run-specific parts."""
    out = {}
    for p in (root / "batch").rglob("*.parquet"):
        parts = [_RUN_NAMED.sub(lambda m: m["stem"] + (m["ext"] or ""), part) for part in p.relative_to(root).parts]
        out["/".join(parts)] = p
    return out


def compare(old: Path, new: Path) -> dict:
    problems: list[str] = []
    before, after = _outputs(old), _outputs(new)
    files = sorted(before)
    if not files:
        problems.append(f"no batch outputs in {old}")
    for rel in files:
        if rel not in after:
            problems.append(f"{rel}: missing in {new}")
            continue
        if rel.endswith("_runs.parquet") or rel.endswith("/runs.parquet"):
            continue  # run ids, timings and timestamps
        problems += _compare_frames(pd.read_parquet(before[rel]), pd.read_parquet(after[rel]), rel)
    problems += _compare_json(_strip(json.loads((old / "api.json").read_text())),
                              _strip(json.loads((new / "api.json").read_text())), "api")
    return {"files_compared": len(files), "identical": not problems, "differences": problems[:50]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--accounts", type=int, default=3000)
    r.add_argument("--seed", type=int, default=23)
    c = sub.add_parser("compare")
    c.add_argument("old", type=Path)
    c.add_argument("new", type=Path)
    args = parser.parse_args()
    if args.cmd == "run":
        print(json.dumps(run(args.out, args.accounts, args.seed)))
        return 0
    result = compare(args.old, args.new)
    print(json.dumps(result, indent=1))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
