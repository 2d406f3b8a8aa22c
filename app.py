"""Pythia × CTranslate2: a Gradio app serving every Pythia model fast on CPU or GPU.

Run ``python app.py --help`` for flags. This file only assembles and launches;
the logic lives in model_utils/.

One port serves everything (a Space exposes one): the page and its Gradio API (and MCP with --mcp) at "/",
and the OpenAI-compatible routes (/v1/..., /tokenize ...) beside them, all over one PythiaService.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

# No launch telemetry: Gradio reports each start (through huggingface_hub, to HF_ENDPOINT) and checks its
# version online, and huggingface_hub adds a request of its own to the first download. An app that must
# start offline makes no request it does not need. Set before Gradio or huggingface_hub is imported (both
# read these once); an operator who wants them sets the variables.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger("app")
OUR_LOGGERS = ("app", "model_utils")  # model_utils logs under one logger per layer: model_utils.store, ...


def configure_logging(level: str) -> None:
    """Our loggers at ``level`` (info: downloads, conversions, loads, evictions, Hub failures, busy refusals and
    failures with their tracebacks); other libraries' at WARNING, so a request never costs a log line."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level.upper())


@dataclass
class Built:
    """The assembled app: the engine (closed at shutdown), the Gradio page and the ASGI app serving both."""

    engine: Any
    demo: Any  # gradio.Blocks
    app: Any  # fastapi.FastAPI
    service: Any = None  # model_utils.service.PythiaService


def choose_default_model(settings, catalog, store) -> tuple[str, str | None]:
    """The model the page opens on, and, when it is the demo model only because the usual default cannot be
    had (neither on disk nor fetchable from the Hub), the notice that tells visitors why."""
    from model_utils.core.errors import ModelUnavailable
    from model_utils.store.demo_model import DEMO_MODEL
    from model_utils.store.local_dirs import describe_local_dir
    from model_utils.ui.wording import default_fallback_notice

    if settings.model_dir:
        return catalog.add(describe_local_dir(settings.model_dir)).name, None
    if settings.demo:
        return DEMO_MODEL, None
    model = catalog.get(settings.default_model)  # fail fast on a typo in --default-model
    remote = any(spec.name == model.name and spec.revision == "main" for spec in settings.remote_model)
    if remote or model.local_path is not None or store.cached_path(model, "main") is not None:
        return model.name, None
    try:
        store.hub.probe(model)  # at most --hub-timeout: a stalled Hub cannot hold the start for long
    except ModelUnavailable as exc:
        log.warning("Opening the page on the offline demo model %s instead of %s, which is not on disk and cannot "
                    "be fetched: %s Visitors are told why. To serve %s, make the Hub reachable (HF_ENDPOINT, "
                    "HF_TOKEN, proxy settings) and restart; or start with --default-model NAME of a model on disk, "
                    "--model-dir PATH, or --demo.", DEMO_MODEL, model.name, exc, model.name)
        usable = [m.name for m in catalog.models() if m.local_path is not None or store.cached_path(m, "main")]
        return DEMO_MODEL, default_fallback_notice(model.name, str(exc), usable)
    return model.name, None


def build(settings, *, loader=None) -> Built:
    """Create the engine, the service, the queued page and the routes for ``settings``. ``loader``: how a
    converted model directory becomes a loaded model (the engine's default: CTranslate2)."""
    from fastapi import FastAPI

    from model_utils.api_gate import ApiShareGate
    from model_utils.body_limit import MIB, BodySizeLimit
    from model_utils.core.catalog import Catalog
    from model_utils.engine.configure import resolve
    from model_utils.engine.engine import Engine
    from model_utils.engine.remote import RemoteEngine
    from model_utils.engine.router import EngineRouter
    from model_utils.openai_api import add_openai_routes
    from model_utils.service import Capacity, PythiaService
    from model_utils.store.demo_model import demo_model
    from model_utils.store.disk import ModelStore
    from model_utils.store.hub import Hub, bound_requests
    from model_utils.ui.blocks import build_demo, mount_page

    bound_requests(settings.hub_timeout)
    catalog = Catalog()
    catalog.add(demo_model())  # it ships in the repository: always there to pick, offline too
    hub = Hub()  # one circuit breaker for every Hub request of this server
    disk_budget = int(settings.disk_budget * 2**30) if settings.disk_budget else None
    store = ModelStore(settings.cache_dir, hub=hub, disk_budget_bytes=disk_budget)
    default_model, notice = choose_default_model(settings, catalog, store)
    resolved = resolve(settings)
    local = Engine(resolved.device, catalog=catalog, store=store, memory_budget_bytes=resolved.memory_budget_bytes,
                   batching=resolved.batching, **({"loader": loader} if loader else {}))
    remote = None
    if settings.remote_model:
        remote = RemoteEngine.build(settings.remote_model, catalog, api_key=settings.remote_api_key,
                                    timeout_s=settings.remote_timeout, tokenizer_loader=hub.tokenizer_file)
        remote.start()  # asks each server for its model id in the background; never fatal
    engine = EngineRouter(local, remote)
    shared_rows = api_rows(settings, resolved)
    service = PythiaService(engine, catalog, default_model, max_client_rows=settings.max_client_rows,
                            max_api_rows=shared_rows,
                            capacity=Capacity(resolved.concurrency, settings.max_queue, shared_rows),
                            results_dir=store.root, tasks_dir=settings.tasks_dir,
                            benchmark_jobs=settings.benchmark_jobs)
    demo = build_demo(service, concurrency=resolved.concurrency, notice=notice)
    # Gradio's queue holds visitors beyond those decoding (and shows their position);
    # api_open=False: the REST shortcut cannot bypass it.
    demo.queue(api_open=False, default_concurrency_limit=resolved.concurrency, max_size=settings.max_queue)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # the page's "Use via API" is the docs
    add_openai_routes(app, service, api_key=settings.api_key)  # before the page: these paths are matched first
    app = mount_page(app, demo, mcp=settings.mcp)
    # while API clients hold every row they may, their completion requests are refused before they are parsed
    app.add_middleware(ApiShareGate, limits=service.client_limits)
    # every route, the page's and the API's: a body past the cap is refused before it is read (added last: first)
    app.add_middleware(BodySizeLimit, max_bytes=int(settings.max_body_mb * MIB))
    return Built(engine, demo, app, service)


