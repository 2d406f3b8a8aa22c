"""Run CTranslate2's own (torch + transformers) converter on a GPT-NeoX checkpoint.

With transformers 5.x it breaks on GPT-NeoX: the config no longer has ``rotary_pct``
(now ``rope_parameters.partial_rotary_factor``) and the output layer is ``lm_head``
instead of ``embed_out``. This wrapper restores the two old names, nothing else.
Reference only (benchmarks and a parity test); the app never uses it.

Usage: python bench/official_converter.py HF_DIR OUT_DIR QUANTIZATION
"""

from __future__ import annotations

import sys


def patch_gpt_neox_loader() -> None:
    from ctranslate2.converters.transformers import GPTNeoXLoader

    original = GPTNeoXLoader.get_model_spec
    if getattr(original, "_pythia_patched", False):
        return

    def get_model_spec(self, model):
        config = model.config
        if not hasattr(config, "rotary_pct"):
            rope = getattr(config, "rope_parameters", None) or {}
            config.rotary_pct = rope.get("partial_rotary_factor", getattr(config, "partial_rotary_factor", 0.25))
        if not hasattr(model, "embed_out"):
            model.embed_out = model.lm_head
        return original(self, model)

    get_model_spec._pythia_patched = True
    GPTNeoXLoader.get_model_spec = get_model_spec


def convert(hf_dir: str, out_dir: str, quantization: str = "float16") -> str:
    from ctranslate2.converters import TransformersConverter

    patch_gpt_neox_loader()
    return TransformersConverter(hf_dir, copy_files=["tokenizer.json"], low_cpu_mem_usage=True).convert(
        out_dir, quantization=quantization, force=True)


if __name__ == "__main__":
    convert(*sys.argv[1:4])
