"""Training speed: both models on ~500,000 snapshot rows (issue target: within 5 minutes on 2 cores).

Simulates enough accounts (or reuses --data), builds the training snapshots, then times
`RecoupModel.fit` (payment classifier, Tweedie amount model, overturn model, calibration).
Prints JSON with rows, seconds and peak RSS.  Run by hand:  python bench/train.py --accounts 220000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on the path, where bench/features.py would shadow the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=220_000)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()

    from features.contract import read_dataset
    from features.snapshot import pooled_stats
    from features.sources.simulate import simulate_to_folder
    from training.model import RecoupModel
    from training.settings import load_settings
    from training.train import build_snapshots

    data = args.data or simulate_to_folder(Path(tempfile.mkdtemp(prefix="recoup-train-")) / "data", args.accounts,
                                           args.seed, "2024-01-01", "2025-12-31")
    ds = read_dataset(data)
    cfg = load_settings()
    t0 = time.perf_counter()
    snaps = build_snapshots(ds, cfg)
    stats = pooled_stats(ds, ds.extract_date, cfg.horizons)
    t_snap = time.perf_counter() - t0
    train, valid = snaps.part("train"), snaps.part("valid")
    dtrain, dvalid = snaps.part("train", "denials"), snaps.part("valid", "denials")
    t1 = time.perf_counter()
    model = RecoupModel(cfg).fit(train, valid, dtrain, dvalid, stats)
    t_fit = time.perf_counter() - t1
    print(json.dumps({
        "account_rows_train": len(train), "account_rows_valid": len(valid),
        "denial_rows_train": len(dtrain), "denial_rows_valid": len(dvalid),
        "rows_total": len(train) + len(valid) + len(dtrain) + len(dvalid),
        "snapshot_build_s": round(t_snap, 1), "fit_both_models_s": round(t_fit, 1),
        "trees": {"payment": model.payment_.best_iteration_, "amount": model.amount_.best_iteration_,
                  "overturn": model.overturn_.best_iteration_},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
