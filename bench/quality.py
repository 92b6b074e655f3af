"""Model quality on the simulator's data, the figures the README quotes.

Simulates N accounts (or reuses --data), trains with the default configuration, evaluates on the
test period against the simulator's exact truth and prints JSON: AUC of the model and of the true
probabilities, ECE, and dollars captured at the top 20% by the model, the perfect ordering and
the usual orderings. Run by hand:  python bench/quality.py --accounts 150000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on the path, where bench/features.py would shadow the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--accounts", type=int, default=150_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=None, help="reuse a simulated dataset folder")
    args = ap.parse_args()

    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from training.settings import load_settings
    from training.train import evaluate_model, train_model

    t0 = time.perf_counter()
    data = args.data
    if data is None:
        data = simulate_to_folder(Path(tempfile.mkdtemp(prefix="recoup-quality-")) / "data", args.accounts, args.seed,
                                  "2024-01-01", "2025-12-31")
    t_sim = time.perf_counter() - t0
    ds = read_dataset(data)
    cfg = load_settings()
    t1 = time.perf_counter()
    model, snaps = train_model(ds, cfg)
    t_train = time.perf_counter() - t1
    reports = evaluate_model(model, snaps, cfg, data)
    m = {k: v for rep in reports for k, v in rep.metrics.items()}
    keys = ["test_snapshots", "roc_auc", "truth_roc_auc", "pr_auc", "brier", "ece", "expected_to_actual_dollars",
            "recovery_at_20_model", "recovery_at_20_perfect", "recovery_at_20_vs_perfect",
            "recovery_at_20_largest_balance", "recovery_at_20_oldest", "recovery_at_20_random",
            "recovery_at_5_model", "recovery_at_5_perfect", "recovery_at_5_largest_balance",
            "denial_test_snapshots", "overturn_roc_auc", "overturn_truth_roc_auc", "overturn_ece",
            "overturn_recovery_at_20_model", "overturn_recovery_at_20_perfect",
            "overturn_recovery_at_20_largest_billed"]
    out = {"accounts": args.accounts if args.data is None else None, "seed": args.seed,
           "train_rows": len(snaps.part("train")), "test_dates": [str(d.date()) for d in snaps.test_dates],
           "simulate_s": round(t_sim, 1), "train_s": round(t_train, 1),
           **{k: round(float(m[k]), 4) for k in keys if k in m}}
    out["auc_gap_to_truth"] = round(out["truth_roc_auc"] - out["roc_auc"], 4)
    out["segments"] = _segments(model, snaps, data)
    print(json.dumps(out, indent=2))


def _segments(model, snaps, data) -> dict:
    """Payment AUC of the model and of the truth on the test rows, split where the gap comes from:
    patient balances (no insurance left, nothing at the payer) and insurance balances; and the patient
    balances whose guarantor had earlier accounts or not."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from training.train import read_truth

    truth, _ = read_truth(data)
    test = snaps.part("test")
    test = test.assign(p=model.score_accounts(test)["p_payment"].to_numpy())
    df = test.merge(truth.rename(columns={"p_payment": "true_p"})[["account_id", "as_of", "true_p"]],
                    on=["account_id", "as_of"])
    y = df["label_paid"].to_numpy(float)
    patient = ((df["balance_insurance"] <= 0.005) & (df["pending_adjudication"] == 0)).to_numpy()
    earlier = (df["guarantor_prior_accounts"] > 0).to_numpy()
    out = {}
    for name, m in (("patient", patient), ("insurance", ~patient), ("patient_with_earlier_accounts", patient & earlier),
                    ("patient_first_account", patient & ~earlier)):
        if len(np.unique(y[m])) == 2:
            out[name] = {"rows": int(m.sum()), "model_auc": round(float(roc_auc_score(y[m], df["p"][m])), 4),
                         "truth_auc": round(float(roc_auc_score(y[m], df["true_p"][m])), 4)}
    return out


if __name__ == "__main__":
    main()
