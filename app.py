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


def default_workers(device: str) -> int:
    """Two batches side by side, one thread each, on a multi-core CPU: a new visitor starts in the
    idle worker instead of waiting for a running batch (BENCHMARKS.md), and at Pythia-160m one
    thread decodes as fast as two (MEASUREMENTS.md). On CUDA one batch at a time."""
    import os

    return 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def build(settings):
    """Create the engine, service and the queued Gradio Blocks for ``settings``."""
    import os

    from model_utils.engine.batching import BatchingConfig
    from model_utils.core.catalog import Catalog
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.engine import Engine
    from model_utils.service.service import PythiaService
    from model_utils.store.disk import ModelStore
    from model_utils.ui.blocks import build_demo

    catalog = Catalog()
    store = ModelStore(settings.cache_dir)
    default_model = settings.default_model
    if settings.demo:
        from model_utils.store.demo_model import ensure_demo_model

        default_model = catalog.register_local(ensure_demo_model(store.root), "demo-random-pythia",
                                               random_weights=True).name
    if settings.model_dir:
        default_model = catalog.register_local(settings.model_dir).name
    catalog.get(default_model)  # fail fast on a typo in --default-model
    budget = int(settings.memory_budget * 2**30) if settings.memory_budget else None
    device = resolve_device(settings.device, settings.compute_type)
    workers = settings.workers or default_workers(device.device)
    batching = BatchingConfig(max_batch_size=settings.max_batch_size, window_s=settings.batch_window_ms / 1000,
                              workers=workers, max_waiting=settings.max_queue)
    threads = settings.threads or max(1, (os.cpu_count() or 1) // workers)
    engine = Engine(resolve_device(settings.device, settings.compute_type, threads), catalog=catalog,
                    store=store, memory_budget_bytes=budget, batching=batching)
    running = settings.max_batch_size * workers
    demo = build_demo(PythiaService(engine, default_model), concurrency=running)
    # Gradio's queue holds visitors beyond those decoding (and shows their position);
    # api_open=False: the REST shortcut cannot bypass it.
    demo.queue(api_open=False, default_concurrency_limit=running, max_size=settings.max_queue)
    return engine, demo


def main(argv: list[str] | None = None) -> int:
    from model_utils.core.errors import PythiaError
    from model_utils.settings import parse_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_settings(argv)
    try:
        engine, demo = build(settings)
    except PythiaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        demo.launch(server_name=settings.host, server_port=settings.port, mcp_server=settings.mcp or None,
                    max_file_size="1mb", enable_monitoring=False, share=False, footer_links=["api"])
    except KeyboardInterrupt:
        demo.close()
    finally:
        engine.close()  # unload generators before the interpreter exits
    return 0


if __name__ == "__main__":
    sys.exit(main())
