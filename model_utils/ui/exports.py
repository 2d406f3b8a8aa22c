"""Files a visitor downloads (CSV of a table). Written under one temporary folder whose old files
are removed as new ones come, so nothing per visitor is kept for ever."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

EXPORT_DIR = Path(tempfile.gettempdir()) / "pythia-ct2-exports"
KEEP_S = 3600  # an hour is plenty to click "download"


def csv_file(name: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
    """Write ``rows`` to a fresh CSV file and return its path; older exports are pruned."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in EXPORT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > KEEP_S:
                old.unlink()
        except OSError:  # another worker removed it first
            pass
    fd, path = tempfile.mkstemp(prefix=f"{name}-", suffix=".csv", dir=EXPORT_DIR)
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path
