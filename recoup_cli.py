"""The `recoup` console script: a thin Typer layer that parses arguments and calls the stage
modules (features/, training/, serving/). Heavy imports happen inside each command so that
`recoup --help` stays fast."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="recoup",
    help="Order open accounts receivable by expected recovery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DataArg = Annotated[str, typer.Argument(help="A folder of Parquet/CSV contract tables, or a SQLAlchemy URL.")]
ExtractDate = Annotated[
    str | None, typer.Option("--extract-date", help="The dataset's extract date (default: its latest date).")
]


@app.callback()
def _main() -> None:
    """Order open accounts receivable by expected recovery."""
    import warnings

    # pandera registers its PySpark backend, whose import warns about pandas 3 even when Spark is not
    # used; the Spark engine's own tests cover that path.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@app.command()
def validate(data: DataArg, extract_date: ExtractDate = None) -> None:
    """Check a dataset against the data contract; exit 1 and name every broken rule if it fails."""
    from features.contract import ContractError, read_dataset

    try:
        ds = read_dataset(data, extract_date=extract_date)
    except ContractError as err:
        _fail(str(err))
    counts = ", ".join(f"{n} {c:,}" for n, c in ds.row_counts().items())
    typer.echo(f"valid: {counts}; extract date {ds.extract_date.date() if ds.extract_date is not None else '-'}")


# Sub-commands of other stages are registered below, each in its own small block.
# --- simulate ---
@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the dataset (and _truth/) to.")],
    accounts: Annotated[int, typer.Option("--accounts", min=1, help="Number of accounts.")] = 10_000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same bytes.")] = 0,
    start: Annotated[str, typer.Option("--start", help="First service date (ISO).")] = "2024-01-01",
    end: Annotated[str, typer.Option("--end", help="Extract date: the last day simulated (ISO).")] = "2025-12-31",
    horizon_days: Annotated[int, typer.Option("--horizon-days", help="H of the truth tables.")] = 60,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Accounts per chunk (bounds memory).")] = 50_000,
    truth: Annotated[bool, typer.Option("--truth/--no-truth", help="Write _truth/ tables.")] = True,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes simulating chunks side by side.")] = 2,
) -> None:
    """Simulate a hospital's A/R history in the data contract, with exact ground truth in _truth/."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from features.sources.simulate import simulate_to_folder

    _setup_logging()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} accounts"),
                  TimeRemainingColumn(), disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("sim", total=accounts)
        path = simulate_to_folder(out, accounts, seed, start, end, horizon_days, chunk_size, truth,
                                  progress=lambda done: bar.update(task, completed=done), workers=workers)
    typer.echo(f"wrote {accounts:,} accounts to {path}")

