"""Streaming generation through real CT2 on the tiny random Pythia."""

import threading
import time

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.sampling import SamplingParams
from model_utils.engine import generation
from model_utils.engine.generation import generate, stream
from model_utils.engine.prompts import prepare_completion
from model_utils.store.local_dirs import describe_local_dir

from ct2_hooks import hooked_steps, load_hookable_ct2_model

GREEDY = SamplingParams(greedy=True, max_new_tokens=60, repetition_penalty=1.0)
# Greedy from this prompt runs 200+ tokens without an end token on the tiny model (seed 0):
# deterministic, so cancel/close tests never race an early end of text.
LONG_RUNNING = "Every morning the clockmaker"


@pytest.fixture(scope="module")
def hookable_model(tiny_ct2_dir, cpu_device):
    """The tiny model, with each CT2 step visible to the test (ct2_hooks)."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia", random_weights=True))
    model = load_hookable_ct2_model(tiny_ct2_dir, info, "main", cpu_device)
    yield model
    model.close()


def ct2_reference_ids(model, prompt_ids, params):
    """Greedy ids straight from CT2's generate_batch, no streaming code involved."""
    result = model.generator.generate_batch(
        [model.tokens(prompt_ids)], max_length=params.max_new_tokens, end_token=[model.eos_id],
        include_prompt_in_result=False, **params.ct2_options())
    return result[0].sequences_ids[0]


@pytest.mark.parametrize("prompt", ["Hello, who are you?", "The capital of France", ""])
def test_streamed_text_equals_non_streamed_and_ct2(tiny_model, prompt):
    prepared = prepare_completion(tiny_model.tokenizer, prompt, GREEDY.max_new_tokens)
    chunks = list(stream(tiny_model, prepared, GREEDY))
    streamed = "".join(c.text for c in chunks)
    whole = generate(tiny_model, prepared, GREEDY)
    ref_ids = ct2_reference_ids(tiny_model, prepared.ids, GREEDY)
    assert streamed == whole.text
    assert list(whole.token_ids) == ref_ids
    assert streamed == tiny_model.tokenizer.decode(ref_ids)
    assert chunks[-1].finish_reason == ("length" if len(ref_ids) == GREEDY.max_new_tokens else "stop")
    assert all(c.finish_reason is None for c in chunks[:-1])
    # token counts grow one by one and each token chunk carries a log-prob
    counts = [c.num_tokens for c in chunks if c.token_id is not None]
    assert counts == list(range(1, len(counts) + 1))
    assert all(c.log_prob is not None and c.log_prob <= 0 for c in chunks if c.token_id is not None)


def test_empty_prompt_starts_from_endoftext(tiny_model):
    prepared = prepare_completion(tiny_model.tokenizer, "", 10)
    assert prepared.ids == (tiny_model.eos_id,)
    params = SamplingParams(greedy=True, max_new_tokens=10, repetition_penalty=1.0)
    result = generate(tiny_model, "", params)
    assert list(result.token_ids) == ct2_reference_ids(tiny_model, prepared.ids, params)
    assert result.finish_reason == ("length" if result.num_tokens == 10 else "stop")


def test_length_finish_reason(tiny_model):
    params = SamplingParams(greedy=True, max_new_tokens=5, repetition_penalty=1.0)
    ref = ct2_reference_ids(tiny_model, tiny_model.tokenizer.encode("Once upon a time").ids, params)
    result = generate(tiny_model, "Once upon a time", params)
    assert result.num_tokens == len(ref) <= 5
    assert result.finish_reason == ("length" if len(ref) == 5 else "stop")


def test_stop_string_never_leaks(tiny_model):
    """Pick a stop string from the greedy reply itself (spanning a token boundary)."""
    params = SamplingParams(greedy=True, max_new_tokens=80, repetition_penalty=1.0)
    prompt = "Every morning the clockmaker"
    full = generate(tiny_model, prompt, params)
    assert len(full.text) > 12, "the tiny model should say something"
    stop = full.text[6:10]
    expected = full.text[: full.text.find(stop)]
    chunks = list(stream(tiny_model, prompt, params, stop=[stop, "never-appears"]))
    text = "".join(c.text for c in chunks)
    assert text == expected
    assert stop not in text
    assert all(stop not in c.text for c in chunks)
    assert chunks[-1].finish_reason == "stop"


def steps_held_after(count: int, released: threading.Event) -> tuple[list[bool], object]:
    """An on_step hook for one row: CT2 decodes ``count`` steps, then holds the next until ``released``.
    The list records, for each step decoded, whether ``released`` had been set."""
    steps: list[bool] = []

    def on_step(step, prompt):
        if len(steps) == count:
            assert released.wait(30), "the test never let CT2 go on"
        steps.append(released.is_set())

    return steps, on_step


def test_closing_the_stream_stops_ct2_decoding(hookable_model):
    closing = threading.Event()
    steps, on_step = steps_held_after(3, closing)
    params = SamplingParams(greedy=True, max_new_tokens=1000, repetition_penalty=1.0)
    with hooked_steps(hookable_model, on_step):
        it = stream(hookable_model, LONG_RUNNING, params)
        for _ in range(3):
            next(it)
        closing.set()
        it.close()  # returns only once the CT2 row has ended
        assert steps == [False, False, False, True], "CT2 must stop at the step after close()"
        deadline = time.monotonic() + 30  # its only row stopped, so CT2 ends the batch (poll with a deadline)
        while hookable_model.generator.num_active_batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert hookable_model.generator.num_active_batches == 0
        # CT2 has no batch left: nothing ran on in the background
        assert steps == [False, False, False, True]


def test_cancel_event_stops_ct2_at_the_next_step(hookable_model):
    cancel = threading.Event()
    steps, on_step = steps_held_after(2, cancel)
    params = SamplingParams(greedy=True, max_new_tokens=1000, repetition_penalty=1.0)
    chunks = []
    with hooked_steps(hookable_model, on_step):
        for chunk in stream(hookable_model, LONG_RUNNING, params, cancel=cancel):
            chunks.append(chunk)
            if len(chunks) == 2:
                cancel.set()
    assert chunks[-1].finish_reason == "cancelled" and chunks[-1].num_tokens == 2
    assert steps == [False, False, True], "CT2 must stop at the step after the cancel"


class ScriptedClock:
    """``perf_counter`` for the stream's own clock: each reading is ``tick`` seconds after the one before."""

    def __init__(self, tick: float):
        self.tick, self.now = tick, 100.0

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_time_to_first_token_and_speed_are_measured_from_the_stream(tiny_model, monkeypatch):
    # the real CT2 stream, read on a scripted clock: the start, then one reading per token, then the end
    monkeypatch.setattr(generation, "time", ScriptedClock(tick=0.5))
    params = SamplingParams(greedy=True, max_new_tokens=20, repetition_penalty=1.0)
    chunks = list(stream(tiny_model, LONG_RUNNING, params))
    first, last = chunks[0], chunks[-1]
    assert last.num_tokens == 20 and last.finish_reason == "length"
    assert [c.elapsed for c in chunks] == [0.5 * k for k in range(1, 22)], "each token timed when it arrives"
    assert all(c.time_to_first_token == 0.5 for c in chunks), "the first token's arrival, kept"
    # speed counts the tokens after the first, over the time after the first (the prompt excluded)
    assert last.tokens_per_second == pytest.approx(19 / (10.5 - 0.5))
    assert first.tokens_per_second == 0.0
    result = generate(tiny_model, LONG_RUNNING, params)
    assert result.num_tokens == 20 and result.time_to_first_token == 0.5
