"""A request cancelled while it waits for a decoding lane never starts, and its caller hears so at once:
not when the batch ahead of it ends (real CT2, held mid-reply by a test hook)."""

import threading
from contextlib import contextmanager

import pytest
from scheduler_log import waiting

from model_utils.core.catalog import Catalog
from model_utils.core.sampling import FinishReason, SamplingParams
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.generation import stream
from model_utils.engine.prompts import PreparedPrompt
from model_utils.service.choices import BatchJob, run_batch
from model_utils.store.local_dirs import describe_local_dir

from concurrency import wait_for
from ct2_hooks import hooked_steps, load_hookable_ct2_model

PARAMS = SamplingParams(greedy=True, max_new_tokens=30, repetition_penalty=1.0)
HANG = 10  # seconds after which a thread that should have ended counts as stuck


@pytest.fixture
def model(tiny_ct2_dir, cpu_device):
    """One lane, one row: a second request waits until the first one's reply ends."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    loaded = load_hookable_ct2_model(tiny_ct2_dir, info, "main", cpu_device, BatchingConfig(max_batch_size=1))
    yield loaded
    loaded.close()


@contextmanager
def lane_held(model):
    """A first request decoding, held at its first step until the block ends."""
    gate, decoding = threading.Event(), threading.Event()

    def hold(step, prompt):
        decoding.set()
        gate.wait(HANG)

    with hooked_steps(model, hold):
        running = stream(model, "Once", PARAMS)
        first = threading.Thread(target=lambda: next(running))
        first.start()
        assert decoding.wait(HANG), "the first request never started"
        try:
            yield
        finally:
            gate.set()
            first.join()
            running.close()


def test_a_waiting_request_that_is_cancelled_leaves_the_queue_at_once(model, queue_log):
    cancel = threading.Event()
    chunks = []
    with lane_held(model):
        queued = model.scheduler.steps(model.tokens([5, 6]), PARAMS, cancel=cancel)
        assert waiting(queue_log) == 1
        consumer = threading.Thread(target=lambda: chunks.extend(queued))
        consumer.start()
        cancel.set()
        consumer.join(HANG)
        # the lane is still held: the consumer was woken by its cancel, not by the end of the batch ahead
        assert not consumer.is_alive(), "the cancelled request waited for the running reply to end"
        assert waiting(queue_log) == 0
        assert chunks == []
    assert model.scheduler.stats.sizes == {1: 1}, "the cancelled request must never start"


def test_a_cancelled_stream_reports_cancelled_without_a_token(model, queue_log):
    cancel = threading.Event()
    with lane_held(model):
        done = []
        consumer = threading.Thread(target=lambda: done.extend(stream(model, "Twice", PARAMS, cancel=cancel)))
        consumer.start()
        wait_for(lambda: waiting(queue_log) == 1, "the second request never queued")
        cancel.set()
        consumer.join(HANG)
        assert not consumer.is_alive(), "the cancelled stream waited for the running reply to end"
    assert [c.finish_reason for c in done] == [FinishReason.CANCELLED]
    assert done[-1].num_tokens == 0


def test_a_cancelled_request_is_not_started_by_a_lane_that_frees_up_first(model):
    """Nobody is listening for the cancel yet (no consumer): the lane that frees up must skip the request."""
    cancel = threading.Event()
    with lane_held(model):
        queued = model.scheduler.steps(model.tokens([5, 6]), PARAMS, cancel=cancel)
        cancel.set()
    assert list(queued) == []
    assert model.scheduler.stats.sizes == {1: 1}


def test_an_api_client_leaving_while_queued_frees_its_row_threads_at_once(model, queue_log):
    """The OpenAI routes' batches: every row waits for the lane; the client leaves (cancel is set)."""
    cancel = threading.Event()
    job = BatchJob(n=3, max_tokens=20, params=PARAMS)
    prompt = PreparedPrompt(tuple(model.tokenizer.encode("Hello", add_special_tokens=False).ids))
    deltas = []

    def client():  # as the routes' Pump does: read until the end, stop reading once cancelled
        for item in run_batch(model, [prompt], job, cancel):
            deltas.append(item)

    with lane_held(model):
        reader = threading.Thread(target=client)
        reader.start()
        wait_for(lambda: waiting(queue_log) == 3, "the rows never queued")
        cancel.set()
        reader.join(HANG)
        assert not reader.is_alive(), "the batch's row threads waited for the running reply to end"
        assert not [t for t in threading.enumerate() if t.name.startswith("choice-")]
        assert waiting(queue_log) == 0
    assert model.scheduler.stats.sizes == {1: 1}, "no row of the cancelled batch may start"
    finished = [d for d in deltas if getattr(d, "finish_reason", None)]
    assert {d.finish_reason for d in finished} == {FinishReason.CANCELLED}
