"""Atomic installs of converted models: convert into a temporary directory, verify the header,
write the completion marker, then rename into place. A crash, kill or full disk never leaves a
directory that a later run would trust."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path

from ..core.catalog import PythiaModel
from ..core.errors import ModelUnavailable
from ..core.progress import ProgressCallback
from .converter import convert_checkpoint
from .ct2_header import read_ct2_header

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.store"
COMPLETE_MARKER = "pythia-store.json"  # written last, inside the temp dir, before the rename


def is_complete(path: Path) -> bool:
    """Whether ``path`` is an installed model (its marker is written last)."""
    return (path / COMPLETE_MARKER).is_file() and (path / "model.bin").is_file()


def read_marker(path: Path) -> dict:
    return json.loads((path / COMPLETE_MARKER).read_text())


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def install_converted(final: Path, source: Path, model: PythiaModel, revision: str, precision: str,
                      progress: ProgressCallback | None = None) -> None:
    """Convert ``source`` into ``final`` atomically; failures leave nothing behind."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        output = tmp / "model"
        convert_checkpoint(source, output, precision=precision, progress=progress)
        read_ct2_header(output / "model.bin")  # verify the file is whole before trusting it
        meta = {"model": model.name, "revision": revision, "precision": precision,
                "source": model.repo_id or "local", "size_bytes": dir_size(output)}
        (output / COMPLETE_MARKER).write_text(json.dumps(meta))
        if final.exists():  # an incomplete leftover from a crash: never trusted, replaced
            shutil.rmtree(final)
        output.rename(final)
    except ModelUnavailable as exc:  # already in words, e.g. an incomplete checkpoint
        log.warning("conversion of %s (%s) failed: %s", model.name, revision, exc)
        raise
    except OSError as exc:  # e.g. a full disk: say so, without paths (the log has them)
        log.warning("conversion of %s (%s) failed", model.name, revision, exc_info=exc)
        raise ModelUnavailable(f"Converting {model.name} ({revision}) failed: {exc.strerror or 'I/O error'}. "
                               "Nothing was saved; try again.") from exc
    except Exception as exc:
        log.exception("conversion of %s (%s) failed", model.name, revision)
        raise ModelUnavailable(f"Converting {model.name} ({revision}) failed ({type(exc).__name__}). "
                               "Nothing was saved; try again.") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
