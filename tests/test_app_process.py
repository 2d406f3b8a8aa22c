"""`python app.py` as a user runs it: starts, serves, stops cleanly on SIGTERM; start-up errors are
one readable line."""

import socket
import subprocess
import sys

import pytest
from gradio_client import Client

from app_process import ROOT, AppProcess

pytestmark = pytest.mark.slow  # a subprocess


def test_demo_serves_and_stops_cleanly_on_sigterm(tmp_path):
    app = AppProcess("--demo", "--cache-dir", str(tmp_path))
    try:
        text = Client(app.url, verbose=False).predict(prompt="Hello", max_new_tokens=8, api_name="/complete")
        assert isinstance(text, str)
        assert app.terminate() == 0, app.proc.stdout.read()
    finally:
        app.kill()


def run_app(*flags, cwd=ROOT):
    return subprocess.run([sys.executable, "app.py", *flags], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_unknown_default_model_is_a_clear_startup_error(tmp_path):
    out = run_app("--default-model", "gpt2", "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert "Unknown model 'gpt2'" in out.stderr and "Traceback" not in out.stderr


def test_a_busy_port_says_which_flag_to_pass(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = run_app("--demo", "--port", str(port), "--cache-dir", str(tmp_path))
    assert out.returncode == 2
    assert f"port {port} is in use; pass --port" in out.stderr and "Traceback" not in out.stderr
