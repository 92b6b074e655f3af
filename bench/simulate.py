"""Simulator speed and memory: N accounts (default 1,000,000) straight to Parquet in chunks.
Prints JSON with seconds, accounts/s, rows written and peak RSS.  Run by hand:  python bench/simulate.py
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
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--chunk-size", type=int, default=50_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from features.sources.simulate import simulate_to_folder

    out = args.out or Path(tempfile.mkdtemp(prefix="recoup-sim-bench-")) / "data"
    t0 = time.perf_counter()
    simulate_to_folder(out, args.accounts, 0, "2024-01-01", "2025-12-31", chunk_size=args.chunk_size,
                       workers=args.workers)
    seconds = time.perf_counter() - t0
    rows = {p.relative_to(out).as_posix(): pq.ParquetFile(p).metadata.num_rows for p in sorted(out.rglob("*.parquet"))}
    print(json.dumps({
        "accounts": args.accounts, "chunk_size": args.chunk_size, "workers": args.workers, "seconds": round(seconds, 1),
        "accounts_per_s": round(args.accounts / seconds), "rows": rows,
        "peak_rss_gb_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "peak_rss_gb_largest_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2, 2),
        "out": str(out),
    }, indent=2))


if __name__ == "__main__":
    main()
