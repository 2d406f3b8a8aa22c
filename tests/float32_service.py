"""The demo model, the tiny random one and the end-of-text one, served in float32 on one CPU thread: the service the
in-process tests of the routes, the handlers and the batches share (conftest.py's ``float32_service``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from eos_checkpoint import write_eos_checkpoint

from model_utils.core.catalog import Catalog
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.service import PythiaService
from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore
from model_utils.store.local_dirs import describe_local_dir

EOS_MODEL = "eos-pythia"  # tests/eos_checkpoint.py's: its likeliest next token is always <|endoftext|>
RANDOM_MODEL = "tiny-random"  # random weights: its replies are full of characters split across tokens


@contextmanager
def serving(tiny_hf_dir: Path, folder: Path) -> Iterator[PythiaService]:
    catalog = Catalog()
    catalog.add(demo_model())
    catalog.add(describe_local_dir(tiny_hf_dir, name=RANDOM_MODEL, random_weights=True))
    catalog.add(describe_local_dir(write_eos_checkpoint(folder / EOS_MODEL), name=EOS_MODEL))
    engine = Engine(resolve_device("cpu", "float32", 1), catalog=catalog, store=ModelStore(folder / "store"),
                    memory_budget_bytes=4 * 2**30)
    try:
        yield PythiaService(engine, catalog, DEMO_MODEL)
    finally:
        engine.close()
