"""Convert a GPT-NeoX (Pythia) checkpoint to CTranslate2 without torch.

The model is described with CT2's own ``TransformerDecoderModelSpec`` and written
by CT2's own serializer, but every weight is a lazy variable that reads its
tensor from the memory-mapped checkpoint only when it is written. Peak memory is
therefore about one tensor, not the whole model (the official converter first
loads the whole model through transformers and torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import ModelUnavailable
from ..core.progress import Progress, ProgressCallback, report
from .checkpoint_reader import TensorRef, read_checkpoint

# The precision written to disk. float16 halves the files versus float32 and is
# what the seed's pre-converted model used; int8 is applied when loading.
DEFAULT_SAVED_PRECISION = "float16"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _lazy_variable_class():
    from ctranslate2.specs import model_spec

    class LazyVariable(model_spec.Variable):
        """A weight computed on demand (read, reshape, cast) when CT2 serializes it."""

        def __init__(self, compute: Callable[[], np.ndarray], shape, dtype: str, on_read=None):
            self._compute, self._shape, self._dtype, self._on_read = compute, tuple(shape), dtype, on_read

        @property
        def shape(self):
            return self._shape

        @property
        def dtype(self) -> str:
            return self._dtype

        def numpy(self) -> np.ndarray:
            array = np.asarray(self._compute(), dtype=self._dtype)
            if self._on_read:
                self._on_read()
            return array

        def num_bytes(self) -> int:
            return int(np.prod(self._shape, dtype=np.int64)) * np.dtype(self._dtype).itemsize

        def to_bytes(self) -> bytes:
            return np.ascontiguousarray(self.numpy()).tobytes()

        def _to(self, dtype: str):
            if dtype == "bfloat16":
                raise ModelUnavailable("Saving in bfloat16 needs torch; save float16 or float32 instead.")
            return LazyVariable(self._compute, self._shape, dtype, self._on_read)

        def _equal(self, other) -> bool:
            # CT2 compares weights to alias duplicates (tied embeddings). Pythia's
            # embeddings are untied, and comparing would read every tensor twice.
            return False

    return LazyVariable


def _rotary_settings(config: dict) -> tuple[float, float]:
    """(partial rotary factor, base) from either the legacy or the transformers-5 config keys."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    pct = config.get("rotary_pct", rope.get("partial_rotary_factor", config.get("partial_rotary_factor")))
    base = config.get("rotary_emb_base", rope.get("rope_theta", config.get("rope_theta", 10000)))
    if pct is None:
        raise ModelUnavailable("config.json does not say which part of each head is rotary (rotary_pct).")
    return float(pct), float(base)


