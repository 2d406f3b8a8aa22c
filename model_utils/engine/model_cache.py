"""Loaded models kept in memory: LRU under a byte budget, pinned while in use.

* Concurrent first requests for one model share a single load.
* A model that is generating (pinned by :meth:`ModelCache.use`) is never evicted.
* Eviction calls ``LoadedModel.close()``, which unloads the CT2 weights at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Hashable, Iterator

from ..core.errors import ServerBusy
from .loaded_model import LoadedModel

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"


@dataclass
class _Entry:
    size: int
    ready: threading.Event = field(default_factory=threading.Event)
    model: LoadedModel | None = None
    error: BaseException | None = None
    pins: int = 0


class ModelCache:
    """An LRU of loaded models whose estimated sizes add up to at most ``budget_bytes``."""

    def __init__(self, budget_bytes: int):
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def use(self, key: Hashable, size: int, load: Callable[[], LoadedModel]) -> Iterator[LoadedModel]:
        """Yield the model for ``key``, loading it with ``load()`` if needed; pin it meanwhile."""
        entry, leader = self._pin(key, size)
        try:
            if leader:
                self._load(key, entry, load)
            else:
                entry.ready.wait()
                if entry.error is not None:
                    raise entry.error
            yield entry.model
        finally:
            with self._lock:
                entry.pins -= 1

    def _pin(self, key: Hashable, size: int) -> tuple[_Entry, bool]:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.error is None:
                entry.pins += 1
                self._entries.move_to_end(key)
                return entry, False
            if size > self.budget_bytes:  # Engine.check_fits refuses such a model, in words, before it gets here
                raise ValueError(f"a model of {size} bytes cannot fit a budget of {self.budget_bytes} bytes")
            self._make_room(size)
            entry = _Entry(size, pins=1)
            self._entries[key] = entry
            return entry, True

    def _make_room(self, size: int) -> None:
        """Evict least recently used idle models until ``size`` more bytes fit."""
        used = sum(e.size for e in self._entries.values())
        for key in list(self._entries):
            if used + size <= self.budget_bytes:
                return
            entry = self._entries[key]
            if entry.pins == 0 and entry.ready.is_set():
                used -= entry.size
                log.info("unloading %s: idle longest, and its memory is needed for another model", key)
                self._drop(key)
        if used + size > self.budget_bytes:
            log.info("busy: refused to load a model of %.1f GiB; the models generating fill the %.1f GiB budget",
                     size / 2**30, self.budget_bytes / 2**30)
            raise ServerBusy("Other models are generating right now and fill the memory; "
                             "try again in a moment or pick a model that is already loaded.")

    def _load(self, key: Hashable, entry: _Entry, load: Callable[[], LoadedModel]) -> None:
        try:
            started = time.monotonic()
            entry.model = load()
            log.info("loaded %s in %.1f s (%.2f GiB reserved)", key, time.monotonic() - started, entry.size / 2**30)
        except BaseException as exc:
            entry.error = exc
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            raise
        finally:
            entry.ready.set()

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        if entry.model is not None:
            entry.model.close()

    def loaded(self) -> list[Hashable]:
        """Keys of the models in memory, least recently used first."""
        with self._lock:
            return [k for k, e in self._entries.items() if e.ready.is_set() and e.error is None]

    def is_loaded(self, key: Hashable) -> bool:
        return key in self.loaded()

    def evict(self, key: Hashable) -> bool:
        """Unload ``key`` if it is idle; return whether it was unloaded."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.pins or not entry.ready.is_set():
                return False
            self._drop(key)
            return True

    def close(self) -> None:
        """Unload every idle model (at shutdown)."""
        for key in self.loaded():
            self.evict(key)
