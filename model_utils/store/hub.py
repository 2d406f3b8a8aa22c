"""Hub I/O through huggingface_hub: which files to fetch, the downloads, and readable failures.

huggingface_hub's own cache (``HF_HOME``) holds the downloads; ``HF_ENDPOINT``, ``HF_TOKEN``
and ``HF_HUB_OFFLINE`` work as huggingface_hub users expect.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from ..core.catalog import PythiaModel
from ..core.errors import ModelUnavailable
from ..core.progress import Progress, ProgressCallback, report
from .converter import TOKENIZER_FILES
from .hub_progress import progress_tqdm

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.store"

CT2_REPO_FILES = ["config.json", "model.bin", "vocabulary*", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json"]
HF_META_FILES = ["config.json", *TOKENIZER_FILES]
DEFAULT_TIMEOUT_S = 10.0  # seconds the Hub may stay silent (connect, or between bytes) before we give up
RETRY_AFTER_S = 30.0  # once the Hub is known unreachable, requests fail at once for this long
_PHASES = ("connect", "read", "write", "pool")


def bound_requests(timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Let no huggingface_hub request stay silent longer than ``timeout_s`` (connecting, each read, each
    write, waiting for a connection). Process-wide, as huggingface_hub shares one HTTP client per process;
    app.py calls it once at start.

    Why a hook on the client, and not huggingface_hub's timeout settings: snapshot_download asks for the
    revision and the file list with ``timeout=None`` (no limit at all), and neither HF_HUB_ETAG_TIMEOUT nor
    HF_HUB_DOWNLOAD_TIMEOUT reaches those requests: a Hub that accepts the connection and never answers
    held a download, and every visitor waiting for that model, for good. The hook caps whatever timeout a
    request carries, ``None`` included.

    Why the private ``default_client_factory``: it builds huggingface_hub's own client, whose request hook
    enforces HF_HUB_OFFLINE and counts downloads; no public API hands that hook out. huggingface_hub is
    pinned in requirements.txt, and tests/test_hub_bounds.py checks both that offline mode still refuses
    and that every request is capped, so an upgrade that moves it fails there, not in production.
    """
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils._http import default_client_factory

    def cap_timeouts(request) -> None:
        asked = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {
            phase: timeout_s if asked.get(phase) is None else min(asked[phase], timeout_s) for phase in _PHASES}

    def bounded_client():
        client = default_client_factory()
        client.event_hooks = {**client.event_hooks,
                              "request": [*client.event_hooks.get("request", []), cap_timeouts]}
        return client

    set_client_factory(bounded_client)


def _causes(exc: BaseException | None):
    """``exc`` and what caused it, outermost first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the Hub could not be reached at all: no connection, or
    silence past the timeout. A download cut off midway is not that: the next request may well work."""
    import socket

    import httpx2
    from huggingface_hub.errors import OfflineModeIsEnabled

    return any(isinstance(e, (httpx2.ConnectError, httpx2.TimeoutException, TimeoutError, socket.gaierror,
                              ConnectionRefusedError, OfflineModeIsEnabled)) for e in _causes(exc))


def _http_status(exc: BaseException) -> int | None:
    """The status code of the Hub's answer that ``exc`` (or its cause) reports, if it got one."""
    from huggingface_hub.errors import HfHubHTTPError

    for e in _causes(exc):
        response = getattr(e, "response", None) if isinstance(e, HfHubHTTPError) else None
        if response is not None:
            return response.status_code
    return None


def hub_error(model: PythiaModel, revision: str, exc: Exception) -> ModelUnavailable:
    """What a visitor reads when fetching (model, revision) failed with ``exc``. It names no flag or command:
    visitors cannot pass any; the server's log tells the operator what to do."""
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    causes = list(_causes(exc))
    if any(isinstance(e, RevisionNotFoundError) for e in causes):
        return ModelUnavailable(f"{model.name} has no checkpoint {revision} on the Hub.")
    if any(isinstance(e, RepositoryNotFoundError) for e in causes):
        return ModelUnavailable(f"{model.name} was not found on the Hub.")
    if _unreachable(exc):
        return ModelUnavailable(
            f"{model.name} ({revision}) is not on this server yet, and the Hugging Face Hub cannot be reached "
            "from it right now. Models already on this server keep working.")
    status = _http_status(exc)
    if status == 404:
        return ModelUnavailable(f"{model.name} ({revision}) was not found on the Hub.")
    if status is not None and (status == 429 or status >= 500):
        return ModelUnavailable(f"The Hugging Face Hub is busy or having trouble (it answered {status}) and "
                                f"{model.name} ({revision}) could not be downloaded; try again in a few minutes.")
    if status is not None:
        return ModelUnavailable(f"The Hugging Face Hub refused to send {model.name} ({revision}) "
                                f"(it answered {status}).")
    if any(isinstance(e, EntryNotFoundError) for e in causes):
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


