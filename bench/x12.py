"""Benchmark X12 835 ingestion: a large 835 built from the sample claims with new ids, timed end to end
(read + map + contract tables + Parquet write). Prints JSON: claims/s and peak RSS, beside the anchor.

    .venv/bin/python bench/x12.py [--claims 200000] [--per-transaction 2000] [--layout compact|pretty]

`--layout pretty` writes the file as real senders often do: one segment a line, CR LF, indented.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_CLAIMS_PER_S = 20_000  # issue 6, on a 2-core machine

# Claim loops (CLP..) in the shapes the samples carry: a multi-line paid claim with CAS at claim and
# line level, a denied claim with LQ remarks, an institutional claim with MIA.
CLAIM_TEMPLATES = [
    "CLP*{id}*1*341.28*88.92*105.26*16*ICN{id}*12*1~NM1*QC*1*MR*COOL****MI*M{id}~REF*1L*12345~"
    "DTM*232*20201221~DTM*233*20210113~AMT*AU*194.18~SVC*HC>B4152*156.42*88.92**234~DTM*472*20201221~"
    "CAS*CO*45*67.5~REF*6R*800941258001~AMT*B6*88.92~SVC*HC>B4152*184.86*0**277~DTM*472*20210101~"
    "CAS*PR*1*105.26~CAS*CO*45*79.6~REF*6R*800941258002~AMT*B6*105.26~",
    "CLP*{id}*4*34*0**MC*ICN{id}*11~NM1*QC*1*LAST*FIRST****MI*M{id}~DTM*232*20210101~"
    "SVC*HC>V2020*12*0**0~DTM*472*20210101~CAS*CO*29*12~LQ*HE*N206~SVC*HC>V2103*22*0**0~"
    "DTM*472*20210101~CAS*CO*29*22~LQ*HE*N206~",
    "CLP*{id}*1*211366.97*138018.40**MA*ICN{id}*11*1~CAS*CO*45*73348.57~NM1*QC*1*JONES*SAM*O***HN*M{id}~"
    "MIA*0***138018.40~DTM*232*20200816~DTM*233*20200824~",
]
HEADER = ("ST*835*{st}~BPR*I*1000*C*ACH*CCP*01*111*DA*33*1234567890**01*111*DA*22*20210204~"
          "TRN*1*T{st}*1999999999~DTM*405*20210201~N1*PR*BENCH HEALTH PLAN*XV*87726~"
          "N1*PE*BENCH CLINIC*XX*1922164458~"
          "LX*1~")


def make_835(path: Path, claims: int, per_tx: int, layout: str = "compact") -> int:
    isa = ("ISA*00*          *00*          *ZZ*BENCHSENDER    *ZZ*BENCHRECV      *210203*0330*^*00501*"
           "000000001*0*P*>~GS*HP*BENCHSENDER*BENCHRECV*20210203*0330*1*X*005010X221A1~")
    n_tx = 0
    with path.open("w", newline="") as fh:

        def emit(text: str) -> None:
            # pretty: one segment a line, CR LF, indented (white space the reader must drop)
            fh.write(text.replace("~", "~\r\n    ") if layout == "pretty" else text)

        emit(isa)
        done = 0
        while done < claims:
            n_tx += 1
            k = min(per_tx, claims - done)
            parts = [HEADER.format(st=f"{n_tx:06d}")]
            for i in range(done, done + k):
                parts.append(CLAIM_TEMPLATES[i % len(CLAIM_TEMPLATES)].format(id=f"B{i:09d}"))
            parts.append("PLB*1922164458*20211231*WO>X*-5~")
            body = "".join(parts)
            emit(body + f"SE*{body.count('~') + 1}*{n_tx:06d}~")
            done += k
        emit(f"GE*{n_tx}*1~IEA*1*000000001~")
    return n_tx


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    kb = resource.getrusage(who).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the parallel workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--claims", type=int, default=200_000)
    ap.add_argument("--per-transaction", type=int, default=2_000)
    ap.add_argument("--layout", choices=("compact", "pretty"), default="compact")
    ap.add_argument("--workers", type=int, default=None,
                    help="processes mapping transactions (default: one per core; 1 = serial)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from features.sources.x12 import ingest

    with tempfile.TemporaryDirectory(prefix="recoup-bench-x12-") as tmp:
        src = Path(tmp) / "big.835"
        n_tx = make_835(src, args.claims, args.per_transaction, args.layout)
        size_mb = src.stat().st_size / 1e6
        rss_before = peak_rss_mb()
        load_before = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), cpu_seconds()
        tables, summary = ingest([src], out=Path(tmp) / "data", workers=args.workers)
        seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        assert summary.remits == args.claims and summary.transactions_skipped == 0
    result = {
        "bench": "x12_835_ingest",
        "claims": args.claims,
        "transactions": n_tx,
        "layout": args.layout,
        "file_mb": round(size_mb, 1),
        "seconds": round(seconds, 2),
        "claims_per_s": round(args.claims / seconds),
        "workers": args.workers or "one per core",
        "cpus": os.cpu_count(),
        # CPU of this process and its workers: wall time suffers when other jobs share the 2 cores
        "cpu_seconds": round(cpu, 2),
        "claims_per_cpu_s": round(args.claims / cpu),
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "anchor_claims_per_s": TARGET_CLAIMS_PER_S,
        "meets_anchor": args.claims / seconds >= TARGET_CLAIMS_PER_S,
        "pyx12_claims_per_s_design_md": 850,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_rss_worker_mb": round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
        "peak_rss_before_ingest_mb": round(rss_before, 1),
        "rows": {n: len(df) for n, df in tables.items() if len(df)},
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
