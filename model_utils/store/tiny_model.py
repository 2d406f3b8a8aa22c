"""A tiny random-weight Pythia, built from nothing, for tests and the offline demo.

It has Pythia's architecture and shape rules (GPT-NeoX, rotary on 25% of each
head, parallel residual, untied embeddings, MLP 4x hidden) at toy size, and a
byte-level BPE tokenizer trained on text shipped with this package (the trained file ships too). Its vocab
size equals the tokenizer's, so every id it samples decodes to text. Its output
is gibberish: it exists to exercise the real code paths without the network.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN

CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"
# ``train_tokenizer(dir, 512)`` on CORPUS, trained once and shipped: training BPE inside a test process
# (beside CT2's threads) aborted natively twice in CI, and a copied file is also instant.
TINY_TOKENIZER = Path(__file__).parent / "data" / "tiny_tokenizer.json"
SPECIAL_TOKENS = (EOS_TOKEN, "<|padding|>")  # ids 0 and 1, as in GPT-NeoX-20B's tokenizer


@dataclass(frozen=True)
class TinyShape:
    """Shape of the random model; defaults keep conversion and decoding instant."""

    num_layers: int = 2
    hidden_size: int = 64
    num_heads: int = 4
    seed: int = 0
    weight_std: float = 0.3  # large for peaked logits in tests; 0.02 (HF's init) keeps fp16 activations finite


def train_tokenizer(path: Path, vocab_size: int, corpus: Path = CORPUS) -> int:
    """Train a GPT-NeoX-style byte-level BPE tokenizer on ``corpus``; write tokenizer.json; return its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train([str(corpus)], trainer)
    tokenizer.save(str(path / "tokenizer.json"))
    _write_tokenizer_config(path)
    return tokenizer.get_vocab_size(with_added_tokens=True)


def copy_tiny_tokenizer(path: Path) -> int:
    """Put the shipped tiny tokenizer (and its config) into ``path``; return its vocab size."""
    from tokenizers import Tokenizer

    shutil.copyfile(TINY_TOKENIZER, path / "tokenizer.json")
    _write_tokenizer_config(path)
    return Tokenizer.from_file(str(TINY_TOKENIZER)).get_vocab_size(with_added_tokens=True)


def _write_tokenizer_config(path: Path) -> None:
    (path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "GPTNeoXTokenizerFast", "bos_token": EOS_TOKEN, "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN, "add_bos_token": False, "add_eos_token": False,
        "model_max_length": CONTEXT_LENGTH,
    }, indent=2))


def random_state_dict(shape: TinyShape, vocab_size: int, dtype=np.float32) -> dict[str, np.ndarray]:
    """Random GPT-NeoX weights with HF names (matrices drawn with ``shape.weight_std``)."""
    rng = np.random.default_rng(shape.seed)
    d, inner = shape.hidden_size, 4 * shape.hidden_size

    def w(*dims, std=shape.weight_std):
        return (rng.standard_normal(dims) * std).astype(dtype)

    def norm(prefix):
        return {f"{prefix}.weight": (1 + w(d, std=0.1)).astype(dtype), f"{prefix}.bias": w(d, std=0.1)}

    state = {"gpt_neox.embed_in.weight": w(vocab_size, d, std=1.0), "embed_out.weight": w(vocab_size, d)}
    state.update(norm("gpt_neox.final_layer_norm"))
    for i in range(shape.num_layers):
        p = f"gpt_neox.layers.{i}"
        state.update(norm(f"{p}.input_layernorm"))
        state.update(norm(f"{p}.post_attention_layernorm"))
        state[f"{p}.attention.query_key_value.weight"] = w(3 * d, d)
        state[f"{p}.attention.query_key_value.bias"] = w(3 * d, std=0.1)
        state[f"{p}.attention.dense.weight"] = w(d, d)
        state[f"{p}.attention.dense.bias"] = w(d, std=0.1)
        state[f"{p}.mlp.dense_h_to_4h.weight"] = w(inner, d)
        state[f"{p}.mlp.dense_h_to_4h.bias"] = w(inner, std=0.1)
        state[f"{p}.mlp.dense_4h_to_h.weight"] = w(d, inner)
        state[f"{p}.mlp.dense_4h_to_h.bias"] = w(d, std=0.1)
    return state


def gpt_neox_config(shape: TinyShape, vocab_size: int) -> dict:
    """config.json as Pythia's repos have it (legacy keys that transformers 5 still reads)."""
    return {
        "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
        "hidden_size": shape.hidden_size, "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads, "intermediate_size": 4 * shape.hidden_size,
        "hidden_act": "gelu", "rotary_pct": 0.25, "rotary_emb_base": 10000,
        "max_position_embeddings": CONTEXT_LENGTH, "layer_norm_eps": 1e-5,
        "use_parallel_residual": True, "tie_word_embeddings": False, "vocab_size": vocab_size,
        "bos_token_id": 0, "eos_token_id": 0, "initializer_range": 0.02, "attention_dropout": 0.0,
        "hidden_dropout": 0.0, "torch_dtype": "float32", "use_cache": True,
    }


def write_tiny_checkpoint(path: Path, shape: TinyShape = TinyShape(), *, weights_format: str = "safetensors",
                          dtype=np.float32) -> Path:
    """Write a random Pythia-shaped HF checkpoint (config, weights, tokenizer) into ``path``."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab_size = copy_tiny_tokenizer(path)
    (path / "config.json").write_text(json.dumps(gpt_neox_config(shape, vocab_size), indent=2))
    state = random_state_dict(shape, vocab_size, dtype)
    if weights_format == "safetensors":
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    elif weights_format == "bin":
        _save_torch_bin(state, path / "pytorch_model.bin")
    else:
        raise ValueError(f"weights_format must be 'safetensors' or 'bin', not {weights_format!r}")
    return path


def _save_torch_bin(state: dict[str, np.ndarray], file: Path) -> None:
    """Write a .bin the way torch.save does (needs torch: tests and benchmarks only)."""
    import torch

    torch.save({k: torch.from_numpy(v.copy()) for k, v in state.items()}, str(file))
