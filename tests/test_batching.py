"""The batching scheduler: concurrent requests decoded together through real CT2.

No test here depends on timing. Concurrent requests are gathered with a window and a quiet time far
longer than any test (``FULL``), so a batch starts exactly when it is full; requests are held or
released by events in CT2's own decoding thread (``hooked_steps``), never by sleeping."""

import threading
import weakref

import pytest
from scheduler_log import waiting

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ServerBusy
from model_utils.core.sampling import SamplingParams
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.generation import generate, stream
from model_utils.engine.loaded_model import load_ct2_model
from model_utils.engine.prompts import prepare_completion
from model_utils.store.local_dirs import describe_local_dir

from concurrency import run_concurrently, wait_for
from ct2_hooks import hooked_steps, load_hookable_ct2_model

PROMPTS = ["Once upon a time", "The capital of France", "def fibonacci(n):", "Hello, who are you?",
           "Every morning the clockmaker", "中文字符", "The Pythia Scaling Suite", "A language model"]
GREEDY = SamplingParams(greedy=True, max_new_tokens=40, repetition_penalty=1.0)
# A new batch waits for others to join it until it is full: far longer than any test runs (pytest-timeout
# ends a test that would wait it out), so what shares a batch never depends on when threads arrive.
FULL = dict(window_s=3600.0, quiet_s=3600.0)


