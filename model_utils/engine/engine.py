"""The engine: catalog + disk store + in-memory cache + device, behind one object.

The app and the tests talk to this; it owns every loaded generator and tears
them down in :meth:`Engine.close`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator

from ..core.catalog import Catalog, PythiaModel
from ..core.errors import ModelTooLarge
from ..core.progress import Progress, ProgressCallback, report
from ..store.disk import ModelStore
from .batching import BatchingConfig
from .devices import DeviceConfig, available_memory
from .interface import Capabilities
from .loaded_model import LoadedModel, load_ct2_model
from .model_cache import ModelCache
from .model_status import ModelStatus

MEMORY_HEADROOM = 0.85  # leave room for the app, the tokenizer and the OS


class Engine:
    """Serve Pythia models in CT2 form on one device."""

    def __init__(self, device: DeviceConfig, *, catalog: Catalog | None = None, store: ModelStore | None = None,
                 memory_budget_bytes: int | None = None, batching: BatchingConfig = BatchingConfig(),
                 loader: Callable[..., LoadedModel] = load_ct2_model):
        self.device = device
        self._loader = loader  # how a converted directory becomes a LoadedModel (CT2 by default)
        self.batching = batching
        self.catalog = catalog or Catalog()
        self.store = store or ModelStore()
        budget = memory_budget_bytes or int(available_memory(device.device) * MEMORY_HEADROOM)
        self.cache = ModelCache(budget)

    @property
    def memory_budget_bytes(self) -> int:
        return self.cache.budget_bytes

    def _key(self, model: PythiaModel, revision: str) -> tuple:
        return (model.name, revision, self.device.device, self.device.compute_type)

    def batching_for(self, model: PythiaModel) -> BatchingConfig:
        """The engine's batching, with fewer rows per batch when full-context rows would not fit."""
        ct = self.device.compute_type
        spare = self.memory_budget_bytes - model.estimate_bytes(ct, batch_size=0)
        rows_that_fit = max(1, spare // max(1, model.kv_cache_bytes(ct) * self.batching.workers))
        return replace(self.batching, max_batch_size=int(min(self.batching.max_batch_size, rows_that_fit)))

    def estimate(self, model: PythiaModel) -> int:
        """Memory for the weights plus a full-context KV cache for every row that may decode at once."""
        rows = self.batching_for(model).max_batch_size * self.batching.workers
        return model.estimate_bytes(self.device.compute_type, batch_size=rows)

    def check_fits(self, model: PythiaModel) -> None:
        """Refuse, before any download, a model that cannot fit in the memory budget."""
        need = self.estimate(model)
        if need > self.memory_budget_bytes:
            raise ModelTooLarge(
                f"{model.name} needs about {need / 2**30:.1f} GiB with {self.device.compute_type} on "
                f"{self.device.device.upper()}, but this server can give models only "
                f"{self.memory_budget_bytes / 2**30:.1f} GiB. Choose a smaller model.")

    def status(self, model: PythiaModel, revision: str = "main") -> ModelStatus:
        need = self.estimate(model)
        ct = self.device.compute_type
        weights = model.estimate_bytes(ct, batch_size=0)
        conversations = max(0, (self.memory_budget_bytes - weights) // max(1, model.kv_cache_bytes(ct)))
        return ModelStatus(model.name, revision, model.num_parameters, need, self.is_cached(model, revision),
                           self.cache.is_loaded(self._key(model, revision)),
                           need <= self.memory_budget_bytes, model.random_weights, model.local_path is not None,
                           model.description, weights, int(conversations), served_by=self.device.describe())

    def capabilities(self, model: PythiaModel, revision: str = "main") -> Capabilities:
        return Capabilities(self.device.describe())  # CT2 honours every sampling option

    def is_cached(self, model: PythiaModel, revision: str) -> bool:
        """Whether (model, revision) is converted on disk already (no download needed)."""
        return self.store.cached_path(model, revision) is not None

    @contextmanager
    def open(self, model: PythiaModel | str, revision: str = "main",
             progress: ProgressCallback | None = None) -> Iterator[LoadedModel]:
        """Yield a loaded model, fetching/converting/loading it first if needed.

        The service passes a catalog entry and a canonical revision, already validated; a name
        (scripts, tests, benchmarks) is looked up here. The memory guard runs before anything is
        downloaded; the model stays pinned (never evicted) until the ``with`` block ends.
        """
        if isinstance(model, str):
            model, revision = self.catalog.resolve(model, revision)
        self.check_fits(model)

        def load() -> LoadedModel:
            path = self.store.ensure(model, revision, progress)
            report(progress, Progress("loading", 0, None))  # CT2 gives no load progress: indeterminate
            loaded = self._loader(path, model, revision, self.device, self.batching_for(model))
            report(progress, Progress("loading", 1, 1))
            return loaded

        with self.cache.use(self._key(model, revision), self.estimate(model), load) as loaded:
            yield loaded

    def close(self) -> None:
        """Unload every model (call at shutdown: CT2 may abort if generators outlive Python)."""
        self.cache.close()
