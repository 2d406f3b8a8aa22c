"""The offline demo model: a tiny Pythia-architecture model trained on the King James Bible by
tools/train_demo.py, shipped in the package with Pythia-named training checkpoints (float16
safetensors, converted to CT2 by the app's own converter on first use)."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.catalog import PythiaModel

DEMO_DIR = Path(__file__).parent / "data" / "demo"
DEMO_MODEL = "demo-pythia-kjv"
HELD_OUT_TEXT = DEMO_DIR / "heldout.txt"  # never trained on
TRAINED_PASSAGE = DEMO_DIR / "trained_passage.txt"  # part of the training data


def demo_model(directory: Path = DEMO_DIR) -> PythiaModel:
    """The catalog entry of the trained demo model, read from its TRAINING.json and config."""
    training = json.loads((directory / "TRAINING.json").read_text())
    config = json.loads((directory / "main" / "config.json").read_text())
    steps = {c["revision"]: c["step"] for c in training["checkpoints"]}
    revisions = ("main", *sorted((r for r in steps if r != "main"), key=steps.get))
    return PythiaModel(
        DEMO_MODEL, config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
        config["vocab_size"], local_path=directory, own_revisions=revisions, main_step=steps["main"],
        description=("A tiny model with Pythia's architecture, trained here on the King James Bible for the offline "
                     "demo: not a Pythia checkpoint."),
        example_text=HELD_OUT_TEXT.read_text()[:400].rsplit(" ", 1)[0])
