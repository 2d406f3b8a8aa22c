"""The disk store: every Pythia, at any checkpoint, in CT2 form.

* Pre-converted CT2 repos (the seed's) are downloaded as they are.
* Everything else is downloaded from EleutherAI with ``huggingface_hub`` (only
  config, weights and tokenizer) and converted without torch.
* Converted models live under one root, keyed by repo, revision and precision,
  and are installed atomically: converted into a temporary directory, verified,
  marked complete, then renamed into place. A crash, kill or full disk never
  leaves a directory that a later run would trust.
* A disk budget evicts the least recently used conversions.

huggingface_hub's own cache (``HF_HOME``) holds the downloads; ``HF_ENDPOINT``,
``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as huggingface_hub users expect.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.catalog import PythiaModel
from .converter import DEFAULT_SAVED_PRECISION, TOKENIZER_FILES, convert_checkpoint
from ..core.errors import ModelUnavailable
from .local_dirs import is_ct2_dir, read_ct2_header
from ..core.progress import Progress, ProgressCallback, report

log = logging.getLogger(__name__)
COMPLETE_MARKER = "pythia-store.json"  # written last, inside the temp dir, before the rename
CT2_REPO_FILES = ["config.json", "model.bin", "vocabulary*", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"]
HF_META_FILES = ["config.json", *TOKENIZER_FILES]


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


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _hub_error(model: PythiaModel, revision: str, exc: Exception) -> ModelUnavailable:
    from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if isinstance(exc, RevisionNotFoundError):
        return ModelUnavailable(f"{model.name} has no checkpoint {revision} on the Hub.")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelUnavailable(f"{model.name} was not found on the Hub.")
    if isinstance(exc, LocalEntryNotFoundError):
        return ModelUnavailable(
            f"{model.name} ({revision}) is not in the local cache and the Hugging Face Hub cannot be reached. "
            "Connect to the internet, or run offline with `python app.py --demo` or `--model-dir PATH`.")
    if isinstance(exc, EntryNotFoundError):
        return ModelUnavailable(f"{model.name} ({revision}) on the Hub is missing a file this app needs.")
    return ModelUnavailable(f"Downloading {model.name} ({revision}) failed: {type(exc).__name__}. Try again.")


_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _progress_tqdm(progress: ProgressCallback | None, stage_start: float = 0.0):
    """A tqdm class that forwards huggingface_hub's byte counts to ``progress``."""
    from huggingface_hub.utils import tqdm as hf_tqdm

    class ReportingTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False  # counting must work even when hub bars are disabled
            kwargs["file"] = _DEVNULL  # the UI shows progress; keep server logs clean
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            result = super().update(n)
            if self.unit == "B" and self.total and not str(self.desc).startswith("Downloading bytes"):
                report(progress, Progress("downloading", self.n, self.total, "bytes"))
            return result

    return ReportingTqdm


