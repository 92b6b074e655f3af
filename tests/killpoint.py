"""`recoup` with a pause at one real point of the worklist write, so that a test can SIGKILL the
process there (the product has no test hook: the pause is installed from outside, here):

    python -m tests.killpoint parquet score DATA --as-of ... --out FOLDER
    python -m tests.killpoint sql score DATA --as-of ... --out postgresql://...#table

parquet: every file of the run is staged (complete, synced, beside its final name) and none is moved
into place yet. sql: the transaction has deleted and re-inserted the date's rows and not committed.
"""

from __future__ import annotations

import sys
import time

PAUSE_S = 120


def pause_before_parquet_swap() -> None:
    from serving.batch import store

    def paused(staged):
        time.sleep(PAUSE_S)
        raise SystemExit("the kill point was not killed in time")

    store.swap_into_place = paused


def pause_before_sql_commit() -> None:
    """SQLAlchemy's `commit` event runs before the COMMIT is sent: pause there, in the transaction
    that wrote the drift table (the worklist's last), not in the runs record's own transactions."""
    import sqlalchemy as sa

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO") and "_drift" in statement.split("(")[0]:
            conn.info["wrote_drift"] = True

    @sa.event.listens_for(sa.engine.Engine, "commit")
    def before_commit(conn) -> None:
        if conn.info.pop("wrote_drift", False):
            time.sleep(PAUSE_S)
            raise SystemExit("the kill point was not killed in time")


def main() -> None:
    where, *args = sys.argv[1:]
    {"parquet": pause_before_parquet_swap, "sql": pause_before_sql_commit}[where]()
    from recoup_cli import app

    app(args, prog_name="recoup")


if __name__ == "__main__":
    main()
