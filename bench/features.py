"""Benchmark: point-in-time account features for one as-of date, against a DuckDB SQL anchor.

    .venv/bin/python bench/features.py [--accounts 1000000] [--data DIR] [--as-of 2025-06-30]

Simulates (or reuses, `--data`) a dataset, times `features.snapshot.account_features` for one
as-of date (pooled statistics included), and times the same core aggregations (ledger balance,
payments in 30/90/365-day windows, claim / remittance / statement / call counts, open flag) written
as ONE DuckDB SQL query over the same Parquet files. Prints JSON: accounts/s, peak RSS, the DuckDB
time and the ratio, plus the one-account latency (the HTTP API's path). Target (issue 2): at least
20,000 accounts/s and under 8 GB for 1,000,000 accounts on a 2-core machine.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_ACCOUNTS_PER_S = 20_000
TARGET_RSS_GB = 8.0


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def _synthetic(out: Path, n: int, seed: int, start: str, end: str) -> Path:
    """Fallback when the simulator is absent: a plain random dataset in the contract (bench only)."""
    import numpy as np
    import pandas as pd

    from features.contract import Dataset, coerce_table, write_dataset

    rng = np.random.default_rng(seed)
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    span = (t1 - t0).days
    ids = np.array([f"A{i:08d}" for i in range(n)], dtype=object)

    def days(k: int, lo: int, hi: int) -> np.ndarray:
        return rng.integers(lo, hi, k).astype("timedelta64[D]")

    end_day = np.datetime64(t1.date(), "D")
    svc = np.datetime64(t0.date(), "D") + days(n, 0, span - 60)
    payers = pd.DataFrame(
        {
            "payer_id": ["P1", "P2", "P3", "SP"],
            "payer_name": ["a", "b", "c", "self"],
            "financial_class": ["commercial", "medicare", "medicaid", "self_pay"],
            "timely_filing_days": pd.array([90, 365, 180, None], dtype="Int64"),
            "appeal_window_days": pd.array([60, 120, 90, None], dtype="Int64"),
        }
    )
    charges = np.round(rng.lognormal(7, 1, n), 2)
    acc = pd.DataFrame(
        {
            "account_id": ids,
            "patient_id": ids,
            "facility_id": "F1",
            "encounter_type": rng.choice(["inpatient", "outpatient", "emergency", "professional"], n),
            "service_date": svc,
            "discharge_date": svc + days(n, 0, 5),
            "primary_payer_id": rng.choice(np.array(["P1", "P2", "P3", None], dtype=object), n),
            "patient_age": pd.array(rng.integers(0, 95, n), dtype="Int64"),
            "patient_state": "NY",
            "total_charges": charges,
        }
    )
    cid = np.array([f"C{i:08d}" for i in range(n)], dtype=object)
    sub = svc + days(n, 1, 20)
    claims = pd.DataFrame(
        {
            "claim_id": cid,
            "account_id": ids,
            "payer_id": rng.choice(["P1", "P2", "P3"], n),
            "payer_sequence": pd.array(np.ones(n, int), dtype="Int64"),
            "claim_type": "professional",
            "frequency": "original",
            "submitted_date": sub,
            "billed_amount": charges,
            "principal_dx": "J45",
            "dx_version": pd.array(np.full(n, 10), dtype="Int64"),
            "original_claim_id": None,
        }
    )
    lines = pd.DataFrame(
        {
            "claim_id": cid,
            "line_number": pd.array(np.ones(n, int), dtype="Int64"),
            "procedure_code": rng.choice(["99213", "71046", "80053", "27447"], n),
            "modifiers": None,
            "units": 1.0,
            "line_charge": charges,
            "revenue_code": None,
        }
    )
    denied = rng.random(n) < 0.12
    paid = np.where(denied, 0.0, np.round(charges * rng.uniform(0.3, 0.8, n), 2))
    rid = np.array([f"R{i:08d}" for i in range(n)], dtype=object)
    rec = sub + days(n, 5, 45)
    rem = pd.DataFrame(
        {
            "remit_id": rid,
            "claim_id": cid,
            "received_date": rec,
            "claim_status": np.where(denied, "denied", "processed_primary"),
            "paid_amount": paid,
            "patient_responsibility": 0.0,
            "payer_claim_number": None,
        }
    )
    adj = pd.DataFrame(
        {
            "remit_id": rid,
            "line_number": pd.array([None] * n, dtype="Int64"),
            "group_code": "CO",
            "reason_code": np.where(denied, rng.choice(["16", "197", "50"], n), "45"),
            "amount": np.round(charges - paid, 2),
            "remark_codes": None,
        }
    )
    k = 3 * n
    who = rng.integers(0, n, k)
    tx = pd.concat(
        [
            pd.DataFrame({"account_id": ids, "posted_date": svc, "txn_type": "charge", "amount": charges}),
            pd.DataFrame(
                {
                    "account_id": ids[~denied],
                    "posted_date": rec[~denied],
                    "txn_type": "insurance_payment",
                    "amount": paid[~denied],
                }
            ),
            pd.DataFrame(
                {
                    "account_id": ids[who],
                    "posted_date": svc[who] + days(k, 30, 200),
                    "txn_type": rng.choice(["patient_payment", "contractual_adjustment"], k),
                    "amount": np.round(rng.uniform(5, 200, k), 2),
                }
            ),
        ],
        ignore_index=True,
    )
    tx["posted_date"] = np.minimum(tx["posted_date"].to_numpy(), end_day.astype("datetime64[ns]"))
    tx.insert(0, "txn_id", np.array([f"T{i:09d}" for i in range(len(tx))], dtype=object))
    tx["payer_id"] = None
    who = rng.integers(0, n, 4 * n)
    act = pd.DataFrame(
        {
            "activity_id": np.array([f"V{i:09d}" for i in range(len(who))], dtype=object),
            "account_id": ids[who],
            "activity_date": np.minimum(svc[who] + days(len(who), 20, 300), end_day),
            "activity_type": rng.choice(["statement", "call_attempt", "call_contact", "letter"], len(who)),
        }
    )
    appeals = pd.DataFrame(
        {
            c: []
            for c in [
                "appeal_id",
                "claim_id",
                "level",
                "submitted_date",
                "outcome",
                "decision_date",
                "recovered_amount",
            ]
        }
    )
    tables = {
        "payers": payers,
        "accounts": acc,
        "claims": claims,
        "claim_lines": lines,
        "remittances": rem,
        "adjustments": adj,
        "transactions": tx,
        "appeals": appeals,
        "activities": act,
    }
    tables = {k: coerce_table(k, v)[0] for k, v in tables.items()}  # the contract's types, empty tables too
    write_dataset(Dataset(tables), out)
    return out


def _dataset(args) -> tuple[Path, str]:
    if args.data:
        return Path(args.data), "given"
    out = Path(tempfile.gettempdir()) / f"recoup_bench_{args.accounts}_{args.seed}"
    if out.exists():
        return out, "reused"
    try:
        from features.sources.simulate import simulate_to_folder
    except ImportError:
        return _synthetic(out, args.accounts, args.seed, args.start, args.end), "synthetic"
    simulate_to_folder(out, args.accounts, args.seed, args.start, args.end, truth=False)
    return out, "simulated"


DUCKDB_SQL = """
WITH t AS (
  SELECT account_id, posted_date AS d, txn_type, amount,
         CASE WHEN txn_type IN ('charge', 'refund', 'payment_reversal') THEN amount ELSE -amount END AS led,
         CASE WHEN txn_type IN ('insurance_payment', 'patient_payment') THEN amount
              WHEN txn_type IN ('payment_reversal', 'refund') THEN -amount ELSE 0 END AS rec
  FROM read_parquet('{d}/transactions.parquet') WHERE posted_date <= DATE '{t}'),
