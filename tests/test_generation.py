"""Streaming generation through real CT2 on the tiny random Pythia."""

import threading

import pytest

from model_utils.core.sampling import SamplingParams
from model_utils.engine.generation import MIN_TIMED_SECONDS, generate, stream
from model_utils.engine.prompts import prepare_completion

from ct2_hooks import hooked_steps

GREEDY = SamplingParams(greedy=True, max_new_tokens=60, repetition_penalty=1.0)
# Greedy from this prompt runs 200+ tokens without an end token on the tiny model (seed 0):
# deterministic, so cancel/close tests never race an early end of text.
LONG_RUNNING = "Every morning the clockmaker"


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
    assert chunks[-1].finish_reason in ("stop", "length")
    assert all(c.finish_reason is None for c in chunks[:-1])
    # token counts grow one by one and each token chunk carries a log-prob
    counts = [c.num_tokens for c in chunks if c.token_id is not None]
    assert counts == list(range(1, len(counts) + 1))
    assert all(c.log_prob is not None and c.log_prob <= 0 for c in chunks if c.token_id is not None)


def test_empty_prompt_starts_from_endoftext(tiny_model):
    prepared = prepare_completion(tiny_model.tokenizer, "", 10)
    assert prepared.ids == (tiny_model.eos_id,)
    result = generate(tiny_model, "", SamplingParams(greedy=True, max_new_tokens=10))
    assert result.finish_reason in ("stop", "length")


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


def test_closing_the_stream_stops_ct2_decoding(tiny_model):
    import time

    steps, closing = [], threading.Event()
    after_close = []

    def on_step(step, prompt):  # runs in CT2's decoding thread; the sleep paces decoding
        (after_close if closing.is_set() else steps).append(step)
        time.sleep(0.005)

    params = SamplingParams(greedy=True, max_new_tokens=1000, repetition_penalty=1.0)
    with hooked_steps(tiny_model, on_step):
        it = stream(tiny_model, LONG_RUNNING, params)
        for _ in range(3):
            next(it)
        closing.set()
        it.close()  # returns only once the CT2 row has ended
        assert len(after_close) <= 1, "CT2 must stop within one step of close()"
        assert len(steps) + len(after_close) < params.max_new_tokens  # it stopped early
        deadline = time.monotonic() + 5.0  # its only row stopped, so CT2 ends the batch (poll with a deadline)
        while tiny_model.generator.num_active_batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tiny_model.generator.num_active_batches == 0
        # CT2 has no batch left: nothing can run on in the background
        assert len(after_close) <= 1


def test_cancel_event_stops_ct2_at_the_next_step(tiny_model):
    import time

    cancel = threading.Event()
    before, after = [], []

    def on_step(step, prompt):
        (after if cancel.is_set() else before).append(step)
        time.sleep(0.005)

    params = SamplingParams(greedy=True, max_new_tokens=1000, repetition_penalty=1.0)
    chunks = []
    with hooked_steps(tiny_model, on_step):
        for chunk in stream(tiny_model, LONG_RUNNING, params, cancel=cancel):
            chunks.append(chunk)
            if len(chunks) == 2:
                cancel.set()
    assert chunks[-1].finish_reason == "cancelled"
    assert len(after) <= 1, "CT2 must stop within one step of the cancel"
    assert len(before) + len(after) < params.max_new_tokens  # it stopped early


def test_tokens_per_second_and_ttft_are_reported(tiny_model):
    result = generate(tiny_model, "Hello", SamplingParams(greedy=True, max_new_tokens=20, repetition_penalty=1.0))
    assert result.time_to_first_token is not None and result.time_to_first_token > 0
    last = list(stream(tiny_model, "Hello", SamplingParams(greedy=True, max_new_tokens=20)))[-1]
    decode = last.elapsed - last.time_to_first_token
    if last.num_tokens > 1 and decode >= MIN_TIMED_SECONDS:
        assert last.tokens_per_second == pytest.approx((last.num_tokens - 1) / decode)
    else:  # too short to time (test_charts.py scripts both cases)
        assert last.tokens_per_second == 0.0
