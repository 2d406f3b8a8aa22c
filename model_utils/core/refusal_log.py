"""Refusals (busy, over a client's limit, a body too large) summarised for an operator's log.

A flood of refused requests must not drown the log: a single address looping on a 429 is refused hundreds of
times a second. What the operator needs is who started being refused, and then how many were refused, from how
many clients, in what period. So, per kind of refusal:

* a client's first refusal is logged in full (the words of the refusal and the client), unless that client was
  already shown in the last ``remember_s`` seconds, and at most ``first_lines`` such lines per period (addresses
  are cheap: a thousand new ones must not write a thousand lines);
* every other refusal is only counted; once a period (``period_s``, a few seconds) one line says how many were
  refused, from how many distinct clients, over how long.

The summary of a period is written when the next refusal comes after it, or by a timer when the flood stops,
so the last count is never lost. Memory is bounded: the clients shown recently (at most ``max_clients``) and
the distinct clients of the current period (likewise capped; beyond it they are counted as "at least").
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

SUMMARY_PERIOD_S = 5.0  # at most one summary line per kind of refusal this often
FIRST_LINES_PER_PERIOD = 5  # first refusals of new clients shown in full per period; more are only counted
REMEMBER_S = 60.0  # a client shown in full is not shown again for this long (its refusals are counted)
MAX_CLIENTS = 10_000  # clients remembered, recent and in the current period: a bound, not a policy


@dataclass
class _Period:
    started: float
    count: int = 0  # refusals counted, not shown in full
    clients: set[str] = field(default_factory=set)
    clients_overflow: bool = False  # more distinct clients than MAX_CLIENTS


class RefusalLog:
    """One kind of refusal (``what``, e.g. "busy"), logged to ``logger`` at INFO, summarised as described above.

    ``clock`` and ``schedule`` are the seams of the fast tests: ``schedule(delay, fn)`` runs ``fn`` after
    ``delay`` seconds (a daemon timer by default); the tests call :meth:`flush` with a fake clock instead.
    """

    def __init__(self, logger: logging.Logger, what: str, *, period_s: float = SUMMARY_PERIOD_S,
                 first_lines: int = FIRST_LINES_PER_PERIOD, remember_s: float = REMEMBER_S,
                 max_clients: int = MAX_CLIENTS, clock: Callable[[], float] = time.monotonic,
                 schedule: Callable[[float, Callable[[], None]], None] | None = None):
        self.logger, self.what = logger, what
        self.period_s, self.first_lines, self.remember_s, self.max_clients = (period_s, first_lines, remember_s,
                                                                              max_clients)
        self.clock = clock
        self.schedule = schedule or _timer
        self._shown: dict[str, float] = {}  # client -> when it was last shown in full (insertion = time order)
        self._period: _Period | None = None  # counting since its start; None when nothing is counted
        self._shown_this_period = 0
        self._period_started = clock()
        self._timer_set = False
        self._lock = threading.Lock()

    def refused(self, client: str, message: str, *args) -> None:
        """One refusal of ``client`` ("" when unknown); ``message % args`` says what was refused (logged when
        it is shown)."""
        with self._lock:
            now = self.clock()
            self._roll(now)
            self._forget_old(now)
            shown_at = self._shown.get(client)
            if shown_at is None and self._shown_this_period < self.first_lines:
                self._shown_this_period += 1
                self._shown[client] = now
                if len(self._shown) > self.max_clients:
                    self._shown.pop(next(iter(self._shown)))
                who = f"client {client}; more from it" if client else "more"
                self.logger.info("%s: " + message + " (%s are summarised every %g s)", self.what, *args, who,
                                 self.period_s)
                return
            period = self._period
            if period is None:
                period = self._period = _Period(now)
            period.count += 1
            if len(period.clients) < self.max_clients:
                period.clients.add(client)
            elif client not in period.clients:
                period.clients_overflow = True
            if not self._timer_set:  # a flood that stops still gets its summary
                self._timer_set = True
                self.schedule(max(0.0, period.started + self.period_s - now), self._on_timer)

    def flush(self) -> None:
        """Write the summary of the counted refusals now, if any (the timer calls this; so may a test)."""
        with self._lock:
            self._write_summary(self.clock())

    def _on_timer(self) -> None:
        with self._lock:
            self._timer_set = False
            now = self.clock()
            if self._period is not None and now - self._period.started < self.period_s:
                # the period was restarted meanwhile: wait for its end
                self._timer_set = True
                self.schedule(self._period.started + self.period_s - now, self._on_timer)
                return
            self._write_summary(now)

    def _roll(self, now: float) -> None:
        """A new period: the last one's summary, and room again for first refusals in full."""
        if now - self._period_started >= self.period_s:
            self._period_started = now
            self._shown_this_period = 0
        if self._period is not None and now - self._period.started >= self.period_s:
            self._write_summary(now)

    def _write_summary(self, now: float) -> None:
        period, self._period = self._period, None
        if period is None or period.count == 0:
            return
        clients = len(period.clients)
        if period.clients == {""}:  # refusals of no one in particular (the engine's queue does not know who)
            self.logger.info("%s: %d more refused in the last %.1f s", self.what, period.count,
                             max(now - period.started, 0.0))
            return
        self.logger.info("%s: %d more refused from %s%d client%s in the last %.1f s", self.what, period.count,
                         "at least " if period.clients_overflow else "", clients, "" if clients == 1 else "s",
                         max(now - period.started, 0.0))

    def _forget_old(self, now: float) -> None:
        while self._shown:
            client, at = next(iter(self._shown.items()))
            if now - at < self.remember_s:
                break
            del self._shown[client]


def _timer(delay: float, fn: Callable[[], None]) -> None:
    timer = threading.Timer(delay, fn)
    timer.daemon = True
    timer.start()
