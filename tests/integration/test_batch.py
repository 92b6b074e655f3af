"""The nightly batch's local engine: identical reruns, the runs record, validation before any write,
and a run killed mid-write (SIGKILL) leaving the previous worklist intact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from features.contract import ContractError
from serving.batch import run_batch
from serving.batch.store import read_runs, read_worklist
from tests.killpoint import run_killed
from tests.paths import REPO
from tests.worklists import AS_OF, AS_OF_2, assert_worklists_equal

pytestmark = pytest.mark.slow


def test_two_runs_agree_and_rerun_replaces_the_date(benv, tmp_path):
    target = str(tmp_path / "worklist")
    first = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label, keep_result=True)
    stored_first = read_worklist(target)
    second = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label, keep_result=True)
    assert first.run_id != second.run_id
    assert first.n_accounts > 100 and first.n_denials > 0
    assert_worklists_equal(first.ranked.accounts, second.ranked.accounts)
    assert_worklists_equal(first.ranked.denials, second.ranked.denials)
    stored = read_worklist(target)
    assert len(stored) == len(stored_first) == first.n_accounts  # replaced, not appended
    assert stored["account_id"].is_unique and set(stored["run_id"]) == {second.run_id}
    assert_worklists_equal(stored_first, stored)
    den = read_worklist(target, kind="denials")
    assert len(den) == first.n_denials and den["claim_id"].is_unique
    # another date sits beside it
    other = run_batch(benv.data, AS_OF_2, target, benv.model, benv.version_label)
    assert len(read_worklist(target)) == first.n_accounts + other.n_accounts
    assert len(read_worklist(target, AS_OF)) == first.n_accounts

    runs = read_runs(target)
    assert list(runs["run_id"]) == [first.run_id, second.run_id, other.run_id]
    assert set(runs["status"]) == {"succeeded"}
    assert list(runs["as_of"]) == [AS_OF, AS_OF, AS_OF_2]
    assert set(runs["model_version"]) == {benv.version_label} and set(runs["engine"]) == {"local"}
    assert list(runs["n_accounts"]) == [first.n_accounts, first.n_accounts, other.n_accounts]
    assert list(runs["n_denials"])[:2] == [first.n_denials] * 2
    timings = json.loads(runs["timings"].iloc[0])
    assert {"read_validate_s", "features_s", "predict_s", "rank_reasons_s", "write_s"} <= set(timings)
    assert pd.to_datetime(runs["finished_at"]).ge(pd.to_datetime(runs["started_at"])).all()


def test_chunks_change_nothing(benv):
    """Scored chunks are joined as NumPy columns (`concat_rows`): cutting the accounts into many
    chunks gives the one-chunk worklist (exploration included) with the same column types."""
    from serving.ranking import load_ranking_config

    cfg = load_ranking_config(overrides={"exploration_share": 0.2})
    whole = run_batch(benv.data, AS_OF, None, benv.model, benv.version_label, ranking_cfg=cfg, keep_result=True,
                      dataset=benv.dataset).ranked
    cut = run_batch(benv.data, AS_OF, None, benv.model, benv.version_label, ranking_cfg=cfg, keep_result=True,
                    dataset=benv.dataset, chunk_size=170).ranked
    assert len(whole.accounts) > 100 and len(whole.denials) > 0 and whole.accounts["is_exploration"].any()
    assert_worklists_equal(whole.accounts, cut.accounts)
    assert_worklists_equal(whole.denials, cut.denials)
    assert list(whole.accounts.dtypes) == list(cut.accounts.dtypes)


def _broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("_truth"))
    claims = pd.read_parquet(dst / "claims.parquet")
    claims.loc[claims.index[:3], "billed_amount"] = -10.0
    claims.to_parquet(dst / "claims.parquet", index=False)
    return dst


def test_invalid_dataset_stops_before_anything_is_written(benv, tmp_path):
    data = _broken_copy(benv.data, tmp_path / "broken")
    target = tmp_path / "out" / "worklist"
    with pytest.raises(ContractError) as err:
        run_batch(data, AS_OF, str(target), benv.model, benv.version_label)
    assert "claims.billed_amount" in str(err.value) and "negative" in str(err.value)
    assert not (tmp_path / "out").exists()  # no worklist, no runs record, no drift report
    # the command says the same and exits non-zero
    proc = subprocess.run([str(Path(sys.executable).with_name("recoup")), "score", str(data), "--as-of", AS_OF,
                           "--out", str(target)], env=benv.env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "claims.billed_amount" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_killed_run_leaves_previous_worklist_intact(benv, tmp_path):
    target = str(tmp_path / "worklist")
    before = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    old = read_worklist(target)
    old_den = read_worklist(target, kind="denials")
    # `recoup score`, paused once every file of its version is written and the manifest not switched
    run_killed("parquet", ["score", str(benv.data), "--as-of", AS_OF, "--out", target], tmp_path / "ready",
               cwd=REPO, env=benv.env())
    now = read_worklist(target)
    assert set(now["run_id"]) == {before.run_id}
    assert_worklists_equal(old, now)
    assert_worklists_equal(old_den, read_worklist(target, kind="denials"))
    runs = read_runs(target)
    assert list(runs["status"]) == ["succeeded", "running"]  # the killed run never finished
    assert len(list((tmp_path / "worklist_versions").glob(f"{AS_OF}.*"))) == 2  # its staged version is left

    after = run_batch(benv.data, AS_OF, target, benv.model, benv.version_label)
    new = read_worklist(target)
    assert len(new) == len(old) and new["account_id"].is_unique and set(new["run_id"]) == {after.run_id}
    assert_worklists_equal(old, new)
    # the next start marked the killed run failed and removed what it had staged
    assert list(read_runs(target)["status"]) == ["succeeded", "failed", "succeeded"]
    assert [p.name for p in (tmp_path / "worklist_versions").glob(f"{AS_OF}.*")] == [f"{AS_OF}.{after.run_id}"]
