"""The disk store: every Pythia, at any checkpoint, in CT2 form.

* Pre-converted CT2 repos (the seed's) are downloaded as they are.
* Everything else is downloaded from EleutherAI with ``huggingface_hub`` (only
  config, weights and tokenizer) and converted without torch.
* Converted models live under one root, keyed by repo, revision and precision,
  and are installed atomically (install.py).
* A disk budget evicts the least recently used conversions.

Hub I/O is in hub.py, the conversion in converter.py; this module decides what to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.catalog import PythiaModel
from ..core.progress import ProgressCallback
from .converter import DEFAULT_SAVED_PRECISION
from .ct2_header import is_ct2_dir
from .hub import CT2_REPO_FILES, Hub, cached_snapshot
from .install import COMPLETE_MARKER, install_converted, is_complete, read_marker

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.store"


def default_cache_dir() -> Path:
    """PYTHIA_CACHE_DIR, else a folder inside huggingface_hub's HF_HOME."""
    if os.environ.get("PYTHIA_CACHE_DIR"):
        return Path(os.environ["PYTHIA_CACHE_DIR"]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "pythia-ct2"


@dataclass(frozen=True)
class StoredModel:
    """A converted model on disk."""

    key: str
    path: Path
    model: str
    revision: str
    precision: str
    size_bytes: int
    last_used: float


class ModelStore:
    """Fetch, convert and cache models in CT2 form under ``root``; ``hub`` fetches what is not on disk.
    ``disk_budget_bytes``: converted models beyond it are deleted, least recently used first."""

    def __init__(self, root: Path | None = None, *, disk_budget_bytes: int | None = None,
                 precision: str = DEFAULT_SAVED_PRECISION, hub: Hub | None = None):
        self.root = Path(root) if root else default_cache_dir()
        self.disk_budget_bytes = disk_budget_bytes
        self.precision = precision
        self.hub = hub or Hub()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- keys and paths -------------------------------------------------------
    def key(self, model: PythiaModel, revision: str) -> str:
        if model.local_path is not None:
            import hashlib

            digest = hashlib.sha256(str(model.source_dir(revision)).encode()).hexdigest()[:12]
            return f"local--{model.name}--{revision}--{digest}--{self.precision}"
        return f"{model.repo_id.replace('/', '--')}--{revision}--{self.precision}"

    def _final_dir(self, key: str) -> Path:
        return self.root / "models" / key

    def _lock(self, key: str):
        from filelock import FileLock

        with self._locks_guard:
            thread_lock = self._locks.setdefault(key, threading.Lock())
        (self.root / "locks").mkdir(parents=True, exist_ok=True)
        return thread_lock, FileLock(str(self.root / "locks" / f"{key}.lock"))

    # -- public API -----------------------------------------------------------
    def cached_path(self, model: PythiaModel, revision: str) -> Path | None:
        """The CT2 directory for (model, revision) if it is ready on disk, else None."""
        source = model.source_dir(revision)
        if source is not None and is_ct2_dir(source):
            return source
        if model.ct2_repo_id and revision == "main":
            return cached_snapshot(model.ct2_repo_id, "main", CT2_REPO_FILES)
        final = self._final_dir(self.key(model, revision))
        return final if is_complete(final) else None

    def ensure(self, model: PythiaModel, revision: str, progress: ProgressCallback | None = None) -> Path:
        """Return a CT2 directory for (model, revision), downloading/converting it if needed."""
        cached = self.cached_path(model, revision)
        if cached is not None:
            self._touch(cached)
            return cached
        if model.ct2_repo_id and revision == "main":
            return self.hub.download(model, model.ct2_repo_id, revision, CT2_REPO_FILES, progress)
        key = self.key(model, revision)
        final = self._final_dir(key)
        thread_lock, file_lock = self._lock(key)
        with thread_lock, file_lock:
            if is_complete(final):  # another thread or process finished it meanwhile
                self._touch(final)
                return final
            source = model.source_dir(revision) or self.hub.download_checkpoint(model, revision, progress)
            log.info("converting %s (%s) to CT2 %s", model.name, revision, self.precision)
            started = time.monotonic()
            install_converted(final, source, model, revision, self.precision, progress)
            log.info("converted %s (%s) in %.1f s", model.name, revision, time.monotonic() - started)
        self.enforce_budget(keep=key)
        return final

    def list(self) -> list[StoredModel]:
        """Converted models on disk, least recently used first."""
        entries = []
        models_dir = self.root / "models"
        for path in models_dir.iterdir() if models_dir.is_dir() else ():
            if not is_complete(path):
                continue
            meta = read_marker(path)
            entries.append(StoredModel(path.name, path, meta["model"], meta["revision"], meta["precision"],
                                       meta["size_bytes"], (path / COMPLETE_MARKER).stat().st_mtime))
        return sorted(entries, key=lambda e: e.last_used)

    def remove(self, key: str) -> bool:
        """Delete a converted model; return whether it existed."""
        path = self._final_dir(key)
        if not path.exists():
            return False
        trash = path.with_name(f".trash-{key}-{os.getpid()}-{time.monotonic_ns()}")
        path.rename(trash)  # atomic: readers see the model or nothing
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def enforce_budget(self, keep: str | None = None) -> list[str]:
        """Evict least recently used conversions until the disk budget holds."""
        if self.disk_budget_bytes is None:
            return []
        entries = self.list()
        used = sum(e.size_bytes for e in entries)
        removed = []
        for entry in entries:
            if used <= self.disk_budget_bytes:
                break
            if entry.key != keep and self.remove(entry.key):
                used -= entry.size_bytes
                removed.append(entry.key)
                log.info("deleted %s (%s) from disk: converted models may use %.1f GiB", entry.model,
                         entry.revision, self.disk_budget_bytes / 2**30)
        return removed

    # -- internals ------------------------------------------------------------
    @staticmethod
    def _touch(path: Path) -> None:
        marker = path / COMPLETE_MARKER
        if marker.is_file():
            try:
                os.utime(marker)
            except OSError:  # read-only cache: recency is only a hint
                pass

