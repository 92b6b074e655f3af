"""PostgreSQL for real: `recoup load` (types, keys, indexes), scoring from it, the worklist written back
as tables, Parquet-in = Postgres-in = Spark-over-JDBC, and a run killed before its commit."""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest

from features.contract import TABLES, read_dataset, validate_dataset
from tests.killpoint import run_killed
from tests.paths import REPO
from tests.postgres import scratch_database
from tests.worklists import AS_OF, assert_worklists_equal

pytestmark = [pytest.mark.postgres, pytest.mark.slow]



@pytest.fixture(scope="module")
def pg_db():
    """A database of its own for this test run (recoup_test_<pid>), dropped afterwards."""
    with scratch_database("recoup_test") as url:
        yield url


@pytest.fixture(scope="module")
def loaded(benv, pg_db):
    from typer.testing import CliRunner

    from recoup_cli import app

    result = CliRunner().invoke(app, ["load", str(benv.data), pg_db])
    assert result.exit_code == 0, result.output
    assert "accounts 3,000" in result.output
    return pg_db


def test_load_types_keys_and_indexes(loaded, benv):
    import sqlalchemy as sa

    engine = sa.create_engine(loaded)
    try:
        insp = sa.inspect(engine)
        cols = {c["name"]: c for c in insp.get_columns("claims")}
        assert str(cols["billed_amount"]["type"]) == "NUMERIC(14, 2)"
        assert str(cols["submitted_date"]["type"]) == "DATE"
        assert str(cols["payer_sequence"]["type"]) == "BIGINT"
        assert str(cols["claim_id"]["type"]) == "TEXT" and not cols["claim_id"]["nullable"]
        assert cols["principal_dx"]["nullable"]
        assert insp.get_pk_constraint("claims")["constrained_columns"] == ["claim_id"]
        assert insp.get_pk_constraint("claim_lines")["constrained_columns"] == ["claim_id", "line_number"]
        assert not insp.get_pk_constraint("adjustments")["constrained_columns"]  # its key is not unique
        indexed = {tuple(i["column_names"]) for i in insp.get_indexes("claims")}
        assert {("account_id",), ("payer_id",)} <= indexed
        assert ("remit_id",) in {tuple(i["column_names"]) for i in insp.get_indexes("adjustments")}
        with engine.connect() as conn:
            n = conn.exec_driver_sql("SELECT count(*) FROM transactions").scalar()
        assert n == len(benv.dataset["transactions"])
    finally:
        engine.dispose()
    # loading again replaces the tables (no duplicates)
    from features.contract import load_dataset

    counts = load_dataset(benv.data, loaded)
    assert counts["transactions"] == len(benv.dataset["transactions"])


def test_parquet_in_postgres_in_and_postgres_out_agree(loaded, benv, tmp_path):
    from typer.testing import CliRunner

    from features.contract import read_dataset
    from recoup_cli import app
    from serving.batch import run_batch
    from serving.batch.store import read_runs, read_worklist

    # the dataset read back from PostgreSQL is the Parquet one
    back = read_dataset(loaded)
    for name, df in benv.dataset.tables.items():
        a = df.sort_values(list(df.columns)).reset_index(drop=True)
        b = back[name][list(df.columns)].sort_values(list(df.columns)).reset_index(drop=True)
        assert_worklists_equal(a, b)

    parquet_out = str(tmp_path / "worklist")
    from_parquet = run_batch(benv.data, AS_OF, parquet_out, benv.model, benv.version_label, keep_result=True)
    sql_out = f"{loaded}#worklist"
    result = CliRunner().invoke(app, ["score", loaded, "--as-of", AS_OF, "--out", sql_out,
                                      "--tracking-uri", benv.tracking_uri])
    assert result.exit_code == 0, result.output
    a, b = read_worklist(parquet_out), read_worklist(sql_out)
    assert_worklists_equal(a, b[list(a.columns)])
    da, db = read_worklist(parquet_out, kind="denials"), read_worklist(sql_out, kind="denials")
    assert_worklists_equal(da, db[list(da.columns)])
    assert len(b) == from_parquet.n_accounts

    # in memory too: Postgres-in = Parquet-in
    from_pg = run_batch(loaded, AS_OF, None, benv.model, benv.version_label, keep_result=True)
    assert_worklists_equal(from_parquet.ranked.accounts, from_pg.ranked.accounts)
    assert_worklists_equal(from_parquet.ranked.denials, from_pg.ranked.denials)

    # the same date again replaces its rows
    result = CliRunner().invoke(app, ["score", loaded, "--as-of", AS_OF, "--out", sql_out,
                                      "--tracking-uri", benv.tracking_uri])
    assert result.exit_code == 0, result.output
    again = read_worklist(sql_out)
    assert len(again) == len(b) and again["account_id"].is_unique
    runs = read_runs(sql_out)
    assert list(runs["status"]) == ["succeeded", "succeeded"]
    assert set(runs["model_version"]) == {benv.version_label}
    assert list(runs["n_accounts"]) == [len(b), len(b)]


