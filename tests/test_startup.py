"""What app.py decides before it listens: whether the port is free (a quick restart is no obstacle), and
which model the page opens on when the usual default is neither on disk nor fetchable. In-process and
loopback only; the subprocess tests (test_app_process.py) run the same as `python app.py`."""

import errno
import socket

import pytest

import app
from model_utils.core.catalog import Catalog
from model_utils.engine.remote import RemoteSpec
from model_utils.settings import Settings
from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore

from hub_server import BlackHole


def time_wait_port() -> int:
    """A port nothing listens on, where the last run's connection waits in TIME_WAIT (its server hung up
    first, as a server that stops does)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server's side closes first: that end is the one left in TIME_WAIT
    assert client.recv(1) == b""
    client.close()
    server.close()
    return port


def test_a_port_left_in_time_wait_by_the_last_run_is_free():
    port = time_wait_port()
    with socket.socket() as plain, pytest.raises(OSError) as info:
        plain.bind(("127.0.0.1", port))  # the check this replaced: refused for about a minute
    assert info.value.errno == errno.EADDRINUSE, "the port really has a connection in TIME_WAIT"
    assert app.listen_problem("127.0.0.1", port) is None


def test_a_port_someone_listens_on_is_in_use():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert app.listen_problem("127.0.0.1", port) == (
            f"port {port} is in use; pass --port with a free one (or set PYTHIA_PORT).")


def test_an_address_this_machine_does_not_have_is_not_called_a_busy_port():
    problem = app.listen_problem("192.0.2.1", 7860)  # TEST-NET-1: never a local address
    assert problem.startswith("cannot listen on 192.0.2.1:7860") and "in use" not in problem


@pytest.fixture
def catalog():
    catalog = Catalog()
    catalog.add(demo_model())
    return catalog


@pytest.fixture
def black_hole(monkeypatch):
    from huggingface_hub import constants

    from model_utils.store.hub import bound_requests

    server = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    bound_requests(0.5)
    yield server
    bound_requests()
    server.close()


def test_a_default_model_neither_on_disk_nor_reachable_gives_way_to_the_demo(fresh_hub, black_hole, catalog,
                                                                             tmp_path, caplog):
    default, notice = app.choose_default_model(Settings(), catalog, ModelStore(tmp_path / "store"))
    assert default == DEMO_MODEL
    assert "The demo model is selected" in notice and "pythia-160m" in notice and "cannot be reached" in notice
    assert "--" not in notice and "`" not in notice and "python" not in notice, "visitors pass no flags"
    assert "can be used now: **demo-pythia-kjv**." in notice  # what is on this server, not "any model"
    assert "Any model" not in notice
    told = " ".join(r.getMessage() for r in caplog.records if r.name == "app")
    assert "demo-pythia-kjv instead of pythia-160m" in told and "--default-model" in told, "the operator is told"
    assert black_hole.accepted == 1, "one question, bounded by --hub-timeout"


def test_a_default_model_on_disk_is_served_without_asking_the_hub(fresh_hub, catalog, tmp_path, monkeypatch):
    from huggingface_hub import constants

    store = ModelStore(tmp_path / "store")
    store.ensure(catalog.get("pythia-160m"), "main")  # the pre-converted repo, while the Hub works
    hole = BlackHole()
    monkeypatch.setattr(constants, "ENDPOINT", hole.url)
    try:
        assert app.choose_default_model(Settings(), catalog, store) == ("pythia-160m", None)
    finally:
        hole.close()
    assert hole.accepted == 0


def test_a_default_model_the_hub_has_is_kept(fresh_hub, catalog, tmp_path):
    assert app.choose_default_model(Settings(), catalog, ModelStore(tmp_path / "store")) == ("pythia-160m", None)
    assert fresh_hub.state.requests == ["GET /api/models/michaelfeil/ct2fast-pythia-160m/revision/main"]


@pytest.mark.parametrize("settings", [Settings(demo=True), Settings(remote_model=(
    RemoteSpec("pythia-160m", "main", "http://gpu-host:8000/v1"),))])
def test_the_demo_or_a_remote_default_asks_the_hub_nothing(settings, black_hole, catalog, tmp_path):
    default, notice = app.choose_default_model(settings, catalog, ModelStore(tmp_path / "store"))
    assert notice is None and default == (DEMO_MODEL if settings.demo else "pythia-160m")
    assert black_hole.accepted == 0


@pytest.mark.slow  # builds the whole page (seconds)
def test_the_disk_budget_reaches_the_store(tmp_path):
    engine = app.build(Settings(demo=True, cache_dir=str(tmp_path), device="cpu", disk_budget=1.5)).engine
    try:
        assert engine.local.store.disk_budget_bytes == int(1.5 * 2**30)
        assert DEMO_MODEL in engine.local.catalog.names()
    finally:
        engine.close()


def test_the_page_keeps_the_sessions_of_its_last_visitors_only(tmp_path, monkeypatch):
    """Each page load or API client is a Gradio session holding its own copy of the page's configuration: the
    oldest go once SESSIONS_KEPT are held (Gradio's default, 10,000, is ~3 GB for this page), the latest stay.
    (A bound of 5 here: each session takes ~20 ms to make.)"""
    from model_utils.ui import blocks

    assert blocks.SESSIONS_KEPT * 0.3 <= 512, "the sessions' memory (MiB) stays well within a free Space's"
    monkeypatch.setattr(blocks, "SESSIONS_KEPT", 5)
    demo = app.build(Settings(demo=True, cache_dir=str(tmp_path), device="cpu")).demo
    sessions = demo.state_holder  # the mounted page's: where Gradio's routes look sessions up
    for visitor in range(8):
        sessions[f"visitor-{visitor}"]
    assert len(sessions.session_data) == 5
    assert "visitor-2" not in sessions and "visitor-3" in sessions and "visitor-7" in sessions


def test_an_idle_page_does_not_poll_its_queue_every_millisecond(tmp_path):
    """Gradio's queue looks for work every ``sleep_when_free`` seconds while it has none (a millisecond by default
    on Linux: ~7% of a core with nobody here); the page sets QUEUE_POLL_S, and Gradio's loop still reads it."""
    import inspect

    from gradio.queueing import Queue

    from model_utils.ui.blocks import QUEUE_POLL_S

    demo = app.build(Settings(demo=True, cache_dir=str(tmp_path), device="cpu")).demo
    assert demo._queue.sleep_when_free == QUEUE_POLL_S > 0.001
    assert "await asyncio.sleep(self.sleep_when_free)" in inspect.getsource(Queue.start_processing)


def test_the_servers_connections_send_each_response_at_once():
    """uvicorn serves on the socket app.listen() makes, through asyncio, which turns Nagle's algorithm off
    (TCP_NODELAY) on a connection only if the socket says it is TCP. With Nagle on, every response after the first
    on a kept-alive connection (a browser's, an API client's) and a streamed token waited ~40 ms for the client's
    delayed ACK."""
    import asyncio

    async def accepted_nodelay(sock: socket.socket) -> int:
        loop = asyncio.get_running_loop()
        connected: asyncio.Future = loop.create_future()

        class Accept(asyncio.Protocol):
            def connection_made(self, transport):
                connected.set_result(transport.get_extra_info("socket"))

        server = await loop.create_server(Accept, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            nodelay = (await asyncio.wait_for(connected, 10)).getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            return nodelay

    assert asyncio.run(accepted_nodelay(app.listen("127.0.0.1", 0))) != 0
