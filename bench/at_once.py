"""Simulated users who all start at the same instant: the shared harness of the serving benchmarks."""

from __future__ import annotations

import threading
import time
from typing import Callable


def users_at_once(user: Callable, args: list[tuple]) -> tuple[list[dict], float]:
    """Run ``user(*args[i], release, record)`` in one thread per user; each waits on ``release`` (a barrier) so
    that all start together, and fills its ``record`` dict. Returns the records and the wall time in seconds
    from the release to the last user's end."""
    release = threading.Barrier(len(args) + 1)
    records: list[dict] = [{} for _ in args]
    threads = [threading.Thread(target=user, args=(*a, release, records[i])) for i, a in enumerate(args)]
    for t in threads:
        t.start()
    release.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return records, time.perf_counter() - start
