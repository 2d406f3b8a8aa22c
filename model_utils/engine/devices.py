"""Choose the device, compute type and threads that CTranslate2 runs with.

Defaults follow the seed model card: ``int8_float16`` on CUDA, ``int8`` on CPU,
falling back through what ``ctranslate2.get_supported_compute_types`` reports.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import InvalidParameter
from ..core.hardware import COMPUTE_TYPES, DEVICES

# Preference order per device when compute_type is "default".
PREFERRED_COMPUTE_TYPES = {
    "cuda": ("int8_float16", "int8_bfloat16", "float16", "int8", "float32"),
    "cpu": ("int8", "int8_float32", "float32"),
}


@dataclass(frozen=True)
class DeviceConfig:
    """Where and how a model runs; part of the in-memory cache key."""

    device: str  # "cpu" or "cuda"
    compute_type: str
    intra_threads: int  # threads per batch (CPU); batches in parallel are set by BatchingConfig.workers

    def describe(self) -> str:
        return f"{self.device.upper()} {self.compute_type}"


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
        threads = usable_cpus()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InvalidParameter(f"threads must be a positive integer, not {threads!r}.")
    return DeviceConfig(device, compute_type, intra_threads=threads if device == "cpu" else 1)


def usable_cpus() -> int:
    """CPUs this process can really use: its affinity mask, capped by the container's CPU quota.

    ``os.cpu_count()`` counts the host's cores. A Space runs in a container limited to a few of
    them by a cgroup quota, and threads sized by the host's count would oversubscribe it many times.
    Every thread, worker and lane default is sized from this one number.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(cpus, quota) if quota is not None else cpus)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The container's CPU limit in whole CPUs (rounded up), or None when it has none."""
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota and period in microseconds)
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else math.ceil(int(quota) / int(period))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1: a quota of -1 means no limit
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else math.ceil(quota / period)
    except (OSError, ValueError):
        return None


def _cgroup_memory_left() -> int | None:
    """Memory left under the container's cgroup limit (Spaces run in containers)."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = open(limit_file).read().strip()
            usage = int(open(usage_file).read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return int(limit) - usage
    return None


def _cuda_free_memory() -> int | None:
    """Free memory of GPU 0 as nvidia-smi reports it (CT2 has no such query)."""
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return int(out.strip().splitlines()[0]) * 2**20
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def available_memory(device: str) -> int:
    """Bytes a model may use on ``device``: free RAM (cgroup-aware) or free VRAM."""
    if device == "cuda":
        free = _cuda_free_memory()
        if free is not None:
            return free
    import psutil

    available = psutil.virtual_memory().available
    cgroup_left = _cgroup_memory_left()
    return min(available, cgroup_left) if cgroup_left is not None else available