led AS (
  SELECT account_id, round(sum(led), 2) AS balance,
         round(sum(rec) FILTER (WHERE d > DATE '{t}' - 30), 2) AS payments_30d,
         round(sum(rec) FILTER (WHERE d > DATE '{t}' - 90), 2) AS payments_90d,
         round(sum(rec) FILTER (WHERE d > DATE '{t}' - 365), 2) AS payments_365d,
         count(*) FILTER (WHERE txn_type = 'patient_payment') AS n_patient_payments,
         max(d) FILTER (WHERE txn_type IN ('insurance_payment', 'patient_payment')) AS last_payment,
         bool_or(txn_type = 'bad_debt_writeoff') AS bad_debt
  FROM t GROUP BY account_id),
c AS (SELECT account_id, count(*) AS n_claims, max(submitted_date) AS last_claim
      FROM read_parquet('{d}/claims.parquet') WHERE submitted_date <= DATE '{t}' GROUP BY account_id),
r AS (SELECT c.account_id, count(*) AS n_remits, sum(r.paid_amount) AS remit_paid
      FROM read_parquet('{d}/remittances.parquet') r JOIN read_parquet('{d}/claims.parquet') c USING (claim_id)
      WHERE r.received_date <= DATE '{t}' GROUP BY c.account_id),
