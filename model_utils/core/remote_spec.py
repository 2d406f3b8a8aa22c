"""An operator's ``NAME[@REVISION]=URL``: a catalog model that a remote vLLM server serves."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteSpec:
    """One ``NAME[@REVISION]=URL`` entry, checked against the catalog when the app is built."""

    name: str
    revision: str
    url: str
