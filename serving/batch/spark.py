"""The nightly batch on Spark: the same feature and scoring functions as the local engine
(`serving.batch.run.features_and_scores`), run per group of whole accounts with `groupBy(part).applyInPandas`.

How the rows travel:
- Spark reads every contract table (a Parquet/CSV folder, or a SQL database over JDBC when the
  PostgreSQL JDBC driver jar is on hand, else through SQLAlchemy on the driver), finds each row's
  account (claim lines, remittances and appeals through their claim; adjustments and remit lines
  through their remittance) and gives it the partition key `part = pmod(xxhash64(account_id), P)`.
- The tables are unioned into one long frame: `_table` names the table, `{table}__{column}` holds
  its columns (dates travel as days since 1970-01-01). One group holds every row of its accounts.
- Each group rebuilds a small `features.contract.Dataset` (typed by `coerce_table`, exactly as the
  readers type it; the payer table is shipped whole with the function), calls `features_and_scores`
  and returns its feature rows, scored account rows and scored denial rows as pickled pandas frames
  (exact dtypes, no schema to keep in step with the feature catalogue).
- The driver calls `RunContext.finish` (serving/batch/run.py): the global order (capacity, exploration),
  reasons for the top rows, drift, the safe write (serving/batch/store.py) and the runs record, as the
  local engine does.

Validation: the dataset is read and validated on the driver with the same pandera checks as the
local engine before Spark starts, so a broken dataset stops the run before anything is written.
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.contract import TABLES, Dataset, coerce_table, is_sql_url
from serving.batch.run import (
    ACCOUNT_TABLES,
    BY_ACCOUNT,
    BY_CLAIM,
    BatchResult,
    ChunkResult,
    RunContext,
    features_and_scores,
)

log = logging.getLogger(__name__)

ACCOUNTS_PER_GROUP = 20_000
_EPOCH = "1970-01-01"


def jdbc_jars() -> list[str]:
    """PostgreSQL JDBC driver jars available offline: RECOUP_JDBC_JARS (os.pathsep separated), else the
    newest one in the local Maven repository (~/.m2). Spark never downloads jars at run time here."""
    env = os.environ.get("RECOUP_JDBC_JARS")
    if env:
        return [p for p in env.split(os.pathsep) if p and Path(p).exists()]
    found = sorted(glob.glob(str(Path.home() / ".m2/repository/org/postgresql/postgresql/*/postgresql-*.jar")))
    found = [f for f in found if not f.endswith(("-sources.jar", "-javadoc.jar"))]
    return found[-1:]


def spark_session(master: str = "local[*]", conf: dict | None = None):
    """A SparkSession whose Python workers run this interpreter (PYSPARK_PYTHON set before it starts)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    builder = (SparkSession.builder.master(master).appName("recoup-batch")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.driver.maxResultSize", "0")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", str(sys.stderr.isatty()).lower())
               .config("spark.sql.adaptive.enabled", "false")  # one group per partition key, as planned
               .config("spark.driver.memory", os.environ.get("RECOUP_SPARK_DRIVER_MEMORY", "4g")))
    jars = jdbc_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for k, v in (conf or {}).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def jdbc_options(url: str) -> tuple[str, dict[str, str]]:
    """A SQLAlchemy URL (postgresql[+driver]://user:pw@host:port/db) as a JDBC URL and properties."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"the Spark engine reads SQL over JDBC from PostgreSQL only, not {u.get_backend_name()}")
    jdbc = f"jdbc:postgresql://{u.host or 'localhost'}:{u.port or 5432}/{u.database or ''}"
    props = {"driver": "org.postgresql.Driver", "user": u.username or "postgres"}
    if u.password:
        props["password"] = str(u.password)
    return jdbc, props


# ----------------------------------------------------------------------------- reading


def _read_tables(spark, source, ds: Dataset, names: list[str]) -> tuple[dict, str]:
    """Spark DataFrames of the shipped tables `names`, and how they were read."""
    if not is_sql_url(source):
        folder = Path(source)
        out = {}
        for name in names:
            pq, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
            if pq.exists():
                out[name] = spark.read.parquet(str(pq))
            else:
                out[name] = spark.read.option("header", True).csv(str(csv))
        return out, "parquet/csv"
    if jdbc_jars():
        try:
            url, props = jdbc_options(source.partition("#")[0])
            out = {name: spark.read.jdbc(url, name, properties=props) for name in names}
            return out, "jdbc"
        except Exception as err:  # noqa: BLE001 - no driver class or not PostgreSQL: fall back below
            log.warning("JDBC read unavailable (%s); reading the SQL tables on the driver", type(err).__name__)
    # Fallback: the validated frames (read with SQLAlchemy on the driver) become Spark DataFrames.
    return {name: _from_pandas(spark, name, ds[name]) for name in names}, "sqlalchemy"


def _from_pandas(spark, name: str, df: pd.DataFrame):
    import pyarrow as pa

    from features.contract import arrow_schema

    schema = arrow_schema(name)
    df = df[[c for c in schema.names if c in df]]
    table = pa.Table.from_pandas(df, schema=pa.schema([schema.field(c) for c in df.columns]), preserve_index=False)
    return spark.createDataFrame(table.to_pandas(date_as_object=False)) if len(df) else spark.createDataFrame(
        [], _spark_schema(name, list(df.columns)))


def _spark_schema(name: str, cols: list[str]):
    from pyspark.sql import types as T

    kinds = {"str": T.StringType(), "date": T.DateType(), "money": T.DoubleType(), "signed_money": T.DoubleType(),
             "float": T.DoubleType(), "int": T.LongType()}
    return T.StructType([T.StructField(c, kinds[TABLES[name].columns[c].type], True) for c in cols])


def _normalised(name: str, df):
    """The table's contract columns with one type per contract type (dates as days since 1970-01-01)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = []
    types = dict(df.dtypes)
    for col, c in TABLES[name].columns.items():
        if col in types:
            x = F.col(col)
        elif not c.required:  # an optional column the files leave out: its contract default
            x = F.lit(c.default)
        else:
            continue
        if c.type == "date":
            if types.get(col) == "string":
                x = F.to_date(F.substring(x, 1, 10))
            x = F.datediff(F.to_date(x), F.lit(_EPOCH)).cast(T.LongType())
        elif c.type == "int":
            x = x.cast(T.LongType())
        elif c.type == "str":
            x = x.cast(T.StringType())
        else:
            x = x.cast(T.DoubleType())
        cols.append(x.alias(f"{name}__{col}"))
    return df.select(*cols)