class ModelStore:
    """Fetch, convert and cache models in CT2 form under ``root``."""

    def __init__(self, root: Path | None = None, *, disk_budget_bytes: int | None = None,
                 precision: str = DEFAULT_SAVED_PRECISION, keep_source: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.disk_budget_bytes = disk_budget_bytes
        self.precision = precision
        self.keep_source = keep_source
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.conversions = 0  # how many conversions ran (tests check concurrent requests share one)

    # -- keys and paths -------------------------------------------------------
    def key(self, model: PythiaModel, revision: str) -> str:
        if model.local_path is not None:
            import hashlib

            digest = hashlib.sha256(str(model.local_path).encode()).hexdigest()[:12]
            return f"local--{model.name}--{digest}--{self.precision}"
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
        if model.local_path is not None and is_ct2_dir(model.local_path):
            return model.local_path
        if model.ct2_repo_id and revision == "main":
            return self._cached_snapshot(model.ct2_repo_id, "main", CT2_REPO_FILES)
        final = self._final_dir(self.key(model, revision))
        return final if self._is_complete(final) else None

    def ensure(self, model: PythiaModel, revision: str, progress: ProgressCallback | None = None) -> Path:
        """Return a CT2 directory for (model, revision), downloading/converting it if needed."""
        cached = self.cached_path(model, revision)
        if cached is not None:
            self._touch(cached)
            return cached
        if model.ct2_repo_id and revision == "main":
            return self._download(model, model.ct2_repo_id, revision, CT2_REPO_FILES, progress)
        key = self.key(model, revision)
        final = self._final_dir(key)
        thread_lock, file_lock = self._lock(key)
        with thread_lock, file_lock:
            if self._is_complete(final):  # another thread or process finished it meanwhile
                self._touch(final)
                return final
            source = model.local_path or self._download_checkpoint(model, revision, progress)
            self._install(key, final, source, model, revision, progress)
        if not self.keep_source and model.local_path is None:
            self._drop_source(model, revision)
        self.enforce_budget(keep=key)
        return final

    def list(self) -> list[StoredModel]:
        """Converted models on disk, least recently used first."""
        entries = []
        models_dir = self.root / "models"
        for path in models_dir.iterdir() if models_dir.is_dir() else ():
            if not self._is_complete(path):
                continue
            meta = json.loads((path / COMPLETE_MARKER).read_text())
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
        return removed

    # -- internals ------------------------------------------------------------
    @staticmethod
    def _is_complete(path: Path) -> bool:
        return (path / COMPLETE_MARKER).is_file() and (path / "model.bin").is_file()

    @staticmethod
    def _touch(path: Path) -> None:
        marker = path / COMPLETE_MARKER
        if marker.is_file():
            try:
                os.utime(marker)
            except OSError:  # read-only cache: recency is only a hint
                pass

    def _cached_snapshot(self, repo_id: str, revision: str, patterns: list[str]) -> Path | None:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                          local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            return None
        return path if (path / "model.bin").is_file() or (path / "config.json").is_file() else None

    def _download(self, model: PythiaModel, repo_id: str, revision: str, patterns: list[str],
                  progress: ProgressCallback | None) -> Path:
        from huggingface_hub import snapshot_download

        report(progress, Progress("downloading", 0, None, "bytes"))
        try:
            return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                          tqdm_class=_progress_tqdm(progress)))
        except Exception as exc:  # every hub failure becomes one readable message
            raise _hub_error(model, revision, exc) from exc

    def _download_checkpoint(self, model: PythiaModel, revision: str, progress: ProgressCallback | None) -> Path:
        """Download config, tokenizer and weights; safetensors when the branch has them."""
        from huggingface_hub import HfApi

        try:
            files = HfApi().list_repo_files(model.repo_id, revision=revision)
        except Exception:
            files = None  # offline: fall back to whatever snapshot is cached
        if files is not None and not any(f.endswith(".safetensors") for f in files):
            weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]  # older branches
        else:
            weights = ["model*.safetensors", "model.safetensors.index.json"]
        return self._download(model, model.repo_id, revision, HF_META_FILES + weights, progress)

    def _install(self, key: str, final: Path, source: Path, model: PythiaModel, revision: str,
                 progress: ProgressCallback | None) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
        try:
            output = tmp / "model"
            convert_checkpoint(source, output, precision=self.precision, progress=progress)
            read_ct2_header(output / "model.bin")  # verify the file is whole before trusting it
            meta = {"model": model.name, "revision": revision, "precision": self.precision,
                    "source": model.repo_id or "local", "size_bytes": _dir_size(output)}
            (output / COMPLETE_MARKER).write_text(json.dumps(meta))
            if final.exists():  # an incomplete leftover from a crash: never trusted, replaced
                shutil.rmtree(final)
            output.rename(final)
            self.conversions += 1
        except ModelUnavailable:
            raise
        except OSError as exc:  # e.g. a full disk: say so, without paths
            raise ModelUnavailable(f"Converting {model.name} ({revision}) failed: {exc.strerror or 'I/O error'}. "
                                   "Nothing was saved; try again.") from exc
        except Exception as exc:
            log.exception("conversion of %s (%s) failed", model.name, revision)
            raise ModelUnavailable(f"Converting {model.name} ({revision}) failed ({type(exc).__name__}). "
                                   "Nothing was saved; try again.") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _drop_source(self, model: PythiaModel, revision: str) -> None:
        """Delete the downloaded checkpoint once converted (keep_source=False)."""
        from huggingface_hub import scan_cache_dir

        try:
            info = scan_cache_dir()
        except Exception:
            return
        for repo in info.repos:
            if repo.repo_id == model.repo_id:
                hashes = [r.commit_hash for r in repo.revisions if revision in r.refs]
                if hashes:
                    info.delete_revisions(*hashes).execute()