v AS (SELECT account_id,
             count(*) FILTER (WHERE activity_type = 'statement' AND activity_date > DATE '{t}' - 30) AS st30,
             count(*) FILTER (WHERE activity_type = 'statement' AND activity_date > DATE '{t}' - 90) AS st90,
             count(*) FILTER (WHERE activity_type = 'statement' AND activity_date > DATE '{t}' - 365) AS st365,
             count(*) FILTER (WHERE activity_type = 'call_attempt' AND activity_date > DATE '{t}' - 7) AS ca7,
             bool_or(activity_type = 'agency_placement') AS agency
      FROM read_parquet('{d}/activities.parquet') WHERE activity_date <= DATE '{t}' GROUP BY account_id)
SELECT a.account_id, led.balance, led.payments_30d, led.payments_90d, led.payments_365d,
       led.n_patient_payments, DATE '{t}' - led.last_payment AS days_since_last_payment,
       coalesce(c.n_claims, 0) AS n_claims, DATE '{t}' - c.last_claim AS days_since_last_claim,
       coalesce(r.n_remits, 0) AS n_remits, coalesce(r.remit_paid, 0) AS remit_paid,
       coalesce(v.st30, 0) AS st30, coalesce(v.st90, 0) AS st90, coalesce(v.st365, 0) AS st365,
       coalesce(v.ca7, 0) AS ca7
