"""Write the workbench notebooks (no outputs): `python notebooks/_build.py`.

The notebooks are thin: every number and figure comes from a package function (features.explore,
training.train / evaluate / backtest, serving.ranking / whatif). Edit the cells here, rebuild, and
commit the .ipynb files together with this script; tests/test_notebooks.py runs them headless.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''\
import os
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from features.contract import read_dataset
from features.sources.simulate import simulate_to_folder

warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*eval_set.*")
pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 20)


def show(fig):
    display(fig)
    plt.close(fig)


# One small simulated A/R shared by the notebooks: RECOUP_NOTEBOOK_DATA (the tests set it) or a temp folder.
DATA = Path(os.environ.get("RECOUP_NOTEBOOK_DATA", Path(tempfile.gettempdir()) / "recoup-notebooks")) / "ar-5000"
if not DATA.exists():
    simulate_to_folder(DATA, n_accounts=5000, seed=7, start="2024-01-01", end="2025-12-31")
ds = read_dataset(DATA)
print(f"{DATA}: extract date {ds.extract_date.date()}, rows {ds.row_counts()}")'''

SMALL_TRAINING = '''\
from training.settings import load_settings

# The defaults (training/default_config.yaml) with small models, so the notebook runs in about a minute.
SMALL = {
    "payment_model": {"n_estimators": 80, "learning_rate": 0.15},
    "amount_model": {"n_estimators": 80, "learning_rate": 0.15},
    "overturn_model": {"n_estimators": 40, "learning_rate": 0.15, "min_child_samples": 10},
    "snapshots": {"max_as_of_dates": 12},
}
cfg = load_settings(overrides=SMALL)'''

TEMP_MLFLOW = '''\
# MLflow on a throw-away SQLite store (the embedded default, kept out of the repository)
WORK = Path(tempfile.mkdtemp(prefix="recoup-notebook-"))
os.environ["RECOUP_ARTIFACT_ROOT"] = str(WORK / "mlartifacts")
TRACKING = f"sqlite:///{WORK / 'mlflow.db'}"
TRACKING'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


NOTEBOOKS = {
    "01_explore_ar.ipynb": [
        md('''
# 01 · The A/R at an as-of date

What a collections director sees before any model: how old the open balances are, who owes them, which
denials come back and how often appeals win, and how long payers take to pay. Every table comes from
`features.explore`, which reads the same point-in-time code path as the model (`features.snapshot`):
the open accounts are the model's feature rows, the denials follow the project's denial definition, and
the payer rates are the statistics table the model itself reads.
'''),
        code(SETUP),
        code('''
from features import explore

AS_OF = ds.extract_date  # "today" for this extract; any earlier date shows the A/R as it was then
ar = explore.open_ar(ds, AS_OF)
print(f"{len(ar):,} open accounts, ${ar['balance'].sum():,.0f} open balance at {AS_OF.date()}")
ar[["account_id", "financial_class", "encounter_type", "balance", "balance_patient", "days_since_service",
    "aging_bucket"]].head()
'''),
        md('''
## Aging

Buckets are days since service. Insurance balances age while claims wait for adjudication or sit denied;
patient balances age after statements go out.
'''),
        code('''
aging = explore.aging_table(ar)
show(explore.plot_aging(aging, AS_OF))
aging.round(2)
'''),
        md("## Balances by financial class"),
        code('''
by_class = explore.balance_by_class(ar)
show(explore.plot_balance_by_class(by_class, AS_OF))
by_class.round(2)
'''),
        code('''
explore.aging_by_class(ar).round(0)
'''),
        md('''
## Denials by CARC and payer, and overturn rates

A denial is a claim with status denied, or a claim or line paid nothing with a non-routine CO/PI/OA
adjustment (DESIGN.md). `worked` and `overturned` are known only once a denial's 120-day window has
closed by the as-of date, so the rates below use resolved denials only.
'''),
        code('''
events = explore.denial_events(ds, AS_OF)
print(f"{len(events):,} denials received by {AS_OF.date()}, {int(events['resolved'].sum()):,} resolved")
by_carc = explore.denials_by_carc(events, top=12)
show(explore.plot_denials_by_carc(by_carc))
by_carc.round(3)
'''),
        code('''
explore.denials_by_group(events).round(3)
'''),
        md('''
The payer rows of the point-in-time statistics table: denial rate (share of adjudicated claims denied),
overturn rate of worked denials, paid-to-billed ratio and mean days to pay, smoothed toward the global
rate for small payers. These are the `payer_*` features of the models.
'''),
        code('''
rates = explore.payer_rates(ds, AS_OF)
show(explore.plot_payer_rates(rates))
rates.round(3)
'''),
        md("## Days to pay"),
        code('''
dtp = explore.days_to_pay(ds, AS_OF)
show(explore.plot_days_to_pay(dtp))
explore.days_to_pay_summary(dtp).round(1)
'''),
    ],
    "02_train_and_evaluate.ipynb": [
        md('''
# 02 · Train and evaluate

`training.train.train_and_register` is what `recoup train` runs: monthly point-in-time snapshots, a split
by time (training label windows end before validation starts), LightGBM payment, amount and overturn
models with calibration, evaluation on the test months, and an MLflow run with a registered bundle.
Here MLflow writes to a throw-away SQLite store.
'''),
        code(SETUP),
        code(SMALL_TRAINING),
        code(TEMP_MLFLOW),
        code('''
from training.train import train_and_register

model, snaps, reports, registered = train_and_register(ds, cfg, TRACKING, report_dir=WORK / "evaluation")
acc_report = reports[0]
den_report = reports[1] if len(reports) > 1 else None
registered
'''),
        md("## The snapshots and the split by time"),
        code('''
pd.DataFrame({
    part: {"as-of dates": f"{dates[0].date()} .. {dates[-1].date()} ({len(dates)})",
           "account snapshots": len(snaps.part(part)), "paid share": round(snaps.part(part)["label_paid"].mean(), 3),
           "denial snapshots": len(snaps.part(part, "denials"))}
    for part, dates in (("train", snaps.train_dates), ("valid", snaps.valid_dates), ("test", snaps.test_dates))
})
'''),
        md('''
## Headline metrics on the test months

`truth_roc_auc` is the AUC of the simulator's own probability (the best any model could do on this data);
`recovery_at_k_vs_perfect` divides the model's dollars captured in the top k% by the perfect ordering's.
'''),
        code('''
headline = ["test_snapshots", "roc_auc", "truth_roc_auc", "pr_auc", "brier", "ece", "expected_to_actual_dollars",
            "recovery_at_20_model", "recovery_at_20_largest_balance", "recovery_at_20_perfect",
            "recovery_at_20_vs_perfect", "denial_test_snapshots", "overturn_roc_auc", "overturn_ece"]
metrics = {**acc_report.metrics, **(den_report.metrics if den_report else {})}
pd.Series({k: metrics[k] for k in headline if k in metrics}).round(4).to_frame("value")
'''),
        md('''
## Dollars captured: the model against today's orderings and the perfect one

Work the list from the top: what share of the dollars recovered in the next 60 days sits in the first k%?
Baselines are the orderings billing offices use (largest balance first, oldest first) and a random order;
*perfect* orders by the simulator's true expected dollars.
'''),
        code('''
show(acc_report.figures["recovery_curve"])
acc_report.tables["recovery_at_k"].pivot(index="ordering", columns="top_percent", values="share").round(3)
'''),
        md("## Calibration, stability and what the model uses"),
        code('''
show(acc_report.figures["reliability"])
show(acc_report.figures["auc_by_month"])
show(acc_report.figures["feature_importance"])
'''),
        code('''
acc_report.tables["slices"].round(3)
'''),
        md("## Denials: overturn dollars captured"),
        code('''
if den_report is not None:
    show(den_report.figures["denial_recovery_curve"])
    display(den_report.tables["denial_recovery_at_k"].pivot(index="ordering", columns="top_percent",
                                                            values="share").round(3))
'''),
        md('''
## What MLflow holds

The run logs the configuration, a fingerprint of the data (counts, dates, a hash; no rows), the feature
spec, every metric, the plots and tables above, and the bundle. Loading the registered version back gives
the same scores.
'''),
        code('''
import mlflow
import numpy as np

from training.tracking import load_bundle

mlflow.set_tracking_uri(TRACKING)
runs = mlflow.search_runs(experiment_names=[cfg.mlflow.experiment])
display(runs[["run_id", "status", "metrics.roc_auc", "metrics.ece", "metrics.recovery_at_20_model"]])
loaded = load_bundle(registered.name, version=registered.version, tracking_uri=TRACKING)
test = snaps.part("test")
same = np.allclose(loaded.score_accounts(test)["expected_recovery"], model.score_accounts(test)["expected_recovery"])
print(f"registered {registered.name} v{registered.version} ({registered.alias}); same scores after loading: {same}")
'''),
    ],
    "03_worklist_and_reasons.ipynb": [
        md('''
# 03 · A scored worklist, its reasons, and what-ifs

`serving.ranking.rank` turns feature rows into the worklist: expected recovery in 60 days, the cost of
the next action, deadlines and rules (bankruptcy, financial assistance, payment plans, the 501(r) wait
before agency placement, call limits), exploration rows, and the top reasons (LightGBM's own TreeSHAP
contributions). The nightly batch (`serving.batch.run_batch`) and the API call the same function.
'''),
        code(SETUP),
        code(SMALL_TRAINING),
        code('''
from features.snapshot import account_features, denial_features
from serving.ranking import load_ranking_config, rank
from training.train import train_model

model, _ = train_model(ds, cfg)
AS_OF = ds.extract_date
accounts = account_features(ds, AS_OF, stats=model.stats_, with_labels=False)  # the model's stored stats table
denials = denial_features(ds, AS_OF, stats=model.stats_, with_labels=False)
rcfg = load_ranking_config()
ranked = rank(model, accounts, denials, rcfg, model_version="notebook", run_id="nb03", reasons_rows=20)
print(f"{len(ranked.accounts):,} open accounts and {len(ranked.denials):,} open denials at {AS_OF.date()}")
'''),
        md("## The top of the account worklist"),
        code('''
cols = ["rank", "account_id", "next_action", "priority", "p_payment", "expected_recovery", "expected_net",
        "action_minutes", "balance", "is_exploration", "hold_reason"]
ranked.accounts[cols].head(15).round(2)
'''),
        md('''
## Why these accounts

Each row's reasons say why its work pays, in the office's words: first what to do and what it is
expected to add (or, for `wait`, until when and why), then the features that drove it. TreeSHAP
contributions of the expected-recovery model pick which features speak, among those that matter for the
row's action; the sentences are declared once in `features/reasons.py`.
'''),
        code('''
top = ranked.accounts.head(5)
top[["rank", "account_id", "next_action", "reasons"]].explode("reasons").reset_index(drop=True)
'''),
        code('''
from serving.whatif import action_mix, capacity_table, compare_worklists, plot_action_mix, plot_capacity

mix = action_mix(ranked.accounts)
show(plot_action_mix(mix))
mix.round(2)
'''),
        md("Accounts the rules hold (never worked for collection, listed last):"),
        code('''
ranked.accounts["hold_reason"].value_counts()
'''),
        md("## The denial worklist beside it"),
        code('''
ranked.denials.head(10).round(3)
'''),
        md('''
## What changes with capacity

With `capacity_minutes` the list is cut greedily by priority until the collectors' minutes are used
(exploration rows keep their share). More hours buy less and less: the curve flattens.
'''),
        code('''
capacity = capacity_table(model, accounts, denials, rcfg, [60, 120, 240, 480, 960, 1920, 3840])
show(plot_capacity(capacity))
capacity.round(1)
'''),
        md('''
## What changes with costs and the priority rule

Each variant re-ranks the same accounts with one setting changed (`serving/ranking.yaml` holds the
defaults). The table compares its top 100 with the default list.
'''),
        code('''
variants = {
    "collector time costs $3/min": {"cost_per_minute": 3.0},
    "priority = net dollars (not per minute)": {"priority": "net"},
    "appeals take 90 minutes": {"actions": {"appeal": {"minutes": 90, "cost": 0.0}}},
    "no urgency boost": {"urgency": {"boost": 1.0}},
}
rows = {}
for name, change in variants.items():
    other = rank(model, accounts, denials, load_ranking_config(overrides=change), "notebook", "nb03", reasons_rows=0)
    rows[name] = compare_worklists(ranked.accounts, other.accounts, top=100)
pd.DataFrame(rows).T.round(3)
'''),
        md('''
## The same list from the nightly batch

`run_batch` reads, featurises in chunks of whole accounts, ranks with the same function and (with a
target) writes Parquet or SQL atomically. Without a target it only returns the result.
'''),
        code('''
from serving.batch import run_batch

batch = run_batch(None, AS_OF, None, model, "notebook", dataset=ds, keep_result=True, reasons_rows=20,
                  ranking_cfg=rcfg)
same = batch.ranked.accounts["account_id"].head(50).tolist() == ranked.accounts["account_id"].head(50).tolist()
print(f"batch: {batch.n_accounts:,} accounts in {sum(batch.timings.values()):.1f}s; same top 50: {same}")
'''),
    ],
    "04_drift_and_backtest.ipynb": [
        md('''
# 04 · Backtest with the champion frozen, and drift

Train a champion on the data as it was extracted at a cutoff date, register it, then score every later
month with it frozen (its stored statistics table, as the nightly batch does) and compare with what was
paid in the following 60 days: AUC, calibration in dollars, dollars captured by the top 20% against the
baselines, and the PSI drift of every feature and score against the reference stored in the model.
'''),
        code(SETUP),
        code(SMALL_TRAINING),
        code(TEMP_MLFLOW),
        code('''
from training.backtest import extract_at
from training.tracking import load_bundle
from training.train import train_and_register

CUTOFF = pd.Timestamp("2025-03-31")
past = extract_at(ds, CUTOFF)  # only rows known on the cutoff; later-known fields cleared
print(f"as extracted on {CUTOFF.date()}: {len(past['accounts']):,} of {len(ds['accounts']):,} accounts")
_, snaps, _, registered = train_and_register(past, cfg, TRACKING)
champion = load_bundle(registered.name, "champion", tracking_uri=TRACKING)
print(f"champion v{champion.registry_version_}: trained on {snaps.train_dates[0].date()} .. "
      f"{snaps.train_dates[-1].date()}, tested on {snaps.test_dates[0].date()} .. {snaps.test_dates[-1].date()}")
'''),
        md("## Month by month"),
        code('''
from training.backtest import backtest, month_starts, plot_backtest_quality, plot_backtest_recovery
from training.train import read_truth

truth, _ = read_truth(DATA)  # the simulator's true expected dollars: the perfect ordering
months = month_starts(CUTOFF + pd.offsets.MonthBegin(1), ds.extract_date)
bt = backtest(champion, ds, months, cfg, truth)
show(plot_backtest_quality(bt.monthly, CUTOFF))
show(plot_backtest_recovery(bt.recovery))
bt.monthly.round(3)
'''),
        md('''
## Drift

PSI of each feature and score against the training reference stored with the model (aggregates only).
Above 0.2 is a warning. The pooled `payer_*` / `proc_family_*` rates stand out: training saw the rates
of each training as-of date, scoring uses the one table frozen at the end of the training data, so their
distributions differ by construction; the other features show the population itself moving.
'''),
        code('''
from training.backtest import drift_pivot, plot_drift

show(plot_drift(drift_pivot(bt.drift, top=15)))
warn = bt.drift[bt.drift["warn"]]
warn.groupby("as_of")["name"].apply(lambda s: ", ".join(sorted(s))).to_frame("PSI > 0.2")
'''),
        md("The nightly batch writes the same report for each run (here for the last month):"),
        code('''
from serving.batch import run_batch

run = run_batch(None, months[-1], None, champion, f"recoup/{champion.registry_version_}", dataset=ds,
                reasons_rows=0)
run.drift.head(10).round(3)
'''),
    ],
}


def build() -> list[Path]:
    paths = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        })
        for i, cell in enumerate(nb.cells):  # stable ids: rebuilding gives the same files
            cell["id"] = f"{name[:2]}-{i:02d}"
        path = HERE / name
        nbformat.write(nb, path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in build():
        print(p)
