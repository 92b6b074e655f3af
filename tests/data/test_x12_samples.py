"""Data tests on the shared X12 samples (../shared/samples/x12, beside the checkout as in CI): every file
is read or reported, the expected 835 values are met, and the samples are really there (a missing folder
fails here instead of quietly emptying the sample-driven tests)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from features.contract import read_dataset
from features.sources.x12 import ingest
from tests.paths import X12_SAMPLES as SAMPLES

EXPECTED = SAMPLES / "835_expected"


def test_the_shared_samples_are_here() -> None:
    for kind in ("835", "837", "835_expected"):
        assert len(list((SAMPLES / kind).iterdir())) >= 3, f"{SAMPLES / kind} is missing or nearly empty"



@pytest.mark.slow
def test_every_sample_is_read_or_reported(tmp_path: Path) -> None:
    files = sorted(p for p in (SAMPLES / "835").iterdir()) + sorted(p for p in (SAMPLES / "837").iterdir())
    assert files
    for f in files:
        _, summary = ingest([f])
        assert summary.transactions_read > 0, f.name  # every sample has something to read
        # every skip is reported with the file and (below the file) the segment number, and counted
        reported = [p for p in summary.problems if p.kind != "note"]
        assert len(reported) == sum(summary.skipped.values()), f.name
        assert summary.transactions_skipped == sum(v for k, v in summary.skipped.items() if k.endswith("transaction"))
        for p in reported:
            assert p.file == str(f) and p.reason
            if p.kind != "file":
                assert p.segment and p.segment > 0
    out = tmp_path / "all"
    _, summary = ingest([SAMPLES], out=out)
    assert summary.claims > 0 and summary.remits > 0
    ds = read_dataset(out)  # the contract's validation passes
    assert len(ds["claims"]) and len(ds["remittances"])


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else float(v)


@pytest.mark.parametrize("name", ["keironstoddart__blue_cross_nc_sample", "keironstoddart__emedny_sample",
                                  "keironstoddart__united_healthcare_legacy_sample"])
def test_expected_values(name: str) -> None:
    tables, summary = ingest([SAMPLES / "835" / f"{name}.txt"])
    assert summary.transactions_skipped == 0
    exp = pd.read_csv(EXPECTED / f"{name}.csv", dtype=str, keep_default_na=False)
    remits = tables["remittances"].merge(tables["claims"][["claim_id", "account_id"]], on="claim_id")
    rl = tables["remit_lines"].merge(remits[["remit_id", "account_id"]], on="remit_id")
    assert len(rl) == len(exp)
    adj = tables["adjustments"]
    for (_, got), (_, want) in zip(rl.iterrows(), exp.iterrows(), strict=True):
        assert got["account_id"] == want["marker"]  # the patient control number (CLP01)
        assert got["procedure_code"] == want["code"]
        # an SVC without a charge/paid amount is recorded as 0 (and noted)
        assert got["line_charge"] == pytest.approx(_num(want["charge_amount"]) or 0.0)
        assert got["line_paid"] == pytest.approx(_num(want["paid_amount"]) or 0.0)
        mine = adj[(adj["remit_id"] == got["remit_id"]) & (adj["line_number"] == got["line_number"])]
        expected_adj = []
        for i in range(3):
            if f"adj_{i}_code" in want and want[f"adj_{i}_code"]:
                expected_adj.append((want[f"adj_{i}_group"], want[f"adj_{i}_code"],
                                     round(float(want[f"adj_{i}_amount"]), 2)))
        got_adj = list(zip(mine["group_code"], mine["reason_code"], mine["amount"].round(2), strict=True))
        extra = [a for a in got_adj if a not in expected_adj]
        assert [a for a in got_adj if a in expected_adj] == expected_adj
        # The expected CSV keeps only the first triplet of each CAS; we read all six. The one line
        # where it matters, `CAS*PR*2*5.13**1*110`, has a PR-1 deductible of 110 in its second
        # triplet (5.13 + 110 = CLP05 115.13 - ..., and allowed 144.18 - paid 29.05 = 115.13).
        assert extra == ([("PR", "1", 110.0)] if got["procedure_code"] == "B4154"
                         and got["line_paid"] == 29.05 else [])
        if "rem_0_code" in want and want["rem_0_code"]:
            assert set(mine["remark_codes"]) == {want["rem_0_code"]}
