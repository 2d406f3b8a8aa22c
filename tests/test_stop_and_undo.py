"""Stop, Undo and Clear reach a chat reply wherever it is: waiting in line, waiting for a decoding lane, or
being written; and leave the page exactly as they say. The handlers over the real service and CT2 (the tiny
model, paced or held by a test hook); the page itself in tests/test_stop_and_undo_page.py."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from types import SimpleNamespace

import gradio as gr
import pytest
from page_clicks import apply, click, send
from scheduler_log import waiting

from model_utils.core.catalog import Catalog
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.engine import Engine
from model_utils.engine.generation import stream
from model_utils.service import PythiaService, SamplingParams
from model_utils.store.disk import ModelStore
from model_utils.store.local_dirs import describe_local_dir
from model_utils.ui.controls import ControlValues
from model_utils.ui.handlers import Handlers
from model_utils.ui.wording import STILL_REPLYING, STOPPED_BEFORE_REPLY

from ct2_hooks import hooked_steps, load_hookable_ct2_model

VISITOR = SimpleNamespace(session_hash="visitor")
HANG = 10  # seconds after which a thread that should have ended counts as stuck
NO_PROGRESS = lambda *a, **k: None  # noqa: E731


@pytest.fixture
def service(tiny_ct2_dir, tmp_path, cpu_device):
    """The tiny CT2 model, one request decoding at a time: a second one waits for the lane."""
    catalog = Catalog()
    catalog.add(describe_local_dir(tiny_ct2_dir, name="tiny", random_weights=True))
    engine = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"), memory_budget_bytes=2**30,
                    batching=BatchingConfig(max_batch_size=1), loader=load_hookable_ct2_model)
    yield PythiaService(engine, catalog, "tiny")
    engine.close()


def loaded(service):
    with service.engine.open(service.model("tiny"), "main") as model:
        return model


def reply(h: Handlers, pending: str, history: list, max_new_tokens: int = 200):
    """The chat's queued handler, as the page calls it (greedy: the tiny model's reply runs to the limit)."""
    controls = ControlValues.defaults(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                                      max_new_tokens=max_new_tokens, greedy=True)
    return h.bot_reply(pending, history, "tiny", "main", controls, False, VISITOR, progress=NO_PROGRESS)


class Reader(threading.Thread):
    """Reads a handler's outputs in its own thread, as Gradio does; ``first`` is set by the first one."""

    def __init__(self, outputs):
        super().__init__(daemon=True)
        self.source, self.outputs, self.first = outputs, [], threading.Event()

    def run(self):
        for item in self.source:
            self.outputs.append(item)
            self.first.set()


@contextmanager
def lane_held(service):
    """Another visitor's reply decoding, held at its first step until the block ends."""
    model = loaded(service)
    gate, decoding = threading.Event(), threading.Event()

    def hold(step, prompt):
        decoding.set()
        gate.wait(HANG)

    with hooked_steps(model, hold):
        other = stream(model, "Once", SamplingParams(greedy=True, max_new_tokens=5))
        first = threading.Thread(target=lambda: next(other))
        first.start()
        assert decoding.wait(HANG), "the other reply never started"
        try:
            yield model
        finally:
            gate.set()
            first.join()
            other.close()


def test_stop_before_the_reply_started_gives_the_message_back_and_it_never_runs(service):
    h = Handlers(service)
    history, (_, notice, pending, _) = send(h, "Hi there", [], VISITOR)
    update, metrics = h.stop_chat(click(), VISITOR)
    assert apply(update, history, "") == ([], "Hi there") and update["metrics"] == STOPPED_BEFORE_REPLY
    # when its turn in Gradio's queue comes, the queued reply leaves the page as Stop left it
    assert list(reply(h, pending, history)) == [(gr.update(),) * 7]
    assert service.engine.cache.loaded() == []
    h.forget(VISITOR)
    assert len(h.runs) == 0


def test_stop_while_waiting_for_a_decoding_lane_gives_the_message_back(service, queue_log):
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "Hi there", [], VISITOR)
    with lane_held(service) as model:
        reader = Reader(reply(h, pending, history))
        reader.start()
        deadline = time.monotonic() + HANG
        while waiting(queue_log) == 0:  # the handler runs; its request waits behind the held reply
            assert time.monotonic() < deadline, "the reply never queued for a lane"
            time.sleep(0.01)
        assert h.stop_chat(click(), VISITOR) == (gr.update(),) * 2, "a running handler answers Stop itself"
        reader.join(HANG)
        assert not reader.is_alive(), "Stop waited for the other visitor's reply to end"
    chatbot, update, metrics, heat, table, notice, ticket = reader.outputs[-1]
    assert apply(update, history, "") == ([], "Hi there") and update["metrics"] == STOPPED_BEFORE_REPLY
    assert ticket == ""
    assert model.scheduler.stats.rows == 1, "the stopped request never started"


