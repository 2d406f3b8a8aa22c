"""The offline demo model: the tiny random Pythia, built once and kept in the cache."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .converter import convert_checkpoint
from .tiny_model import TinyShape, write_tiny_checkpoint

DEMO_SHAPE = TinyShape(num_layers=2, hidden_size=64, num_heads=4, seed=0)


def ensure_demo_model(root: Path) -> Path:
    """Return a CT2 directory of the random demo model under ``root``, building it atomically."""
    final = Path(root) / "demo" / "tiny-random-pythia-ct2"
    if (final / "model.bin").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-demo-", dir=final.parent))
    try:
        hf = write_tiny_checkpoint(tmp / "hf", DEMO_SHAPE)
        convert_checkpoint(hf, tmp / "ct2", precision="float32")
        try:
            (tmp / "ct2").rename(final)
        except OSError:
            if not (final / "model.bin").is_file():  # not a concurrent builder that won: a real error
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
