"""Hub I/O through huggingface_hub: which files to fetch, the downloads, and readable failures.

huggingface_hub's own cache (``HF_HOME``) holds the downloads; ``HF_ENDPOINT``, ``HF_TOKEN``
and ``HF_HUB_OFFLINE`` work as huggingface_hub users expect.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ..core.catalog import PythiaModel
from ..core.errors import ModelUnavailable
from ..core.progress import Progress, ProgressCallback, report
from .converter import TOKENIZER_FILES
from .hub_progress import progress_tqdm

CT2_REPO_FILES = ["config.json", "model.bin", "vocabulary*", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"]
HF_META_FILES = ["config.json", *TOKENIZER_FILES]
HUB_TIMEOUT_S = 10.0  # seconds the Hub may stay silent (connect, or between bytes) before we give up
RETRY_AFTER_S = 30.0  # once the Hub is known unreachable, requests fail at once for this long


class _Reachability:
    """A circuit breaker: after a failure to reach the Hub, say so at once for a while instead of
    making every visitor wait for their own timeout. Cached models never ask."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_until = 0.0

    def check(self, model: PythiaModel, revision: str) -> None:
        with self._lock:
            left = self._down_until - time.monotonic()
        if left > 0:
            raise ModelUnavailable(
                f"{model.name} ({revision}) is not on this server yet, and the Hugging Face Hub could not be "
                f"reached a moment ago; try again in {left:.0f} s. Models already on disk keep working.")

    def failed(self) -> None:
        with self._lock:
            self._down_until = time.monotonic() + RETRY_AFTER_S

    def reset(self) -> None:
        with self._lock:
            self._down_until = 0.0


reachability = _Reachability()


def configure(timeout_s: float = HUB_TIMEOUT_S, retry_after_s: float = RETRY_AFTER_S) -> None:
    """Give every huggingface_hub request a bounded time (its own client waits for ever)."""
    global HUB_TIMEOUT_S, RETRY_AFTER_S
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    HUB_TIMEOUT_S, RETRY_AFTER_S = timeout_s, retry_after_s

    def bounded_client():
        client = default_client_factory()
        client.timeout = httpx2.Timeout(timeout_s)
        return client

    set_client_factory(bounded_client)
    reachability.reset()


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the Hub could not be reached at all: no connection, or
    silence past the timeout. A download cut off midway is not that: the next request may well work."""
    import socket

    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    while exc is not None:
        if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException, TimeoutError, socket.gaierror,
                            ConnectionRefusedError, OfflineModeIsEnabled)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def hub_error(model: PythiaModel, revision: str, exc: Exception) -> ModelUnavailable:
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(exc, RevisionNotFoundError):
        return ModelUnavailable(f"{model.name} has no checkpoint {revision} on the Hub.")
    if isinstance(exc, RepositoryNotFoundError):
        return ModelUnavailable(f"{model.name} was not found on the Hub.")
    if isinstance(exc, LocalEntryNotFoundError) or _unreachable(exc):
        return ModelUnavailable(
            f"{model.name} ({revision}) is not in the local cache and the Hugging Face Hub cannot be reached. "
            "Connect to the internet, or run offline with `python app.py --demo` or `--model-dir PATH`.")
    if isinstance(exc, EntryNotFoundError):
        return ModelUnavailable(f"{model.name} ({revision}) on the Hub is missing a file this app needs.")
    return ModelUnavailable(f"Downloading {model.name} ({revision}) failed: {type(exc).__name__}. Try again.")


def cached_snapshot(repo_id: str, revision: str, patterns: list[str]) -> Path | None:
    """The snapshot of ``repo_id`` already in huggingface_hub's cache, or None (never touches the network)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                      local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return path if (path / "model.bin").is_file() or (path / "config.json").is_file() else None


def download(model: PythiaModel, repo_id: str, revision: str, patterns: list[str],
             progress: ProgressCallback | None) -> Path:
    from huggingface_hub import snapshot_download

    reachability.check(model, revision)
    report(progress, Progress("downloading", 0, None, "bytes"))
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                      tqdm_class=progress_tqdm(progress)))
    except Exception as exc:  # every hub failure becomes one readable message
        if _unreachable(exc):
            reachability.failed()
        raise hub_error(model, revision, exc) from exc


def download_checkpoint(model: PythiaModel, revision: str, progress: ProgressCallback | None) -> Path:
    """Download config, tokenizer and weights; safetensors when the branch has them."""
    from huggingface_hub import HfApi

    reachability.check(model, revision)
    try:
        # one bounded request: list_repo_files would retry a refused connection for ~23 s
        info = HfApi().model_info(model.repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
        files = [s.rfilename for s in info.siblings or ()]
    except Exception as exc:
        if _unreachable(exc):
            reachability.failed()
            raise hub_error(model, revision, exc) from exc
        files = None  # e.g. no such revision: the download below says so in words
    if files is not None and not any(f.endswith(".safetensors") for f in files):
        weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]  # older branches
    else:
        weights = ["model*.safetensors", "model.safetensors.index.json"]
    return download(model, model.repo_id, revision, HF_META_FILES + weights, progress)


def drop_source(model: PythiaModel, revision: str) -> None:
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


def tokenizer_file(model: PythiaModel, revision: str, progress: ProgressCallback | None = None) -> Path:
    """The model's tokenizer.json: from the operator's folder, else from the Hub (a small download;
    the remote engine needs only this, the server holds the weights)."""
    folder = model.source_dir(revision)
    if folder is not None:
        return folder / "tokenizer.json"
    return download(model, model.repo_id, revision, ["tokenizer.json", "config.json"], progress) / "tokenizer.json"
