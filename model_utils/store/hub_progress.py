"""Bridge huggingface_hub's tqdm progress bars to our Progress callbacks (byte counts of downloads)."""

from __future__ import annotations

import os

from ..core.progress import Progress, ProgressCallback, report

_DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def progress_tqdm(progress: ProgressCallback | None):
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