# --- features ---
def _write_table(df, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        df.to_csv(out, index=False, date_format="%Y-%m-%d")
    else:
        df.to_parquet(out, index=False)


@app.command()
def features(
    data: DataArg,
    as_of: Annotated[str, typer.Option("--as-of", help="As-of date(s): YYYY-MM-DD[,YYYY-MM-DD...].")],
    out: Annotated[str, typer.Option("--out", help="Account snapshot file (.parquet or .csv).")],
    denials_out: Annotated[
        str | None, typer.Option("--denials-out", help="Also write one row per open denial here.")
    ] = None,
    extract_date: ExtractDate = None,
    horizon_days: Annotated[
        int | None, typer.Option("--horizon-days", help="Payment label horizon H (days; default 60).")
    ] = None,
    overturn_horizon_days: Annotated[
        int | None, typer.Option("--overturn-horizon-days", help="Overturn label horizon H2 (days; default 120).")
    ] = None,
) -> None:
    """Point-in-time features (and labels where the data has the future): one row per open account."""
    from features.catalogue import DEFAULT_HORIZONS, Horizons
    from features.contract import ContractError, read_dataset
    from features.dates import parse_as_of_dates
    from features.snapshot import account_features, denial_features

    try:
        dates = parse_as_of_dates(as_of)
    except ValueError as err:
        _fail(str(err))
    if not dates:
        _fail("--as-of needs at least one date")
    default = DEFAULT_HORIZONS
    horizons = Horizons(default.horizon_days if horizon_days is None else horizon_days,
                        default.overturn_horizon_days if overturn_horizon_days is None else overturn_horizon_days)
    try:
        ds = read_dataset(data, extract_date=extract_date)
    except ContractError as err:
        _fail(str(err))
    acc = account_features(ds, dates, horizons=horizons)
    if len(dates) == 1:
        acc = acc.drop(columns=["as_of"])  # key account_id alone for one date
    _write_table(acc, out)
    msg = f"{len(acc):,} account snapshots -> {out}"
    if denials_out:
        den = denial_features(ds, dates, horizons=horizons)
        _write_table(den, denials_out)
        msg += f"; {len(den):,} open denials -> {denials_out}"
    typer.echo(msg)


# --- ingest-x12 ---
@app.command("ingest-x12")
def ingest_x12(
    paths: Annotated[list[Path], typer.Argument(help="X12 835/837/277CA/999 files or folders of them.")],
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Data folder to write or append contract tables to.")  # noqa: UP045
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also validate each file with pyx12 (slow).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    workers: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--workers", min=1, help="Processes mapping large files (default: one per core; 1 = serial)."),
    ] = None,
    lock_timeout: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--lock-timeout", min=0, help="Seconds to wait for another writer of --out (default: wait)."),
    ] = None,
) -> None:
    """Read X12 835 remittances, 837 claims and 277CA/999 acknowledgements into the data contract
    (idempotent append; what is not read is reported with file and segment number)."""
    import json

    from features.contract.locks import LockTimeout
    from features.sources.x12 import ingest

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}", code=2)
    try:
        _, summary = ingest(paths, out=out, strict=strict, workers=workers, lock_timeout=lock_timeout)
    except LockTimeout as err:
        _fail(str(err), code=75)
    typer.echo(json.dumps(summary.as_dict(), indent=2) if as_json else summary.text())
    if summary.files_read == 0 and summary.files_already_ingested == 0:
        _fail("nothing could be read", code=1)


# --- train / evaluate / promote / demo ---
TrackingUri = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else ./mlflow.db)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Training config (YAML); defaults fill the rest.")]


def _read_or_fail(data: str, extract_date: str | None = None):
    from features.contract import ContractError, read_dataset

    try:
        return read_dataset(data, extract_date=extract_date)
    except ContractError as err:
        _fail(str(err))


def _print_metrics(reports, keys: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="test period")
    table.add_column("metric")
    table.add_column("value", justify="right")
    merged = {k: v for rep in reports for k, v in rep.metrics.items()}
    for k in keys:
        if k in merged:
            table.add_row(k, f"{merged[k]:.4f}")
    Console(stderr=False).print(table)
    for rep in reports:
        for text in getattr(rep, "notes", {}).values():
            typer.echo(f"note: {text}")


HEADLINE_METRICS = [
    "test_snapshots", "roc_auc", "truth_roc_auc", "pr_auc", "brier", "ece", "expected_to_actual_dollars",
    "recovery_at_20_model", "recovery_at_20_perfect", "recovery_at_20_largest_balance", "recovery_at_20_oldest",
    "recovery_at_20_random", "recovery_at_20_vs_perfect", "overturn_roc_auc", "overturn_ece",
    "overturn_recovery_at_20_model", "overturn_recovery_at_20_perfect", "overturn_recovery_at_20_largest_billed",
    "lift_captured_at_20", "lift_share_of_oracle_at_20", "lift_share_of_oracle_at_20_expected_recovery",
    "lift_share_of_oracle_at_20_largest_balance", "lift_share_of_oracle_at_20_random",
    "premature_claim_work_share_at_20", "premature_claim_work_share_at_20_expected_recovery",
]


@app.command()
def train(
    data: DataArg,
    config: ConfigOpt = None,
    tracking_uri: TrackingUri = None,
    extract_date: ExtractDate = None,
    report_dir: Annotated[Path | None, typer.Option("--report-dir", help="Also write the evaluation here.")] = None,
) -> None:
    """Train the payment and overturn models, evaluate them, and register the bundle in MLflow."""
    from training.settings import load_settings
    from training.train import train_and_register

    _setup_logging()
    settings = load_settings(config)
    ds = _read_or_fail(data, extract_date)
    try:
        _, _, reports, reg = train_and_register(ds, settings, tracking_uri, report_dir)
    except ValueError as err:
        _fail(str(err))
    _print_metrics(reports, HEADLINE_METRICS)
    typer.echo(f"registered {reg.name} version {reg.version} as {reg.alias} (run {reg.run_id})")


