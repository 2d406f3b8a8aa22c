"""When the Hub is slow, unreachable or down: a readable message in bounded time on every path (the
pre-converted repo, checkpoint branches, the remote engine's tokenizer, the start-up question), at once
while it is known to be down, downloads that resume, models on disk that keep working, and a line in
the server's log for every failure. Loopback only: the real huggingface_hub client against a black hole
(accepts, never answers), a fake Hub that goes silent midway through an answer, or one that says 404."""

import functools
import logging
import threading

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import ModelUnavailable
from model_utils.core.sampling import SamplingParams
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.generation import generate
from model_utils.store.disk import ModelStore
from model_utils.store.hub import Hub, bound_requests

from hub_server import BlackHole

TIMEOUT_S = 0.5  # --hub-timeout in these tests
UNREACHABLE = "cannot be reached"
CATALOG = Catalog()

# Every way the app asks the Hub for something; each gets one model that is not on disk.
PATHS = {
    "pre-converted repo": lambda store: store.ensure(CATALOG.get("pythia-160m"), "main"),
    "checkpoint branch": lambda store: store.ensure(CATALOG.get("pythia-160m"), "step3000"),
    "remote engine's tokenizer": lambda store: store.hub.tokenizer_file(CATALOG.get("pythia-70m-deduped"), "main"),
    "start-up question": lambda store: store.hub.probe(CATALOG.get("pythia-160m")),
}


@pytest.fixture
def short_timeouts():
    bound_requests(TIMEOUT_S)
    yield
    bound_requests()  # as conftest set it up


@pytest.fixture
def black_hole(monkeypatch):
    from huggingface_hub import constants

    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    yield server
    server.close()


@pytest.fixture
def stalls(fresh_hub):
    """Set ``fresh_hub.state.stall_every``; every stalled answer is released (its connection closed) at the end."""
    state = fresh_hub.state
    state.release.clear()
    yield state.stall_every
    state.stall_every.clear()
    state.release.set()


def store_log(caplog):
    return [r for r in caplog.records if r.name == "model_utils.store" and r.levelno >= logging.WARNING]


@pytest.mark.timeout(30)  # the bound: without a cap on every request, the black hole holds these for good
@pytest.mark.parametrize("path", PATHS)
def test_a_hub_that_never_answers_gets_a_readable_message_on_every_path(path, fresh_hub, short_timeouts,
                                                                         black_hole, tmp_path, caplog):
    with pytest.raises(ModelUnavailable, match=UNREACHABLE) as info:
        PATHS[path](ModelStore(tmp_path / "store"))
    assert black_hole.accepted >= 1
    assert "--" not in str(info.value) and "`" not in str(info.value), "visitors are never told about flags"
    assert any(UNREACHABLE in r.getMessage() for r in store_log(caplog)), "the operator reads it in the log"


@pytest.mark.timeout(30)  # the bound: the revision's answer comes without a timeout of huggingface_hub's own
@pytest.mark.parametrize("path", PATHS)
def test_a_hub_that_goes_silent_midway_through_the_revision_info_is_given_up(path, fresh_hub, short_timeouts,
                                                                              stalls, tmp_path):
    stalls["revision"] = 20
    with pytest.raises(ModelUnavailable, match=UNREACHABLE):
        PATHS[path](ModelStore(tmp_path / "store"))


@pytest.fixture
def short_backoff(monkeypatch):
    """huggingface_hub's own retries of a listing (``http_backoff``: 5 retries, waits of 1, 2, 4, 8, 8 s), with its
    waits cut to 0.1 s through that function's own arguments: the same tries, 23 s less of waiting."""
    from huggingface_hub.utils import _pagination

    monkeypatch.setattr(_pagination, "http_backoff",
                        functools.partial(_pagination.http_backoff, base_wait_time=0.1, max_wait_time=0.1))


@pytest.mark.slow  # six tries of 0.5 s each
@pytest.mark.timeout(30)  # the bound: without a cap the first try waits for ever
def test_a_hub_that_goes_silent_midway_through_the_file_list_is_given_up(fresh_hub, short_timeouts, short_backoff,
                                                                          stalls, tmp_path):
    stalls["tree"] = 20
    with pytest.raises(ModelUnavailable, match=UNREACHABLE):
        PATHS["pre-converted repo"](ModelStore(tmp_path / "store"))
    assert sum("/tree/" in r for r in fresh_hub.state.requests) == 6, "one try and huggingface_hub's 5 retries"


