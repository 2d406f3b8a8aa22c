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
from .core.hardware import COMPUTE_TYPES, DEVICES


# Each parser raises ArgumentTypeError with words for people: argparse shows a plain ValueError as
# "invalid _positive_int value", which names a function, not what was wrong.
def _whole(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _number(text: str, suffixes: tuple[str, ...] = ()) -> float:
    stripped = str(text).strip()
    for suffix in suffixes:
        stripped = stripped.removesuffix(suffix)
    try:
        return float(stripped)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _positive_int(text: str) -> int:
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number (1 or more)")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be zero or more")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than zero")
    return value


def _gib(text: str) -> float:
    value = _number(text, ("GiB", "G"))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of GiB")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number from 1 to 65535")
    return value


LOG_LEVELS = ("debug", "info", "warning", "error")


def option(default: Any, help: str, *, parse: Callable[[str], Any] = str, choices: tuple | None = None,
           also_env: tuple[str, ...] = (), metavar: str | None = None, shown_default: str | None = None,
           hidden: bool = False) -> Any:
    """A setting: ``--name`` flag and ``PYTHIA_NAME`` variable. ``also_env``: other variables read after it.
    ``shown_default``: what --help says the default is, when it is not the value itself (worked out at start).
    ``hidden``: a secret: never shown, neither by --help (even when its variable is set) nor when printed."""
    return field(default=default, repr=not hidden,
                 metadata={"help": help, "parse": parse, "choices": choices, "also_env": also_env,
                           "metavar": metavar, "shown_default": shown_default, "hidden": hidden})


def repeated(help: str, *, parse: Callable[[str], Any], flag: str, env: str, metavar: str) -> Any:
    """A setting given any number of times: ``flag`` repeats; ``env`` holds a comma-separated list."""
    return field(default=(), metadata={"help": help, "parse": parse, "repeat": True, "flag": flag, "env": env,
                                       "metavar": metavar})


def secret(help: str, *, env: str) -> Any:
    """A setting read only from the environment (never a flag: command lines are visible to every user)."""
    return field(default=None, repr=False, metadata={"help": help, "secret": True, "env": env})


def _tasks_folder(text: str) -> str:
    """A folder of lm-eval task YAMLs: it must exist (a typo would otherwise only show as tasks missing)."""
    import os

    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return os.path.abspath(text)