@pytest.fixture
def make_model(tiny_ct2_dir, cpu_device):
    """Load the tiny model with the given batching; its Generator is hookable unless ``plain``."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    made = []

    def make(plain=False, **config):
        load = load_ct2_model if plain else load_hookable_ct2_model
        model = load(tiny_ct2_dir, info, "main", cpu_device, BatchingConfig(**config))
        made.append(model)
        return model

    yield make
    for model in made:
        model.close()


def test_batched_greedy_equals_one_at_a_time(make_model):
    alone = make_model(max_batch_size=1)
    expected = [generate(alone, p, GREEDY).text for p in PROMPTS]
    batched = make_model(max_batch_size=len(PROMPTS), **FULL)
    got = run_concurrently(lambda p: "".join(c.text for c in stream(batched, p, GREEDY)), PROMPTS)
    assert got == expected
    assert batched.scheduler.stats.sizes == {len(PROMPTS): 1}, "the requests shared one batch"
    assert alone.scheduler.stats.sizes == {1: len(PROMPTS)}


def test_each_row_keeps_its_own_length(make_model):
    model = make_model(max_batch_size=4, **FULL)
    lengths = [3, 7, 15, 30]
    params = [SamplingParams(greedy=True, max_new_tokens=n, repetition_penalty=1.0) for n in lengths]
    solo = make_model(max_batch_size=1)
    expected = [generate(solo, "Once upon a time", p).num_tokens for p in params]
    got = run_concurrently(lambda p: generate(model, "Once upon a time", p).num_tokens, params)
    assert got == expected
    assert model.scheduler.stats.sizes == {4: 1}


@pytest.mark.parametrize("cancel", [None, threading.Event()], ids=["page", "api"])
def test_a_row_that_reaches_its_length_ends_its_reply_while_its_batch_goes_on(make_model, cancel):
    """Two replies in one batch, 3 and 40 tokens long: the short one's stream ends (with its finish reason) while
    CT2 holds the long row, not when the batch ends. The OpenAI routes pass a cancel flag, the page need not."""
    model = make_model(max_batch_size=2, **FULL)
    short = SamplingParams(greedy=True, max_new_tokens=3, repetition_penalty=1.0)
    long_prompt = model.tokens(prepare_completion(model.tokenizer, PROMPTS[1], GREEDY.max_new_tokens).ids)
    gate = threading.Event()
    short_reply = []

    short_steps = []

    def on_step(step, prompt):  # once the short row has all its tokens, the long row holds until its reply ended
        if list(prompt) != long_prompt:
            short_steps.append(step.step)
        elif len(short_steps) >= 3:
            assert gate.wait(30), "the short reply never ended"

    def run(i):
        if i == 0:
            short_reply.extend(stream(model, PROMPTS[0], short, cancel=cancel))
            gate.set()
            return short_reply[-1].num_tokens
        return generate(model, PROMPTS[1], GREEDY).num_tokens

    with hooked_steps(model, on_step):
        got = run_concurrently(run, [0, 1])
    assert got[0] == 3 and short_reply[-1].finish_reason == "length"
    assert model.scheduler.stats.sizes == {2: 1}


def test_cancelled_request_leaves_its_batch_without_disturbing_the_others(make_model):
    model = make_model(max_batch_size=4, **FULL)
    solo = make_model(max_batch_size=1)
    params = SamplingParams(greedy=True, max_new_tokens=200, repetition_penalty=1.0)
    prompts = PROMPTS[:3] + ["Every morning the clockmaker"]  # the last one runs long without stopping
    expected = [generate(solo, p, params).text for p in prompts[:3]]
    cancel = threading.Event()
    long_row_steps = []  # for each step CT2 decoded of the long row: whether the cancel had come

    long_row = model.tokens(model.tokenizer.encode(prompts[3], add_special_tokens=False).ids)

    def on_step(step, prompt):
        if list(prompt) == long_row:
            if len(long_row_steps) == 3:  # its reader has three tokens: the batch holds until it cancels
                assert cancel.wait(30), "the reader never cancelled"
            long_row_steps.append(cancel.is_set())

    def run(i):
        if i == 3:
            chunks = []
            for chunk in stream(model, prompts[3], params, cancel=cancel):
                chunks.append(chunk)
                if len(chunks) == 3:  # CT2 holds this row's next step until now
                    cancel.set()
            return chunks[-1].finish_reason
        return generate(model, prompts[i], params).text

    with hooked_steps(model, on_step):
        results = run_concurrently(run, [0, 1, 2, 3])
    assert results[:3] == expected
    assert results[3] == "cancelled"
    assert long_row_steps == [False, False, False, True], "CT2 went on decoding the cancelled row"
    assert model.scheduler.stats.sizes == {4: 1}


def test_incompatible_settings_get_separate_batches(make_model):
    """CT2 takes one temperature per call: greedy and sampled requests never share a batch, while
    greedy requests of different lengths do (the length is per row)."""
    model = make_model(max_batch_size=2, **FULL)
    greedy = [SamplingParams(greedy=True, max_new_tokens=10), SamplingParams(greedy=True, max_new_tokens=20)]
    sampled = [SamplingParams(temperature=1.0, max_new_tokens=10)] * 2
    requests = list(zip(PROMPTS[:4], greedy + sampled, strict=True))
    run_concurrently(lambda request: generate(model, *request), requests)
    assert model.scheduler.stats.sizes == {2: 2}

    def tokens(prompt, params):  # the prompt as the scheduler hands it to CT2
        return model.tokens(prepare_completion(model.tokenizer, prompt, params.max_new_tokens).ids)

    batches = {frozenset(tuple(p) for p in prompts) for prompts, _ in model.generator.batches}
    assert batches == {frozenset(tuple(tokens(*r)) for r in requests[:2]),
                       frozenset(tuple(tokens(*r)) for r in requests[2:])}


def test_queue_limit_gives_busy(make_model):
    model = make_model(max_batch_size=1, max_waiting=1)
    release = threading.Event()
    params = SamplingParams(greedy=True, max_new_tokens=50, repetition_penalty=1.0)

    def hold(step, prompt):  # the running batch holds after its first step until the test releases it
        if step.step >= 1:
            assert release.wait(30), "the test never released the batch"

    with hooked_steps(model, hold):
        first = stream(model, "Once", params)
        next(first)  # running, and held: the only lane is busy
        second = model.scheduler.steps(model.tokens([1, 2]), params)  # waiting: the queue is full
        with pytest.raises(ServerBusy):
            model.scheduler.steps(model.tokens([1, 2]), params)
        second.close()  # closing before it starts: it never runs, and its place is free again
        model.scheduler.steps(model.tokens([3, 4]), params).close()
        release.set()
        first.close()
    generate(model, "after", GREEDY)  # first in, first out: anything still queued would run before this
    assert model.scheduler.stats.sizes == {1: 2}, "only the first request and the last one ran"


def test_waiting_request_that_is_closed_never_starts(make_model):
    model = make_model(max_batch_size=1)
    gate, decoding = threading.Event(), threading.Event()

    def hold(step, prompt):  # the running request holds CT2 until the gate opens
        decoding.set()
        assert gate.wait(30), "the test never opened the gate"

    params = SamplingParams(greedy=True, max_new_tokens=30, repetition_penalty=1.0)
    with hooked_steps(model, hold):
        running = stream(model, "Once", params)
        started = threading.Thread(target=lambda: next(running))
        started.start()
        assert decoding.wait(30), "the first request never started"
        waiting = model.scheduler.steps(model.tokens([5, 6]), params)
        waiting.close()
        gate.set()
        started.join()
        running.close()
    generate(model, "after", GREEDY)  # first in, first out: a request still queued would run before this
    assert model.scheduler.stats.sizes == {1: 2}, "the closed request must not run"


@pytest.mark.parametrize("hooked", [False, True], ids=["plain", "with-test-hooks"])
def test_unloading_destroys_the_generator_even_while_ct2_still_holds_a_callback(make_model, monkeypatch, hooked):
    """CT2 drops each batch's callback in its own worker thread, sometimes after Python let go of
    everything else. A callback that kept the Generator alive would make that thread destroy the
    Generator inside its own thread pool: a native abort (seen in CI). So closing the model must
    free the Generator even while a callback CT2 was given is still alive."""
    import ctranslate2

    given = []
    real_generate_batch = ctranslate2.Generator.generate_batch

    def recording(self, prompts, *args, callback=None, **kwargs):
        given.append(callback)
        return real_generate_batch(self, prompts, *args, callback=callback, **kwargs)

    monkeypatch.setattr(ctranslate2.Generator, "generate_batch", recording)
    model = make_model(plain=not hooked, max_batch_size=1)
    params = SamplingParams(greedy=True, max_new_tokens=3, repetition_penalty=1.0)
    if hooked:
        with hooked_steps(model, lambda step, prompt: None):
            generate(model, "Once", params)
        generator = weakref.ref(model.generator.wrapped)
    else:
        generate(model, "Once", params)
        generator = weakref.ref(model.generator)
    model.close()
    assert given and given[0] is not None, "CT2 was given a callback"
    assert generator() is None, "the callback CT2 holds keeps the Generator alive"


def test_a_burst_is_shared_by_the_idle_lanes_grouped_by_prompt_length(make_model):
    """Eight requests arriving together with two idle lanes: two batches of four side by side, the four shortest
    prompts in one and the four longest in the other (CT2 reads a batch's prompts at once only up to the shortest
    one, then a token per step: mixed lengths delay the long prompts' first tokens), each reply as if alone."""
    prompts = [" ".join(["word"] * n) for n in (9, 2, 7, 4, 12, 1, 10, 5)]
    solo = make_model(max_batch_size=1)
    expected = [generate(solo, p, GREEDY).text for p in prompts]
    model = make_model(max_batch_size=4, workers=2, **FULL)
    got = run_concurrently(lambda p: "".join(c.text for c in stream(model, p, GREEDY)), prompts)
    assert got == expected
    assert model.scheduler.stats.sizes == {4: 2}
    lengths = sorted(sorted(len(p) for p in batch) for batch, _ in model.generator.batches)
    by_length = sorted(len(model.tokens(prepare_completion(model.tokenizer, p, 40).ids)) for p in prompts)
    assert lengths == [by_length[:4], by_length[4:]]


def test_more_waiting_than_a_batch_takes_keeps_the_oldest_with_the_nearest_lengths():
    from model_utils.engine.batching import _by_length, _Request

    waiting = [_Request(["t"] * n, GREEDY, None) for n in (30, 2, 31, 3, 29, 50)]  # oldest first
    assert [len(r.tokens) for r in _by_length(waiting, waiting[0], 3, 1)] == [30, 31, 29]
    assert [len(r.tokens) for r in _by_length(waiting, waiting[0], 3, 2)] == [30, 31, 50]  # its half of six
    assert _by_length(waiting[:2], waiting[0], 3, 1) == waiting[:2]  # all fit: all of them, in arrival order


def test_a_burst_whose_first_request_came_alone_is_split_by_length_and_both_parts_start_at_once(make_model, queue_log):
    """Under load the first request of a burst can arrive alone, and its lane starts it at once. The next lane that
    frees up then finds the rest waiting: it takes the part of them, sorted by prompt length, that holds the oldest,
    and the other part starts beside it at once, as an extra batch, instead of one batch of all the rest with mixed
    lengths decoding on one core long after the lone request's batch ended. Each reply is as if alone."""
    burst = [" ".join(["word"] * n) for n in (9, 2, 7, 4, 12, 1, 10, 5, 3, 8)]
    lone, other = "Once upon a time", "The capital of France"
    solo = make_model(max_batch_size=1)
    expected = {p: generate(solo, p, GREEDY).text for p in [lone, other, *burst]}
    # a lane starts what waits at once (no window), and no extra batch starts for waiting alone (patience)
    model = make_model(max_batch_size=10, workers=2, max_batches=4, window_s=0.0, quiet_s=0.0, wait_steps=1e9)

    def tokens(prompt):
        return model.tokens(prepare_completion(model.tokenizer, prompt, GREEDY.max_new_tokens).ids)

    started = {lone: threading.Event(), other: threading.Event()}
    gates = {lone: threading.Event(), other: threading.Event()}
    held = {tuple(tokens(p)): p for p in started}

    def on_step(step, prompt):  # the two first requests hold their lanes at their first step until let go
        name = held.get(tuple(prompt))
        if name is not None and not started[name].is_set():
            started[name].set()
            assert gates[name].wait(30), "the test never let the lane go"

    got = {}

    def user(prompt):
        got[prompt] = "".join(c.text for c in stream(model, prompt, GREEDY))

    threads = []
    with hooked_steps(model, on_step):
        for first in (lone, other):  # each alone, each on a lane of its own
            threads.append(threading.Thread(target=user, args=(first,)))
            threads[-1].start()
            assert started[first].wait(30), "a lane never started the request"
        for prompt in burst:  # the rest of the burst waits while both lanes are busy
            threads.append(threading.Thread(target=user, args=(prompt,)))
            threads[-1].start()
        wait_for(lambda: waiting(queue_log) == len(burst), "the burst never queued")
        gates[other].set()  # one lane frees up; the lone request's lane stays busy
        wait_for(lambda: len(model.generator.batches) == 4, "the burst never started")
        gates[lone].set()
        for thread in threads:
            thread.join(60)
    assert got == expected
    lengths = sorted(sorted(len(p) for p in prompts) for prompts, _ in model.generator.batches[2:])
    by_length = sorted(len(tokens(p)) for p in burst)
    assert lengths == [by_length[:5], by_length[5:]]
    assert model.scheduler.stats.extra_batches == 1


def test_a_lone_request_waits_the_configured_quiet_time_until_a_step_is_timed_then_half_a_step():
    """The quiet pause that closes a burst scales with the decoding step measured on this device; before any step
    is timed (a server whose replies were all one or two tokens) it is the configured one, not half the guess."""
    from model_utils.engine.batching import FIRST_STEP_GUESS_S, BatchScheduler

    config = BatchingConfig(window_s=0.05, quiet_s=0.01, wait_steps=4)
    scheduler = BatchScheduler(None, 0, config)
    try:
        assert scheduler._gather_times() == (0.05, 0.01)  # not FIRST_STEP_GUESS_S / 2
        scheduler.stats.add_step(0.04)  # the first timed step replaces the guess
        assert scheduler.stats.step_seconds == 0.04 != FIRST_STEP_GUESS_S
        assert scheduler._gather_times() == pytest.approx((0.16, 0.02))
    finally:
        scheduler.close()
