"""Pythia × CTranslate2: a Gradio app serving every Pythia model fast on CPU or GPU.

Run ``python app.py --help`` for flags. This file only assembles and launches;
the logic lives in model_utils/.

One port serves everything (a Space exposes one): the page and its Gradio API (and MCP with --mcp) at "/",
and the OpenAI-compatible routes (/v1/..., /tokenize ...) beside them, all over one PythiaService.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator


@dataclass
class Built:
    """The assembled app: the engine (closed at shutdown), the Gradio page and the ASGI app serving both."""

    engine: Any
    demo: Any  # gradio.Blocks
    app: Any  # fastapi.FastAPI


def build(settings) -> Built:
    """Create the engine, the service, the queued page and the routes for ``settings``."""
    from fastapi import FastAPI

    from model_utils.core.catalog import Catalog
    from model_utils.engine.engine import Engine
    from model_utils.engine.remote import RemoteEngine
    from model_utils.engine.router import EngineRouter
    from model_utils.openai_api import add_openai_routes
    from model_utils.service import PythiaService
    from model_utils.store import hub
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir
    from model_utils.ui.blocks import build_demo, mount_page

    hub.configure(timeout_s=settings.hub_timeout)
    catalog = Catalog()
    store = ModelStore(settings.cache_dir)
    default_model = settings.default_model
    if settings.demo:
        from model_utils.store.demo_model import demo_model

        default_model = catalog.add(demo_model()).name
    if settings.model_dir:
        default_model = catalog.add(describe_local_dir(settings.model_dir)).name
    catalog.get(default_model)  # fail fast on a typo in --default-model
    resolved = settings.resolve()
    local = Engine(resolved.device, catalog=catalog, store=store, memory_budget_bytes=resolved.memory_budget_bytes,
                   batching=resolved.batching)
    remote = None
    if settings.remote_model:
        remote = RemoteEngine.build(settings.remote_model, catalog, api_key=settings.remote_api_key,
                                    timeout_s=settings.remote_timeout, tokenizer_loader=hub.tokenizer_file)
        remote.start()  # asks each server for its model id in the background; never fatal
    engine = EngineRouter(local, remote)
    service = PythiaService(engine, catalog, default_model, max_client_rows=settings.max_client_rows)
    demo = build_demo(service, concurrency=resolved.concurrency)
    # Gradio's queue holds visitors beyond those decoding (and shows their position);
    # api_open=False: the REST shortcut cannot bypass it.
    demo.queue(api_open=False, default_concurrency_limit=resolved.concurrency, max_size=settings.max_queue)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # the page's "Use via API" is the docs
    add_openai_routes(app, service, api_key=settings.api_key)  # before the page: these paths are matched first
    return Built(engine, demo, mount_page(app, demo, mcp=settings.mcp))


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds (SO_REUSEADDR: a port left in TIME_WAIT by a server that
    just stopped is free); raises OSError when another program listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def server_for(built: Built):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(built.app, log_level="warning", timeout_graceful_shutdown=5))


@contextmanager
def running(settings, host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, Any]]:
    """Serve ``settings`` on a free port (or ``port``) in a background thread; yield (url, engine).
    For scripts and tests that drive the real server; ``python app.py`` serves in the foreground."""
    built = build(settings)
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


def main(argv: list[str] | None = None) -> int:
    from model_utils.core.errors import PythiaError
    from model_utils.settings import parse_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings(argv)
    try:
        built = build(settings)
    except PythiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        sock = listen(settings.host, settings.port)
    except OSError:
        built.engine.close()
        print(f"error: port {settings.port} is in use; pass --port with a free one (or set PYTHIA_PORT).",
              file=sys.stderr)
        return 2
    print(f"* Running on http://{settings.host}:{settings.port} (OpenAI-compatible API under /v1)", flush=True)
    try:
        server_for(built).run(sockets=[sock])  # returns on Ctrl+C or SIGTERM (how Spaces stop a container)
    finally:
        built.engine.close()  # unload generators before the interpreter exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
