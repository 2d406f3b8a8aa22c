"""Choose the device, compute type and threads that CTranslate2 runs with.

Defaults follow the seed model card: ``int8_float16`` on CUDA, ``int8`` on CPU,
falling back through what ``ctranslate2.get_supported_compute_types`` reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import InvalidParameter

DEVICES = ("auto", "cpu", "cuda")
# Preference order per device when compute_type is "default".
PREFERRED_COMPUTE_TYPES = {
    "cuda": ("int8_float16", "int8_bfloat16", "float16", "int8", "float32"),
    "cpu": ("int8", "int8_float32", "float32"),
}
COMPUTE_TYPES = ("default", "int8", "int8_float32", "int8_float16", "int8_bfloat16",
                 "int16", "float16", "bfloat16", "float32")


@dataclass(frozen=True)
class DeviceConfig:
    """Where and how a model runs; part of the in-memory cache key."""

    device: str  # "cpu" or "cuda"
    compute_type: str
    intra_threads: int  # threads per generation (CPU)
    inter_threads: int = 1  # parallel generations per model

    def describe(self) -> str:
        return f"{self.device.upper()} · {self.compute_type}"


def cuda_device_count() -> int:
    """Number of CUDA devices CT2 can use (0 when the CUDA runtime is missing)."""
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except RuntimeError:
        return 0


def supported_compute_types(device: str) -> set[str]:
    """Compute types CT2 supports on ``device``; empty when the device is unusable.

    ``get_supported_compute_types("cuda")`` raises on machines without a working
    CUDA driver, so it is guarded.
    """
    import ctranslate2

    try:
        return set(ctranslate2.get_supported_compute_types(device))
    except (RuntimeError, ValueError):
        return set()


def resolve_device(device: str = "auto", compute_type: str = "default",
                   threads: int | None = None) -> DeviceConfig:
    """Turn user choices (``auto``/``default`` allowed) into a concrete DeviceConfig."""
    if device not in DEVICES:
        raise InvalidParameter(f"device must be one of {', '.join(DEVICES)}, not {device!r}.")
    if compute_type not in COMPUTE_TYPES:
        raise InvalidParameter(f"compute type must be one of {', '.join(COMPUTE_TYPES)}, not {compute_type!r}.")
    if device == "auto":
        device = "cuda" if cuda_device_count() > 0 else "cpu"
    elif device == "cuda" and cuda_device_count() == 0:
        raise InvalidParameter("device 'cuda' was requested but CTranslate2 sees no CUDA device; use 'cpu' or 'auto'.")
    supported = supported_compute_types(device)
    if compute_type == "default":
        compute_type = next((c for c in PREFERRED_COMPUTE_TYPES[device] if c in supported), "float32")
    elif supported and compute_type not in supported:
        raise InvalidParameter(
            f"compute type {compute_type!r} is not supported on {device}; supported: {', '.join(sorted(supported))}."
        )
    if threads is None:
        threads = os.cpu_count() or 1
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InvalidParameter(f"threads must be a positive integer, not {threads!r}.")
    return DeviceConfig(device, compute_type, intra_threads=threads if device == "cpu" else 1)
