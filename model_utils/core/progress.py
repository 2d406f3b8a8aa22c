"""Progress of long work (download, conversion, loading), reported to a callback.

The UI turns these into a progress bar; code that doesn't care passes None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional


@dataclass(frozen=True)
class Progress:
    """One progress report: a stage name and how far it got."""

    stage: str  # "downloading", "converting", "loading"
    done: float
    total: float | None = None
    unit: str = ""

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(1.0, self.done / self.total)


ProgressCallback = Callable[[Progress], None]


def report(callback: Optional[ProgressCallback], progress: Progress) -> None:
    """Send ``progress`` to ``callback`` if there is one."""
    if callback is not None:
        callback(progress)
