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


CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 writes "no memory limit" as a huge number (LONG_MAX rounded down to a page), not as "max".
_CGROUP_V1_NO_LIMIT = 2**60


@dataclass(frozen=True)
class CgroupLimit:
    """A limit and the number that goes with it, as a cgroup states them: quota and period for the CPU,
    limit and usage for memory. ``limit`` is None when the container has none."""

    limit: int | None
    other: int


def read_cgroup_limit(root: Path, v2_files: tuple[str, ...], v1_files: tuple[str, ...]) -> CgroupLimit | None:
    """Read a limit from the first cgroup version whose files are there: v2's unified files under ``root``
    (e.g. ``cpu.max``: "200000 100000"), else v1's per-controller files (one number each). The files' numbers
    are read in order: the limit first. "max" (v2), or a negative or huge number (v1), means no limit.
    None when neither version's files can be read (not in a container)."""
    for names in (v2_files, v1_files):
        try:
            fields = [field for name in names for field in (root / name).read_text().split()]
            limit, other = fields[0], int(fields[1])
            limit = None if limit == "max" else int(limit)
        except (OSError, ValueError, IndexError):
            continue
        return CgroupLimit(limit if limit is not None and 0 < limit < _CGROUP_V1_NO_LIMIT else None, other)
    return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> int | None:
    """The container's CPU limit in whole CPUs (rounded up), or None when it has none."""
    read = read_cgroup_limit(root, ("cpu.max",), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"))
    if read is None or read.limit is None or read.other <= 0:
        return None
    return math.ceil(read.limit / read.other)


def cgroup_memory_left(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes left under the container's memory limit, or None when it has none."""
    read = read_cgroup_limit(root, ("memory.max", "memory.current"),
                             ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))
    if read is None or read.limit is None:
        return None
    return max(0, read.limit - read.other)


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


def available_memory(device: str, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Bytes a model may use on ``device``: free VRAM, or free RAM capped by the container's memory limit
    (a Space runs in a container whose limit is far below the host's free RAM)."""
    if device == "cuda":
        free = _cuda_free_memory()
        if free is not None:
            return free
    import psutil

    available = psutil.virtual_memory().available
    cgroup_left = cgroup_memory_left(cgroup_root)
    return min(available, cgroup_left) if cgroup_left is not None else available
