"""Run one function in several threads released together, as simultaneous users would."""

from __future__ import annotations

import threading
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
