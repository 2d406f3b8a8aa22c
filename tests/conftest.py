"""Shared fixtures: a tiny random-weight Pythia built from nothing, converted and loaded
through the same code the app uses. Nothing here reaches the network."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from model_utils.catalog import Catalog
from model_utils.converter import convert_checkpoint
from model_utils.devices import resolve_device
from model_utils.engine import Engine
from model_utils.loaded_model import load_ct2_model
from model_utils.store import ModelStore
from model_utils.tiny_model import TinyShape, write_tiny_checkpoint

OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    """A random GPT-NeoX checkpoint (float32 safetensors + tokenizer) of Pythia's shape rules."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "hf")


@pytest.fixture(scope="session")
def tiny_ct2_dir(tiny_hf_dir, tmp_path_factory) -> Path:
    """The tiny checkpoint converted to CT2 in float32 (exact reference comparisons)."""
    return convert_checkpoint(tiny_hf_dir, tmp_path_factory.mktemp("tiny-ct2") / "model", precision="float32")


@pytest.fixture(scope="session")
def cpu_device():
    return resolve_device("cpu", "float32", threads=1)


@pytest.fixture(scope="session")
def tiny_model(tiny_ct2_dir, cpu_device):
    """The tiny model loaded in float32 on CPU; torn down explicitly at the end."""
    catalog = Catalog()
    info = catalog.register_local(tiny_ct2_dir, "tiny-pythia", random_weights=True)
    model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device)
    yield model
    model.close()
    gc.collect()


@pytest.fixture
def engine(tiny_hf_dir, tmp_path, cpu_device):
    """An Engine whose catalog also serves the tiny HF checkpoint (converted on first use)."""
    catalog = Catalog()
    catalog.register_local(tiny_hf_dir, "tiny-pythia", random_weights=True)
    eng = Engine(cpu_device, catalog=catalog, store=ModelStore(tmp_path / "store"),
                 memory_budget_bytes=4 * 2**30)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR
