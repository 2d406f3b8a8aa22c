"""When the Hub is slow, unreachable or down: a readable message in bounded time, at once while it
is known to be down, downloads that resume, and models on disk that keep working. Loopback only."""

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ModelUnavailable
from model_utils.store import hub
from model_utils.store.disk import ModelStore

from hub_server import BlackHole


@pytest.fixture
def short_timeouts():
    hub.configure(timeout_s=1.0, retry_after_s=30.0)
    yield
    hub.configure()


@pytest.fixture
def black_hole(monkeypatch):
    from huggingface_hub import constants

    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    yield server
    server.close()


@pytest.mark.timeout(60)  # the bound: without timeouts this hangs for minutes
def test_a_hub_that_never_answers_is_reported_then_skipped(fresh_hub, short_timeouts, tmp_path, monkeypatch):
    from huggingface_hub import constants

    store = ModelStore(tmp_path / "store")
    catalog = Catalog()
    on_disk = store.ensure(catalog.get("pythia-160m"), "step3000")  # downloaded while the Hub worked
    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    try:
        with pytest.raises(ModelUnavailable, match="cannot be reached"):
            store.ensure(catalog.get("pythia-70m-deduped"), "main")
        assert server.accepted >= 1
        tried = server.accepted
        with pytest.raises(ModelUnavailable, match="try again in"):
            store.ensure(catalog.get("pythia-160m"), "step1000")
        assert server.accepted == tried, "while the Hub is known down, nobody waits for it again"
        assert store.ensure(catalog.get("pythia-160m"), "step3000") == on_disk  # on disk: still served
    finally:
        server.close()


@pytest.mark.slow  # about 10 s of real timeouts and retries
@pytest.mark.timeout(60)  # the bound: without a read timeout a silent server holds the download for ever
def test_a_stalled_download_resumes_where_it_stopped(fresh_hub, short_timeouts, tmp_path):
    store = ModelStore(tmp_path / "store")
    fresh_hub.state.stall_after = {"model.safetensors": 4096}
    fresh_hub.state.release.clear()
    try:
        path = store.ensure(Catalog().get("pythia-70m-deduped"), "main")
    finally:
        fresh_hub.state.release.set()
    assert (path / "model.bin").is_file()
    ranges = [r for r in fresh_hub.state.requests if "model.safetensors" in r]
    assert len(ranges) >= 2, "the download went on from where it stalled, in a second request"
