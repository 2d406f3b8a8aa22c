"""A stopping server cancels what outlasts its grace period quietly: an operator who stops the app (Ctrl+C, or
a Space restarting its container) reads one "stopping" line, not a traceback per open connection. Measured
before the fix: 12 cancelled streams printed 90 KB of tracebacks, which also filled a pipe nobody read and hung
the process at exit. The same build(), listen() and server_for() as `python app.py`, in-process, so the test
can hold a reply mid-decoding (a test hook at its first step) while the server stops."""

from __future__ import annotations

import logging
import threading

import pytest
from gradio_client import Client
from test_queued_cancel_http import HANG, raw_post

from model_utils.settings import Settings

from conftest import SLOW
from ct2_hooks import hooked_steps, load_hookable_ct2_model

pytestmark = pytest.mark.slow  # a live server


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def openai_request(stream: bool):
    def send(url: str):
        sock = raw_post(url, "/v1/completions", {"prompt": "Once upon a time", "max_tokens": 200, "stream": stream})
        return sock.close

    return send


def page_request(url: str):
    """What a browser tab or gradio_client holds: a queued job and the session's event stream, which waits up to
    10 s for its next message, so a stopping server has to cancel it."""
    Client(url, verbose=False).submit(prompt="Once upon a time", max_new_tokens=200, api_name="/complete")
    return lambda: None  # the job ends with the server: its client is told the server stopped


@pytest.mark.parametrize("send", [openai_request(True), openai_request(False), page_request],
                         ids=["OpenAI streamed", "OpenAI whole answer", "the page's event stream"])
def test_a_reply_cut_off_by_a_stopping_server_prints_no_traceback(slow_checkpoint, model_cache, send):
    import app

    settings = Settings(model_dir=str(slow_checkpoint), cache_dir=str(model_cache), device="cpu", max_batch_size=1,
                        workers=1, max_batches=1)
    built = app.build(settings, loader=load_hookable_ct2_model)
    sock = app.listen("127.0.0.1", 0)
    server = app.server_for(built)  # uvicorn configures its loggers here: listen to them after
    seen = Records()
    for name in ("uvicorn.error", "uvicorn", "app"):
        logging.getLogger(name).addHandler(seen)
    app_level = app.log.level
    app.log.setLevel(logging.INFO)  # as `python app.py` sets it
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    gate, decoding = threading.Event(), threading.Event()

    def hold(step, prompt):  # the reply is still decoding when the grace period ends
        decoding.set()
        gate.wait(HANG)

    try:
        thread.start()
        with built.engine.open(SLOW) as model:
            pass
        with hooked_steps(model, hold):
            close = send(f"http://127.0.0.1:{sock.getsockname()[1]}")
            assert decoding.wait(HANG), "the reply never started"
            server.should_exit = True
            thread.join(HANG)
            assert not thread.is_alive(), "the server did not stop"
            gate.set()
        close()
    finally:
        gate.set()
        for name in ("uvicorn.error", "uvicorn", "app"):
            logging.getLogger(name).removeHandler(seen)
        app.log.setLevel(app_level)
        server.should_exit = True
        thread.join(HANG)
        sock.close()
        built.engine.close()
    said = [record.getMessage() for record in seen.records]
    assert any("stopping: open connections get" in line for line in said), said
    loud = [r for r in seen.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [(r.levelname, r.getMessage()) for r in loud]
