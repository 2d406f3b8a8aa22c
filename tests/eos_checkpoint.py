"""A checkpoint whose greedy next token is always <|endoftext|>: the demo model's `main` with its output layer
changed so that one hidden dimension, held at a constant by the final layer norm, feeds only the end-of-text logit.
Every other logit is the demo's own (less that one dimension), so prompts still score differently -- but the
likeliest next token is always the end of the text, which is what lm-eval's scoring requests must survive."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from model_utils.store.demo_model import DEMO_DIR

EOS_ID = 0
# above every logit the demo model reaches on the tests' texts, yet EOS is not certain there (log-prob -0.04 at worst)
EOS_LOGIT = 22.0


def write_eos_checkpoint(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(DEMO_DIR / "main" / name, destination / name)
    tensors = load_file(str(DEMO_DIR / "main" / "model.safetensors"))
    norm_weight = tensors["gpt_neox.final_layer_norm.weight"].copy()
    norm_bias = tensors["gpt_neox.final_layer_norm.bias"].copy()
    out = tensors["embed_out.weight"].copy()
    dim = int(np.argmin(np.abs(out).sum(axis=0)))  # the dimension the output layer leans on least
    norm_weight[dim], norm_bias[dim] = 0, 1  # that dimension is 1 whatever the text
    out[:, dim] = 0
    out[EOS_ID, :] = 0
    out[EOS_ID, dim] = EOS_LOGIT
    tensors.update({"gpt_neox.final_layer_norm.weight": norm_weight, "gpt_neox.final_layer_norm.bias": norm_bias,
                    "embed_out.weight": out})
    save_file(tensors, str(destination / "model.safetensors"), metadata={"format": "pt"})
    return destination
