"""No PHI reaches MLflow: after `recoup train`'s whole cycle (fit, evaluate against the truth, log the
reports, plots, tables and the model) on simulated data, no account, patient, guarantor or claim id of
the data appears anywhere in the tracking store or its artifacts (issue 15)."""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path

import pytest


def _texts(root: Path):
    """Every file under `root` as text (bytes read as Latin-1, gzip opened), with its path."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        yield path, raw.decode("latin-1")


@pytest.mark.slow
def test_no_identifier_of_the_data_reaches_mlflow(small_dataset, tmp_path, monkeypatch):
    from tests.conftest import SMALL_TRAINING
    from training.settings import load_settings
    from training.train import train_and_register

    ds = small_dataset
    monkeypatch.setenv("RECOUP_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    settings = load_settings(overrides={**SMALL_TRAINING, "mlflow": {
        "experiment": f"recoup-phi-{uuid.uuid4().hex[:6]}", "registered_model": "recoup-phi"}})
    train_and_register(ds, settings, f"sqlite:///{tmp_path / 'mlflow.db'}")

    ids = set()
    for table, cols in (("accounts", ("account_id", "patient_id", "guarantor_id")), ("claims", ("claim_id",))):
        for c in cols:
            ids |= set(ds[table][c].dropna().astype(str))
    assert len(ids) > 10_000
    # ids as whole tokens (an id is never a substring of a longer token that happens to contain it)
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, sorted(ids, key=len, reverse=True)))
                         + r")(?![A-Za-z0-9])")
    scanned = 0
    for path, text in _texts(tmp_path):
        scanned += 1
        hit = pattern.search(text)
        assert hit is None, f"an identifier of the data is stored in {path.relative_to(tmp_path)}"
    assert scanned >= 10  # the store, the model bundle, the reports, plots and tables
    # the scan finds an id where one is written (the check can fail)
    leak = tmp_path / "artifacts" / "leak.csv"
    leak.write_text(f"account,x\n{sorted(ids)[0]},1\n")
    assert pattern.search(dict(_texts(tmp_path))[leak]) is not None
