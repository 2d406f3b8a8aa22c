"""Decode concurrent requests together: one scheduler per loaded model.

CTranslate2 decodes a batch of rows for far less than a batch per row (on the 2-vCPU benchmark
machine, 16 rows in one ``generate_batch`` gave 7.1x one row's tokens/s: BENCHMARKS.md, "The
scheduler alone"), so waiting requests are gathered into one ``generate_batch`` call. Its
per-step ``callback`` routes each row's token to that request's queue, and returning True from
it stops that row only: a cancelled request leaves its batch at the next step while the others
go on.

Requests share a batch only when their sampling settings agree (CT2 takes one
temperature / top-k / top-p per call). The oldest waiting request always leads the
next batch, so nobody starves.

The admission policy. CT2 cannot add a row to a running batch, and restarting a batch to admit
newcomers changes greedy outputs (BENCHMARKS.md: 9 of 12 continuations diverged) and cost 40-100%
more time (measured on the 2-vCPU benchmark machine), so a newcomer either waits for a batch to end
(a whole reply: seconds) or starts a batch of its own:

* ``workers`` base lanes start a batch as soon as requests arrive (a 10 ms quiet / 50 ms window
  gathers simultaneous ones, longer when the measured decoding step is slow: see ``_gather_times``): an idle
  server answers at once. Simultaneous arrivals are shared among the
  idle base lanes, sorted by prompt length (the shorter prompts in one batch, the longer in another): CT2
  reads a batch's prompts at once only up to the shortest, then one token per step, so mixed lengths cost
  steps and delay the long prompts' first tokens.
* A burst whose first arrivals came alone (a gap of ``quiet_s`` before the others: seen under load) would leave
  one lane with those few rows and the other with all the rest, mixed lengths in one batch: the lane with the
  rest then decodes alone long after the first has finished, and its longest prompts wait a step per token over
  its shortest. So a base lane that finds more waiting than its even share of the rows on the base lanes (by at
  least ``MIN_SHARE_ROWS``) takes the part of them, sorted by length, that holds the oldest, and starts the other
  part at once as an extra batch (while fewer than ``max_batches`` run).
* When every base lane is busy, an *extra* batch starts for the waiting requests once the oldest
  has waited ``wait_steps`` decoding steps (the step time is measured on this device as batches
  run), taking every request that arrived meanwhile. Newcomers so wait a few steps, not a reply;
  and because extra batches start at most once per ``wait_steps`` steps, each holds every arrival
  of that span instead of one row each (8 lanes of one row each: 2.0x one user at 8 users,
  measured; see BENCHMARKS.md).
* ``max_batches`` batches is what the cores run comfortably (two per usable core on CPU, where one
  thread per batch is as fast as two; one more than ``workers`` on CUDA). Past it, a newcomer waits
  ``OVERFLOW_PATIENCE`` times
  longer (16 steps by default, still a quarter of a 64-token reply) before one more batch starts,
  up to twice ``max_batches``: measured, with a hard cap at ``max_batches`` the late arrivals of a
  16-user burst waited for a whole reply of a contended batch (p95 8.7-9.0 s in two of three waves,
  against 2.0-2.4 s for vLLM in the same run).
* Rows in flight never exceed ``max_batch_size`` x ``workers``, which the memory guard reserved.

Evaluation shares the CT2 workers (``LoadedModel.score_continuations``: lm-eval's scoring, one ``forward_batch`` or
``generate_batch`` per group of sequences on a worker thread of its own, side by side with these batches). Visitors
come first: before each group the evaluation asks :meth:`BatchScheduler.start_scoring_group`, which waits (at most
``GIVE_WAY_S``) while a visitor's request waits in the queue or its batch has not yet produced its first token, and
which tells whether visitors are about (waiting, decoding, or seen within ``VISITOR_QUIET_S``): then the evaluation
scores short groups one at a time, so a visitor who arrives meets at most one short group on the cores; otherwise
it scores larger groups on every base lane. It is never starved: after ``GIVE_WAY_S`` the next group starts anyway.

One stream alone never meets an extra batch. Measured (BENCHMARKS.md, "Latency under load", 160m
shape, 2 vCPU, against vLLM on the same machine in the same run): p95 time to first token 1.58 s at 8
users and 4.35 s at 16 (vLLM 1.01 s and 2.26 s; the previous policy 3.90 s and 5.39 s), aggregate
throughput within 3-8% of the previous policy's. On CUDA the same rules apply with a measured step
of a few milliseconds, so an extra batch there starts after ~10-20 ms.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Sequence

from ..core.errors import ServerBusy
from ..core.refusal_log import RefusalLog
from ..core.sampling import SamplingParams

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"

_END = object()
CANCEL_CHECK_S = 0.02  # how often a consumer waiting in the queue looks at its ``cancel`` flag
# An evaluation's next scoring group waits at most this long for visitors' first tokens (then starts anyway: an
# evaluation is never starved by a stream of arrivals, it advances at least a group per GIVE_WAY_S).
GIVE_WAY_S = 2.0
# Visitors count as about for this long after their last request arrived or batch ended: a chat's next message, or
# the next round of a burst, comes soon after the last reply, and should not meet the evaluation's larger groups.
VISITOR_QUIET_S = 1.0


@dataclass(frozen=True)
class BatchingConfig:
    """How a model's scheduler groups requests."""

    max_batch_size: int = 8  # rows decoded together (a row more costs far less than a batch more: see above)
    # A new batch waits at most this long for others to join it (or ``wait_steps`` decoding steps, when longer)...
    window_s: float = 0.05
    # ...and starts as soon as no request arrived for this long (or half a step, when longer): a lone visitor waits
    # 10 ms on a fast machine
    quiet_s: float = 0.01
    workers: int = 1  # base lanes: batches that start as soon as requests arrive
    max_waiting: int = 64  # requests queued in the scheduler before new ones are told "busy"
    max_batches: int = 0  # batches at once, extra ones for newcomers included (CT2 inter_threads; 0: = workers)
    wait_steps: float = 4.0  # how many decoding steps a newcomer waits before an extra batch starts for it

    @property
    def lanes(self) -> int:
        """Batches the cores run comfortably; extra ones past it need OVERFLOW_PATIENCE times the wait."""
        return max(self.workers, self.max_batches)

    @property
    def max_lanes(self) -> int:
        """Batches at most (CT2 inter_threads): twice ``lanes`` when extra batches are on at all."""
        return self.lanes if self.lanes == self.workers else 2 * self.lanes

    @property
    def max_rows(self) -> int:
        """Rows decoding at once, all batches together (what the memory guard reserves)."""
        return self.max_batch_size * self.workers


