"""Server settings: each CLI flag has a PYTHIA_* environment variable twin."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from .core.catalog import DEFAULT_MODEL
from .engine.devices import COMPUTE_TYPES, DEVICES


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"
    compute_type: str = "default"
    cache_dir: str | None = None
    memory_budget: float | None = None  # GiB for loaded models; default: derived from free memory
    default_model: str = DEFAULT_MODEL
    model_dir: str | None = None
    demo: bool = False
    mcp: bool = False
    threads: int | None = None  # CPU threads per batch; default: cores / workers
    max_batch_size: int = 16  # rows decoded together (MEASUREMENTS.md: 16 rows ~7x one row's throughput)
    batch_window_ms: float = 50.0  # how long a new batch may wait for more requests to join
    workers: int | None = None  # batches decoding side by side; default: 2 on a multi-core CPU, 1 on CUDA
    max_queue: int = 64  # visitors waiting beyond this are told the server is busy


def _parse_size(text: str) -> float:
    value = float(text.removesuffix("GiB").removesuffix("G"))
    if not value > 0:
        raise argparse.ArgumentTypeError("memory budget must be a positive number of GiB")
    return value


def parse_settings(argv: list[str] | None = None, environ: dict | None = None) -> Settings:
    """Read flags, falling back to PYTHIA_* environment variables, then defaults."""
    env = os.environ if environ is None else environ
    d = Settings()
    p = argparse.ArgumentParser(description="Chat with and study the EleutherAI Pythia models through CTranslate2.")
    # Hugging Face Spaces tell Gradio where to listen through GRADIO_SERVER_NAME/PORT.
    host = env.get("PYTHIA_HOST") or env.get("GRADIO_SERVER_NAME") or d.host
    port = env.get("PYTHIA_PORT") or env.get("GRADIO_SERVER_PORT") or d.port
    p.add_argument("--host", default=host, help="address to listen on (PYTHIA_HOST)")
    p.add_argument("--port", type=int, default=int(port), help="port (PYTHIA_PORT)")
    p.add_argument("--device", choices=DEVICES, default=env.get("PYTHIA_DEVICE", d.device),
                   help="auto picks CUDA when CTranslate2 sees a GPU (PYTHIA_DEVICE)")
    p.add_argument("--compute-type", choices=COMPUTE_TYPES, default=env.get("PYTHIA_COMPUTE_TYPE", d.compute_type),
                   help="default: int8_float16 on CUDA, int8 on CPU (PYTHIA_COMPUTE_TYPE)")
    p.add_argument("--cache-dir", default=env.get("PYTHIA_CACHE_DIR", d.cache_dir),
                   help="where converted models are kept (PYTHIA_CACHE_DIR)")
    p.add_argument("--memory-budget", type=_parse_size, default=env.get("PYTHIA_MEMORY_BUDGET", d.memory_budget),
                   help="GiB of RAM/VRAM for loaded models (PYTHIA_MEMORY_BUDGET)")
    p.add_argument("--default-model", default=env.get("PYTHIA_DEFAULT_MODEL", d.default_model),
                   help="model selected when the page opens (PYTHIA_DEFAULT_MODEL)")
    p.add_argument("--model-dir", default=env.get("PYTHIA_MODEL_DIR", d.model_dir),
                   help="serve a local GPT-NeoX checkpoint or CT2 model directory as the default (PYTHIA_MODEL_DIR)")
    p.add_argument("--demo", action="store_true", default=_flag(env.get("PYTHIA_DEMO")),
                   help="serve a tiny random-weight Pythia built locally: no network needed (PYTHIA_DEMO)")
    p.add_argument("--mcp", action="store_true", default=_flag(env.get("PYTHIA_MCP")),
                   help="also offer the endpoints as MCP tools (PYTHIA_MCP)")
    def positive_int(text):
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError("must be a positive integer")
        return value

    def non_negative(text):
        value = float(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError("must be zero or more")
        return value

    p.add_argument("--threads", type=positive_int, default=env.get("PYTHIA_THREADS", d.threads),
                   help="CPU threads per batch (PYTHIA_THREADS)")
    p.add_argument("--max-batch-size", type=positive_int,
                   default=env.get("PYTHIA_MAX_BATCH_SIZE", d.max_batch_size),
                   help="requests decoded together; 1 = one at a time (PYTHIA_MAX_BATCH_SIZE)")
    p.add_argument("--batch-window-ms", type=non_negative,
                   default=env.get("PYTHIA_BATCH_WINDOW_MS", d.batch_window_ms),
                   help="the longest a new batch waits for more requests; it starts sooner once arrivals pause "
                        "for 10 ms (PYTHIA_BATCH_WINDOW_MS)")
    p.add_argument("--workers", type=positive_int, default=env.get("PYTHIA_WORKERS", d.workers),
                   help="batches decoding side by side (PYTHIA_WORKERS)")
    p.add_argument("--max-queue", type=positive_int, default=env.get("PYTHIA_MAX_QUEUE", d.max_queue),
                   help="waiting requests before new ones are told the server is busy (PYTHIA_MAX_QUEUE)")
    a = p.parse_args(argv)
    # argparse applies `type` to string defaults (the environment) but not to other defaults.
    budget = a.memory_budget if a.memory_budget is None or isinstance(a.memory_budget, float) else _parse_size(
        str(a.memory_budget))
    return Settings(a.host, a.port, a.device, a.compute_type, a.cache_dir, budget, a.default_model,
                    a.model_dir, a.demo, a.mcp, a.threads, a.max_batch_size, a.batch_window_ms, a.workers,
                    a.max_queue)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
