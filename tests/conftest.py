"""Shared fixtures: a tiny random-weight Pythia built from nothing, converted and loaded
through the same code the app uses. Nothing here reaches the network."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scheduler_log import queue_log  # noqa: F401 - a fixture for every test module

from model_utils.core.catalog import Catalog
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.loaded_model import load_ct2_model
from model_utils.store.converter import convert_checkpoint
from model_utils.store.disk import ModelStore
from model_utils.store.local_dirs import describe_local_dir
from model_utils.store.tiny_model import TinyShape, write_tiny_checkpoint

from hub_server import HubServer

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A random GPT-NeoX checkpoint (float32 safetensors + tokenizer) of Pythia's shape rules."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture(scope="session")
def tiny_ct2_dir(tiny_hf_dir, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to CT2 in float32 (exact reference comparisons)."""
    return convert_checkpoint(tiny_hf_dir, tmp_path_factory.mktemp("tiny-ct2") / "model", precision="float32")


@pytest.fixture(scope="session")
def cpu_device():
    return resolve_device("cpu", "float32", threads=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_ct2_dir, cpu_device):
    """The tiny model loaded in float32 on CPU; torn down explicitly at the end."""
    catalog = Catalog()
    info = catalog.add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia", random_weights=True))
    model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device)
    yield model
    model.close()
    gc.collect()


@pytest.fixture
def engine(tiny_hf_dir, tmp_path, cpu_device):
    """An Engine whose catalog also serves the tiny HF checkpoint (converted on first use)."""
    catalog = Catalog()
    catalog.add(describe_local_dir(tiny_hf_dir, name="tiny-pythia", random_weights=True))
    eng = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"),
                 memory_budget_bytes=4 * 2**30)
    yield eng
    eng.close()


SLOW = "slow-random-pythia"
DEMO = "demo-pythia-kjv"  # the name app.py --demo serves


@pytest.fixture(scope="session")
def float32_service(tmp_path_factory, tiny_hf_dir):
    """tests/float32_service.py's service: one for the session's in-process tests of the routes, the handlers and
    the batches (each model converted once)."""
    from float32_service import serving

    with serving(tiny_hf_dir, tmp_path_factory.mktemp("float32")) as service:
        yield service


