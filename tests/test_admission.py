"""The admission policy (engine/batching.py): newcomers get an extra batch instead of waiting for a running
one to end, within the lane and row caps. Fast tier: a scripted generator whose batches hold after their
first step until the test lets them go, so every assertion is about order, not time."""

from __future__ import annotations

import threading

from model_utils.core.sampling import SamplingParams
from model_utils.engine.batching import FIRST_STEP_GUESS_S, BatchingConfig, BatchScheduler
from model_utils.engine.configure import resolve
from model_utils.settings import parse_settings

PARAMS = SamplingParams(greedy=True, max_new_tokens=5, repetition_penalty=1.0)


class HeldGenerator:
    """Each batch emits step 0 for every row, then waits for ``release`` before the rest."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.active = 0
        self.started = []  # (rows, batches already running when this one started)

    def generate_batch(self, prompts, max_length, callback=None, **options):
        with self.lock:
            self.started.append((len(prompts), self.active))
            self.active += 1
        try:
            for step in range(max_length):
                if step == 1:
                    self.release.wait(30)
                for row in range(len(prompts)):
                    callback(Step(step, row))
        finally:
            with self.lock:
                self.active -= 1


class Step:
    def __init__(self, step, row):
        self.step, self.batch_id, self.token_id, self.log_prob = step, row, 7, -0.1


def scheduler(**config) -> tuple[BatchScheduler, HeldGenerator]:
    generator = HeldGenerator()
    return BatchScheduler(generator, end_token_id=0, config=BatchingConfig(quiet_s=0, window_s=0, **config)), generator


def first_step(stream):
    return next(stream)


def test_a_newcomer_gets_an_extra_batch_while_the_running_one_holds():
    sched, gen = scheduler(max_batch_size=8, workers=1, max_batches=2, wait_steps=0)
    try:
        a = sched.steps(["a"], PARAMS)
        first_step(a)  # A's batch runs and holds
        b = sched.steps(["b"], PARAMS)
        first_step(b)  # B's first token came while A's batch still runs
        assert gen.started == [(1, 0), (1, 1)] and gen.active == 2
        assert sched.stats.extra_batches == 1
    finally:
        gen.release.set()
        for s in (a, b):
            s.close()
        sched.close()


def test_without_extra_lanes_a_newcomer_waits_for_the_batch_to_end():
    sched, gen = scheduler(max_batch_size=8, workers=1, max_batches=1)
    a = sched.steps(["a"], PARAMS)
    first_step(a)
    b = sched.steps(["b"], PARAMS)
    gen.release.set()
    assert len(list(a)) == 4 and first_step(b)
    assert gen.started == [(1, 0), (1, 0)]  # B's batch started only when A's had ended
    b.close()
    sched.close()


def test_newcomers_wait_their_patience_before_an_extra_batch():
    # patience of a million steps: nobody starts an extra batch; the waiting pair starts together after A
    sched, gen = scheduler(max_batch_size=8, workers=1, max_batches=4, wait_steps=1e6)
    a = sched.steps(["a"], PARAMS)
    first_step(a)
    b, c = sched.steps(["b"], PARAMS), sched.steps(["c"], PARAMS)
    gen.release.set()
    list(a)
    first_step(b), first_step(c)
    assert gen.started == [(1, 0), (2, 0)] and sched.stats.extra_batches == 0
    for s in (b, c):
        s.close()
    sched.close()


def test_past_the_comfortable_lanes_newcomers_wait_longer_but_still_get_a_batch():
    sched, gen = scheduler(max_batch_size=8, workers=1, max_batches=2, wait_steps=0)
    streams = []
    try:
        for name in "abcd":  # 1 worker + 1 comfortable extra + 2 overflow lanes (zero patience here)
            streams.append(sched.steps([name], PARAMS))
            first_step(streams[-1])
        assert [active for _, active in gen.started] == [0, 1, 2, 3]
        e = sched.steps(["e"], PARAMS)  # 4 = twice max_batches: the hard cap
        gen.release.set()
        first_step(e)
        streams.append(e)
        assert len(gen.started) == 5 and gen.started[-1][1] <= 3  # e started only once a batch had ended
    finally:
        gen.release.set()
        for s in streams:
            s.close()
        sched.close()


def test_rows_in_flight_never_exceed_what_memory_was_reserved_for():
    # max_batch_size 2 x 1 worker = 2 rows, though 4 lanes are allowed
    sched, gen = scheduler(max_batch_size=2, workers=1, max_batches=4, wait_steps=0)
    a, b = sched.steps(["a"], PARAMS), sched.steps(["b"], PARAMS)
    first_step(a), first_step(b)
    c = sched.steps(["c"], PARAMS)
    assert sum(rows for rows, _ in gen.started) == 2
    gen.release.set()
    list(a), list(b)
    first_step(c)
    assert sum(rows for rows, _ in gen.started) == 3 and sched.stats.rows == 3
    c.close()
    sched.close()


def test_a_lone_stream_never_starts_an_extra_batch_and_the_step_time_is_measured():
    sched, gen = scheduler(max_batch_size=8, workers=2, max_batches=4, wait_steps=0)
    gen.release.set()
    for _ in range(3):
        assert len(list(sched.steps(["x"], PARAMS))) == 5
    assert sched.stats.extra_batches == 0 and sched.stats.batches == 3
    assert sched.stats.step_seconds != FIRST_STEP_GUESS_S, "the step time was measured as batches ran"
    sched.close()


def test_lanes_default_to_two_per_core_on_cpu_and_one_extra_on_cuda(monkeypatch):
    monkeypatch.setattr("model_utils.engine.configure.usable_cpus", lambda: 2)
    cpu = resolve(parse_settings(["--device", "cpu"], {})).batching
    assert (cpu.workers, cpu.lanes, cpu.max_lanes, cpu.max_rows) == (2, 4, 8, 32)
    fixed = resolve(parse_settings(["--device", "cpu", "--max-batches", "2"], {})).batching
    assert fixed.lanes == fixed.max_lanes == 2  # extra batches off: exactly the workers
    from model_utils.engine.configure import default_max_batches

    assert default_max_batches("cuda", 1) == 2


def test_step_time_is_measured_per_batch_when_batches_interleave(monkeypatch):
    """Two batches decoding side by side, each at one step per second, the second started five steps
    earlier, their steps interleaved half a second apart: the measured step time tends to 1 s (each
    batch times its own steps), not 0.5 s."""
    from types import SimpleNamespace

    from model_utils.engine import batching

    now = [0.0]
    monkeypatch.setattr(batching, "time", SimpleNamespace(monotonic=lambda: now[0]))
    long = SamplingParams(greedy=True, max_new_tokens=100, repetition_penalty=1.0)
    stats = batching.BatchStats()
    first, second = ([batching._Request([], long, None)] for _ in range(2))
    callbacks = [batching._row_callback(batch, stats, end_token=-1) for batch in (first, second)]
    for step in range(40):
        for (offset, ahead), callback in zip([(0.0, 0), (0.5, 5)], callbacks, strict=True):
            now[0] = step + offset
            callback(Step(step + ahead, 0))
    assert abs(stats.step_seconds - 1.0) < 0.01
