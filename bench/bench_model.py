"""A Pythia-160m-shaped random model for benchmarks, with a tokenizer covering all 50304 ids.

Built once into ~/.cache/pythia-bench (never committed). The tokenizer is the tiny
byte-level BPE plus synthetic tokens up to the model's vocabulary, so every id the
model samples decodes to text.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path(os.environ.get("PYTHIA_BENCH_CACHE", Path.home() / ".cache" / "pythia-bench"))
VOCAB = 50304


def full_vocab_tokenizer(directory: Path) -> None:
    """Extend tokenizer.json's BPE vocab with synthetic byte-level tokens up to VOCAB ids."""
    from tokenizers import pre_tokenizers

    data = json.loads((directory / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    letters = [c for c in alphabet if c.isalpha()]
    i = 0
    while len(vocab) < VOCAB:  # the special tokens are in the BPE vocab too
        a, b, c = letters[i % len(letters)], letters[(i // len(letters)) % len(letters)], letters[
            (i // len(letters) ** 2) % len(letters)]
        token = f"Ġ{a}{b}{c}"
        if token not in vocab:
            vocab[token] = len(vocab)
        i += 1
    (directory / "tokenizer.json").write_text(json.dumps(data))


def bench_model_dir() -> Path:
    """The converted CT2 model (float16 on disk), built on first use."""
    from model_utils.store.converter import convert_checkpoint
    from model_utils.store.tiny_model import TinyShape, write_tiny_checkpoint

    final = CACHE / "bench-160m-ct2"
    if (final / "model.bin").is_file():
        return final
    work = CACHE / "bench-160m-build"
    shutil.rmtree(work, ignore_errors=True)
    shape = TinyShape(num_layers=12, hidden_size=768, num_heads=12, weight_std=0.02, seed=3)
    hf = write_tiny_checkpoint(work / "hf", shape)
    full_vocab_tokenizer(hf)
    from tokenizers import Tokenizer

    size = Tokenizer.from_file(str(hf / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    assert size == VOCAB, size
    # Re-write the weights for the full vocabulary.
    from safetensors.numpy import save_file

    from model_utils.store.tiny_model import gpt_neox_config, random_state_dict

    (hf / "config.json").write_text(json.dumps(gpt_neox_config(shape, VOCAB)))
    save_file(random_state_dict(shape, VOCAB), str(hf / "model.safetensors"), metadata={"format": "pt"})
    convert_checkpoint(hf, work / "ct2")
    (work / "ct2").rename(final)
    (CACHE / "bench-160m-hf").exists() and shutil.rmtree(CACHE / "bench-160m-hf")
    hf.rename(CACHE / "bench-160m-hf")
    shutil.rmtree(work, ignore_errors=True)
    return final


if __name__ == "__main__":
    print(bench_model_dir())
