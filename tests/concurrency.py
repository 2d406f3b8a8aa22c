"""Run one function in several threads released together, as simultaneous users would; know when they wait."""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Sequence, TypeVar

A = TypeVar("A")
R = TypeVar("R")


def run_concurrently(fn: Callable[[A], R], args: Sequence[A]) -> list[R]:
    """Call ``fn(arg)`` for every arg at the same moment; return results in order; fail on any error."""
    results: dict[int, R] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(args))

    def worker(i: int, arg: A) -> None:
        barrier.wait()
        try:
            results[i] = fn(arg)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [results[i] for i in range(len(args))]


def wait_until_blocked(threads: Sequence[threading.Thread], timeout: float = 30.0) -> None:
    """Poll (with a deadline) until every thread is blocked waiting on a lock, an event or a condition.

    For a test that must know that others are waiting before it lets one go on: each thread's innermost
    Python frame is then ``wait`` in the threading module. Threads that are still on their way fail this
    check, so the test never proceeds on a guess about timing.
    """
    deadline = time.monotonic() + timeout

    def blocked(thread: threading.Thread) -> bool:
        frame = sys._current_frames().get(thread.ident)
        return frame is not None and frame.f_code.co_name == "wait" and frame.f_code.co_filename == threading.__file__

    while not all(blocked(t) for t in threads):
        assert time.monotonic() < deadline, "the threads never all came to wait"
        time.sleep(0.005)


def wait_for(condition: Callable[[], bool], message: str, timeout: float = 10.0) -> None:
    """Poll a condition another thread brings about, with a deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.01)
