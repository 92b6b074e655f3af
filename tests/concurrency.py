"""Holding a lock elsewhere while a test runs (another thread: the folder locks are re-entrant within one)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


@contextmanager
def held_in_another_thread(lock: Callable[[], AbstractContextManager], inside: Callable[[Any], None] = lambda _: None,
                           ) -> Iterator[None]:
    """For the block, another thread is inside `lock()` (having run `inside` with what it yields)."""
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock() as value:
            inside(value)
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(30), "the other thread never took the lock"
        yield
    finally:
        release.set()
        t.join()
