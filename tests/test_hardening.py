"""A public Space under abuse: raw payloads, security settings, overload, failures, disconnects."""

import json
import time

import httpx
import pytest
from gradio_client import Client

from model_utils.settings import Settings

from conftest import DEMO, SLOW
from live_app import running_app
from raw_gradio import raw_call

pytestmark = pytest.mark.slow  # a live server, a browser or a subprocess


@pytest.fixture(scope="module")
def live(model_cache, slow_checkpoint):
    settings = Settings(demo=True, model_dir=str(slow_checkpoint), cache_dir=str(model_cache),
                        device="cpu")
    with running_app(settings) as (url, engine):
        Client(url, verbose=False).predict(prompt="warm up", model=DEMO, max_new_tokens=2, api_name="/complete")
        yield url, engine


def wait_until(condition, message: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it holds, or fail with ``message`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def decoded(engine, name=DEMO) -> int:
    with engine.open(name) as model:
        return model.scheduler.stats.tokens


# data: [message, history, model, revision, temperature, top_k, top_p, repetition_penalty, max_new_tokens]
RAW_CHAT = [
    ('["hi", null, "%s", "main", NaN, null, null, null, null]' % DEMO, "temperature"),
    ('["hi", null, "%s", "main", Infinity, null, null, null, null]' % DEMO, "temperature"),
    ('["hi", null, "%s", "main", null, -5, null, null, null]' % DEMO, "top_k"),
    ('["hi", null, "%s", "main", null, 3.7, null, null, null]' % DEMO, "top_k"),
    ('["hi", null, "%s", "main", null, null, 0, null, null]' % DEMO, "top_p"),
    ('["hi", null, "%s", "main", null, null, null, -1e308, null]' % DEMO, "repetition_penalty"),
    ('["hi", null, "%s", "main", null, null, null, null, 1e12]' % DEMO, "max_new_tokens"),
    ('["hi", null, "%s", "main", null, null, null, null, "lots"]' % DEMO, "max_new_tokens"),
    ('["hi", null, "%s", "main", "hot", null, null, null, null]' % DEMO, "temperature"),
    ('[null, null, "%s", "main", null, null, null, null, null]' % DEMO, "message must be text"),
    ('[{"a": 1}, null, "%s", "main", null, null, null, null, null]' % DEMO, "message must be text"),
    ('["%s", null, "%s", "main", null, null, null, null, null]' % ("x" * 20001, DEMO), "20,000"),
    ('["hi", "history", "%s", "main", null, null, null, null, null]' % DEMO, "history must be a list"),
    ('["hi", null, "../../etc/passwd", "main", null, null, null, null, null]', "Unknown model"),
    ('["hi", null, "EleutherAI/gpt-j-6b", "main", null, null, null, null, null]', "Unknown model"),
    ('["hi", null, "pythia-160m", "refs/pr/1", null, null, null, null, null]', "not a Pythia checkpoint"),
    ('["hi", null, "%s", "refs/pr/1", null, null, null, null, null]' % DEMO, "not a checkpoint of " + DEMO),
    ('["", null, "%s", "main", null, null, null, null, null]' % DEMO, "Type a message first"),
    ('["hi", null, "pythia-70m", "step7", null, null, null, null, null]', "not a Pythia checkpoint"),
]


RAW_CHAT_IDS = ["temperature-NaN", "temperature-Infinity", "top_k-negative", "top_k-fraction", "top_p-zero",
                "repetition_penalty-huge-negative", "max_new_tokens-1e12", "max_new_tokens-text", "temperature-text",
                "message-null", "message-object", "message-20001-chars", "history-text", "model-path-traversal",
                "model-not-pythia", "revision-pr-ref-of-hub-model", "revision-pr-ref-of-demo", "message-empty",
                "revision-step7"]


@pytest.mark.parametrize("payload,expected", RAW_CHAT, ids=RAW_CHAT_IDS)
def test_raw_http_payloads_get_readable_errors_and_never_reach_ct2(live, payload, expected):
    url, engine = live
    before = decoded(engine)
    message = raw_call(url, "chat", payload)
    assert message["msg"] == "process_completed" and message["success"] is False, message
    error = json.dumps(message["output"])
    assert expected in error
    for leak in ("Traceback", "/work/", "site-packages", "File \\\""):
        assert leak not in error
    assert decoded(engine) == before  # CT2 was never called


def test_raw_http_valid_payload_works(live):
    url, _ = live
    message = raw_call(url, "complete", '["Once upon a time", "%s", "main", null, 1, null, null, 5, null]' % DEMO)
    assert message["success"] is True


@pytest.mark.parametrize("path", ["/etc/passwd", "app.py", "model_utils/ui.py", "../../../../etc/passwd"])
def test_files_outside_the_app_are_refused(live, path):
    url, _ = live
    import app

    target = path if not path.endswith(".py") else str(__import__("pathlib").Path(app.__file__).parent / path)
    for route in (f"/gradio_api/file={target}", f"/file={target}"):
        response = httpx.get(url + route, timeout=10)
        assert response.status_code in (403, 404), (route, response.status_code)
        assert "root:" not in response.text and "import gradio" not in response.text


def test_model_cache_and_metadata_address_are_refused(live):
    url, engine = live
    with engine.open(DEMO) as model:
        model_bin = model.path / "model.bin"
    for route in (f"/gradio_api/file={model_bin}", "/gradio_api/file=http://169.254.169.254/latest/meta-data/",
                  "/gradio_api/proxy=http://169.254.169.254/latest/meta-data/"):
        response = httpx.get(url + route, timeout=10)
        assert 400 <= response.status_code < 500, route  # refused, whatever the reason given
        assert b"ami-id" not in response.content and len(response.content) < 10_000


def test_monitoring_and_rest_shortcut_are_off(live):
    url, _ = live
    assert httpx.get(f"{url}/monitoring", timeout=10).status_code in (403, 404)  # enable_monitoring=False
    # queue(api_open=False): the REST shortcut that would skip the queue (and its limits) is closed
    for route in ("/gradio_api/run/complete", "/gradio_api/api/complete"):
        r = httpx.post(url + route, json={"data": ["hi", DEMO, "main", None, None, None, None, 5]}, timeout=10)
        assert 400 <= r.status_code < 500, (route, r.status_code)


def test_a_disconnecting_client_stops_decoding(live):
    url, engine = live
    with engine.open(SLOW):
        pass
    client = Client(url, verbose=False)
    job = client.submit(prompt="Tell me a long story", model=SLOW, max_new_tokens=1024, top_k=0, top_p=1.0,
                        temperature=1.0, api_name="/complete")
    wait_until(lambda: job.outputs(), "the reply should have started")
    job.cancel()
    client.close() if hasattr(client, "close") else None
    with engine.open(SLOW) as model:
        generator = model.generator
    deadline = time.monotonic() + 30  # poll with a deadline: CT2 ends the batch once its row stopped
    while generator.num_active_batches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert generator.num_active_batches == 0, "decoding went on after the client left"
    assert decoded(engine, SLOW) < 1024
    # the slot is free: the next request is served (pytest-timeout bounds the wait)
    assert Client(url, verbose=False).predict(prompt="next", model=SLOW, max_new_tokens=5, api_name="/complete")


def test_overload_turns_away_exactly_the_surplus(tmp_path, slow_checkpoint, fresh_hub, monkeypatch):
    """L running + Q waiting: of L+Q+5 users, exactly 5 are told the server is busy, at once.

    The running visitor's model download is held by the (fake) Hub until the test lets it go, and each
    arrival waits for what the server says about it (running, queued, refused): no timing involved."""
    from huggingface_hub import constants

    state = fresh_hub.state
    state.stall_after = {"model.safetensors": 4096}  # the Hub goes silent mid-file until released
    state.release.clear()
    # huggingface_hub gives up on a silent download after this (10 s by default): not while the test holds it
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 300)
    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(tmp_path), device="cpu",
                        max_batch_size=1, workers=1, max_queue=2)
    try:
        with running_app(settings) as (url, _):
            clients = [Client(url, verbose=False) for _ in range(8)]  # kept: a client that goes leaves the queue
            running = clients[0].submit(prompt="user 0", model="pythia-160m", revision="step3000", max_new_tokens=5,
                                        api_name="/complete")
            wait_until(lambda: any(r.startswith("GET") and r.endswith("model.safetensors") for r in state.requests),
                       "the first visitor's download never started")
            waiting = []
            for i in (1, 2):
                waiting.append(clients[i].submit(prompt=f"user {i}", max_new_tokens=5, top_k=1, api_name="/complete"))
                wait_until(lambda: waiting[-1].status().code.name == "IN_QUEUE", f"user {i} never queued")
            busy = []
            for i in range(3, 8):
                job = clients[i].submit(prompt=f"user {i}", max_new_tokens=5, top_k=1, api_name="/complete")
                with pytest.raises(Exception) as refused:
                    job.result(timeout=60)
                busy.append(str(refused.value))
            assert not running.done(), "every surplus visitor was answered while the first one was served"
            assert all("try again" in msg.lower() for msg in busy), busy
            state.release.set()  # the download resumes; then the queued visitors are served
            assert running.result(timeout=120)
            assert all(job.result(timeout=120) for job in waiting)
    finally:
        state.release.set()
        state.stall_after.clear()


def test_uploads_are_capped(live):
    url, _ = live
    small = httpx.post(f"{url}/gradio_api/upload", files={"files": ("small.txt", b"hello")}, timeout=30)
    assert small.status_code == 200  # the route works, so the refusal below is the size cap
    big = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.bin", b"0" * (2 * 2**20))}, timeout=30)
    assert big.status_code == 413


def test_a_request_cancelled_while_queued_never_starts(model_cache, slow_checkpoint):
    from live_app import running_app as run_app

    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(model_cache), device="cpu",
                        max_batch_size=1, workers=1)
    with run_app(settings) as (url, engine):
        Client(url, verbose=False).predict(prompt="warm up", max_new_tokens=2, api_name="/complete")
        with engine.open(SLOW) as model:
            scheduler = model.scheduler
        batches_before = scheduler.stats.batches
        busy = Client(url, verbose=False).submit(prompt="long", max_new_tokens=300, api_name="/complete")
        wait_until(lambda: busy.outputs(), "the first reply never started")
        queued = Client(url, verbose=False).submit(prompt="never", max_new_tokens=300, api_name="/complete")
        wait_until(lambda: queued.status().code.name == "IN_QUEUE", "the second request never queued")
        queued.cancel()
        busy.result(timeout=60)
        # the queue is first in, first out: a third request runs only after the cancelled one would have
        Client(url, verbose=False).predict(prompt="after", max_new_tokens=3, api_name="/complete")
        assert scheduler.stats.batches == batches_before + 2, "the cancelled request must not run"
