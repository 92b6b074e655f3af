"""The Spark engine gives the local engine's worklist, row by row (pandas 3 under PySpark 4)."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.batchfixtures import AS_OF, assert_worklists_equal, benv  # noqa: F401

pytestmark = [pytest.mark.spark, pytest.mark.slow]


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    from serving.batch.spark import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


def test_spark_worklist_is_the_local_one(benv, spark, tmp_path):  # noqa: F811
    from serving.batch import run_batch
    from serving.batch.spark import run_spark_batch
    from serving.batch.store import read_runs, read_worklist

    # PySpark 4.3 warns that pandas 3 is not fully supported: this is the combination we run
    assert int(pd.__version__.split(".")[0]) >= 3
    local_t, spark_t = str(tmp_path / "local"), str(tmp_path / "spark")
    local = run_batch(benv.data, AS_OF, local_t, benv.model, benv.version_label, keep_result=True, chunk_size=1000)
    # groups of 1,000 accounts: several groups, both Python workers
    dist = run_spark_batch(benv.data, AS_OF, spark_t, benv.model, benv.version_label, spark=spark,
                           accounts_per_group=1000, keep_result=True)
    assert dist.info["groups"] >= 2 and dist.info["reader"] == "parquet/csv"
    assert (dist.n_accounts, dist.n_denials) == (local.n_accounts, local.n_denials)
    assert_worklists_equal(local.ranked.accounts, dist.ranked.accounts)
    assert_worklists_equal(local.ranked.denials, dist.ranked.denials)
    assert_worklists_equal(read_worklist(local_t), read_worklist(spark_t))
    assert_worklists_equal(read_worklist(local_t, kind="denials"), read_worklist(spark_t, kind="denials"))
    drift_l, drift_s = read_worklist(local_t, kind="drift"), read_worklist(spark_t, kind="drift")
    assert_worklists_equal(drift_l.drop(columns="run_id"), drift_s.drop(columns="run_id"))
    runs = read_runs(spark_t)
    assert list(runs["engine"]) == ["spark"] and list(runs["status"]) == ["succeeded"]
    assert list(runs["n_accounts"]) == [local.n_accounts]