@app.command()
def evaluate(
    data: DataArg,
    config: ConfigOpt = None,
    tracking_uri: TrackingUri = None,
    model_alias: Annotated[str, typer.Option("--model-alias", help="Registry alias to evaluate.")] = "champion",
    model_version: Annotated[str | None, typer.Option("--model-version", help="A version instead.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for metrics, tables and plots.")] = None,
    extract_date: ExtractDate = None,
) -> None:
    """Evaluate a registered model on the data's most recent test period (metrics, slices, plots)."""
    from training.settings import load_settings
    from training.tracking import load_bundle
    from training.train import build_snapshots, evaluate_model

    _setup_logging()
    settings = load_settings(config)
    ds = _read_or_fail(data, extract_date)
    try:
        model = load_bundle(settings.mlflow.registered_model, model_alias, model_version, tracking_uri)
        reports = evaluate_model(model, build_snapshots(ds, settings), settings, ds.source, ds)
    except (LookupError, ValueError) as err:
        _fail(str(err))
    if out is not None:
        from training.evaluate import save_reports

        save_reports(reports, out)
        typer.echo(f"wrote the evaluation to {out}")
    _print_metrics(reports, HEADLINE_METRICS)


@app.command()
def promote(
    data: DataArg,
    config: ConfigOpt = None,
    tracking_uri: TrackingUri = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even when the gate says no.")] = False,
    extract_date: ExtractDate = None,
) -> None:
    """Compare challenger with champion on the same recent test period; move `champion` if it passes."""
    from training.settings import load_settings
    from training.tracking import promote as promote_fn
    from training.train import build_snapshots

    _setup_logging()
    settings = load_settings(config)
    ds = _read_or_fail(data, extract_date)
    try:
        decision = promote_fn(build_snapshots(ds, settings), settings, tracking_uri, force=force)
    except (LookupError, ValueError) as err:
        _fail(str(err))
    typer.echo(("promoted: " if decision.promoted else "not promoted: ") + decision.reason)
    if not decision.promoted and decision.challenger_version is not None:
        raise typer.Exit(3)

