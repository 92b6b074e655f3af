"""`_truth/` beside a dataset: truth from another generator (other columns) is left out of the evaluation,
named in a warning, never a KeyError."""

from __future__ import annotations

import logging

import pandas as pd

from training.train import TRUTH_COLUMNS, read_truth, read_truth_actions, read_truth_table


def _write(folder, name: str, df: pd.DataFrame) -> None:
    (folder / "_truth").mkdir(exist_ok=True)
    df.to_parquet(folder / "_truth" / f"{name}.parquet")


def test_foreign_truth_is_ignored_and_named(tmp_path, caplog):
    _write(tmp_path, "accounts", pd.DataFrame({"account_id": ["A1"], "score": [0.3]}))
    _write(tmp_path, "denials", pd.DataFrame({"claim": ["C1"]}))
    _write(tmp_path, "actions", pd.DataFrame({"account_id": ["A1"], "as_of": [pd.Timestamp("2025-01-01")]}))
    with caplog.at_level(logging.WARNING):
        assert read_truth(tmp_path) == (None, None)
        assert read_truth_actions(tmp_path) is None
    text = caplog.text
    assert "_truth/accounts.parquet: it lacks the column(s) as_of, p_payment, expected_recovery" in text
    assert "_truth/actions.parquet: it lacks the column(s) action, minutes, lift" in text
    assert "_truth/denials.parquet" in text


def test_truth_with_the_columns_the_evaluation_uses_is_read(tmp_path):
    full = {c: [1.0] for c in TRUTH_COLUMNS["accounts"]} | {"guarantor_id": ["G1"], "extra": ["x"]}
    _write(tmp_path, "accounts", pd.DataFrame(full))
    got = read_truth_table(tmp_path, "accounts")
    assert list(got.columns) == [*TRUTH_COLUMNS["accounts"], "guarantor_id", "extra"]
    (tmp_path / "_truth" / "denials.parquet").write_bytes(b"garbage")
    assert read_truth_table(tmp_path, "denials") is None  # unreadable: left out too
    assert read_truth_table(tmp_path, "actions") is None  # absent