def test_killed_sql_run_leaves_previous_table(loaded, benv, tmp_path):
    from serving.batch import run_batch
    from serving.batch.store import read_runs, read_worklist

    target = f"{loaded}#killed"
    before = run_batch(loaded, AS_OF, target, benv.model, benv.version_label)
    old = read_worklist(target)
    # `recoup score`, paused before the worklist's transaction commits (tests/killpoint.py)
    run_killed("sql", ["score", loaded, "--as-of", AS_OF, "--out", target], tmp_path / "ready", cwd=REPO,
               env=benv.env())
    now = read_worklist(target)
    assert set(now["run_id"]) == {before.run_id}
    assert_worklists_equal(old, now[list(old.columns)])
    runs = read_runs(target).sort_values("started_at")
    assert list(runs["status"]) == ["succeeded", "running"]
    # the next start marks the killed run failed; the rerun replaces the date's rows once
    after = run_batch(loaded, AS_OF, target, benv.model, benv.version_label)
    again = read_worklist(target)
    assert len(again) == len(old) and again["account_id"].is_unique and set(again["run_id"]) == {after.run_id}
    assert list(read_runs(target).sort_values("started_at")["status"]) == ["succeeded", "failed", "succeeded"]


@pytest.mark.spark
def test_spark_reads_postgres(loaded, benv):
    pytest.importorskip("pyspark")
    from serving.batch import run_batch
    from serving.batch.spark import run_spark_batch, spark_session

    local = run_batch(loaded, AS_OF, None, benv.model, benv.version_label, keep_result=True)
    dist = run_spark_batch(loaded, AS_OF, None, benv.model, benv.version_label, keep_result=True,
                           spark=spark_session("local[2]"))
    assert dist.info["reader"] in ("jdbc", "sqlalchemy")
    assert_worklists_equal(local.ranked.accounts, dist.ranked.accounts)
    assert_worklists_equal(local.ranked.denials, dist.ranked.denials)


def test_sql_url_reader(small_dataset):
    sa = pytest.importorskip("sqlalchemy")
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    engine = sa.create_engine(url)
    schema = f"recoup_test_reader_{os.getpid()}_{uuid.uuid4().hex[:6]}"  # other runs share the server
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    ds = small_dataset
    with engine.begin() as conn:
        for name, df in ds.tables.items():
            df.to_sql(name, conn, schema=schema, index=False)
    engine.dispose()
    again = read_dataset(f"{url}?options=-csearch_path%3D{schema}")
    for name, df in ds.tables.items():
        key = list(TABLES[name].key)
        expected = df.sort_values(key, na_position="first").reset_index(drop=True)
        got = again[name].sort_values(key, na_position="first").reset_index(drop=True)
        pd.testing.assert_frame_equal(expected, got, obj=name)
    validate_dataset(again)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
