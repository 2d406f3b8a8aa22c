"""The service and the page's handlers, in-process over a scripted generator: milliseconds each."""

from __future__ import annotations

import pickle
import threading
from types import SimpleNamespace

import gradio as gr
import pytest
from page_clicks import apply, click, send
from tokenizers import Tokenizer

from model_utils.core.catalog import Catalog
from model_utils.core.errors import InvalidParameter, InvalidRevision, UnknownModel
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.engine import Engine
from model_utils.service import ChatRequest, CompletionRequest, PythiaService
from model_utils.store.disk import ModelStore
from model_utils.store.local_dirs import describe_local_dir
from model_utils.ui.controls import ControlValues
from model_utils.ui.handlers import COMPLETION, Handlers

from fake_generator import fake_loader

WORDS = " The clock struck twelve and the village slept"


@pytest.fixture
def words(tiny_ct2_dir):
    return Tokenizer.from_file(str(tiny_ct2_dir / "tokenizer.json")).encode(WORDS, add_special_tokens=False).ids


def make_service(tiny_ct2_dir, tmp_path, cpu_device, script, gate=None, batching=BatchingConfig()):
    catalog = Catalog()
    catalog.add(describe_local_dir(tiny_ct2_dir, name="tiny"))
    engine = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"), memory_budget_bytes=2**30,
                    batching=batching, loader=fake_loader(script, gate))
    return PythiaService(engine, catalog, "tiny")


@pytest.fixture
def service(tiny_ct2_dir, tmp_path, cpu_device, words):
    svc = make_service(tiny_ct2_dir, tmp_path, cpu_device, lambda prompt: words)
    yield svc
    svc.engine.close()


def test_complete_streams_growing_text_and_ends_with_the_whole_reply(service, words):
    replies = list(service.complete(service.parse(CompletionRequest, prompt="Once", max_new_tokens=50)))
    assert replies[-1].text == WORDS and replies[-1].finish_reason == "stop"
    assert replies[-1].num_tokens == len(words)
    for a, b in zip(replies, replies[1:], strict=False):
        assert b.text.startswith(a.text)
    assert all(not r.done for r in replies[:-1])


def test_token_limit_is_reported(service):
    final = list(service.complete(service.parse(CompletionRequest, prompt="Once", max_new_tokens=3)))[-1]
    assert final.finish_reason == "length" and final.num_tokens == 3


def test_chat_stops_before_the_next_user_line(tiny_ct2_dir, tmp_path, cpu_device):
    tok = Tokenizer.from_file(str(tiny_ct2_dir / "tokenizer.json"))
    ids = tok.encode(" Fine, thanks.\nUser: and you?", add_special_tokens=False).ids
    svc = make_service(tiny_ct2_dir, tmp_path, cpu_device, lambda prompt: ids)
    try:
        history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        final = list(svc.chat(svc.parse(ChatRequest, message="How are you?", history=history)))[-1]
    finally:
        svc.engine.close()
    assert final.text == "Fine, thanks." and final.finish_reason == "stop"


def test_logprobs_come_with_the_last_reply_only(service):
    replies = list(service.complete(service.parse(CompletionRequest, prompt="Once", max_new_tokens=4, logprobs=3)))
    assert all(r.token_scores is None for r in replies[:-1])
    assert len(replies[-1].token_scores) == 4 and len(replies[-1].token_scores[0].top) == 3
    # 0 alternatives, as on the OpenAI routes (one declaration): each token's own log-prob, no alternatives
    final = list(service.complete(service.parse(CompletionRequest, prompt="Once", max_new_tokens=4, logprobs=0)))[-1]
    assert len(final.token_scores) == 4 and all(t.top == () and t.logprob <= 0 for t in final.token_scores)


@pytest.mark.parametrize("kwargs,error", [
    (dict(prompt=None), InvalidParameter), (dict(prompt="x", model="gpt2"), UnknownModel),
    (dict(prompt="x", revision="step1000"), InvalidRevision), (dict(prompt="x", top_k=3.5), InvalidParameter),
    (dict(prompt="x", logprobs=11), InvalidParameter)],
    ids=["no-prompt", "unknown-model", "bad-revision", "fractional-top_k", "too-many-logprobs"])
def test_bad_requests_are_refused_before_any_model_loads(service, kwargs, error):
    with pytest.raises(error):
        service.parse(CompletionRequest, **kwargs)
    assert service.engine.cache.loaded() == []


def test_cancel_ends_the_reply_at_the_next_step(tiny_ct2_dir, tmp_path, cpu_device, words):
    gate = threading.Semaphore(0)
    svc = make_service(tiny_ct2_dir, tmp_path, cpu_device, lambda prompt: words * 20, gate=gate)
    cancel = threading.Event()
    try:
        replies = svc.complete(svc.parse(CompletionRequest, prompt="Once", max_new_tokens=200), cancel=cancel)
        gate.release(3)
        first = next(replies)
        cancel.set()
        gate.release(1000)  # whatever CT2 would decode next: the row is already stopped
        final = list(replies)[-1]
    finally:
        svc.engine.close()
    assert first.text and final.finish_reason == "cancelled" and final.num_tokens <= 4


