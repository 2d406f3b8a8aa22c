"""The batching scheduler: concurrent requests decoded together through real CT2."""

import threading
import time
import weakref

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ServerBusy
from model_utils.core.sampling import SamplingParams
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.generation import generate, stream
from model_utils.engine.loaded_model import load_ct2_model
from model_utils.store.local_dirs import describe_local_dir

from concurrency import run_concurrently
from ct2_hooks import hooked_steps

PROMPTS = ["Once upon a time", "The capital of France", "def fibonacci(n):", "Hello, who are you?",
           "Every morning the clockmaker", "中文字符", "The Pythia Scaling Suite", "A language model"]
GREEDY = SamplingParams(greedy=True, max_new_tokens=40, repetition_penalty=1.0)


@pytest.fixture
def make_model(tiny_ct2_dir, cpu_device):
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    made = []

    def make(**config):
        model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device, BatchingConfig(**config))
        made.append(model)
        return model

    yield make
    for model in made:
        model.close()


def test_batched_greedy_equals_one_at_a_time(make_model):
    alone = make_model(max_batch_size=1)
    expected = [generate(alone, p, GREEDY).text for p in PROMPTS]
    batched = make_model(max_batch_size=8, window_s=0.2)
    got = run_concurrently(lambda p: "".join(c.text for c in stream(batched, p, GREEDY)), PROMPTS)
    assert got == expected
    assert batched.scheduler.stats.sizes.keys() - {1}, "requests should really share batches"
    assert batched.scheduler.stats.rows == len(PROMPTS)
    assert alone.scheduler.stats.sizes == {1: len(PROMPTS)}


def test_each_row_keeps_its_own_length(make_model):
    model = make_model(max_batch_size=4, window_s=0.2)
    lengths = [3, 7, 15, 30]
    params = [SamplingParams(greedy=True, max_new_tokens=n, repetition_penalty=1.0) for n in lengths]
    solo = make_model(max_batch_size=1)
    expected = [generate(solo, "Once upon a time", p).num_tokens for p in params]
    got = run_concurrently(lambda p: generate(model, "Once upon a time", p).num_tokens, params)
    assert got == expected
    assert model.scheduler.stats.sizes == {4: 1}


def test_cancelled_request_leaves_its_batch_without_disturbing_the_others(make_model):
    model = make_model(max_batch_size=4, window_s=0.2)
    solo = make_model(max_batch_size=1)
    params = SamplingParams(greedy=True, max_new_tokens=200, repetition_penalty=1.0)
    prompts = PROMPTS[:3] + ["Every morning the clockmaker"]  # the last one runs long without stopping
    expected = [generate(solo, p, params).text for p in prompts[:3]]
    cancel = threading.Event()
    after_cancel = []

    long_row = model.tokens(model.tokenizer.encode(prompts[3], add_special_tokens=False).ids)

    def on_step(step, prompt):
        if cancel.is_set() and list(prompt) == long_row:
            after_cancel.append(step)
        time.sleep(0.002)  # pace decoding so the cancel lands mid-batch

    def run(i):
        if i == 3:
            chunks = []
            for chunk in stream(model, prompts[3], params, cancel=cancel):
                chunks.append(chunk)
                if len(chunks) == 3:
                    cancel.set()
            return chunks[-1].finish_reason
        return generate(model, prompts[i], params).text

    with hooked_steps(model, on_step):
        results = run_concurrently(run, [0, 1, 2, 3])
    assert results[:3] == expected
    assert results[3] == "cancelled"
    assert len(after_cancel) <= 1
    assert model.scheduler.stats.sizes == {4: 1}


def test_incompatible_settings_get_separate_batches(make_model):
    model = make_model(max_batch_size=8, window_s=0.2)
    params = [SamplingParams(greedy=True, max_new_tokens=10), SamplingParams(temperature=1.0, max_new_tokens=10),
              SamplingParams(greedy=True, max_new_tokens=20)]
    run_concurrently(lambda p: generate(model, "Hello", p), params)
    assert model.scheduler.stats.sizes == {1: 1, 2: 1}


def test_queue_limit_gives_busy(make_model):
    model = make_model(max_batch_size=1, max_waiting=1)
    slow = threading.Event()
    params = SamplingParams(greedy=True, max_new_tokens=50, repetition_penalty=1.0)
    with hooked_steps(model, lambda step, prompt: slow.wait(0.02)):  # paces decoding
        first = stream(model, "Once", params)
        next(first)  # running
        second = model.scheduler.steps(model.tokens([1, 2]), params)  # waiting
        with pytest.raises(ServerBusy):
            model.scheduler.steps(model.tokens([1, 2]), params)
        second.close()  # closing before it starts: it never runs
        first.close()
    assert model.scheduler.waiting == 0
    assert model.scheduler.stats.sizes == {1: 1}


def test_waiting_request_that_is_closed_never_starts(make_model):
    model = make_model(max_batch_size=1)
    gate, decoding = threading.Event(), threading.Event()

    def hold(step, prompt):  # the running request holds CT2 until the gate opens
        decoding.set()
        gate.wait(5)

    params = SamplingParams(greedy=True, max_new_tokens=30, repetition_penalty=1.0)
    with hooked_steps(model, hold):
        running = stream(model, "Once", params)
        started = threading.Thread(target=lambda: next(running))
        started.start()
        assert decoding.wait(10), "the first request never started"
        waiting = model.scheduler.steps(model.tokens([5, 6]), params)
        assert model.scheduler.waiting == 1
        waiting.close()
        assert model.scheduler.waiting == 0
        gate.set()
        started.join()
        running.close()
    assert model.scheduler.stats.sizes == {1: 1}


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
    model = make_model(max_batch_size=1)
    params = SamplingParams(greedy=True, max_new_tokens=3, repetition_penalty=1.0)
    if hooked:
        with hooked_steps(model, lambda step, prompt: None):
            generate(model, "Once", params)
    else:
        generate(model, "Once", params)
    generator = weakref.ref(model.generator)
    model.close()
    assert given and given[0] is not None, "CT2 was given a callback"
    assert generator() is None, "the callback CT2 holds keeps the Generator alive"
