"""`python app.py` as a user runs it: starts, serves, stops cleanly on SIGTERM and starts again at once on
the same port; start-up errors are one readable line, a bad model before a busy port; offline, the main
command serves the demo model and says why; it sends nothing to the Hub it does not need."""

import os
import socket
import subprocess
import sys

import httpx
import pytest
from gradio_client import Client

from app_process import ROOT, AppProcess
from hub_server import BlackHole, HubServer

pytestmark = pytest.mark.slow  # a subprocess

DEMO = "demo-pythia-kjv"


def test_demo_serves_stops_cleanly_on_sigterm_and_a_quick_restart_on_the_same_port_starts(tmp_path):
    first = AppProcess("--demo", "--cache-dir", str(tmp_path))
    try:
        text = Client(first.url, verbose=False).predict(prompt="Hello", max_new_tokens=8, api_name="/complete")
        assert isinstance(text, str)
        with httpx.Client() as visitor:  # a keep-alive connection the stopping server hangs up on
            assert visitor.get(first.url).status_code == 200
            assert first.terminate() == 0, first.output()
    finally:
        first.kill()
    again = AppProcess("--demo", "--cache-dir", str(tmp_path), port=first.port)  # fails unless it starts
    again.kill()


def run_app(*flags, cwd=ROOT):
    return subprocess.run([sys.executable, "app.py", *flags], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_an_unknown_default_model_is_a_clear_startup_error_said_before_a_busy_port(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        out = run_app("--default-model", "gpt2", "--port", str(taken.getsockname()[1]), "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert "Unknown model 'gpt2'" in out.stderr and "Traceback" not in out.stderr
    assert "port" not in out.stderr, "the bad model is reported first"


def test_a_busy_port_says_which_flag_to_pass(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run_app("--demo", "--port", str(port), "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"port {port} is in use; pass --port" in out.stderr and "Traceback" not in out.stderr


def test_a_port_out_of_range_is_one_readable_error(tmp_path):
    out = run_app("--demo", "--port", "99999", "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert "'99999' is not a port number from 1 to 65535" in out.stderr and "Traceback" not in out.stderr


def offline_env(tmp_path, endpoint: str) -> dict:
    """A fresh machine's environment: nothing downloaded, the Hub at ``endpoint``, no opt-outs of telemetry."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_TELEMETRY", "GRADIO_ANALYTICS_ENABLED", "PYTHIA_CACHE_DIR")}
    return {**env, "HF_HOME": str(tmp_path / "hf-home"), "HF_ENDPOINT": endpoint}


def error_of(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


@pytest.mark.timeout(240)  # the bound: before, the first message waited for the silent Hub for good
def test_offline_the_main_command_serves_the_demo_model_and_says_why(tmp_path):
    hole = BlackHole()
    app = AppProcess("--hub-timeout", "2", env=offline_env(tmp_path, hole.url))
    try:
        client = Client(app.url, verbose=False)
        assert any(row["model"] == DEMO for row in client.predict(api_name="/models")), "always in the list"
        reply = client.predict(message="And God said", history=[], max_new_tokens=8, api_name="/chat")
        assert isinstance(reply, str), "the first message is answered, by the demo model"
        for message in (error_of(lambda: client.predict(prompt="Hi", model="pythia-70m", max_new_tokens=4,
                                                        api_name="/complete")),
                        str(client.predict(prompt="Hi", pairs=[["pythia-70m", "main"]], max_new_tokens=4,
                                           api_name="/compare")[0]["error"])):
            assert "Hugging Face Hub" in message and "be reached" in message
            assert "--" not in message and "`" not in message and "python" not in message, "no advice for operators"
        assert app.terminate() == 0
        terminal = app.output()
    finally:
        app.kill()
        hole.close()
    assert "Opening the page on the offline demo model demo-pythia-kjv instead of pythia-160m" in terminal
    assert "--default-model" in terminal, "the operator is told what to do"
    assert "Traceback" not in terminal


@pytest.mark.timeout(240)
def test_a_start_sends_the_hub_only_the_question_it_needs(tmp_path):
    """No launch telemetry: against a Hub without the default model (it answers 404), the only request
    the app makes is its question about that model; and a 404 is 'not found', not 'cannot be reached'."""
    hub = HubServer().start()
    app = AppProcess(env=offline_env(tmp_path, hub.url))
    try:
        client = Client(app.url, verbose=False)
        assert isinstance(client.predict(prompt="In the beginning", max_new_tokens=4, api_name="/complete"), str)
        assert app.terminate() == 0
        terminal = app.output()
    finally:
        app.kill()
        hub.stop()
    assert hub.state.requests == ["GET /api/models/michaelfeil/ct2fast-pythia-160m/revision/main"]
    assert "was not found on the Hub" in terminal and "cannot be reached" not in terminal