def test_handlers_stream_then_show_metrics(service):
    h = Handlers(service)
    request = SimpleNamespace(session_hash="visitor")
    history, (update, notice, pending, metrics) = send(h, "Hello", [], request)
    assert (update, notice) == (gr.update(), "") and pending, "the accepted message holds a ticket until its reply ends"
    outputs = list(h.bot_reply(pending, history, "tiny", "main", ControlValues.defaults(max_new_tokens=64), False,
                               request, progress=lambda *a, **k: None))
    chatbot, update, metrics, heat, table, notice, pending = outputs[-1]
    assert chatbot == gr.update(), "the page owns the chat: the handler sends updates for its turn"
    assert apply(update, history, "")[0][-1] == {"role": "assistant", "content": WORDS.strip()}
    assert "tokens" in update["metrics"] and "tiny" in update["metrics"] and notice == "" and pending == ""
    assert len(h.runs) == 0, "the Stop flag is dropped when the reply ends"


@pytest.mark.parametrize("message,reason", [("   ", "Type a message first"), ("x" * 50_000, "limit is 20,000")],
                         ids=["blank", "50000-chars"])
def test_a_refused_message_stays_in_the_box_and_out_of_the_chat(service, message, reason):
    h = Handlers(service)
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    shown, (update, notice, pending, metrics) = send(h, message, history)
    assert reason in notice and pending == gr.update()
    assert apply(update, shown, "" if message.strip() else message) == (history, message), "back in the box"
    # the next message works
    history, (update, notice, pending, metrics) = send(h, "Hello again", history)
    final = list(h.bot_reply(pending, history, "tiny", "main", ControlValues.defaults(max_new_tokens=8), False, None,
                             progress=lambda *a, **k: None))[-1]
    assert "reply" in final[1] and final[1]["at"] == 3 and final[6] == ""


def test_a_failed_reply_gives_the_message_back_with_the_reason(service, fresh_hub):
    h = Handlers(service)
    history, (_, _, pending, _) = send(h, "Hi", [])
    # pythia-410m is on no (fake) Hub: its download fails
    final = list(h.bot_reply(pending, history, "pythia-410m", "main", ControlValues.defaults(max_new_tokens=8), False,
                             None, progress=lambda *a, **k: None))[-1]
    chatbot, update, metrics, heat, table, notice, pending = final
    assert apply(update, history, "") == ([], "Hi") and notice.startswith("⚠️") and "pythia-410m" in notice
    assert apply(update, history, "typed meanwhile") == ([], "Hi\ntyped meanwhile"), "nothing typed is lost"


def test_undo_retry_and_clear_reset_what_came_from_the_conversation(service):
    h = Handlers(service)
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    notice, pending = h.retry(click(), history)
    assert notice == "" and pending
    metrics, heat, table, notice = h.undo(click())
    assert (metrics, notice) == ("", "") and heat["visible"] is False and table["visible"] is False
    assert len(h.runs) == 1, "only the page's click numbers stay, until the page closes"
    assert list(h.bot_reply(pending, history[:1], "tiny", "main", ControlValues.defaults(max_new_tokens=8), False, None,
                            progress=lambda *a, **k: None)) == [(gr.update(),) * 7], "Undo dropped the retry"
    metrics, heat, table, notice = h.clear(click())
    assert (metrics, notice) == ("", "") and heat["visible"] is False
    h.forget(None)
    assert len(h.runs) == 0


def test_state_stays_bounded_after_5000_sessions(tiny_ct2_dir, tmp_path, cpu_device):
    # No gathering for simultaneous arrivals (one visitor at a time), and replies of 4 tokens, so that the scheduler
    # measures the fake's step: a lone request waits half a step for company, and a 2-token reply's step is never
    # measured (step 0 is the prefill), so it kept the first guess (50 ms): 25 ms per session, 2 minutes in all.
    svc = make_service(tiny_ct2_dir, tmp_path, cpu_device, lambda prompt: [5, 6, 7, 8],
                       batching=BatchingConfig(window_s=0, quiet_s=0))
    h = Handlers(svc)
    stats_bytes = []  # the scheduler's stats, pickled, after 100 sessions and after 5000
    try:
        for i in range(5000):
            request = SimpleNamespace(session_hash=f"visitor-{i}")
            ticket = h.runs.accept(request.session_hash, COMPLETION)
            for _ in h.completion(ticket, "Hi", "tiny", "main", ControlValues.defaults(max_new_tokens=4), False,
                                  request, progress=lambda *a, **k: None):
                pass
            h.runs.stop(request.session_hash, COMPLETION)  # a late Stop after the reply ended
            if i + 1 in (100, 5000):
                with svc.engine.open(svc.model("tiny"), "main") as model:
                    stats = model.scheduler.stats
                    stats_bytes.append(len(pickle.dumps(stats)))
        h.runs.accept("a visitor who closed the page while queued", COMPLETION)
        h.forget(SimpleNamespace(session_hash="a visitor who closed the page while queued"))
    finally:
        svc.engine.close()
    assert len(h.runs) == 0
    assert stats.rows == 5000 and len(stats.sizes) <= BatchingConfig().max_batch_size
    # counters only: 4900 more requests add a few digits, not a record each
    assert stats_bytes[1] - stats_bytes[0] < 64, stats_bytes