def _remote_spec(text: str):
    """``NAME[@REVISION]=URL`` -> RemoteSpec; the catalog checks NAME and REVISION when the app builds."""
    from .core.remote_spec import RemoteSpec

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
    host: str = option("127.0.0.1", "address to listen on", also_env=("GRADIO_SERVER_NAME",), metavar="ADDRESS")
    port: int = option(7860, "port to listen on", parse=_port, also_env=("GRADIO_SERVER_PORT",), metavar="PORT")
    device: str = option("auto", "auto picks CUDA when CTranslate2 sees a GPU", choices=DEVICES)
    compute_type: str = option("default", "precision of the loaded models; 'default' is int8_float16 on CUDA, int8 "
                                          "on CPU (falling back to what the device supports)", choices=COMPUTE_TYPES)
    cache_dir: str | None = option(None, "where converted models are kept", metavar="DIR",
                                   shown_default="$HF_HOME/pythia-ct2, and HF_HOME is ~/.cache/huggingface unless set")
    memory_budget: float | None = option(None, "GiB of RAM/VRAM for loaded models", parse=_gib, metavar="GIB",
                                         shown_default="85%% of what is free at start")
    disk_budget: float | None = option(
        None, "GiB of disk for converted models under the cache dir; beyond it the least recently used are deleted "
              "(huggingface_hub's download cache is not counted)", parse=_gib, metavar="GIB", shown_default="no limit")
    default_model: str = option(DEFAULT_MODEL, "model selected when the page opens; when it is neither on disk nor "
                                               "on the reachable Hub at start, the demo model is selected and the "
                                               "page says why", metavar="NAME")
    model_dir: str | None = option(None, "serve a local GPT-NeoX checkpoint or CT2 model directory as the default",
                                   metavar="PATH", shown_default="none")
    demo: bool = switch("open the page on the offline demo model (a tiny model trained on the King James Bible, "
                        "always in the model list): no network needed")
    mcp: bool = switch("also offer the endpoints as MCP tools")
    threads: int | None = option(None, "CPU threads per batch", parse=_positive_int, metavar="N",
                                 shown_default="usable cores / workers")
    # 16 rows gave 7.1x one row's throughput on the 2-vCPU benchmark machine (BENCHMARKS.md, "Batching")
    max_batch_size: int = option(16, "requests decoded together; 1 = one at a time", parse=_positive_int,
                                 metavar="N")
    batch_window_ms: float = option(50.0, "the longest a new batch waits for more requests (or as many decoding "
                                          "steps as a newcomer's wait, when longer); it starts sooner once "
                                          "arrivals pause for 10 ms (or half a step)",
                                    parse=_non_negative, metavar="MS")
    workers: int | None = option(None, "batches decoding side by side", parse=_positive_int, metavar="N",
                                 shown_default="2 on a multi-core CPU, 1 on CUDA")
    max_batches: int | None = option(None, "batches decoding at once, counting the extra ones started for newcomers "
                                           "while the workers are busy", parse=_positive_int, metavar="N",
                                     shown_default="2 per usable core on CPU, workers + 1 on CUDA")
    wait_steps: float = option(4.0, "decoding steps a newcomer waits, while the workers are busy, before an extra "
                                    "batch starts for everyone who arrived meanwhile", parse=_non_negative,
                               metavar="STEPS")
    max_queue: int = option(64, "waiting requests before new ones are told the server is busy", parse=_positive_int,
                            metavar="N")
    remote_model: tuple = repeated(
        "serve NAME (at REVISION, default main) from the vLLM server at URL (its OpenAI-compatible base URL, "
        "e.g. http://gpu-host:8000/v1); repeat for more", parse=_remote_spec, flag="--remote-model",
        env="PYTHIA_REMOTE_MODELS", metavar="NAME[@REVISION]=URL")
    remote_api_key: str | None = secret("bearer token sent to the remote vLLM servers", env="PYTHIA_REMOTE_API_KEY")
    remote_timeout: float = option(30.0, "seconds a remote vLLM server may stay silent (connecting: at most 5) "
                                         "before a request is given up", parse=_positive_float, metavar="SECONDS")
    api_key: str | None = option(None, "a bearer token the OpenAI-compatible routes require (default: none, they are "
                                       "open like the Gradio API); never printed", metavar="KEY", hidden=True)
    max_client_rows: int = option(8, "choices one API client (its address, or the API key) may have queued or "
                                     "decoding at once; more are answered 429", parse=_positive_int, metavar="N")
    max_api_rows: int | None = option(
        None, "choices all API clients together may have queued or decoding at once, so that page visitors keep "
              "the other decoding rows however many addresses call the API; more are answered 429 with "
              "Retry-After; 0 = no limit but --max-client-rows", parse=_non_negative_int, metavar="N",
        shown_default="half the rows decoded at once (--max-batch-size x workers / 2), at least "
                                      "--max-client-rows")
    max_body_mb: float = option(8.0, "the largest request body any route accepts, in MiB (2^20 bytes); a larger one "
                                     "is answered 413 before it is read", parse=_positive_float, metavar="MIB")
    hub_timeout: float = option(
        10.0, "seconds the Hugging Face Hub may stay silent (connecting, or between two pieces of an answer) before "
              "the request is given up (huggingface_hub retries a few times; a download resumes where it stopped)",
        parse=_positive_float, metavar="SECONDS")
    benchmark_jobs: int = option(1, "lm-eval evaluations (Benchmarks tab, /benchmark) running at once; the others wait "
                                    "their turn and are told their place", parse=_positive_int, metavar="N")
    tasks_dir: str | None = option(None, "a folder of lm-eval task YAMLs (lm-eval's include_path) the Benchmarks "
                                         "tab and /benchmark offer beside lm-eval's own tasks", metavar="DIR",
                                   parse=_tasks_folder,
                                   shown_default="none (the demo model's kjv_lambada always ships)")
    log_level: str = option("info", "what the server logs: info = downloads, conversions, loads, evictions, "
                                    "Hub failures and busy refusals, and every failure with its traceback; other "
                                    "libraries log warnings only", parse=str.lower, choices=LOG_LEVELS)


def env_name(name: str) -> str:
    return f"PYTHIA_{name.upper()}"


def build_parser(environ: dict) -> argparse.ArgumentParser:
    """The command line, generated from the Settings fields; environment values become defaults, and --help
    shows every default (the environment's, where it sets one)."""
    p = argparse.ArgumentParser(description="Chat with and study the EleutherAI Pythia models through CTranslate2. "
                                            "Each flag has a PYTHIA_* environment variable twin; flags win.")
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
                p.error(f"environment variable {env}: {exc}")
            p.add_argument(flag, dest=f.name, type=meta["parse"], action="append", default=None,
                           metavar=meta["metavar"], help=f"{meta['help']} ({env}, comma-separated; default: none)")
            p.set_defaults(**{f"_{f.name}_env": default})
            continue
        if meta.get("switch"):
            on = (environ.get(env) or "").strip().lower() in ("1", "true", "yes", "on")
            p.add_argument(flag, action="store_true", default=on or f.default,
                           help=f"{meta['help']} ({env}; default: {'on' if on else 'off'})")
            continue
        source = next((v for v in (env, *meta["also_env"]) if environ.get(v)), None)
        raw = environ[source] if source else None
        if raw is not None:  # checked here, so that the error names the variable (argparse would name the flag)
            try:
                value = meta["parse"](raw)
            except argparse.ArgumentTypeError as exc:
                p.error(f"environment variable {source}: {exc}")
            if meta["choices"] is not None and value not in meta["choices"]:
                p.error(f"environment variable {source}: {raw!r} is not one of {', '.join(meta['choices'])}")
        shown = "%(default)s" if raw is not None or meta["shown_default"] is None else meta["shown_default"]
        if meta.get("hidden"):  # a secret: say whether it is set, never what it is
            shown = "set in the environment" if raw is not None else "none"
        # argparse runs `type` on string defaults, so an environment value is checked like a flag
        p.add_argument(flag, type=meta["parse"], choices=meta["choices"], default=f.default if raw is None else raw,
                       metavar=meta["metavar"], help=f"{meta['help']} ({env}; default: {shown})")
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
