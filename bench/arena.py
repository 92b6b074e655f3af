"""The arena at office scale: the figures the README quotes.

Simulates N accounts (or reuses --data), trains recoup's models with the default configuration (the
`expected_recovery` policy), then runs every shipped policy for D days with K collectors on the same
random streams, and prints JSON: each policy's figures, the share of the oracle's dollars-because-of-work
that each policy gets, and where the time went. Target: the arena under 10 minutes for 20,000 accounts,
90 days, 3 collectors, on this 2-core machine.
Run by hand:  python bench/arena.py --accounts 20000 --days 90 --collectors 3
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on the path, where bench/features.py would shadow the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1, help="simulation seed")
    ap.add_argument("--arena-seed", type=int, default=0)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--collectors", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=480)
    ap.add_argument("--data", type=Path, default=None, help="reuse a simulated dataset folder")
    ap.add_argument("--out", type=Path, default=None, help="where the arena's report goes (default: a temp folder)")
    ap.add_argument("--policies", default="largest_balance,oldest,random,expected_recovery,lift,oracle")
    ap.add_argument("--model", type=Path, default=None,
                    help="a pickled RecoupModel to use instead of training one (written there when absent)")
    args = ap.parse_args()

    from features.arena import SHIPPED, run_arena
    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from serving.arena_policy import MODEL_POLICIES, ModelPolicy
    from training.settings import load_settings
    from training.train import train_model

    root = Path(tempfile.mkdtemp(prefix="recoup-arena-bench-"))
    t0 = time.perf_counter()
    data = args.data or simulate_to_folder(root / "data", args.accounts, args.seed, "2024-01-01", "2025-12-31",
                                           workers=2)
    t_sim = time.perf_counter() - t0
    t1 = time.perf_counter()
    if args.model is not None and args.model.exists():
        model = pickle.loads(args.model.read_bytes())
    else:
        model, _ = train_model(read_dataset(data), load_settings())
        if args.model is not None:
            args.model.write_bytes(pickle.dumps(model))
    t_train = time.perf_counter() - t1
    policies = {name: ModelPolicy(model, "bench/1", priority=MODEL_POLICIES[name]) if name in MODEL_POLICIES
                else SHIPPED[name] for name in args.policies.split(",")}
    out = args.out or root / "arena"
    report = run_arena(data, policies, args.days, args.collectors, args.minutes, seed=args.arena_seed, out=out)
    oracle = next((r["collected_because_of_work"] for r in report["summary"] if r["policy"] == "oracle"), None)
    for r in report["summary"]:
        r["share_of_oracle"] = round(r["collected_because_of_work"] / oracle, 4) if oracle else None
    print(json.dumps({
        "accounts": args.accounts if args.data is None else None, "seed": args.seed, "arena_seed": args.arena_seed,
        "days": args.days, "collectors": args.collectors, "minutes": args.minutes,
        "open_accounts": report["office"]["open_accounts"], "first_day": report["office"]["first_day"],
        "simulate_s": round(t_sim, 1), "train_s": round(t_train, 1), "arena_s": round(report["seconds"], 1),
        "policies": report["summary"], "out": str(out),
    }, indent=2))


if __name__ == "__main__":
    main()