def _long_frame(frames: dict, n_parts: int):
    """Every shipped table's rows, tagged with their account's partition key, as one long frame."""
    from pyspark.sql import functions as F

    norm = {name: _normalised(name, df) for name, df in frames.items()}
    claim_acct = norm["claims"].select(F.col("claims__claim_id").alias("_cid"),
                                       F.col("claims__account_id").alias("_aid"))
    remit_acct = None
    if "remittances" in norm:
        remit_acct = norm["remittances"].select(F.col("remittances__remit_id").alias("_rid"),
                                                F.col("remittances__claim_id").alias("_cid")).join(
            claim_acct, "_cid").select("_rid", "_aid")
    parts = []
    for name, df in norm.items():
        if name in BY_ACCOUNT:
            tagged = df.withColumn("_aid", F.col(f"{name}__account_id"))
        elif name in BY_CLAIM:
            tagged = df.join(claim_acct, df[f"{name}__claim_id"] == claim_acct["_cid"]).drop("_cid")
        else:
            tagged = df.join(remit_acct, df[f"{name}__remit_id"] == remit_acct["_rid"]).drop("_rid")
        parts.append(tagged.withColumn("_table", F.lit(name)))
    long = parts[0]
    for p in parts[1:]:
        long = long.unionByName(p, allowMissingColumns=True)
    # the key is the account's person (guarantor, else patient): a guarantor's accounts share a group, as
    # the guarantor features need
    acc = norm["accounts"]
    person = F.col("accounts__patient_id")
    if "accounts__guarantor_id" in acc.columns:
        person = F.coalesce(F.col("accounts__guarantor_id"), person)
    people = acc.select(F.col("accounts__account_id").alias("_paid"), person.alias("_pid"))
    long = long.join(F.broadcast(people), long["_aid"] == people["_paid"], "left")
    key = F.coalesce(F.col("_pid"), F.col("_aid"))
    return long.withColumn("part", F.pmod(F.xxhash64(key), F.lit(n_parts)).cast("int")).drop("_aid", "_paid", "_pid")


# ----------------------------------------------------------------------------- per group


