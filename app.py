"""Pythia × CTranslate2: a Gradio app serving every Pythia model fast on CPU or GPU.

Run ``python app.py --help`` for flags. This file only assembles and launches;
the logic lives in model_utils/.
"""

from __future__ import annotations

import logging
import signal
import sys


def _stop_on_sigterm(signum, frame):
    # Spaces and containers stop the app with SIGTERM: treat it like Ctrl+C so Gradio
    # closes its server and the generators are unloaded before the interpreter exits.
    raise KeyboardInterrupt


def port_in_use(host: str, port: int) -> bool:
    """Whether another program already listens on ``host:port`` (checked before anything loads)."""
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def build(settings):
    """Create the engine, the service and the queued Gradio Blocks for ``settings``."""
    from model_utils.core.catalog import Catalog
    from model_utils.engine.engine import Engine
    from model_utils.engine.remote import RemoteEngine
    from model_utils.engine.router import EngineRouter
    from model_utils.service import PythiaService
    from model_utils.store import hub
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir
    from model_utils.ui.blocks import build_demo

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
    demo = build_demo(PythiaService(engine, catalog, default_model), concurrency=resolved.concurrency)
    # Gradio's queue holds visitors beyond those decoding (and shows their position);
    # api_open=False: the REST shortcut cannot bypass it.
    demo.queue(api_open=False, default_concurrency_limit=resolved.concurrency, max_size=settings.max_queue)
    return engine, demo


def main(argv: list[str] | None = None) -> int:
    from model_utils.core.errors import PythiaError
    from model_utils.settings import parse_settings
    from model_utils.ui.blocks import LAUNCH_OPTIONS

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings(argv)
    if port_in_use(settings.host, settings.port):
        print(f"error: port {settings.port} is in use; pass --port with a free one (or set PYTHIA_PORT).",
              file=sys.stderr)
        return 2
    try:
        engine, demo = build(settings)
    except PythiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, mcp_server=settings.mcp or None,
                    footer_links=["api"], **LAUNCH_OPTIONS)
    except KeyboardInterrupt:
        demo.close()
    finally:
        engine.close()  # unload generators before the interpreter exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