# A burst is shared among idle base lanes only in parts of at least this many rows: two lanes end a small burst
# little sooner than one (on one thread a step of 2 rows cost what a step of 1 did, one of 4 rows 1.35x: CPU time,
# bench model), and a lane left idle starts the next arrivals at once, where they would otherwise wait for an extra
# batch (seen under load: 2 + 1 rows on the base lanes, then the other 13 of a 16-user burst in one extra batch:
# three batches on two cores).
MIN_SHARE_ROWS = 4
OVERFLOW_PATIENCE = 4  # past ``lanes`` batches, newcomers wait this many times longer for one more
# The step time assumed before any batch ran: a Pythia-160m-shaped step took 15-40 ms on the 2-vCPU
# benchmark machine (25-65 tok/s single stream, BENCHMARKS.md).
FIRST_STEP_GUESS_S = 0.05


@dataclass
class BatchStats:
    """What a scheduler ran, and the step time it measured: O(1) memory however long the server lives."""

    batches: int = 0
    extra_batches: int = 0  # of which started for newcomers while every base lane was busy
    rows: int = 0  # requests started, all batches together
    tokens: int = 0  # tokens handed to requests
    sizes: Counter = field(default_factory=Counter)  # batch size -> how many batches had it (<= max_batch_size keys)
    # The decoding step time on this device: a moving average over the steps of every running batch, each
    # batch timing its own steps. It sets how long a newcomer waits before an extra batch starts.
    step_seconds: float = FIRST_STEP_GUESS_S
    steps_measured: int = 0
    scoring_groups: int = 0  # evaluation scoring groups started (start_scoring_group)
    gave_way: int = 0  # times the evaluation waited for visitors' first tokens (give_way, start_scoring_group)

    def record(self, size: int, extra: bool = False) -> None:
        self.batches += 1
        self.extra_batches += extra
        self.rows += size
        self.sizes[size] += 1

    def add_step(self, seconds: float) -> None:
        # the first measurement replaces the guess: it is this device's, the guess is not
        self.step_seconds = seconds if not self.steps_measured else 0.8 * self.step_seconds + 0.2 * seconds
        self.steps_measured += 1


