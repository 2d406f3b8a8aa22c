"""Server settings, each declared once: its flag, PYTHIA_* environment twin, type, default and help
all come from the dataclass field below; the argparse parser is generated from them.

Precedence: flag, then environment variable, then default.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from .core.catalog import DEFAULT_MODEL
from .engine.devices import COMPUTE_TYPES, DEVICES, usable_cpus


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than zero")
    return value


def _gib(text: str) -> float:
    value = float(str(text).removesuffix("GiB").removesuffix("G"))
    if not value > 0:
        raise argparse.ArgumentTypeError("memory budget must be a positive number of GiB")
    return value


def option(default: Any, help: str, *, parse: Callable[[str], Any] = str, choices: tuple | None = None,
           also_env: tuple[str, ...] = ()) -> Any:
    """A setting: ``--name`` flag and ``PYTHIA_NAME`` variable. ``also_env``: other variables read after it."""
    return field(default=default, metadata={"help": help, "parse": parse, "choices": choices, "also_env": also_env})


def repeated(help: str, *, parse: Callable[[str], Any], flag: str, env: str) -> Any:
    """A setting given any number of times: ``flag`` repeats; ``env`` holds a comma-separated list."""
    return field(default=(), metadata={"help": help, "parse": parse, "repeat": True, "flag": flag, "env": env})


def secret(help: str, *, env: str) -> Any:
    """A setting read only from the environment (never a flag: command lines are visible to every user)."""
    return field(default=None, repr=False, metadata={"help": help, "secret": True, "env": env})


def _remote_spec(text: str):
    """``NAME[@REVISION]=URL`` -> RemoteSpec; the catalog checks NAME and REVISION when the app builds."""
    from .engine.remote import RemoteSpec

    target, sep, url = text.strip().partition("=")
    name, _, revision = target.strip().partition("@")
    url = url.strip()
    if not sep or not name.strip() or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(
            f"{text.strip()!r} is not NAME[@REVISION]=URL (for example pythia-12b@step3000=http://gpu-host:8000/v1)")
    return RemoteSpec(name.strip(), revision.strip() or "main", url)


def switch(help: str) -> Any:
    """An on/off setting: a bare ``--name`` flag; the variable is on for 1/true/yes/on."""
    return field(default=False, metadata={"help": help, "switch": True})


@dataclass(frozen=True)
class Settings:
    # Hugging Face Spaces tell Gradio where to listen through GRADIO_SERVER_NAME/PORT.
    host: str = option("127.0.0.1", "address to listen on", also_env=("GRADIO_SERVER_NAME",))
    port: int = option(7860, "port", parse=int, also_env=("GRADIO_SERVER_PORT",))
    device: str = option("auto", "auto picks CUDA when CTranslate2 sees a GPU", choices=DEVICES)
    compute_type: str = option("default", "default: int8_float16 on CUDA, int8 on CPU", choices=COMPUTE_TYPES)
    cache_dir: str | None = option(None, "where converted models are kept")
    memory_budget: float | None = option(None, "GiB of RAM/VRAM for loaded models (default: 85%% of what is free)",
                                         parse=_gib)
    default_model: str = option(DEFAULT_MODEL, "model selected when the page opens")
    model_dir: str | None = option(None, "serve a local GPT-NeoX checkpoint or CT2 model directory as the default")
    demo: bool = switch("serve the offline demo models: no network needed")
    mcp: bool = switch("also offer the endpoints as MCP tools")
    threads: int | None = option(None, "CPU threads per batch (default: cores / workers)", parse=_positive_int)
    # 16 rows gave 7.1x one row's throughput on the 2-vCPU benchmark machine (BENCHMARKS.md)
    max_batch_size: int = option(16, "requests decoded together; 1 = one at a time", parse=_positive_int)
    batch_window_ms: float = option(50.0, "the longest a new batch waits for more requests; it starts sooner "
                                          "once arrivals pause for 10 ms", parse=_non_negative)
    workers: int | None = option(None, "batches decoding side by side (default: 2 on a multi-core CPU, 1 on CUDA)",
                                 parse=_positive_int)
    max_batches: int | None = option(None, "batches decoding at once, counting the extra ones started for newcomers "
                                           "while the workers are busy (default: 2 per core on CPU, workers + 1 on "
                                           "CUDA)", parse=_positive_int)
    wait_steps: float = option(4.0, "decoding steps a newcomer waits, while the workers are busy, before an extra "
                                    "batch starts for everyone who arrived meanwhile", parse=_non_negative)
    max_queue: int = option(64, "waiting requests before new ones are told the server is busy", parse=_positive_int)
    remote_model: tuple = repeated(
        "serve NAME (at REVISION, default main) from the vLLM server at URL (its OpenAI-compatible base URL, "
        "e.g. http://gpu-host:8000/v1); repeat for more", parse=_remote_spec, flag="--remote-model",
        env="PYTHIA_REMOTE_MODELS")
    remote_api_key: str | None = secret("bearer token sent to the remote vLLM servers", env="PYTHIA_REMOTE_API_KEY")
    remote_timeout: float = option(30.0, "seconds a remote vLLM server may stay silent (connecting: at most 5) "
                                         "before a request is given up", parse=_positive_float)
    hub_timeout: float = option(10.0, "seconds the Hugging Face Hub may stay silent before a download is given up "
                                      "(it resumes next time)", parse=_positive_float)

    def resolve(self) -> "Resolved":
        """The device, threads, batching and memory budget these settings mean on this machine."""
        from .engine.batching import BatchingConfig
        from .engine.devices import resolve_device

        device = resolve_device(self.device, self.compute_type)
        workers = self.workers or default_workers(device.device)
        threads = self.threads or max(1, usable_cpus() // workers)
        return Resolved(
            device=resolve_device(self.device, self.compute_type, threads),
            batching=BatchingConfig(max_batch_size=self.max_batch_size, window_s=self.batch_window_ms / 1000,
                                    workers=workers, max_waiting=self.max_queue, wait_steps=self.wait_steps,
                                    max_batches=max(workers, self.max_batches or default_max_batches(device.device,
                                                                                                     workers))),
            memory_budget_bytes=int(self.memory_budget * 2**30) if self.memory_budget else None)


@dataclass(frozen=True)
class Resolved:
    device: Any  # engine.devices.DeviceConfig
    batching: Any  # engine.batching.BatchingConfig
    memory_budget_bytes: int | None

    @property
    def concurrency(self) -> int:
        """Requests that may decode at once: rows per batch x batches side by side."""
        return self.batching.max_batch_size * self.batching.workers


def default_workers(device: str) -> int:
    """Two batches side by side, one thread each, on a multi-core CPU: a new visitor starts in the
    idle worker instead of waiting for a running batch (BENCHMARKS.md), and at Pythia-160m one
    thread decodes nearly as fast as two (two are at most 20% faster: BENCHMARKS.md, "CPU ISA and
    threads"). On CUDA one batch at a time."""
    return 2 if device == "cpu" and usable_cpus() >= 2 else 1


def default_max_batches(device: str, workers: int) -> int:
    """Two batches per core on CPU (one thread each: a core runs two small batches' steps interleaved at
    little loss, since a step is mostly weight repacking; BENCHMARKS.md), one extra on CUDA."""
    return 2 * usable_cpus() if device == "cpu" else workers + 1


def env_name(name: str) -> str:
    return f"PYTHIA_{name.upper()}"


def build_parser(environ: dict) -> argparse.ArgumentParser:
    """The command line, generated from the Settings fields; environment values become defaults."""
    p = argparse.ArgumentParser(description="Chat with and study the EleutherAI Pythia models through CTranslate2.")
    for f in fields(Settings):
        meta = f.metadata
        flag, env = meta.get("flag", "--" + f.name.replace("_", "-")), meta.get("env", env_name(f.name))
        if meta.get("secret"):
            continue  # read in parse_settings
        if meta.get("repeat"):
            raw = [x for x in (environ.get(env) or "").split(",") if x.strip()]
            try:
                default = tuple(meta["parse"](x) for x in raw)
            except argparse.ArgumentTypeError as exc:
                p.error(f"{env}: {exc}")
            p.add_argument(flag, dest=f.name, type=meta["parse"], action="append", default=None,
                           help=f"{meta['help']} ({env}, comma-separated)")
            p.set_defaults(**{f"_{f.name}_env": default})
            continue
        if meta.get("switch"):
            on = (environ.get(env) or "").strip().lower() in ("1", "true", "yes", "on")
            p.add_argument(flag, action="store_true", default=on or f.default, help=f"{meta['help']} ({env})")
            continue
        raw = next((environ[v] for v in (env, *meta["also_env"]) if environ.get(v)), None)
        # argparse runs `type` on string defaults, so an environment value is checked like a flag
        p.add_argument(flag, type=meta["parse"], choices=meta["choices"], default=f.default if raw is None else raw,
                       help=f"{meta['help']} ({env})")
    return p


def parse_settings(argv: list[str] | None = None, environ: dict | None = None) -> Settings:
    """Read flags, falling back to PYTHIA_* environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    values = vars(build_parser(environ).parse_args(argv))
    for f in fields(Settings):
        if f.metadata.get("repeat"):  # flags replace the environment's list; no flag: the list
            env_default = values.pop(f"_{f.name}_env")
            values[f.name] = tuple(values[f.name]) if values[f.name] is not None else env_default
        elif f.metadata.get("secret"):
            values[f.name] = environ.get(f.metadata["env"]) or None
    return Settings(**values)