@pytest.mark.slow  # huggingface_hub resumes a silent download 5 times, a second apart
@pytest.mark.timeout(40)  # the bound: 6 tries of 0.5 s and 5 s of waiting (huggingface_hub's own 10 s: 65 s)
@pytest.mark.parametrize("path, weights", [("pre-converted repo", "model.bin"),
                                           ("checkpoint branch", "model.safetensors")])
def test_a_download_that_goes_silent_every_time_is_given_up(path, weights, fresh_hub, short_timeouts, stalls,
                                                            tmp_path):
    stalls[weights] = 100
    store = ModelStore(tmp_path / "store")
    with pytest.raises(ModelUnavailable, match=UNREACHABLE):
        PATHS[path](store)
    assert store.list() == []


@pytest.mark.timeout(60)
def test_a_hub_that_never_answers_is_reported_then_skipped(fresh_hub, short_timeouts, tmp_path, monkeypatch):
    from huggingface_hub import constants

    store = ModelStore(tmp_path / "store", hub=Hub(retry_after_s=30.0))
    catalog = Catalog()
    on_disk = store.ensure(catalog.get("pythia-160m"), "step3000")  # downloaded while the Hub worked
    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    try:
        with pytest.raises(ModelUnavailable, match=UNREACHABLE):
            store.ensure(catalog.get("pythia-70m-deduped"), "main")
        assert server.accepted >= 1
        tried = server.accepted
        with pytest.raises(ModelUnavailable, match="try again in"):
            store.ensure(catalog.get("pythia-160m"), "step1000")
        assert server.accepted == tried, "while the Hub is known down, nobody waits for it again"
        assert store.ensure(catalog.get("pythia-160m"), "step3000") == on_disk  # on disk: still served
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_visitors_of_a_model_on_disk_are_served_while_another_waits_for_a_silent_hub(fresh_hub, tmp_path,
                                                                                      monkeypatch):
    """The Hub is silent for as long as the test likes (a 30 s cap): a visitor of a model on disk is served
    meanwhile, the visitors of the missing model all get the message once the Hub gives up."""
    from huggingface_hub import constants

    engine = Engine(resolve_device("cpu", "int8", threads=1), catalog=Catalog(),
                    store=ModelStore(tmp_path / "store"), memory_budget_bytes=8 * 2**30)
    with engine.open("pythia-160m", "step3000"):
        pass  # on disk (and loaded) while the Hub worked
    hole = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", hole.url)
    bound_requests(30.0)
    errors = []

    def missing_model_visitor():
        try:
            with engine.open("pythia-70m-deduped", "main"):
                pass
        except ModelUnavailable as exc:
            errors.append(str(exc))

    waiting = [threading.Thread(target=missing_model_visitor) for _ in range(2)]
    try:
        for t in waiting:
            t.start()
        assert hole.connected.wait(20), "the first visitor asks the Hub"
        with engine.open("pythia-160m", "step3000") as model:  # served while the Hub stays silent
            assert generate(model, "Hello", SamplingParams(greedy=True, max_new_tokens=4)).num_tokens > 0
        assert all(t.is_alive() for t in waiting), "the missing model's visitors were still waiting meanwhile"
    finally:
        hole.close()  # the Hub hangs up: the waiting visitors get their answer now
        bound_requests()
        for t in waiting:
            t.join(20)
        engine.close()
    assert len(errors) == 2 and all("Models already on this server keep working" in e for e in errors)


@pytest.mark.parametrize("status, words", [(404, "was not found on the Hub"),
                                           (503, r"busy or having trouble \(it answered 503\)")])
def test_a_hub_that_answers_with_an_error_is_not_called_unreachable(status, words, fresh_hub, tmp_path, caplog):
    fresh_hub.state.answer_all = status
    store = ModelStore(tmp_path / "store")
    try:
        for path in ("pre-converted repo", "checkpoint branch", "start-up question"):
            with pytest.raises(ModelUnavailable, match=words) as info:
                PATHS[path](store)
            assert UNREACHABLE not in str(info.value)
        asked = len(fresh_hub.state.requests)
        with pytest.raises(ModelUnavailable, match=words):
            PATHS["pre-converted repo"](store)
        assert len(fresh_hub.state.requests) > asked, "an answering Hub is asked again (no 'try again in 30 s')"
    finally:
        fresh_hub.state.answer_all = None
    assert store_log(caplog), "every failed download leaves a line in the server's log"


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