@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo dataset and worklist.")] = Path("recoup-demo"),
    accounts: Annotated[int, typer.Option("--accounts", help="Accounts to simulate.")] = 12_000,
    seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 7,
    tracking_uri: TrackingUri = None,
) -> None:
    """Simulate a small A/R, train, evaluate, register and print the top of a worklist (embedded defaults)."""
    from rich.console import Console
    from rich.table import Table

    from features.contract import read_dataset
    from features.sources.simulate import simulate_to_folder
    from serving.batch import run_batch
    from serving.lift import PATIENT_ACTIONS
    from serving.ranking import load_ranking_config
    from training.settings import load_settings
    from training.tracking import promote as promote_fn
    from training.train import train_and_register

    _setup_logging()
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.rule("1. simulate")
    data = simulate_to_folder(out / "data", accounts, seed, "2024-01-01", "2025-12-31")
    ds = read_dataset(data)
    console.print(f"{accounts:,} accounts, {len(ds['transactions']):,} ledger rows, "
                  f"{len(ds['remittances']):,} remittances in {data}")
    console.rule("2. train, evaluate, register")
    settings = load_settings(overrides=DEMO_TRAINING)
    _, snaps, reports, reg = train_and_register(ds, settings, tracking_uri, out / "evaluation")
    _print_metrics(reports, HEADLINE_METRICS)
    console.print(f"registered {reg.name} v{reg.version} as {reg.alias}; plots in {out / 'evaluation'}")
    if reg.alias != "champion":
        decision = promote_fn(snaps, settings, tracking_uri)
        console.print(("promoted: " if decision.promoted else "not promoted: ") + decision.reason)
    console.rule("3. score today's worklist")
    from training.tracking import load_bundle

    model = load_bundle(reg.name, "champion", None, tracking_uri)
    result = run_batch(None, ds.extract_date, str(out / "worklist"), model,
                       f"{model.registry_name_}/{model.registry_version_}", ranking_cfg=load_ranking_config(),
                       dataset=ds, reasons_rows=20, keep_result=True)
    top = result.ranked.accounts.head(10)
    worklist = result.ranked.accounts
    # the row that carries each guarantor's contact, for the rows it covers
    contacts = worklist[worklist["next_action"].isin(PATIENT_ACTIONS)]
    contact_of = {g: (a, k) for g, a, k in zip(contacts["guarantor_id"], contacts["account_id"], contacts["rank"],
                                                strict=True)}
    table = Table(title=f"top of the worklist at {result.as_of.date()} ({result.n_accounts:,} open accounts)")
    for col in ("rank", "account", "next action", "adds $ (60d)", "if left alone $", "balance $", "why"):
        table.add_column(col, justify="right" if col not in ("account", "next action", "why") else "left")
    for r in top.itertuples():
        why = r.reasons[1] if len(r.reasons) > 1 else (r.reasons[0] if len(r.reasons) else "")
        if r.next_action == "covered" and r.guarantor_id in contact_of:  # rides on its guarantor's contact
            account, rank = contact_of[r.guarantor_id]
            why = f"covered by the {r.best_action.replace('_', ' ')} on {account} (rank {rank}): one contact a person"
        action = f"{r.next_action} (random)" if r.is_exploration else r.next_action
        table.add_row(str(r.rank), r.account_id, action, f"{r.expected_lift:,.0f}", f"{r.expected_if_idle:,.0f}",
                      f"{r.balance:,.0f}", why[:90])
    console.print(table)
    if top["is_exploration"].any():
        console.print("(random): drawn for the exploration share, at a random place in the list, so that the office "
                      "learns what work adds where the order would not send it")
    den = result.ranked.denials.head(5)
    if len(den):
        console.print("top denials: " + ", ".join(
            f"{d.claim_id} ({d.next_action}, P(overturn) {d.p_overturn:.2f}, ${d.expected_recovery:,.0f})"
            for d in den.itertuples()))
    console.print(f"worklist written to {out / 'worklist'}; run `mlflow ui --backend-store-uri "
                  f"{tracking_uri or 'sqlite:///mlflow.db'}` to browse the runs")


DEMO_TRAINING = {
    "payment_model": {"n_estimators": 300, "learning_rate": 0.08},
    "amount_model": {"n_estimators": 300, "learning_rate": 0.08},
    "overturn_model": {"n_estimators": 200},
}


