"""A scratch PostgreSQL database for a test module: created fresh, dropped afterwards, skipped (with the
reason) where no server runs. `.ci/run` starts the machine's server, so CI always has one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432"


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database `<prefix>_<pid>` on `SERVER`, dropped on exit."""
    sa = pytest.importorskip("sqlalchemy")
    name = f"{prefix}_{os.getpid()}"
    admin = sa.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as err:
        admin.dispose()
        pytest.skip(f"PostgreSQL is not running at {SERVER}: {err}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