@pytest.fixture(scope="session")
def routes_client(float32_service):
    """The OpenAI routes over ``float32_service``, in process (Starlette's test client: no socket)."""
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from model_utils.openai_api import add_openai_routes

    app = FastAPI()
    add_openai_routes(app, float32_service)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def slow_checkpoint(tmp_path_factory) -> Path:
    """A random HF checkpoint big enough (~90 tokens/s on a 2-vCPU x86 machine) that long replies last
    seconds: time to press Stop, disconnect, fill queues, and to watch a conversion's progress bar."""
    shape = TinyShape(num_layers=12, hidden_size=512, num_heads=8, seed=1)
    return write_tiny_checkpoint(tmp_path_factory.mktemp("slow") / SLOW, shape, dtype=np.float16)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One --cache-dir for the session's apps that do not watch a first download or conversion: each model
    is converted once per run, not once per app (the store's file locks make sharing it safe)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def demo_url(model_cache):
    """`python app.py --demo` (in-process, app.running), shared by the session's tests that read the page or
    call its APIs without changing what the server holds: one start instead of one per module or test."""
    from model_utils.settings import Settings

    from live_app import running_app

    with running_app(Settings(demo=True, cache_dir=str(model_cache), device="cpu")) as (url, _):
        yield url


@pytest.fixture(scope="session")
def demo_mcp_url(model_cache):
    """As ``demo_url``, with --mcp: Gradio's MCP server at /gradio_api/mcp/."""
    from model_utils.settings import Settings

    from live_app import running_app

    with running_app(Settings(demo=True, mcp=True, cache_dir=str(model_cache), device="cpu")) as (url, _):
        yield url


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


def pytest_configure(config):
    """Point huggingface_hub at a local fake Hub and a throw-away HF_HOME before it is imported."""
    # No rayon pool in the test process: subprocess tests fork it, and tokenizers warns after a fork.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    home = tempfile.mkdtemp(prefix="pythia-tests-hf-home-")
    os.environ["HF_HOME"] = home
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["PYTHIA_CACHE_DIR"] = os.path.join(home, "pythia-ct2")
    server = HubServer().start()
    os.environ["HF_ENDPOINT"] = server.url
    config._pythia_hub = server
    assert "huggingface_hub" not in sys.modules, "HF_ENDPOINT must be set before huggingface_hub is imported"
    from model_utils.store import hub

    hub.bound_requests()  # bounded Hub requests, as app.py sets them up


def pytest_ignore_collect(collection_path, config):
    """The ``alone`` part (tests/run.sh) imports only the test files that mark a test ``alone``: importing every file
    costs ~12 s, which the fast tier (``-m "not slow"``, where that part selects nothing) would pay for nothing."""
    if (os.environ.get("PYTHIA_TESTS_PART") == "alone" and collection_path.suffix == ".py"
            and collection_path.name.startswith("test_") and "mark.alone" not in collection_path.read_text()):
        return True
    return None


# The order in which the two workers take whole files (tests/run.sh turns off xdist's own reordering): first the file
# that mostly waits (test_hub_trouble.py: 28 s for 2 CPU s, huggingface_hub's own one-second resume waits and read
# timeouts), while the other worker's files keep both cores busy; at the end of a run it left a core idle for its
# 28 s. Then the longest first (JUnit seconds of `bash tests/run.sh --junitxml=...`, 2026-12-08), so that no long
# file starts last and runs alone at the end.
FILE_ORDER = ("test_hub_trouble.py",  # 28
              "test_bench_smoke.py",  # 273
              "test_load.py",  # 103
              "test_browser.py",  # 75
              "test_stop_and_undo_page.py",  # 72
              "test_app_process.py",  # 70
              "test_page_polish.py",  # 49
              "test_lm_eval.py",  # 44
              "test_page_words.py",  # 42
              "test_remote_engine.py",  # 40
              "test_crowd.py",  # 35
              "test_benchmarks_page.py",  # 34
              "test_task_index.py",  # 19
              "test_hardening.py",  # 16
              "test_app_api.py",  # 13
              "test_offline_page.py",  # 12
              "test_server_stop.py")  # 9


def pytest_collection_modifyitems(config, items):
    """Keep the tests of this run's part (``PYTHIA_TESTS_PART``, set by tests/run.sh: ``parallel`` leaves out the
    ``alone`` tests, ``alone`` keeps only them; unset keeps every test). An environment variable rather than a
    ``-m`` of run.sh's own, so that a ``-m`` given to run.sh (the fast tier's) still applies to both parts.

    Then build the vLLM test venv (tests/vllm_server.py) before the first test that needs it, outside every test's
    time limit: on a cold cache pip downloads vLLM and its torch for minutes, bounded by
    vllm_server.INSTALL_TIMEOUT_S."""
    items.sort(key=lambda item: FILE_ORDER.index(item.path.name) if item.path.name in FILE_ORDER
               else len(FILE_ORDER))
    part = os.environ.get("PYTHIA_TESTS_PART")
    if part in ("parallel", "alone"):
        keep, left_out = [], []
        for item in items:
            alone = item.get_closest_marker("alone") is not None
            (keep if alone == (part == "alone") else left_out).append(item)
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = keep
    if any(getattr(item.module, "NEEDS_VLLM", False) for item in items):
        from vllm_server import venv_python

        venv_python()


def pytest_unconfigure(config):
    server = getattr(config, "_pythia_hub", None)
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def hub(request, tmp_path_factory):
    """The fake Hub, serving tiny random Pythias under the real repo ids.

    * EleutherAI/pythia-160m: main and step3000 (safetensors, different weights), step1000 (.bin only)
    * EleutherAI/pythia-70m-deduped: main
    * michaelfeil/ct2fast-pythia-160m: main, already converted (float16), like the seed's repo
    """
    server = request.config._pythia_hub
    base = tmp_path_factory.mktemp("hub-repos")
    state = server.state
    for repo, revision, seed, fmt in [("EleutherAI/pythia-160m", "main", 10, "safetensors"),
                                      ("EleutherAI/pythia-160m", "step3000", 11, "safetensors"),
                                      ("EleutherAI/pythia-160m", "step1000", 12, "bin"),
                                      ("EleutherAI/pythia-70m-deduped", "main", 13, "safetensors")]:
        directory = write_tiny_checkpoint(base / f"{repo.replace('/', '--')}--{revision}",
                                          TinyShape(seed=seed), weights_format=fmt, dtype=np.float16)
        state.add_revision(repo, revision, directory)
    ct2 = convert_checkpoint(base / "EleutherAI--pythia-160m--main", base / "ct2fast", precision="float16")
    state.add_revision("michaelfeil/ct2fast-pythia-160m", "main", ct2)
    return server


@pytest.fixture
def fresh_hub(hub, tmp_path, monkeypatch):
    """The fake Hub with no faults, and an empty huggingface_hub cache for this test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    state = hub.state
    state.down, state.cut_after, state.cut_times, state.cut_by_reset, state.delay_s = False, {}, 0, False, 0.0
    state.requests.clear()
    yield hub
    state.down, state.cut_after, state.cut_times, state.cut_by_reset, state.delay_s = False, {}, 0, False, 0.0
    state.stall_after.clear()
    state.release.set()  # a download a test left stalled ends now, not after two minutes


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless (tests/chromium.py), shared by a module's tests."""
    from chromium import launched_chromium

    with launched_chromium() as launched:
        yield launched