class RequestStream:
    """The CT2 steps of one request. ``close()`` works even before iteration starts."""

    def __init__(self, scheduler: "BatchScheduler", request: "_Request"):
        self._scheduler, self._request, self._done = scheduler, request, False

    def __iter__(self) -> "RequestStream":
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._scheduler._next_step(self._request)
        if item is _END:
            self.close()
            raise StopIteration
        if isinstance(item, BaseException):
            self.close()
            raise item
        return item

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._scheduler._forget(self._request)

    @property
    def groups_before_first_token(self) -> int | None:
        """How many evaluation scoring groups started between this request's arrival and its first token (None
        before that token): visitors come first, so 0 unless the request waited past ``GIVE_WAY_S``."""
        first = self._request.groups_at_first
        return None if first is None else first - self._request.groups_at_arrival

    def __del__(self):
        if not self._done:
            self._done = True
            self._request.closed.set()  # no waiting in a finalizer


@dataclass(eq=False)
class _Request:
    tokens: list[str]
    params: SamplingParams
    cancel: threading.Event | None
    steps: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    closed: threading.Event = field(default_factory=threading.Event)  # the consumer stopped listening
    finished: threading.Event = field(default_factory=threading.Event)  # CT2 will not decode this row again
    produced: int = 0
    arrived: float = field(default_factory=time.monotonic)
    # in a batch: CT2 looks at ``cancel`` at its every step and then ends the row with _END (set under the lock)
    started: bool = False
    groups_at_arrival: int = 0  # BatchStats.scoring_groups when it arrived...
    groups_at_first: int | None = None  # ...and when its first step came

    @property
    def abandoned(self) -> bool:
        """Its consumer stopped listening or cancelled it: CT2 must not decode it (again)."""
        return self.closed.is_set() or (self.cancel is not None and self.cancel.is_set())

    def wants_more(self) -> bool:
        return not self.abandoned and self.produced < self.params.max_new_tokens


def _batch_key(params: SamplingParams) -> tuple:
    """Requests can share a generate_batch call when these agree (max length is per row)."""
    return tuple(sorted(params.ct2_options().items()))


def _row_callback(batch: list[_Request], stats: BatchStats, end_token: int,
                  cond: threading.Condition | None = None):
    """CT2's per-step callback for one batch; returning True ends that row. A row's first step wakes an evaluation
    waiting for visitors' first tokens (``cond``: the scheduler's condition, not the scheduler).

    CT2 runs it in its own worker threads and drops it there, possibly after the Python side
    has let go of everything else. So it is built here, from the batch's plain state only, and
    never closes over the scheduler: if it held the last reference to the Generator, the
    Generator would be destroyed inside its own thread pool, and ``~ThreadPool`` joining
    itself aborts the process (seen in the tests as a rare native abort after unloading).
    """
    clock = {"step": -1, "at": 0.0}  # this batch's current step and when it began
    cond = cond or threading.Condition()

    def callback(step) -> bool:
        if step.step != clock["step"]:  # the first row of a new step: time the one before
            now = time.monotonic()
            if clock["step"] >= 1:  # step 0 includes the prompt's prefill
                stats.add_step(now - clock["at"])
            clock["step"], clock["at"] = step.step, now
        request = batch[step.batch_id]
        if request.finished.is_set():
            return True
        if not request.wants_more():  # cancelled or closed: its consumer waits for this _END, not for a timeout
            request.finished.set()
            request.steps.put(_END)
            return True
        if request.produced == 0:
            with cond:
                request.groups_at_first = stats.scoring_groups
                request.produced = 1
                cond.notify_all()
        else:
            request.produced += 1
        stats.tokens += 1
        request.steps.put(step)
        if not request.wants_more() or step.token_id == end_token:
            # its reply ends now, not when the batch's longest row does
            request.finished.set()
            request.steps.put(_END)
            return True
        return False

    return callback


