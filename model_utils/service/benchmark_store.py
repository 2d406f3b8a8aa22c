"""Benchmark results kept on disk: one SQLite file under the cache dir (``benchmarks.sqlite3``), shared by every
visitor and every restart, and a single-flight table so that the same evaluation never runs twice at once.

A result is keyed by everything that changes its numbers: model, revision, task, the task's version, shots,
document limit, compute type (the engine that ran it, e.g. ``CPU int8``) and the lm-eval version. Deleting the
file clears every result (the app makes a new one); nothing else refers to it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

FILE_NAME = "benchmarks.sqlite3"
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    model TEXT NOT NULL, revision TEXT NOT NULL, task TEXT NOT NULL, task_version TEXT NOT NULL,
    num_fewshot INTEGER NOT NULL, doc_limit INTEGER NOT NULL, compute_type TEXT NOT NULL, lm_eval_version TEXT NOT NULL,
    step INTEGER NOT NULL, metrics TEXT NOT NULL, results TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, revision, task, task_version, num_fewshot, doc_limit, compute_type, lm_eval_version))
"""


@dataclass(frozen=True)
class ResultKey:
    """What identifies one evaluation: the same key gives the same numbers."""

    model: str
    revision: str
    task: str
    task_version: str
    num_fewshot: int
    limit: int | None  # None: every document
    compute_type: str
    lm_eval_version: str

    def columns(self) -> tuple:
        return (self.model, self.revision, self.task, self.task_version, self.num_fewshot,
                -1 if self.limit is None else self.limit, self.compute_type, self.lm_eval_version)


@dataclass(frozen=True)
class Metric:
    """One number lm-eval reported, with its standard error (None where lm-eval gives none)."""

    name: str  # as lm-eval names it, without the ",none" filter suffix: acc, acc_norm, perplexity ...
    value: float
    stderr: float | None


@dataclass(frozen=True)
class StoredResult:
    key: ResultKey
    step: int
    metrics: tuple[Metric, ...]
    results: dict[str, Any]  # lm-eval's results JSON for this checkpoint and task (what the page offers to download)


class ResultsStore:
    """SQLite, one connection per call (cheap; safe from any thread); writes are atomic transactions."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key: ResultKey) -> StoredResult | None:
        with self._connect() as db:
            row = db.execute("SELECT step, metrics, results FROM results WHERE model=? AND revision=? AND task=? AND "
                             "task_version=? AND num_fewshot=? AND doc_limit=? AND compute_type=? AND "
                             "lm_eval_version=?", key.columns()).fetchone()
        if row is None:
            return None
        metrics = tuple(Metric(**m) for m in json.loads(row[1]))
        return StoredResult(key, row[0], metrics, json.loads(row[2]))

    def put(self, result: StoredResult) -> None:
        with self._connect() as db:
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*result.key.columns(), result.step, json.dumps([asdict(m) for m in result.metrics]),
                        json.dumps(result.results, default=str), time.time()))

    def count(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


class Flight:
    """One evaluation in progress: whoever else asks for its key waits here and reads its progress."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.progress = ""  # in words, e.g. "412 of 1,000 requests"
        self.result: StoredResult | None = None
        self.error: BaseException | None = None


class SingleFlight:
    """The same key is evaluated by one caller at a time; the others follow its progress and share its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[ResultKey, Flight] = {}

    def join(self, key: ResultKey) -> tuple[Flight, bool]:
        """The flight for ``key`` and whether the caller owns it (must run it and call :meth:`land`)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: ResultKey, flight: Flight, result: StoredResult | None = None,
             error: BaseException | None = None) -> None:
        with self._lock:
            self._flights.pop(key, None)
        flight.result, flight.error = result, error
        flight.done.set()

    def running(self) -> int:
        with self._lock:
            return len(self._flights)


def run_once(store: ResultsStore, flights: SingleFlight, key: ResultKey,
             evaluate: Callable[[Flight], StoredResult], wait: Callable[[Flight], None]) -> tuple[StoredResult, bool]:
    """The stored result for ``key``, evaluating it only when nobody has or is: (result, computed by this call).

    ``wait(flight)`` follows another caller's flight until it lands (it may raise to give up, e.g. on Stop).
    A flight that failed or was stopped by its owner is tried again by a follower, as its own.
    """
    while True:
        stored = store.get(key)
        if stored is not None:
            return stored, False
        flight, mine = flights.join(key)
        if not mine:
            wait(flight)
            if flight.result is not None:
                return flight.result, False
            continue  # the owner failed or stopped: look again, and run it if still needed
        try:
            result = evaluate(flight)
            store.put(result)
        except BaseException as exc:
            flights.land(key, flight, error=exc)
            raise
        flights.land(key, flight, result=result)
        return result, True
