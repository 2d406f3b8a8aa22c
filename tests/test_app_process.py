"""`python app.py` as a user runs it: starts, serves, stops cleanly on SIGTERM."""

import pytest
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from gradio_client import Client

from live_app import free_port

pytestmark = pytest.mark.slow  # a live server, a browser or a subprocess

ROOT = Path(__file__).resolve().parent.parent


def test_demo_serves_and_stops_cleanly_on_sigterm(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "app.py", "--demo", "--port", str(port), "--cache-dir", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise AssertionError("the app did not start")
        text = Client(url, verbose=False).predict(prompt="Hello", max_new_tokens=8, api_name="/complete")
        assert isinstance(text, str)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        assert code == 0, proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_unknown_default_model_is_a_clear_startup_error(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "--default-model", "gpt2", "--cache-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "Unknown model 'gpt2'" in out.stderr and "Traceback" not in out.stderr