@pytest.mark.parametrize("action", ["undo", "clear"])
def test_undo_and_clear_during_a_reply_stop_it_and_nothing_of_it_follows(service, action):
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "Tell me more", [], VISITOR)
    model = loaded(service)
    with hooked_steps(model, lambda step, prompt: time.sleep(0.005)):  # paces decoding: the reply lasts a second
        reader = Reader(reply(h, pending, history))
        reader.start()
        assert reader.first.wait(HANG), "the reply never started"
        shown = h.undo(click(), VISITOR) if action == "undo" else h.clear(click(), VISITOR)
        streamed = len(reader.outputs)
        reader.join(HANG)
    assert not reader.is_alive()
    assert len(reader.outputs) == streamed, f"the reply went on after {action}"
    assert all("metrics" not in out[1] for out in reader.outputs), "no final metrics: it was cut while written"
    metrics, heat, table, notice = shown
    assert metrics == "" and notice == ""
    assert model.scheduler.stats.tokens < 200, "decoding went on"
    h.forget(VISITOR)
    assert len(h.runs) == 0


@pytest.mark.parametrize("action", ["undo", "clear"])
def test_undo_and_clear_before_the_reply_started_drop_it(service, action):
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "Tell me more", [], VISITOR)
    h.undo(click(), VISITOR) if action == "undo" else h.clear(click(), VISITOR)
    assert list(reply(h, pending, history)) == [(gr.update(),) * 7], "when its turn comes, it changes nothing"
    assert service.engine.cache.loaded() == []


def test_a_message_sent_while_a_reply_is_written_goes_back_to_the_box(service):
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "First", [], VISITOR)
    model = loaded(service)
    with hooked_steps(model, lambda step, prompt: time.sleep(0.005)):
        reader = Reader(reply(h, pending, history))
        reader.start()
        assert reader.first.wait(HANG)
        shown = apply(reader.outputs[-1][1], history, "")[0]
        moved, (update, notice, ticket, _) = send(h, "Second", shown, VISITOR)
        h.runs.stop(VISITOR.session_hash, "chat")
        reader.join(HANG)
    assert apply(update, moved, "") == (shown, "Second") and ticket == gr.update() and STILL_REPLYING in notice
    assert "stopped by you" in reader.outputs[-1][1]["metrics"]


def test_a_message_sent_as_soon_as_the_reply_shows_its_end_is_accepted(service):
    """The reply's last update (its metrics line) is the page's sign that it ended: a Send clicked the moment it
    shows is answered, not refused as "still being written" (Gradio asks the handler for more only after that
    update reached the page, and under load that can take long enough for a quick visitor, or a test)."""
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "First", [], VISITOR)
    updates = reply(h, pending, history, max_new_tokens=4)
    last = None
    for outputs in updates:  # as Gradio reads them, up to the one with the metrics line, and not beyond it
        last = outputs[1]
        if isinstance(last, dict) and "metrics" in last:
            break
    assert last and "reached the new-token limit" in last["metrics"]
    shown = apply(last, history, "")[0]
    _, (update, notice, ticket, _) = send(h, "Second", shown, VISITOR)
    assert update == gr.update() and notice == "" and isinstance(ticket, str), "the next message is accepted"
    updates.close()


# Under load, clicks reach the server out of order: the page numbers them, and a late one never undoes what a
# later click did. (Each pair below in both orders of arrival.)
def test_send_then_undo_arriving_in_either_order_takes_the_new_message_back_and_nothing_else(service):
    for undo_first in (False, True):
        h = Handlers(service)
        earlier = [{"role": "user", "content": "First"}, {"role": "assistant", "content": "Reply"}]
        message = {**click(), "text": "Second"}
        undo = click()
        moved = earlier + [{"role": "user", "content": "Second"}]
        if undo_first:
            h.undo(undo, VISITOR)
        update, notice, pending, metrics = h.send(message, moved, VISITOR)
        if not undo_first:
            h.undo(undo, VISITOR)
            assert pending
        assert update == gr.update() and notice in ("", gr.update()), "the late Send changes nothing on the page"
        assert list(reply(h, pending if isinstance(pending, str) else "", moved)) == [(gr.update(),) * 7]
        assert service.engine.cache.loaded() == [], "the undone message was never answered"


def test_send_then_stop_arriving_in_either_order_gives_the_message_back(service):
    for stop_first in (False, True):
        h = Handlers(service)
        message, stop = {**click(), "text": "Hi"}, click()
        moved = [{"role": "user", "content": "Hi"}]
        if stop_first:
            assert h.stop_chat(stop, VISITOR) == (gr.update(),) * 2
            update, notice, pending, metrics = h.send(message, moved, VISITOR)
        else:
            _, notice, pending, _ = h.send(message, moved, VISITOR)
            update, metrics = h.stop_chat(stop, VISITOR)
        assert apply(update, moved, "") == ([], "Hi") and update["metrics"] == STOPPED_BEFORE_REPLY
        assert list(reply(h, pending if isinstance(pending, str) else "", moved)) == [(gr.update(),) * 7]


def test_a_late_undo_does_not_reach_a_message_sent_after_it(service):
    h = Handlers(service)
    undo = click()
    moved, (_, _, pending, _) = send(h, "Again", [], VISITOR)  # Undo, then Send: the Send got there first
    h.undo(undo, VISITOR)
    final = list(reply(h, pending, moved, max_new_tokens=4))[-1]
    assert final[1]["reply"] and final[1]["message"] == "Again", "the message sent after the Undo is answered"