# --- score / load / serve ---
def _progress_callback(label: str):
    """A Rich progress bar on a terminal, plain log lines (every 10%) otherwise."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    if sys.stderr.isatty():
        bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                       TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False)
        task = bar.add_task(label, total=None, rate="")
        import time as _time

        start = _time.perf_counter()

        def update(done: int, total: int) -> None:
            rate = done / max(_time.perf_counter() - start, 1e-9)
            bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} accounts/s")

        return bar, update
    log = logging.getLogger("recoup")
    state = {"next": 0.0}

    def update_plain(done: int, total: int) -> None:
        if total and done / total >= state["next"]:
            log.info("%s: %d/%d accounts (%.0f%%)", label, done, total, 100 * done / total)
            state["next"] = done / total + 0.1

    import contextlib

    return contextlib.nullcontext(), update_plain


@app.command()
def score(
    data: DataArg,
    as_of: Annotated[str, typer.Option("--as-of", help="The as-of date (ISO).")],
    out: Annotated[str, typer.Option("--out", help="Parquet folder, or SQL target postgresql://...#table.")],
    tracking_uri: TrackingUri = None,
    model_alias: Annotated[str, typer.Option("--model-alias", help="Registry alias to score with.")] = "champion",
    model_version: Annotated[str | None, typer.Option("--model-version", help="A version instead.")] = None,
    model_name: Annotated[str, typer.Option("--model-name", help="Registered model name.")] = "recoup",
    engine: Annotated[str, typer.Option("--engine", help="local or spark.")] = "local",
    spark_master: Annotated[str, typer.Option("--spark-master", help="Spark master URL.")] = "local[*]",
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Accounts per chunk (local engine).")] = 100_000,
    reasons_rows: Annotated[int | None, typer.Option("--reasons-rows", help="Explain the top N rows.")] = None,
    reasons_minutes: Annotated[float | None, typer.Option(
        "--reasons-minutes", min=0,
        help="Explain only the rows within this many minutes of work from the top (the collectors' day; "
             "ranking.yaml's reasons.batch_minutes).")] = None,
    ranking_config: Annotated[Path | None, typer.Option("--ranking-config", help="Ranking YAML.")] = None,
    extract_date: ExtractDate = None,
    lock_timeout: Annotated[float, typer.Option(
        "--lock-timeout", envvar="RECOUP_LOCK_TIMEOUT", min=0,
        help="Seconds to wait when another run holds the same target and as-of date (default 0: fail at once)."
    )] = 0.0,
) -> None:
    """Score every open account and denial at the as-of date and write the ranked worklist (one run at a
    time per target and date; the lists and the run's record switch in together or not at all)."""
    from features.contract.locks import LockTimeout
    from features.dates import parse_as_of
    from serving.ranking import load_ranking_config
    from training.tracking import load_bundle

    _setup_logging()
    try:
        day = parse_as_of(as_of)
    except ValueError as err:
        _fail(str(err))
    try:
        model = load_bundle(model_name, model_alias, model_version, tracking_uri)
    except LookupError as err:
        _fail(str(err))
    version_label = f"{model.registry_name_}/{model.registry_version_}"
    cfg = load_ranking_config(ranking_config)
    if reasons_minutes is not None:
        cfg["reasons"] = {**cfg["reasons"], "batch_minutes": reasons_minutes}
    try:
        if engine == "spark":
            from serving.batch.spark import run_spark_batch

            result = run_spark_batch(data, day, out, model, version_label, ranking_cfg=cfg, master=spark_master,
                                     reasons_rows=reasons_rows, extract_date=extract_date, lock_timeout=lock_timeout)
        elif engine == "local":
            from serving.batch import run_batch

            bar, update = _progress_callback("scoring")
            with bar:
                result = run_batch(data, day, out, model, version_label, ranking_cfg=cfg, chunk_size=chunk_size,
                                   reasons_rows=reasons_rows, extract_date=extract_date, progress=update,
                                   lock_timeout=lock_timeout)
        else:
            _fail(f"unknown engine {engine!r}: use local or spark", 2)
    except ValueError as err:  # a ContractError (bad data) is one too
        _fail(str(err))
    except LockTimeout as err:
        _fail(str(err), code=75)  # EX_TEMPFAIL: another run holds the target; try again later
    for w in result.warnings:
        typer.secho(f"drift warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"run {result.run_id}: {result.n_accounts:,} accounts and {result.n_denials:,} denials scored "
               f"at {result.as_of.date()} with {version_label}; wrote {out}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 3000,
    tracking_uri: TrackingUri = None,
    model_alias: Annotated[str, typer.Option("--model-alias", help="Registry alias to serve.")] = "champion",
    model_version: Annotated[str | None, typer.Option("--model-version", help="A version instead.")] = None,
    model_name: Annotated[str, typer.Option("--model-name", help="Registered model name.")] = "recoup",
    ranking_config: Annotated[Path | None, typer.Option("--ranking-config", help="Ranking YAML.")] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="Serve without a bearer token (never in "
                                                            "production).")] = False,
    work_store: Annotated[str | None, typer.Option(
        "--work-store", metavar="DATA", help="Where POST /work appends the work rows it receives: a dataset folder "
                                             "or a SQLAlchemy URL (default: RECOUP_WORK_STORE; unset, /work "
                                             "answers 503).")] = None,
    clients_file: Annotated[Path | None, typer.Option(
        "--clients-file", help="The API clients: token hashes, scopes, facilities (default: RECOUP_CLIENTS_FILE; "
                               "`recoup client-token` writes it; reread when it changes).")] = None,
    audit_log: Annotated[Path | None, typer.Option(
        "--audit-log", help="Append one JSON line per request here (default: RECOUP_AUDIT_LOG).")] = None,
    docs: Annotated[bool, typer.Option("--docs", help="Serve the OpenAPI page at / (default: RECOUP_DOCS; "
                                                      "/docs.json is always served).")] = False,
) -> None:
    """Serve real-time scoring over HTTP (BentoML): POST /score, POST /worklist, POST /work, POST
    /admin/reload, /livez, /readyz, /metrics, /docs.json. Requests need `Authorization: Bearer <token>`: a
    client's token from the clients file (scopes score, work:write, admin) or RECOUP_API_TOKEN (every
    scope); with neither the server refuses to start unless --no-auth is given. SIGHUP (or POST
    /admin/reload) re-resolves the model alias and swaps the model without downtime."""
    from features.contract import is_sql_url
    from serving.api.settings import ServiceSettings

    # the environment gives what the options do not (RECOUP_API_TOKEN, the limits, RECOUP_THREADS, ...)
    options = {"no_auth": no_auth, "model_name": model_name, "model_alias": model_alias}
    if work_store:
        options["work_store"] = work_store if is_sql_url(work_store) else str(Path(work_store).resolve())
    if model_version:
        options["model_version"] = model_version
    if tracking_uri:
        options["tracking_uri"] = tracking_uri
    if ranking_config:
        options["ranking_config"] = ranking_config.resolve()
    if clients_file:
        options["clients_file"] = clients_file.resolve()
    if audit_log:
        options["audit_log"] = audit_log.resolve()
    if docs:
        options["docs"] = True
    try:
        settings = ServiceSettings.from_env(**options)
    except ValueError as err:  # no token (and no --no-auth), or a bad limit
        _fail(str(err), 2)
    _setup_logging()
    from serving.api.service import run_server

    try:
        run_server(settings, host, port)
    except (LookupError, RuntimeError, ValueError) as err:
        _fail(str(err))