class Hub:
    """Downloads from the Hugging Face Hub, with a circuit breaker: after a failure to reach the Hub, say so
    at once for ``retry_after_s`` instead of making every visitor wait for their own timeout. Models on disk
    never ask it anything."""

    def __init__(self, retry_after_s: float = RETRY_AFTER_S):
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._down_until = 0.0

    # -- the circuit breaker -----------------------------------------------------------------
    def _check(self, model: PythiaModel, revision: str) -> None:
        with self._lock:
            left = self._down_until - time.monotonic()
        if left > 0:
            raise ModelUnavailable(
                f"{model.name} ({revision}) is not on this server yet, and the Hugging Face Hub could not be "
                f"reached a moment ago; try again in {left:.0f} s. Models already on this server keep working.")

    def _failed(self, model: PythiaModel, revision: str, what: str, exc: Exception) -> ModelUnavailable:
        """Log a failed Hub call for the operator (with the traceback unless the Hub was simply unreachable),
        open the breaker when it was, and return the visitor's message."""
        error = hub_error(model, revision, exc)
        if _unreachable(exc):
            with self._lock:
                self._down_until = time.monotonic() + self.retry_after_s
            log.warning("%s %s (%s) failed: the Hub cannot be reached (%s: %s); requests for models not on "
                        "disk are refused for %.0f s", what, model.name, revision, type(exc).__name__, exc,
                        self.retry_after_s)
        elif _http_status(exc) is not None:  # the Hub answered: its status says it all
            log.warning("%s %s (%s) failed: the Hub answered %s (%s)", what, model.name, revision,
                        _http_status(exc), error)
        else:
            log.warning("%s %s (%s) failed", what, model.name, revision, exc_info=exc)
        return error

    # -- downloads -----------------------------------------------------------------------------
    def download(self, model: PythiaModel, repo_id: str, revision: str, patterns: list[str],
                 progress: ProgressCallback | None) -> Path:
        from huggingface_hub import snapshot_download

        self._check(model, revision)
        report(progress, Progress("downloading", 0, None, "bytes"))
        log.info("downloading %s (%s) from %s", model.name, revision, repo_id)
        started = time.monotonic()
        try:
            path = Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns,
                                          tqdm_class=progress_tqdm(progress)))
        except Exception as exc:  # every hub failure becomes one readable message, and a line in the log
            raise self._failed(model, revision, "downloading", exc) from exc
        log.info("downloaded %s (%s) in %.1f s", model.name, revision, time.monotonic() - started)
        return path

    def download_checkpoint(self, model: PythiaModel, revision: str, progress: ProgressCallback | None) -> Path:
        """Download config, tokenizer and weights; safetensors when the branch has them."""
        from huggingface_hub import HfApi

        self._check(model, revision)
        try:
            # one request, capped like all (bound_requests): list_repo_files would retry for ~23 s more
            info = HfApi().model_info(model.repo_id, revision=revision)
            files = [s.rfilename for s in info.siblings or ()]
        except Exception as exc:
            if _unreachable(exc):
                raise self._failed(model, revision, "listing the files of", exc) from exc
            log.info("listing the files of %s (%s) failed (%s); the download says why", model.name, revision,
                     type(exc).__name__)
            files = None  # e.g. no such revision: the download below says so in words
        if files is not None and not any(f.endswith(".safetensors") for f in files):
            weights = ["pytorch_model*.bin", "pytorch_model.bin.index.json"]  # older branches
        else:
            weights = ["model*.safetensors", "model.safetensors.index.json"]
        return self.download(model, model.repo_id, revision, HF_META_FILES + weights, progress)

    def tokenizer_file(self, model: PythiaModel, revision: str, progress: ProgressCallback | None = None) -> Path:
        """The model's tokenizer.json: from the operator's folder, else from the Hub (a small download;
        the remote engine needs only this, the server holds the weights)."""
        folder = model.source_dir(revision)
        if folder is not None:
            return folder / "tokenizer.json"
        return self.download(model, model.repo_id, revision, ["tokenizer.json", "config.json"],
                             progress) / "tokenizer.json"

    def probe(self, model: PythiaModel) -> None:
        """Ask the Hub, once, whether ``model``'s ``main`` can be fetched; raise ModelUnavailable saying why not
        (the Hub cannot be reached, it has no such repo, it refused). The app asks at start about a default
        model that is not on disk."""
        from huggingface_hub import HfApi

        self._check(model, "main")
        try:
            HfApi().model_info(model.ct2_repo_id or model.repo_id, revision="main")
        except Exception as exc:
            raise self._failed(model, "main", "asking the Hub about", exc) from exc