def test_weights_memory_grows_with_model_size(service):
    from model_utils.core.catalog import SIZES

    statuses = {m.name: s for m, s in service.statuses()}
    weights = [statuses[f"pythia-{size}"].weights_bytes for size in SIZES]
    assert weights == sorted(weights) and len(set(weights)) == len(weights), weights
    small = statuses["pythia-70m"]
    assert small.fits and small.conversations >= 1


def test_the_status_line_says_what_a_local_folder_does(service, tiny_hf_dir):
    service.catalog.add(describe_local_dir(tiny_hf_dir, name="operator-folder"))  # an HF checkpoint: not converted yet
    text = Handlers(service).status_markdown("operator-folder", "main")
    assert "converted from its folder on first use" in text and "downloads" not in text
    assert "in memory on CPU" in text and "conversation" not in text, "no capacity it does not decode"


def test_metrics_speak_plainly_and_an_empty_reply_is_explained(tiny_ct2_dir, tmp_path, cpu_device):
    from model_utils.ui.wording import metrics_markdown

    # a chat reply that ends at once (the model writes <|endoftext|> first); completions get two tokens
    svc = make_service(tiny_ct2_dir, tmp_path, cpu_device, lambda prompt: [] if "Bot" in "".join(prompt) else [5, 6])
    try:
        empty = list(svc.chat(svc.parse(ChatRequest, message="Hi")))[-1]
        full = list(svc.complete(svc.parse(CompletionRequest, prompt="Hi", max_new_tokens=2)))[-1]
    finally:
        svc.engine.close()
    assert empty.text == "" and "before writing anything" in metrics_markdown(empty, chat=True)
    line = metrics_markdown(full)
    assert "2 tokens · first after" in line and "reached the new-token limit" in line and "CPU float32" in line


def test_progress_reads_as_english():
    from model_utils.core.progress import Progress
    from model_utils.ui.wording import progress_text

    assert progress_text(Progress("downloading", 42, 100, "bytes"), "pythia-70m", "step3000") == \
        "Downloading pythia-70m step3000 — 42%"
    assert progress_text(Progress("loading", 0, None), "pythia-70m", "main") == "Loading pythia-70m"
    assert progress_text(Progress("scoring pythia-70m step0", 1, 9, "checkpoints")) == \
        "Scoring pythia-70m step0 (2 of 9 checkpoints)"


def test_toasts_show_plain_text_and_stay():
    from model_utils.core.errors import ModelUnavailable
    from model_utils.ui.common import user_error

    error = user_error(ModelUnavailable("Run offline with `python app.py --demo`."))
    assert error.message == "Run offline with python app.py --demo." and error.duration is None


def test_the_status_line_says_what_the_server_decodes_at_once_not_what_memory_could_hold(service):
    from model_utils.engine.model_status import ModelStatus
    from model_utils.service import Capacity
    from model_utils.ui.wording import memory_words

    status = ModelStatus("pythia-160m", "main", 162_000_000, 2**30, True, True, True, weights_bytes=2**28,
                         conversations=3826)
    line = memory_words(status, "CPU int8", Capacity(rows=32, queue=64, api_rows=16))
    assert line.endswith("writes up to 32 replies at once, 64 more wait in line") and "3,826" not in line
    tight = ModelStatus("pythia-2.8b", "main", 2_800_000_000, 2**33, True, True, True, weights_bytes=2**32,
                        conversations=5)
    assert "writes up to 5 replies at once" in memory_words(tight, "CPU int8", Capacity(rows=32, queue=64)), \
        "never more than memory holds"


def test_the_first_token_counts_from_the_click_and_says_how_long_it_waited_in_line():
    from model_utils.service import Reply
    from model_utils.ui.wording import metrics_line

    reply = Reply("Hello", finish_reason="length", num_tokens=9, time_to_first_token=0.012, tokens_per_second=300)
    assert "first after 12 ms ·" in metrics_line(reply), "no click known: the decoding's own figure"
    assert "first after 720 ms (708 ms of it waiting in line) ·" in metrics_line(reply, since_click=0.72)
    assert "first after 1.4 s (1.4 s of it waiting in line)" in metrics_line(reply, since_click=1.412)
    assert "first after 40 ms ·" in metrics_line(reply, since_click=0.040), "a wait too short to be worth saying"