FROM read_parquet('{d}/accounts.parquet') a
JOIN led USING (account_id) LEFT JOIN c USING (account_id) LEFT JOIN r USING (account_id)
LEFT JOIN v USING (account_id)
WHERE a.service_date <= DATE '{t}' AND led.balance > 0 AND NOT led.bad_debt AND NOT coalesce(v.agency, false)
ORDER BY a.account_id
"""


def _duckdb(folder: Path, as_of: str, threads: int):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    t0 = time.perf_counter()
    res = con.execute(DUCKDB_SQL.format(d=folder, t=as_of))
    table = res.to_arrow_table() if hasattr(res, "to_arrow_table") else res.fetch_arrow_table()
    return time.perf_counter() - t0, table


def _agreement(feats, table) -> float:
    """Largest absolute difference between the two engines on the shared aggregates (should be 0)."""
    import numpy as np

    duck = table.to_pandas().set_index("account_id")
    ours = feats.set_index("account_id").reindex(duck.index)
    pairs = {
        "balance": "balance",
        "payments_30d": "payments_30d",
        "payments_365d": "payments_365d",
        "n_claims": "n_claims",
        "n_remits": "n_remits",
        "statements_90d": "st90",
        "call_attempts_7d": "ca7",
        "n_patient_payments": "n_patient_payments",
    }
    worst = 0.0
    for mine, theirs in pairs.items():
        a = ours[mine].astype(float).to_numpy()
        b = duck[theirs].astype(float).fillna(0).to_numpy()
        worst = max(worst, float(np.nanmax(np.abs(a - b))) if len(a) else 0.0)
    return worst


def _one_account_ms(ds, as_of: str, stats, repeats: int = 200) -> dict[str, float]:
    """The API's path: one account's whole history, with the model's stored stats table."""
    import numpy as np

    from features.contract import ColumnTable, Dataset
    from features.snapshot import account_features, snapshot_features

    acc = ds["accounts"]
    aid = acc["account_id"].iloc[len(acc) // 2]
    claims = ds["claims"][ds["claims"]["account_id"] == aid]
    cids = set(claims["claim_id"])
    rem = ds["remittances"][ds["remittances"]["claim_id"].isin(cids)]
    one = Dataset(
        {
            "payers": ds["payers"],
            "accounts": acc[acc["account_id"] == aid],
            "claims": claims,
            "claim_lines": ds["claim_lines"][ds["claim_lines"]["claim_id"].isin(cids)],
            "remittances": rem,
            "adjustments": ds["adjustments"][ds["adjustments"]["remit_id"].isin(set(rem["remit_id"]))],
            "transactions": ds["transactions"][ds["transactions"]["account_id"] == aid],
            "appeals": ds["appeals"][ds["appeals"]["claim_id"].isin(cids)],
            "activities": ds["activities"][ds["activities"]["account_id"] == aid],
        },
        extract_date=ds.extract_date,
    )
    one = Dataset({k: v.reset_index(drop=True) for k, v in one.tables.items()}, extract_date=ds.extract_date)
    # the API's own form: NumPy tables in, NumPy columns out (serving.api.request.build_dataset)
    one_np = Dataset({k: ColumnTable.from_frame(v) for k, v in one.tables.items()}, extract_date=ds.extract_date)
    out = {}
    calls = {
        "account_features": lambda: account_features(one, as_of, stats=stats, with_labels=False),
        "snapshot_features": lambda: snapshot_features(one, as_of, stats=stats, with_labels=False),
        "snapshot_features_api_path": lambda: snapshot_features(one_np, as_of, stats=stats, with_labels=False,
                                                                frames=False),
    }
    for name, call in calls.items():
        for _ in range(10):
            call()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        out[name] = {
            "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 2),
            "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 2),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accounts", type=int, default=1_000_000)
    ap.add_argument("--data", help="an existing dataset folder (Parquet) to reuse")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--start", default="2024-01-01")
    ap.add_argument("--end", default="2025-12-31")
    ap.add_argument("--as-of", default="2025-06-30")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="DuckDB threads")
    args = ap.parse_args()

    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    from features.contract import read_dataset
    from features.snapshot import account_features, pooled_stats

    folder, origin = _dataset(args)
    t0 = time.perf_counter()
    ds = read_dataset(folder, validate=False)
    read_s = time.perf_counter() - t0
    n_accounts = len(ds["accounts"])
    rss_after_read = _peak_rss_gb()

    t0 = time.perf_counter()
    feats = account_features(ds, args.as_of, with_labels=True)
    feat_s = time.perf_counter() - t0
    rss = _peak_rss_gb()
    stats = pooled_stats(ds, args.as_of)
    one = _one_account_ms(ds, args.as_of, stats)

    duck_s, duck_table = _duckdb(folder, args.as_of, args.threads)
    duck_rows = duck_table.num_rows
    max_abs_diff = _agreement(feats, duck_table)
    aps = n_accounts / feat_s
    print(
        json.dumps(
            {
                "bench": "features.account_features",
                "dataset": origin,
                "accounts": n_accounts,
                "rows": {t: len(df) for t, df in ds.tables.items()},
                "as_of": args.as_of,
                "open_accounts": len(feats),
                "feature_columns": feats.shape[1],
                "read_s": round(read_s, 2),
                "features_s": round(feat_s, 2),
                "accounts_per_s": round(aps),
                "peak_rss_gb": round(rss, 2),
                "peak_rss_after_read_gb": round(rss_after_read, 2),
                "duckdb_core_s": round(duck_s, 2),
                "duckdb_rows": duck_rows,
                "duckdb_max_abs_diff": max_abs_diff,
                "duckdb_threads": args.threads,
                "ratio_features_to_duckdb": round(feat_s / duck_s, 2),
                "one_account": one,
                "anchors": {
                    "target_accounts_per_s": TARGET_ACCOUNTS_PER_S,
                    "target_rss_gb": TARGET_RSS_GB,
                    "meets_speed": aps >= TARGET_ACCOUNTS_PER_S,
                    "meets_memory": rss < TARGET_RSS_GB,
                },
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