@app.command("client-token")
def client_token(
    name: Annotated[str, typer.Argument(help="The client's name (letters, digits, '.', '_', '-').")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated: score, work:write, admin.")] = "score",
    facility: Annotated[list[str] | None, typer.Option(
        "--facility", help="Limit the client to this facility (repeat for several; default: every facility).")] = None,
    clients_file: Annotated[Path | None, typer.Option(
        "--clients-file", help="The clients file (default: RECOUP_CLIENTS_FILE).")] = None,
) -> None:
    """Create an API client, or rotate its token: prints the new token once and stores only its SHA-256
    in the clients file. A running service picks the change up at its next request (no restart); the
    client's old token stops working then."""
    import os

    from serving.api.clients import ClientsFileError, write_client

    path = clients_file or (Path(os.environ["RECOUP_CLIENTS_FILE"]) if os.environ.get("RECOUP_CLIENTS_FILE")
                            else None)
    if path is None:
        _fail("give --clients-file or set RECOUP_CLIENTS_FILE", 2)
    try:
        token = write_client(path, name, [s.strip() for s in scopes.split(",") if s.strip()], facility)
    except (ClientsFileError, ValueError, OSError) as err:
        _fail(str(err), 2)
    typer.secho(f"client {name} ({scopes}) in {path}; its token, shown this once:", err=True)
    typer.echo(token)


@app.command()
def load(
    data: DataArg,
    url: Annotated[str, typer.Argument(help="The PostgreSQL database: postgresql://user@host:port/db.")],
    extract_date: ExtractDate = None,
) -> None:
    """Validate a dataset and load its contract tables into PostgreSQL (typed, keyed, indexed; one transaction)."""
    from features.contract import load_dataset

    _setup_logging()
    try:
        counts = load_dataset(data, url, extract_date=extract_date)
    except ValueError as err:  # a ContractError (bad data) is one too
        _fail(str(err))
    typer.echo(f"loaded {len(counts)} tables ({sum(counts.values()):,} rows): "
               + ", ".join(f"{n} {c:,}" for n, c in counts.items()))


# --- record-work ---
@app.command("record-work")
def record_work(
    data: DataArg,
    rows: Annotated[Path, typer.Argument(help="Work rows: a CSV, Parquet or JSON-lines file (.csv, .parquet, "
                                              ".jsonl), one row of the contract's work table each.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Record what collectors did: append rows of the `work` table to a dataset, idempotently by
    work_id (a row already stored with the same content adds nothing; one stored with different
    content is an error), whole or nothing."""
    import json

    from sqlalchemy.exc import SQLAlchemyError

    from features.contract import ContractError, KeyConflict, is_sql_url, read_work_rows
    from features.contract import record_work as record

    _setup_logging()
    if not rows.is_file():
        _fail(f"no such file: {rows}", code=2)
    if not is_sql_url(data) and not Path(data).is_dir():
        _fail(f"no such dataset folder: {data}", code=2)
    try:
        summary = record(data, read_work_rows(rows))
    except KeyConflict as err:
        _fail(f"nothing written: {len(err.ids):,} work_id(s) already stored with different content: "
              + "; ".join(str(v) for v in err.violations))
    except ContractError as err:
        _fail(f"nothing written: the work rows break the data contract in {len(err.violations)} place(s):\n"
              + "\n".join(f"  - {v}" for v in err.violations))
    except (ValueError, OSError, SQLAlchemyError) as err:  # an unreadable rows file, a store that cannot take them
        _fail(f"nothing written: {err}")
    typer.echo(json.dumps(summary.as_dict()) if as_json else summary.text())


# --- arena ---
ARENA_POLICIES = ("largest_balance", "oldest", "random", "expected_recovery", "lift", "oracle")


@app.command()
def arena(
    data: Annotated[str, typer.Argument(help="A dataset folder written by `recoup simulate` (with its _truth/).")],
    out: Annotated[Path, typer.Option("--out", help="Folder for arena.json, daily.csv, work.parquet and the plot.")],
    days: Annotated[int, typer.Option("--days", min=1, help="Days to run the office for.")] = 90,
    collectors: Annotated[int, typer.Option("--collectors", min=1, help="Collectors working each day.")] = 3,
    minutes: Annotated[float, typer.Option("--minutes", min=1, help="Minutes each collector works a day.")] = 480,
    policies: Annotated[str, typer.Option("--policies", help="Comma-separated: " + ", ".join(ARENA_POLICIES))] = (
        ",".join(ARENA_POLICIES)),
    seed: Annotated[int, typer.Option("--seed", help="Random streams: same seed, same results.")] = 0,
    model_alias: Annotated[str, typer.Option("--model-alias", help="Registry alias of the model of the lift "
                                                                   "and expected_recovery policies.")] = "champion",
    model_version: Annotated[str | None, typer.Option("--model-version", help="A version instead.")] = None,
    model_name: Annotated[str, typer.Option("--model-name", help="Registered model name.")] = "recoup",
    ranking_config: Annotated[Path | None, typer.Option("--ranking-config", help="Ranking YAML.")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """A simulated office worked day by day: each policy's worklist, the same random streams, dollars
    collected because of work (against doing nothing), forfeited, minutes used, per collector hour."""
    from features.arena import SHIPPED, run_arena

    _setup_logging()
    names = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in names if p not in ARENA_POLICIES]
    if unknown or not names:
        _fail(f"unknown policies {', '.join(unknown) or '(none given)'}: choose from {', '.join(ARENA_POLICIES)}", 2)
    chosen, model = {}, None
    for name in names:
        if name in ("expected_recovery", "lift"):
            from serving.arena_policy import MODEL_POLICIES, ModelPolicy
            from serving.ranking import load_ranking_config
            from training.tracking import load_bundle

            if model is None:
                try:
                    model = load_bundle(model_name, model_alias, model_version, tracking_uri)
                except LookupError as err:
                    _fail(f"{err} (the {name} policy needs a registered model: `recoup train DATA`, or "
                          "leave it out with --policies)")
            chosen[name] = ModelPolicy(model, f"{model.registry_name_}/{model.registry_version_}",
                                       load_ranking_config(ranking_config), MODEL_POLICIES[name])
        else:
            chosen[name] = SHIPPED[name]
    try:
        report = run_arena(data, chosen, days, collectors, minutes, seed=seed, out=out)
    except ValueError as err:
        _fail(str(err))
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"the arena: {days} days, {collectors} collectors x {minutes:g} minutes, seed {seed}")
    for col in ("policy", "collected $", "because of work $", "forfeited $", "minutes used", "$ per collector hour"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in report["summary"]:
        table.add_row(r["policy"], f"{r['collected']:,.0f}", f"{r['collected_because_of_work']:,.0f}",
                      f"{r['forfeited']:,.0f}", f"{r['minutes_used']:,.0f}", f"{r['dollars_per_collector_hour']:,.2f}")
    Console().print(table)
    typer.echo(f"wrote {out / 'arena.json'}, daily.csv, work.parquet and cumulative.png in {report['seconds']:.0f}s")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
