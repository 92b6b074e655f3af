"""Benchmark of the nightly batch: end-to-end seconds (read, features, both models, ranking, write),
the split, accounts/s and peak RSS for the local engine and for Spark local[2], beside the floor (the
bare predict of both models on the prepared feature matrix). Prints JSON.

    .venv/bin/python bench/batch.py --accounts 200000 [--data DIR] [--skip-spark]

Target (issue 4): the local engine at >= 10,000 accounts/s end to end under 8 GB, on 2 cores.
Each engine runs in a child process of its own, so its peak RSS is its own (ru_maxrss).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TRAINING = {"payment_model": {"n_estimators": 300, "learning_rate": 0.08},
            "amount_model": {"n_estimators": 300, "learning_rate": 0.08},
            "overturn_model": {"n_estimators": 200}}
TRAIN_ACCOUNTS = 20_000


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _engine(kind: str, data: str, as_of: str, model_path: str, out: str, queue) -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    with open(model_path, "rb") as f:
        model = pickle.load(f)
    t0 = time.perf_counter()
    if kind == "local":
        from serving.batch import run_batch

        res = run_batch(data, as_of, out, model, "bench/1")
        extra = {}
    else:
        from serving.batch.spark import run_spark_batch, spark_session

        spark = spark_session("local[2]")
        t_start = time.perf_counter() - t0
        res = run_spark_batch(data, as_of, out, model, "bench/1", spark=spark)
        extra = {"spark_session_start_s": round(t_start, 2), "groups": res.info.get("groups"),
                 "note": "JVM peak memory is not in ru_maxrss of the Python driver"}
    total = time.perf_counter() - t0
    queue.put({"engine": kind, "end_to_end_s": round(total, 2), "open_accounts_scored": res.n_accounts,
               "denials_scored": res.n_denials, "split_s": {k: round(v, 2) for k, v in res.timings.items()},
               "peak_rss_gb": round(_peak_rss_gb(), 2), **extra})


def _run_child(kind, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_engine, args=(kind, *args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def _floor(data: str, as_of: str, model_path: str) -> dict:
    """The bare predict of both models on the prepared (encoded) feature matrix."""
    import pandas as pd

    from features.contract import read_dataset
    from features.snapshot import account_features, denial_features

    with open(model_path, "rb") as f:
        model = pickle.load(f)
    ds = read_dataset(data)
    acc = account_features(ds, pd.Timestamp(as_of), stats=model.stats_, with_labels=False)
    den = denial_features(ds, pd.Timestamp(as_of), stats=model.stats_, with_labels=False)
    t0 = time.perf_counter()
    X = model.account_encoder_.transform(acc)
    t1 = time.perf_counter()
    model.score_account_matrix(X)
    t2 = time.perf_counter()
    model.score_denials(den) if len(den) else None
    t3 = time.perf_counter()
    return {"rows": len(acc), "denial_rows": len(den), "encode_s": round(t1 - t0, 3),
            "predict_payment_and_amount_s": round(t2 - t1, 3), "predict_overturn_s": round(t3 - t2, 3),
            "floor_s": round(t2 - t1 + t3 - t2, 3), "floor_accounts_per_s": round(len(acc) / max(t2 - t1, 1e-9))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--data", help="reuse a simulated dataset folder")
    ap.add_argument("--model", help="reuse a pickled RecoupModel")
    ap.add_argument("--as-of", default=None, help="default: the first of the data's last month")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--skip-spark", action="store_true")
    args = ap.parse_args()

    import pandas as pd

    work = Path(args.workdir or tempfile.mkdtemp(prefix="recoup-bench-batch-"))
    result: dict = {"accounts": args.accounts, "cores": mp.cpu_count()}
    t0 = time.perf_counter()
    if args.data:
        data = Path(args.data)
    else:
        from features.sources.simulate import simulate_to_folder

        data = simulate_to_folder(work / "data", args.accounts, 7, "2024-01-01", "2025-12-31", truth=False)
        result["simulate_s"] = round(time.perf_counter() - t0, 1)
    model_path = args.model
    if model_path is None:
        from features.contract import read_dataset
        from features.sources.simulate import simulate_to_folder
        from training.settings import load_settings
        from training.train import train_model

        t1 = time.perf_counter()
        train_data = simulate_to_folder(work / "train", TRAIN_ACCOUNTS, 8, "2024-01-01", "2025-12-31", truth=False)
        model, _ = train_model(read_dataset(train_data), load_settings(overrides=TRAINING))
        model_path = str(work / "model.pkl")
        with open(model_path, "wb") as f:
            pickle.dump(model, f)
        result["train_s"] = round(time.perf_counter() - t1, 1)
    as_of = args.as_of or "2025-12-01"
    result["as_of"] = as_of
    result["floor"] = _floor(str(data), as_of, model_path)
    local = _run_child("local", str(data), as_of, model_path, str(work / "out_local" / "worklist"))
    local["accounts_per_s"] = round(args.accounts / local["end_to_end_s"])
    local["target"] = ">= 10,000 accounts/s, < 8 GB"
    local["meets_target"] = local["accounts_per_s"] >= 10_000 and local["peak_rss_gb"] < 8
    result["local"] = local
    if not args.skip_spark:
        spark = _run_child("spark", str(data), as_of, model_path, str(work / "out_spark" / "worklist"))
        spark["accounts_per_s"] = round(args.accounts / spark["end_to_end_s"])
        # the largest finished descendant (the JVM or a Python worker) of this process
        spark["largest_child_peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2, 2)
        result["spark_local2"] = spark
        a = pd.read_parquet(work / "out_local" / "worklist")
        b = pd.read_parquet(work / "out_spark" / "worklist")
        result["spark_equals_local_rows"] = len(a) == len(b)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
