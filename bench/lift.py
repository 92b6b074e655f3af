"""The lift evaluation (dollars that work brings) of a trained model on a simulated dataset, the figures
the README quotes: true lift captured within the top k% of collector minutes by recoup's lift order, its
expected-recovery order, largest balance, random and the oracle; the premature claim work in the
capacity-cut worklist. Prints JSON and writes the report's tables and the Qini-style figure.

Run by hand:  python bench/lift.py DATA --model model.pkl [--out folder]
(DATA: a folder written by `recoup simulate`, with `_truth/`; model.pkl: a pickled RecoupModel, e.g.
`pickle.dumps(train_model(...)[0])`, or use `recoup evaluate` on a registered one.)
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from pathlib import Path

# `python bench/x.py` puts bench/ first on the path, where bench/features.py would shadow the package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", type=Path, required=True, help="a pickled training.model.RecoupModel")
    ap.add_argument("--out", type=Path, default=None, help="folder for the report's tables and figure")
    args = ap.parse_args()

    from features.contract import read_dataset
    from features.snapshot import snapshot_features
    from serving.ranking import load_ranking_config
    from training.evaluate import evaluate_lift
    from training.settings import load_settings
    from training.train import as_of_dates, read_truth, read_truth_actions, split_dates

    t0 = time.perf_counter()
    ds = read_dataset(args.data)
    model = pickle.loads(args.model.read_bytes())
    settings = load_settings()
    _, _, test = split_dates(as_of_dates(ds, settings), settings)
    # the test dates' snapshots as training builds them: every open account, every open denial
    acc, den = snapshot_features(ds, test, horizons=settings.horizons)
    acc = acc[acc["label_paid"].notna()].reset_index(drop=True)
    t1 = time.perf_counter()
    rep = evaluate_lift(model, acc, den, load_ranking_config(), read_truth_actions(args.data),
                        read_truth(args.data)[0], settings, ds.tables.get("work"))
    t2 = time.perf_counter()
    if args.out is not None:
        rep.save(args.out)
    print(json.dumps({"test_dates": [str(t.date()) for t in test], "metrics": rep.metrics,
                      "lift_at_k": rep.tables["lift_at_k"].to_dict("records"),
                      "premature_claim_work": rep.tables["premature_claim_work"].to_dict("records"),
                      "notes": rep.notes, "features_s": round(t1 - t0, 1), "evaluate_s": round(t2 - t1, 1)},
                     indent=1))


if __name__ == "__main__":
    main()