def _group_worker(model, payers: pd.DataFrame, present: dict[str, list[str]], as_of: pd.Timestamp,
                  extract_date, cfg: dict):
    """The function each group runs (on an executor): rebuild the group's Dataset, featurise, score."""

    def work(pdf: pd.DataFrame) -> pd.DataFrame:
        t0 = time.perf_counter()
        table_of = pdf["_table"].to_numpy()
        tables = {"payers": payers}
        for name, cols in present.items():
            rows = pdf.loc[table_of == name, [f"{name}__{c}" for c in cols]]
            rows.columns = cols
            for col in cols:
                if TABLES[name].columns[col].type == "date":
                    days = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype="float64")
                    rows[col] = pd.to_datetime(days, unit="D", origin=_EPOCH) if len(rows) else pd.Series(
                        [], dtype="datetime64[ns]")
            tables[name], problems = coerce_table(name, rows.reset_index(drop=True))
            if problems:  # cannot happen after the driver's validation; fail loudly if it does
                raise ValueError(f"group data breaks the contract: {problems[0]}")
        ds = Dataset(tables, extract_date=extract_date)
        t1 = time.perf_counter()
        chunk = features_and_scores(model, ds, as_of, cfg)
        part = int(pdf["part"].iloc[0])
        payload = {"chunk": chunk, "group_build_s": t1 - t0}
        return pd.DataFrame({"part": [part], "payload": [pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)]})

    return work


# ----------------------------------------------------------------------------- the run


def run_spark_batch(source, as_of, target: str | None, model, model_version: str, *, ranking_cfg: dict | None = None,
                    master: str = "local[*]", reasons_rows: int | None = None, extract_date=None,
                    run_id: str | None = None, accounts_per_group: int = ACCOUNTS_PER_GROUP,
                    n_partitions: int | None = None, spark=None, conf: dict | None = None,
                    keep_result: bool = False, lock_timeout: float | None = 0.0) -> BatchResult:
    """`recoup score --engine spark`: the local engine's result (same worklist), computed on Spark."""
    ctx = RunContext.create(str(source), as_of, target, model, model_version, engine="spark",
                            ranking_cfg=ranking_cfg, reasons_rows=reasons_rows, run_id=run_id,
                            extract_date=extract_date, chunk_size=accounts_per_group, keep_result=keep_result,
                            lock_timeout=lock_timeout)
    ds = ctx.read()  # validation on the driver: raises before anything is written
    n_accounts = len(ds["accounts"])
    present = {n: [c for c in TABLES[n].columns if c in ds[n]] for n in ACCOUNT_TABLES if n in ds}
    if not is_sql_url(ctx.source):
        # Spark reads the folder itself; the driver's copy was only needed for validation (and payers)
        ds = Dataset({"payers": ds["payers"]}, extract_date=ds.extract_date, source=ctx.source)
    with ctx.recorded():
        with ctx.timed("spark_start_s"):
            spark = spark or spark_session(master, conf)
        n_parts = n_partitions or max(spark.sparkContext.defaultParallelism,
                                      int(np.ceil(n_accounts / max(accounts_per_group, 1))))
        chunks, info = _score_groups(ctx, spark, ds, present, n_parts)
        done = ctx.finish(chunks)
    log.info("spark: scored %d accounts and %d denials in %.1fs", len(done.ranked.accounts),
             len(done.ranked.denials), sum(v for k, v in ctx.timings.items() if not k.startswith("worker_")))
    return ctx.result(done, info)


def _score_groups(ctx: RunContext, spark, ds: Dataset, present: dict[str, list[str]],
                  n_parts: int) -> tuple[list[ChunkResult], dict]:
    """Ship every account's rows to its group (`n_parts` groups) and run `features_and_scores` per
    group: the groups' results, and how the job ran (master, reader, groups)."""
    from pyspark.sql import types as T

    with ctx.timed("spark_job_s"):  # read, shuffle, features and both models on the workers
        frames, how = _read_tables(spark, ctx.source, ds, list(present))
        log.info("spark: tables read via %s", how)
        spark.conf.set("spark.sql.shuffle.partitions", str(n_parts))
        long = _long_frame(frames, n_parts)
        schema = T.StructType([T.StructField("part", T.IntegerType()), T.StructField("payload", T.BinaryType())])
        work = _group_worker(ctx.model, ds["payers"], present, ctx.as_of, ds.extract_date, ctx.ranking)
        rows = long.groupBy("part").applyInPandas(work, schema=schema).collect()
    payloads = [pickle.loads(row["payload"]) for row in sorted(rows, key=lambda r: r["part"])]
    chunks = [p["chunk"] for p in payloads]
    # summed over the workers
    ctx.add_time("worker_group_build_s", sum(p["group_build_s"] for p in payloads))
    ctx.add_time("worker_features_predict_s", sum(c.features_s + c.predict_s for c in chunks))
    log.info("spark: %d groups of accounts", len(rows))
    return chunks, {"master": spark.sparkContext.master, "reader": how, "groups": len(rows)}