def _by_length(candidates: list[_Request], leader: _Request, size: int, parts: int) -> list[_Request]:
    """The requests of ``candidates`` (oldest first, ``leader`` among them) that decode in ``leader``'s batch.

    CT2 reads the prompts of a batch at once only up to the shortest one, then one token per decoding step:
    each token a row's prompt has over the batch's shortest delays that row's first token by a step and adds
    a step to the whole batch. So rows are grouped by prompt length: with ``parts`` lanes to share them, the
    candidates sorted by length are cut into ``parts`` runs (each at most ``size``) and the leader's run is
    taken; when more wait than that, the ``size`` candidates around the leader whose lengths span the least."""
    if len(candidates) <= size and parts <= 1:
        return candidates
    ordered = sorted(candidates, key=lambda r: len(r.tokens))  # stable: equal lengths keep their arrival order
    at = next(i for i, r in enumerate(ordered) if r is leader)
    chunk = min(size, -(-len(ordered) // max(1, parts)))
    if chunk * parts >= len(ordered):
        start = min(at // chunk * chunk, len(ordered) - chunk)
    else:
        starts = range(max(0, at - chunk + 1), min(at, len(ordered) - chunk) + 1)
        start = min(starts, key=lambda i: len(ordered[i + chunk - 1].tokens) - len(ordered[i].tokens))
    chosen = {id(r) for r in ordered[start:start + chunk]}
    return [r for r in candidates if id(r) in chosen]


class BatchScheduler:
    """Gather requests for one CT2 generator and decode them in batches."""

    def __init__(self, generator, end_token_id: int, config: BatchingConfig = BatchingConfig()):
        self._generator = generator
        self._end_token = end_token_id
        self.config = config
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._last_arrival = 0.0
        self._running = 0  # batches decoding now
        self._batches: list[list[_Request]] = []  # their requests
        self._last_activity = float("-inf")  # when a request last arrived or a batch last ended
        self._rows = 0  # rows in them
        self._evaluations_turn_until = float("-inf")  # give_way does not wait again before then (see give_way)
        self._gathering = False  # one lane at a time gathers the next batch
        self._released: list[_Request] = []  # waiting requests a base lane set apart to start at once, extra
        self.stats = BatchStats()
        self._refusals = RefusalLog(log, "busy")  # a flood of refusals is a few lines, each saying how many
        self._workers = [threading.Thread(target=self._work, name=f"ct2-batcher-{i}", daemon=True)
                         for i in range(config.max_lanes)]
        for worker in self._workers:
            worker.start()

    # -- consumer side -------------------------------------------------------------------
    def steps(self, tokens: Sequence[str], params: SamplingParams, *,
              cancel: threading.Event | None = None) -> "RequestStream":
        """Yield CT2 step results for one prompt; closing the iterator ends its row at the next step."""
        request = _Request(list(tokens), params, cancel)
        with self._cond:
            if self._closing:
                self._refusals.refused("", "refused a request for a model being unloaded")
                raise ServerBusy("The model is being unloaded; try again.")
            if len(self._pending) >= self.config.max_waiting:
                self._refusals.refused("", "refused a request; %d already wait for this model", len(self._pending))
                raise ServerBusy("The server is busy right now; please try again in a moment.")
            request.groups_at_arrival = self.stats.scoring_groups
            self._pending.append(request)
            log.debug("queued a request: %d wait for this model", len(self._pending))
            self._last_arrival = self._last_activity = time.monotonic()
            self._cond.notify_all()
        return RequestStream(self, request)

    def _next_step(self, request: _Request):
        """The request's next step, or _END. A cancelled request ends here at once: one still waiting leaves
        the queue unstarted, one in a batch as soon as CT2 has left its row (at its next step), without
        waiting for the batch's other rows or, while queued, for the batch ahead of it to end."""
        if request.cancel is None:  # only close() ends it, from the consumer's own thread
            return request.steps.get()
        while True:
            if request.started and not request.cancel.is_set():
                # CT2 looks at ``cancel`` at the row's next step and then puts _END: no polling (16 consumers
                # polling every CANCEL_CHECK_S woke 800 times a second, each for the interpreter lock)
                return request.steps.get()
            try:
                # a bounded wait in the queue: ``cancel`` is a plain Event set by the caller, which cannot wake
                # this queue
                return request.steps.get(timeout=CANCEL_CHECK_S)
            except queue.Empty:
                if not request.cancel.is_set():
                    continue
            self._withdraw(request)
            if request.finished.is_set():  # CT2 puts no more steps for it: whatever it put comes first
                try:
                    return request.steps.get_nowait()
                except queue.Empty:
                    return _END

    def _withdraw(self, request: _Request) -> bool:
        """Take ``request`` out of the queue if it never started; whether it did."""
        with self._cond:
            if request not in self._pending:
                return False
            self._pending.remove(request)
            log.debug("a cancelled request left the queue unstarted: %d wait for this model", len(self._pending))
            request.finished.set()
            self._cond.notify_all()
            return True

    def _forget(self, request: _Request) -> None:
        """The consumer is gone: drop the request if it never started, else let CT2 end its row."""
        request.closed.set()
        self._withdraw(request)  # never started: it never will
        request.finished.wait(timeout=10)  # CT2 leaves the row at its next step

    def close(self) -> None:
        """Stop the workers after their current batch (the model is being unloaded)."""
        with self._cond:
            self._closing = True
            for request in self._pending:
                request.steps.put(ServerBusy("The model was unloaded; try again."))
                request.finished.set()
            self._pending.clear()
            self._released.clear()
            self._cond.notify_all()
        for worker in self._workers:
            if worker is not threading.current_thread():
                worker.join(timeout=30)
        # Drop our reference so the owner destroys the CT2 Generator now, in its own thread,
        # rather than whenever this scheduler happens to be garbage-collected.
        self._generator = None

    # -- evaluation's scoring: visitors first ----------------------------------------------
    def _awaiting_first_token(self) -> bool:
        """A visitor's request waits in the queue or in a batch that has not yet given it a step. Holds the lock."""
        return (any(not r.abandoned for r in self._pending)
                or any(r.produced == 0 and not r.finished.is_set() for b in self._batches for r in b))

    def _about(self) -> bool:
        """Visitors wait, decode, or were here within VISITOR_QUIET_S. Holds the lock."""
        return bool(self._pending or self._running
                    or time.monotonic() - self._last_activity < VISITOR_QUIET_S)

    def visitors_about(self) -> bool:
        """Whether visitors wait, decode, or were here within ``VISITOR_QUIET_S``."""
        with self._cond:
            return self._about()

    def give_way(self, timeout: float = GIVE_WAY_S) -> None:
        """Called by an evaluation's Python work between small pieces (lm-eval rendering a document, encoding a
        text): returns at once unless a visitor waits for its first token, then waits for it, at most ``timeout``
        seconds (woken by the batches' first steps).

        That work calls it several times per document, and while the server is saturated some visitor always
        waits (for a lane, not for the evaluation): so after waiting, the evaluation has as long again before it
        waits next, and its Python gets at least half the time even then."""
        with self._cond:
            if time.monotonic() < self._evaluations_turn_until:
                return
            started = time.monotonic()
            self._give_way(timeout)
            ended = time.monotonic()
            self._evaluations_turn_until = ended + (ended - started)

    def _give_way(self, timeout: float) -> None:
        """Holds the lock (and releases it while it waits)."""
        if self._awaiting_first_token():
            self.stats.gave_way += 1
            self._cond.wait_for(lambda: self._closing or not self._awaiting_first_token(), timeout)

    def start_scoring_group(self, timeout: float = GIVE_WAY_S) -> bool:
        """Called by an evaluation before each scoring group: gives way to visitors awaiting a first token (as
        ``give_way``), counts the group as started (atomically: a visitor arriving after this sees it), and returns
        whether visitors are about (then the evaluation scores short groups, one at a time)."""
        with self._cond:
            self._give_way(timeout)
            self.stats.scoring_groups += 1
            return self._about()

    # -- worker side ---------------------------------------------------------------------
    def _next_batch(self) -> tuple[list[_Request], bool] | None:
        """Wait until this lane may start a batch; return (its requests, whether it is an extra batch)."""
        config = self.config
        with self._cond:
            while True:
                if self._closing:
                    return None
                room = config.max_rows - self._rows
                if self._pending and not self._gathering and room > 0 and self._running < config.max_lanes:
                    if self._running < config.workers:
                        return self._gather(min(room, config.max_batch_size)), False
                    if self._released:  # a base lane set these apart: they start now, not after the patience
                        return self._take_released(room), True
                    waited = time.monotonic() - self._pending[0].arrived
                    patience = config.wait_steps * self.stats.step_seconds
                    if self._running >= config.lanes:
                        patience *= OVERFLOW_PATIENCE
                    if waited >= patience:
                        return self._take(min(room, config.max_batch_size)), True
                    self._cond.wait(timeout=patience - waited)
                    continue
                self._cond.wait()

    def _gather(self, size: int) -> list[_Request]:
        """A base lane: wait for simultaneous arrivals (window/quiet), then take the batch. Holds the lock.

        What arrived together is shared among the base lanes that are idle (each decodes on its own cores): one
        lane taking all of it leaves the others' cores idle. On one thread a step of 16 rows took 1.55x the time
        of a step of 8 (CPU time, bench model, 2-vCPU machine), so two lanes of 8 end a 16-user burst in about
        2/3 of one lane's time. The lanes split it by prompt length (``_by_length``)."""
        self._gathering = True
        ready = 0
        window, quiet = self._gather_times()
        try:
            deadline = time.monotonic() + window
            while not self._closing:
                key = _batch_key(self._pending[0].params)
                ready = sum(1 for r in self._pending if _batch_key(r.params) == key)
                now = time.monotonic()
                quiet_until = self._last_arrival + quiet
                if ready >= size * self._idle_base_lanes() or now >= min(deadline, quiet_until):
                    break
                self._cond.wait(timeout=min(deadline, quiet_until) - now)
                if not self._pending:  # the waiting requests went away (closed tabs)
                    return []
        finally:
            self._gathering = False
        idle = self._idle_base_lanes()
        parts = min(idle, max(1, ready // MIN_SHARE_ROWS))
        # Rows already decoding on the base lanes count in the share: a lane that started with the first few
        # arrivals of a burst leaves this one more than half of it (see the module's docstring).
        share = -(-(self._rows + ready) // self.config.workers)
        release = (parts == 1 and ready - share >= MIN_SHARE_ROWS and self._running + 2 <= self.config.lanes
                   and ready <= 2 * size)
        return self._take(size, parts=2 if release else parts, release=release)

    def _gather_times(self) -> tuple[float, float]:
        """How long a base lane gathers a burst at most, and the pause in arrivals that ends it sooner.

        On a slow or loaded machine the requests of a burst reach the scheduler spread out: each goes through the
        event loop and a thread of its own, which wait for the cores like everything else (under load, 16 users
        released together arrived over 100-300 ms, in clusters 10-20 ms apart). A batch started on the first
        cluster leaves the rest to another batch, or to an extra one after the newcomers' patience, with all their
        lengths mixed. So both scale with the decoding step this scheduler measures: the pause is at least half a
        step, and the window as long as a newcomer's patience (``wait_steps`` steps) while arrivals keep coming. A
        lone visitor still starts after half a step at most (10 ms with the defaults on a fast machine)."""
        if not self.stats.steps_measured:  # no step timed on this device yet: the guess would hold a lone visitor
            return self.config.window_s, self.config.quiet_s
        step = self.stats.step_seconds
        return (max(self.config.window_s, self.config.wait_steps * step),
                max(self.config.quiet_s, step / 2))

    def _idle_base_lanes(self) -> int:
        """Base lanes not decoding now, the one asking included. Holds the lock."""
        return max(1, self.config.workers - self._running)

    def _take(self, size: int, parts: int = 1, release: bool = False) -> list[_Request]:
        """Move the oldest request and those that can share its batch out of the queue. Holds the lock.

        Rows are chosen by prompt length (see ``_by_length``): with ``parts`` idle lanes to share the waiting
        requests, this batch is the part of them, sorted by length, that holds the oldest. ``release``: the rest
        of them (the other part) start at once in an extra batch."""
        self._cond.notify_all()  # other lanes look again at what is left
        self._drop_abandoned()
        if not self._pending:
            return []
        leader = self._pending[0]
        key = _batch_key(leader.params)
        candidates = [r for r in self._pending if _batch_key(r.params) == key]
        batch = _by_length(candidates, leader, size, parts)
        for request in batch:
            self._pending.remove(request)
            request.started = True
        self._batches.append(batch)
        self._running += 1
        self._rows += len(batch)
        if release:
            chosen = {id(r) for r in batch}
            self._released = [r for r in candidates if id(r) not in chosen]
        return batch

    def _take_released(self, room: int) -> list[_Request]:
        """The requests a base lane set apart (those still waiting), as an extra batch. Holds the lock."""
        self._cond.notify_all()
        self._drop_abandoned()
        batch = [r for r in self._released if r in self._pending][:min(room, self.config.max_batch_size)]
        self._released = []
        for request in batch:
            self._pending.remove(request)
            request.started = True
        if batch:
            self._batches.append(batch)
            self._running += 1
            self._rows += len(batch)
        return batch

    def _drop_abandoned(self) -> None:
        """Requests cancelled while waiting leave the queue unstarted. Holds the lock."""
        for request in [r for r in self._pending if r.abandoned]:
            self._pending.remove(request)
            request.finished.set()
            request.steps.put(_END)

    def _work(self) -> None:
        while True:
            chosen = self._next_batch()
            if chosen is None:
                return
            batch, extra = chosen
            if not batch:
                continue
            try:
                self._run(batch, extra)
            finally:
                with self._cond:
                    self._running -= 1
                    self._rows -= len(batch)
                    self._batches = [b for b in self._batches if b is not batch]
                    self._last_activity = time.monotonic()
                    self._cond.notify_all()

    def _run(self, batch: list[_Request], extra: bool = False) -> None:
        self.stats.record(len(batch), extra)
        lengths = [len(r.tokens) for r in batch]
        log.debug("a batch of %d rows starts (%s; prompts of %d-%d tokens; %d batches running)", len(batch),
                  "extra" if extra else "base", min(lengths), max(lengths), self._running)
        callback = _row_callback(batch, self.stats, self._end_token, self._cond)

        try:
            self._generator.generate_batch(
                [r.tokens for r in batch], max_length=max(r.params.max_new_tokens for r in batch),
                end_token=[self._end_token], return_scores=True, include_prompt_in_result=False,
                beam_size=1, callback=callback, **batch[0].params.ct2_options())
        except Exception as exc:  # a failed batch fails its requests, not the worker
            log.exception("a batch of %d requests failed", len(batch))
            for request in batch:
                request.steps.put(exc)
        finally:
            for request in batch:
                request.finished.set()
                request.steps.put(_END)
