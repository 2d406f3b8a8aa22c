"""A Pythia-160m-shaped random model for benchmarks, with a tokenizer covering all 50304 ids.

Built once into ~/.cache/pythia-bench (never committed). The tokenizer is the tiny
byte-level BPE plus synthetic tokens up to the model's vocabulary, so every id the
model samples decodes to text.

Every benchmark's ``--smoke`` mode uses the same recipe at a tiny shape (2 layers, 64 wide, the same
vocabulary), built in a temporary folder of its own in about a second: the code paths of the real run,
none of its minutes.

    python bench/bench_model.py [--smoke]     # build (or find) the model; print its CT2 folder
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model_utils.store.tiny_model import TinyShape  # noqa: E402

CACHE = Path(os.environ.get("PYTHIA_BENCH_CACHE", Path.home() / ".cache" / "pythia-bench"))
VOCAB = 50304
BENCH_SHAPE = TinyShape(num_layers=12, hidden_size=768, num_heads=12, weight_std=0.02, seed=3)
# head size 32: vLLM's CPU attention needs at least 32, so a smoke run could serve it with vLLM too
SMOKE_SHAPE = TinyShape(num_layers=2, hidden_size=64, num_heads=2, weight_std=0.02, seed=3)


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


@lru_cache(maxsize=None)
def smoke_dir() -> Path:
    """This process's scratch folder for a smoke run (its model and its results), removed at exit: a smoke run
    never touches the cache or bench/results/."""
    path = Path(tempfile.mkdtemp(prefix="pythia-smoke-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def results_path(out: Path | None, default: Path, smoke: bool) -> Path:
    """Where a benchmark writes its results: ``--out`` when given, else ``default`` (under bench/results/), or for a
    smoke run the scratch folder (removed at exit: pass --out to keep them)."""
    if out is not None:
        return Path(out)
    return smoke_dir() / Path(default).name if smoke else Path(default)


def _build(cache: Path, name: str, shape: TinyShape) -> Path:
    from model_utils.store.converter import convert_checkpoint
    from model_utils.store.tiny_model import write_tiny_checkpoint

    final = cache / f"{name}-ct2"
    if (final / "model.bin").is_file():
        return final
    work = cache / f"{name}-build"
    shutil.rmtree(work, ignore_errors=True)
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
    (cache / f"{name}-hf").exists() and shutil.rmtree(cache / f"{name}-hf")
    hf.rename(cache / f"{name}-hf")
    shutil.rmtree(work, ignore_errors=True)
    return final


def bench_model_dir(smoke: bool = False) -> Path:
    """The converted CT2 model (float16 on disk), built on first use; its Hugging Face checkpoint (float32
    safetensors) is beside it, see ``bench_hf_dir``. ``smoke``: the tiny-shaped one, in ``smoke_dir()``."""
    if smoke:
        return _build(smoke_dir(), "bench-smoke", SMOKE_SHAPE)
    return _build(CACHE, "bench-160m", BENCH_SHAPE)


def bench_hf_dir(smoke: bool = False) -> Path:
    """The Hugging Face checkpoint that ``bench_model_dir(smoke)`` was converted from."""
    ct2 = bench_model_dir(smoke)
    return ct2.with_name(ct2.name.removesuffix("-ct2") + "-hf")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny-shaped model, in a temporary folder")
    args = parser.parse_args()
    ct2 = bench_model_dir(args.smoke)
    from tokenizers import Tokenizer

    size = Tokenizer.from_file(str(ct2 / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    print(ct2, f"(vocabulary {size}; checkpoint {bench_hf_dir(args.smoke)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
