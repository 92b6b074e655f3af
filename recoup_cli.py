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
    Optional[str], typer.Option("--extract-date", help="The dataset's extract date (default: its latest date).")
]


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
    from features.contract import ContractError
    from features.data import read_dataset

    try:
        ds = read_dataset(data, extract_date=extract_date)
    except ContractError as err:
        _fail(str(err))
    counts = ", ".join(f"{n} {c:,}" for n, c in ds.row_counts().items())
    typer.echo(f"valid: {counts}; extract date {ds.extract_date.date() if ds.extract_date is not None else '-'}")


# Sub-commands of other stages are registered below, each in its own small block.
# --- simulate ---
# --- features ---
# --- ingest-x12 ---
# --- train / evaluate / promote / demo ---
# --- score / load / serve ---


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
