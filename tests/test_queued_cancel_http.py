"""An API client that leaves while its request waits for a decoding lane frees it at once, over raw HTTP
against the live app: the request leaves the queue and its threads end while the reply ahead of it still holds
the lane (held at its first step by a test hook). One lane, no extra batches, so a second request waits."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from gradio_client import Client
from scheduler_log import waiting

from model_utils.settings import Settings

from conftest import SLOW
from ct2_hooks import Hold, hooked_steps, load_hookable_ct2_model
from live_app import running_app

pytestmark = pytest.mark.slow  # a live server

HANG = 60  # seconds a step may take on a loaded 2-core machine before the test counts it as stuck


def wait_until(condition, message: str) -> None:
    """Poll a condition the server brings about, with a deadline."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True], ids=["whole answer", "streamed"])
def test_an_openai_client_leaving_while_queued_frees_its_request_at_once(slow_checkpoint, model_cache, stream,
                                                                          queue_log):
    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(model_cache), device="cpu", max_batch_size=1,
                        workers=1, max_batches=1)
    with running_app(settings, loader=load_hookable_ct2_model) as (url, engine):
        Client(url, verbose=False).predict(prompt="warm up", max_new_tokens=2, api_name="/complete")
        with engine.open(SLOW) as model:
            scheduler = model.scheduler
        hold = Hold(HANG)  # the reply ahead holds the lane until the test lets it go
        with hooked_steps(model, hold):
            ahead = Client(url, verbose=False).submit(prompt="Once upon a time", max_new_tokens=64,
                                                      api_name="/complete")
            assert hold.decoding(), "the reply ahead never started"
            rows_before = scheduler.stats.rows
            leaving = raw_post(url, "/v1/completions", {"prompt": "Hello there", "max_tokens": 200, "stream": stream})
            wait_until(lambda: waiting(queue_log) == 1, "the API request never queued for the lane")
            leaving.close()  # the client goes away: its connection closes
            # while the reply ahead still holds the lane
            wait_until(lambda: waiting(queue_log) == 0, "the request stayed queued after its client left")
            wait_until(lambda: not [t for t in threading.enumerate()
                                    if t.name.startswith(("choice-", "openai-request"))],
                       "the request's threads waited for the reply ahead")
            assert not ahead.done()
            hold.release()
        ahead.result(timeout=HANG)
        assert scheduler.stats.rows == rows_before, "the abandoned request never started"


def raw_post(url: str, path: str, body: dict) -> socket.socket:
    """Send a JSON POST on a socket of its own and leave it open, unread: the caller closes it to leave."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    sock = socket.create_connection((host, int(port)), timeout=HANG)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
    return sock
