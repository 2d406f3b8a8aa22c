"""The model store against a local fake Hub, through the real huggingface_hub client."""

import logging
import socket

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ModelUnavailable
from model_utils.core.sampling import SamplingParams
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.generation import generate
from model_utils.store.disk import COMPLETE_MARKER, ModelStore

from concurrency import run_concurrently

GREEDY = SamplingParams(greedy=True, max_new_tokens=20, repetition_penalty=1.0)


@pytest.fixture
def store(tmp_path):
    return ModelStore(tmp_path / "store")


def conversions(caplog) -> int:
    """How many conversions the store ran, as the operator reads them in the log."""
    return sum(r.name == "model_utils.store" and r.getMessage().startswith("converted ") for r in caplog.records)


def make_engine(store):
    return Engine(resolve_device("cpu", "int8", threads=1), catalog=Catalog(), store=store,
                  memory_budget_bytes=8 * 2**30)


def test_clean_cache_serves_three_kinds_of_request(fresh_hub, store, caplog):
    """pythia-160m@step3000 (converted), pythia-70m-deduped@main (converted), and the
    seed's pre-converted pythia-160m (downloaded as is)."""
    caplog.set_level(logging.INFO, logger="model_utils")
    engine = make_engine(store)
    try:
        texts = {}
        for name, revision in [("pythia-160m", "step3000"), ("pythia-70m-deduped", "main"), ("pythia-160m", "main")]:
            stages = []
            with engine.open(name, revision, progress=stages.append) as model:
                texts[(name, revision)] = generate(model, "Hello", GREEDY).text
            assert {"downloading", "loading"} <= {s.stage for s in stages}
            if revision == "step3000" or name == "pythia-70m-deduped":
                assert "converting" in {s.stage for s in stages}
        assert conversions(caplog) == 2
        requested = " ".join(fresh_hub.state.requests)
        assert "/EleutherAI/pythia-160m/resolve/" in requested
        assert "/michaelfeil/ct2fast-pythia-160m/resolve/" in requested
        # the pre-converted repo was not converted again
        assert len(store.list()) == 2
    finally:
        engine.close()


def test_download_progress_reports_bytes(fresh_hub, store):
    from model_utils.core.catalog import Catalog

    stages = []
    store.ensure(Catalog().get("pythia-160m"), "step3000", stages.append)
    downloads = [s for s in stages if s.stage == "downloading" and s.total]
    assert downloads and downloads[-1].fraction == 1.0
    converting = [s for s in stages if s.stage == "converting"]
    assert converting[-1].done == converting[-1].total


def test_cache_hit_with_server_down(fresh_hub, store):
    model = Catalog().get("pythia-160m")
    first = store.ensure(model, "step3000")
    seed = store.ensure(model, "main")  # pre-converted repo
    fresh_hub.state.down = True
    fresh_hub.state.requests.clear()
    assert store.ensure(model, "step3000") == first
    assert store.ensure(model, "main") == seed
    assert fresh_hub.state.requests == []  # no network at all on a cache hit


def test_revisions_are_kept_apart(fresh_hub, store):
    engine = make_engine(store)
    try:
        with engine.open("pythia-160m", "step3000") as a:
            text_a, path_a = generate(a, "Hello", GREEDY).text, a.path
        with engine.open("pythia-160m", "step1000") as b:  # .bin-only branch
            text_b, path_b = generate(b, "Hello", GREEDY).text, b.path
        assert path_a != path_b
        assert "step3000" in path_a.name and "step1000" in path_b.name
        assert text_a != text_b  # different weights, different greedy continuations
    finally:
        engine.close()


def test_download_cut_off_then_clean_retry(fresh_hub, store):
    model = Catalog().get("pythia-160m")
    fresh_hub.state.cut_after = {"model.safetensors": 1000}
    fresh_hub.state.cut_times = 100  # every attempt in this call is cut
    fresh_hub.state.cut_by_reset = True  # reset, not closed: given up at once, not resumed five times a second apart
    with pytest.raises(ModelUnavailable) as info:
        store.ensure(model, "step3000")
    assert "Traceback" not in str(info.value)
    assert store.list() == []
    assert not list((store.root / "models").glob("*step3000*"))
    fresh_hub.state.cut_times = 0
    path = store.ensure(model, "step3000")
    assert (path / COMPLETE_MARKER).is_file()


def test_partial_cache_entry_is_ignored_and_rebuilt(fresh_hub, store):
    model = Catalog().get("pythia-160m")
    key = store.key(model, "step3000")
    final = store.root / "models" / key
    final.mkdir(parents=True)
    (final / "model.bin").write_bytes(b"half a model")  # a crash left this, without the marker
    leftover = store.root / "models" / f".tmp-{key}-crashed"
    leftover.mkdir()
    assert store.cached_path(model, "step3000") is None
    path = store.ensure(model, "step3000")
    assert path == final and (final / COMPLETE_MARKER).is_file()
    assert (final / "model.bin").stat().st_size > 1000


def test_concurrent_first_requests_convert_once(fresh_hub, store, caplog):
    caplog.set_level(logging.INFO, logger="model_utils")
    model = Catalog().get("pythia-70m-deduped")
    results = run_concurrently(lambda _: store.ensure(model, "main"), range(4))  # fails on any error
    assert len(set(results)) == 1
    assert conversions(caplog) == 1


def test_unknown_revision_on_hub_is_a_clear_error(fresh_hub, store):
    with pytest.raises(ModelUnavailable, match="no checkpoint step2000"):
        store.ensure(Catalog().get("pythia-160m"), "step2000")


def test_hub_unreachable_is_a_clear_error(fresh_hub, store, monkeypatch):
    from huggingface_hub import constants

    closed = socket.socket()  # a port the OS gave this test, bound and never listened on: connections are refused
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    with pytest.raises(ModelUnavailable) as info:
        store.ensure(Catalog().get("pythia-70m-deduped"), "main")
    assert "Traceback" not in str(info.value)


def test_list_remove_and_disk_budget(fresh_hub, tmp_path):
    store = ModelStore(tmp_path / "budget-store")
    catalog = Catalog()
    a = store.ensure(catalog.get("pythia-160m"), "step3000")
    size = store.list()[0].size_bytes
    store.disk_budget_bytes = int(size * 1.5)  # room for one model only
    store.ensure(catalog.get("pythia-70m-deduped"), "main")
    keys = [e.key for e in store.list()]
    assert len(keys) == 1 and "70m-deduped" in keys[0]
    assert not a.exists()
    assert store.remove(keys[0]) and store.list() == []
