"""One engine for the service: each (model, revision) goes to the remote vLLM engine when an
operator pointed it at a server, and to the local CT2 engine otherwise.

A remote model failing changes nothing for local ones: they share no lock, thread or client.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from ..core.catalog import Catalog, PythiaModel
from ..core.progress import ProgressCallback
from .devices import DeviceConfig
from .engine import Engine
from .interface import Capabilities, ServedModel
from .model_status import ModelStatus
from .remote import RemoteEngine


class EngineRouter:
    """The ModelEngine the service talks to."""

    def __init__(self, local: Engine, remote: RemoteEngine | None = None):
        self.local = local
        self.remote = remote

    @property
    def device(self) -> DeviceConfig:
        return self.local.device

    @property
    def catalog(self) -> Catalog:
        return self.local.catalog

    def _engine(self, model: PythiaModel, revision: str):
        return self.remote if self.remote is not None and self.remote.serves(model, revision) else self.local

    def open(self, model: PythiaModel, revision: str = "main",
             progress: ProgressCallback | None = None) -> AbstractContextManager[ServedModel]:
        return self._engine(model, revision).open(model, revision, progress)

    def status(self, model: PythiaModel, revision: str = "main") -> ModelStatus:
        return self._engine(model, revision).status(model, revision)

    def capabilities(self, model: PythiaModel, revision: str = "main") -> Capabilities:
        return self._engine(model, revision).capabilities(model, revision)

    def is_cached(self, model: PythiaModel, revision: str) -> bool:
        return self._engine(model, revision).is_cached(model, revision)

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()
        self.local.close()