def vocabulary_tokens(tokenizer_file: Path, vocab_size: int) -> list[str]:
    """Token strings by id, padded like the official converter to the model's vocab size."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_file)).get_vocab(with_added_tokens=True)
    by_id = {i: t for t, i in vocab.items()}
    if len(by_id) > vocab_size:
        raise ModelUnavailable(f"The tokenizer has {len(by_id)} tokens but the model only {vocab_size}.")
    tokens, extra = [], 0
    for i in range(vocab_size):
        if i in by_id:
            tokens.append(by_id[i])
        else:
            tokens.append(f"<extra_id_{extra}>")
            extra += 1
    return tokens


def convert_checkpoint(source: Path, output: Path, *, precision: str = DEFAULT_SAVED_PRECISION,
                       tokenizer_dir: Path | None = None, progress: ProgressCallback | None = None) -> Path:
    """Convert the HF GPT-NeoX checkpoint in ``source`` into a CT2 model in ``output``.

    ``output`` must not exist yet (the store converts into a temporary directory
    and renames it into place). Returns ``output``.
    """
    from ctranslate2.specs import common_spec, transformer_spec

    source, output = Path(source), Path(output)
    tokenizer_dir = Path(tokenizer_dir or source)
    config = json.loads((source / "config.json").read_text())
    if config.get("model_type") != "gpt_neox":
        raise ModelUnavailable(f"Not a GPT-NeoX checkpoint (model_type {config.get('model_type')!r}).")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ModelUnavailable(f"Unsupported activation {config.get('hidden_act')!r}; Pythia uses gelu.")
    if config.get("tie_word_embeddings"):
        raise ModelUnavailable("Tied embeddings are not Pythia's layout.")
    layers, heads = config["num_hidden_layers"], config["num_attention_heads"]
    hidden, vocab_size = config["hidden_size"], config["vocab_size"]
    head_dim = hidden // heads
    pct, base = _rotary_settings(config)
    parallel = config.get("use_parallel_residual", True)

    refs = read_checkpoint(source)
    spec = transformer_spec.TransformerDecoderModelSpec.from_config(
        layers, heads, pre_norm=True, activation=common_spec.Activation.GELU,
        rotary_dim=int(pct * head_dim), rotary_interleave=False, rotary_base=base,
        parallel_residual=parallel, shared_layer_norm=False,
    )
    LazyVariable = _lazy_variable_class()
    total = 4 + 12 * layers  # tensors read: embeddings, final norm (2), projection; 12 per layer
    done = [0]

    def tick():
        done[0] += 1
        report(progress, Progress("converting", done[0], total, "tensors"))

    def ref(name: str) -> TensorRef:
        for key in (name, name.removeprefix("gpt_neox.")):
            if key in refs:
                return refs[key]
        raise ModelUnavailable(f"The checkpoint is incomplete: tensor {name} is missing.")

    def plain(name: str):
        r = ref(name)
        return LazyVariable(r.read, r.shape, r.dtype, tick)

    def qkv(name: str, is_bias: bool):
        # HF fuses q, k and v head by head ([heads, 3, head_dim]); CT2 wants [3, heads, head_dim].
        r = ref(name)

        def compute():
            w = r.read()
            if is_bias:
                return w.reshape(heads, 3, head_dim).swapaxes(0, 1).reshape(-1)
            return w.reshape(heads, 3, head_dim, w.shape[-1]).swapaxes(0, 1).reshape(-1, w.shape[-1])

        return LazyVariable(compute, r.shape, r.dtype, tick)

    def set_norm(norm_spec, prefix: str):
        norm_spec.gamma = plain(f"{prefix}.weight")
        norm_spec.beta = plain(f"{prefix}.bias")

    def set_linear(linear_spec, prefix: str):
        linear_spec.weight = plain(f"{prefix}.weight")
        linear_spec.bias = plain(f"{prefix}.bias")

    decoder = spec.decoder
    decoder.scale_embeddings = False
    decoder.embeddings.weight = plain("gpt_neox.embed_in.weight")
    set_norm(decoder.layer_norm, "gpt_neox.final_layer_norm")
    decoder.projection.weight = plain("embed_out.weight")
    for i, layer in enumerate(decoder.layer):
        p = f"gpt_neox.layers.{i}"
        if parallel:
            set_norm(layer.input_layer_norm, f"{p}.input_layernorm")
            set_norm(layer.post_attention_layer_norm, f"{p}.post_attention_layernorm")
        else:
            set_norm(layer.self_attention.layer_norm, f"{p}.input_layernorm")
            set_norm(layer.ffn.layer_norm, f"{p}.post_attention_layernorm")
        attention = layer.self_attention
        attention.linear[0].weight = qkv(f"{p}.attention.query_key_value.weight", False)
        attention.linear[0].bias = qkv(f"{p}.attention.query_key_value.bias", True)
        set_linear(attention.linear[1], f"{p}.attention.dense")
        set_linear(layer.ffn.linear_0, f"{p}.mlp.dense_h_to_4h")
        set_linear(layer.ffn.linear_1, f"{p}.mlp.dense_4h_to_h")

    eos = "<|endoftext|>"
    spec.config.bos_token = spec.config.eos_token = spec.config.unk_token = eos
    spec.config.layer_norm_epsilon = float(config.get("layer_norm_eps", 1e-5))
    tokenizer_file = tokenizer_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelUnavailable("The checkpoint has no tokenizer.json.")
    spec.register_vocabulary(vocabulary_tokens(tokenizer_file, vocab_size))
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            spec.register_file(str(tokenizer_dir / name))
    spec.validate()
    spec.optimize(quantization=precision)
    output.mkdir(parents=True)
    spec.save(str(output))
    return output