def api_rows(settings, resolved) -> int | None:
    """The rows all API clients together may hold (--max-api-rows; None: no limit): by default half of what the
    server decodes at once, so that page visitors always find the other half free (at least one client's worth)."""
    if settings.max_api_rows is not None:
        return settings.max_api_rows or None
    return max(resolved.concurrency // 2, settings.max_client_rows, 1)


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds (SO_REUSEADDR: connections of the last run still in
    TIME_WAIT on this port are no obstacle); raises OSError when it cannot listen there.

    Made as an IPPROTO_TCP socket: its connections inherit that, and asyncio turns Nagle's algorithm off
    (TCP_NODELAY) only on connections that say so. Without it every response after the first on a kept-alive
    connection (the browser's, an API client's) waited ~40 ms for the client's delayed ACK (measured: 5 ms vs 48 ms
    for /v1/models)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


STOP_GRACE_S = 2  # a stopping server lets requests finish this long; then it closes what is still open


def server_for(built: Built):
    """uvicorn, ending the page's streams when it stops. Open tabs hold event streams that wait up to 10 s for
    their next message: after STOP_GRACE_S they are cancelled, on purpose, so their cancellation is not
    reported as an error."""
    import uvicorn

    from model_utils.ui.blocks import end_page_streams

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None) -> None:
            log.info("stopping: open connections get %s s to finish", STOP_GRACE_S)
            end_page_streams(built.app, built.demo)
            errors = logging.getLogger("uvicorn.error")
            level = errors.level
            errors.setLevel(logging.CRITICAL)
            try:
                await super().shutdown(sockets=sockets)
                # uvicorn cancels what outlasted the grace and returns at once: the cancelled requests end
                # (and would report their cancellation) on later turns of the loop, so wait for them here.
                cancelled = list(self.server_state.tasks)
                if cancelled:
                    await asyncio.wait(cancelled, timeout=STOP_GRACE_S)
            finally:
                errors.setLevel(level)

    return Server(uvicorn.Config(built.app, log_level="warning", timeout_graceful_shutdown=STOP_GRACE_S))


@contextmanager
def running(settings, host: str = "127.0.0.1", port: int = 0, *, loader=None) -> Iterator[tuple[str, Any]]:
    """Serve ``settings`` on a free port (or ``port``) in a background thread; yield (url, engine).
    For scripts and tests that drive the real server; ``python app.py`` serves in the foreground."""
    built = build(settings, loader=loader)
    sock = listen(host, port)
    server = server_for(built)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            thread.join(timeout=0.05)
        yield f"http://{host}:{sock.getsockname()[1]}", built.engine
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        built.engine.close()


def _listen_words(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; pass --port with a free one (or set PYTHIA_PORT)."
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port."


def listen_problem(host: str, port: int) -> str | None:
    """Why the app could not listen on ``host:port``, or None if it can."""
    try:
        listen(host, port).close()
    except OSError as exc:
        return _listen_words(exc, host, port)
    return None


def main(argv: list[str] | None = None) -> int:
    from model_utils.core.errors import PythiaError
    from model_utils.settings import parse_settings

    settings = parse_settings(argv)  # a bad flag or variable: argparse's usage and one error line
    configure_logging(settings.log_level)
    try:
        built = build(settings)  # a bad model name or folder is reported before the port
    except PythiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        built.engine.close()
        print(f"error: {_listen_words(exc, settings.host, settings.port)}", file=sys.stderr)
        return 2
    print(f"* Running on http://{settings.host}:{settings.port} (OpenAI-compatible API under /v1)", flush=True)
    # lm-eval's task registry (~10 s of CPU), built in the background so that the first Benchmarks job does not
    # wait for it. Here, not in build(): scripts and tests that build apps in-process (running()) measure or
    # check other things, and a job there builds it on first use.
    built.service.benchmarks.warm()
    # uvicorn stops gracefully on Ctrl+C or SIGTERM (how Spaces stop a container), then raises the signal again
    # for the handler that was there before it: this one, so that the models are unloaded and the exit is clean.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        server_for(built).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        built.engine.close()  # unload generators before the interpreter exits (CT2 may abort otherwise)
    return 0


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
