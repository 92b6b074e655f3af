"""One writer at a time: a lock file (flock) for folders and a PostgreSQL advisory lock for SQL targets.

Both are released by the operating system or the server when their holder dies (a SIGKILL included),
so a killed run never leaves a lock behind. A second writer waits up to `timeout` seconds (None: as
long as it takes; 0: not at all) and then fails with `LockTimeout`, which names what is locked.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: folder locks hold within one process only
    fcntl = None

POLL_S = 0.1
log = logging.getLogger(__name__)

_held: dict[tuple[str, int], int] = {}  # (lock file, thread) -> depth, for re-entrant locks
_held_guard = threading.Lock()


class LockTimeout(RuntimeError):
    """Another run holds the lock of the same target (and as-of date)."""

    def __init__(self, what: str, timeout: float | None) -> None:
        waited = "did not wait" if not timeout else f"waited {timeout:g} s"
        super().__init__(f"{what} is locked by another run ({waited}); nothing was written. Wait for it to "
                         "finish, or give a longer --lock-timeout")


@contextmanager
def file_lock(path: str | os.PathLike, timeout: float | None, what: str, reentrant: bool = False) -> Iterator[None]:
    """An exclusive flock on `path` (created if absent, never deleted: deleting a lock file races),
    waiting up to `timeout` seconds. With `reentrant`, the thread holding it may take it again (a
    writer that calls another writer of the same folder); without, a second taker waits like any other."""
    path = Path(path)
    key = (str(path.resolve()), threading.get_ident())
    if reentrant:
        with _held_guard:
            depth = _held.get(key, 0)
            if depth:
                _held[key] = depth + 1
        if depth:
            try:
                yield
            finally:
                with _held_guard:
                    _held[key] -= 1
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        if fcntl is not None:
            _wait(lambda: _try_flock(fh), timeout, what)
        if reentrant:
            with _held_guard:
                _held[key] = 1
        try:
            yield
        finally:
            if reentrant:
                with _held_guard:
                    del _held[key]
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def file_lock_free(path: str | os.PathLike) -> bool:
    """Whether nobody holds the lock file at `path` now (its holder, if any, has died)."""
    if fcntl is None or not Path(path).exists():
        return True
    with open(path, "a+b") as fh:
        if not _try_flock(fh):
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def _try_flock(fh) -> bool:
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait(attempt, timeout: float | None, what: str) -> None:
    deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
    waiting = False
    while not attempt():
        if deadline is not None and time.monotonic() >= deadline:
            raise LockTimeout(what, timeout)
        if not waiting:
            waiting = True
            log.info("%s is locked by another run: waiting (up to %s s)", what, "no limit" if timeout is None
                     else f"{timeout:g}")
        time.sleep(POLL_S)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock (same name, same key, in every process)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def advisory_lock(engine, name: str, timeout: float | None, what: str) -> Iterator[object]:
    """A PostgreSQL session advisory lock on `name`, held by a connection of its own for the block
    (yielded: `try_advisory` can ask through it); the server drops it when the holder dies."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        key = advisory_key(name)
        _wait(lambda: bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar()), timeout, what)
        try:
            yield conn
        finally:
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
    finally:
        conn.close()


def advisory_free(conn, name: str) -> bool:
    """Whether no session holds the advisory lock `name` (asked through a connection that does not)."""
    key = advisory_key(name)
    if not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
        return False
    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
    return True
