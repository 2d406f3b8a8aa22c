"""Describe an operator-supplied model directory (HF GPT-NeoX or CT2) as a catalog entry."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.catalog import PythiaModel
from ..core.errors import ModelUnavailable
from .ct2_header import is_ct2_dir, read_ct2_header


def describe_local_dir(path: Path, *, name: str | None = None, random_weights: bool = False) -> PythiaModel:
    """Build a catalog entry for a GPT-NeoX checkpoint dir or a CT2 model dir."""
    path = Path(path).expanduser().resolve()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelUnavailable(f"{path} is not a model directory: it has no config.json.")
    name = name or path.name
    if is_ct2_dir(path):
        shapes, heads = read_ct2_header(path / "model.bin")
        vocab, hidden = shapes["decoder/embeddings/weight"]
        layers = sum(1 for k in shapes if k.endswith("/self_attention/linear_0/weight"))
        return PythiaModel(name, layers, hidden, heads, vocab, local_path=path, random_weights=random_weights)
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "gpt_neox":
        raise ModelUnavailable(
            f"{name}: config.json has model_type {config.get('model_type')!r}; only GPT-NeoX (Pythia) "
            "checkpoints or converted CTranslate2 models can be served."
        )
    return PythiaModel(
        name, config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
        config["vocab_size"], local_path=path, random_weights=random_weights,
    )
