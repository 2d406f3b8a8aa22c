"""What the server's settings mean on this machine: the device, the threads, the batching and the memory budget.

The settings (model_utils/settings.py) only declare and read options; this turns them into the engine's own
configuration, sized from the cores the app may really use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .batching import BatchingConfig
from .devices import DeviceConfig, resolve_device, usable_cpus


@dataclass(frozen=True)
class Resolved:
    device: DeviceConfig
    batching: BatchingConfig
    memory_budget_bytes: int | None

    @property
    def concurrency(self) -> int:
        """Requests that may decode at once: rows per batch x batches side by side."""
        return self.batching.max_batch_size * self.batching.workers


def resolve(settings: Any) -> Resolved:
    """The device, threads, batching and memory budget ``settings`` (a Settings) mean on this machine."""
    device = resolve_device(settings.device, settings.compute_type)
    workers = settings.workers or default_workers(device.device)
    threads = settings.threads or max(1, usable_cpus() // workers)
    max_batches = max(workers, settings.max_batches or default_max_batches(device.device, workers))
    return Resolved(
        device=resolve_device(settings.device, settings.compute_type, threads),
        batching=BatchingConfig(max_batch_size=settings.max_batch_size, window_s=settings.batch_window_ms / 1000,
                                workers=workers, max_waiting=settings.max_queue, wait_steps=settings.wait_steps,
                                max_batches=max_batches),
        memory_budget_bytes=int(settings.memory_budget * 2**30) if settings.memory_budget else None)


def default_workers(device: str) -> int:
    """Two batches side by side, one thread each, on a multi-core CPU: a new visitor starts in the
    idle worker instead of waiting for a running batch, and for one stream a second thread is at most
    20% faster (BENCHMARKS.md, "CPU ISA and threads"). On CUDA one batch at a time."""
    return 2 if device == "cpu" and usable_cpus() >= 2 else 1


def default_max_batches(device: str, workers: int) -> int:
    """Two batches per core on CPU (one thread each: a core runs two small batches' steps interleaved at
    little loss, since a step is mostly weight repacking; BENCHMARKS.md), one extra on CUDA."""
    return 2 * usable_cpus() if device == "cpu" else workers + 1
