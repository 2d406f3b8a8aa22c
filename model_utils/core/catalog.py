"""The Pythia family: model names, shapes, checkpoints and memory estimates.

Shapes come from the Pythia model cards and each repo's config.json (GPT-NeoX,
rotary on 25% of each head, parallel residual, untied embeddings, intermediate
size 4x hidden). Parameter counts are derived from the shapes rather than copied,
so they cannot drift apart; the 70m count matches the card's 18,915,328
non-embedding parameters.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InvalidRevision, UnknownModel

CONTEXT_LENGTH = 2048  # every Pythia model was trained with 2048-token sequences
EOS_TOKEN = "<|endoftext|>"  # GPT-NeoX-20B tokenizer; Pythia has no separate BOS
MAIN_STEP = 143000  # branch "main" is exactly checkpoint step143000

# Training checkpoints published as branches: step0, 10 log-spaced early steps,
# then every 1000 steps up to 143000 -- 154 in all.
TRAINING_STEPS: tuple[int, ...] = (0, *(2**i for i in range(10)), *range(1000, MAIN_STEP + 1, 1000))
REVISIONS: tuple[str, ...] = ("main", *(f"step{s}" for s in TRAINING_STEPS))
_STEP_SET = frozenset(TRAINING_STEPS)
_REVISION_RE = re.compile(r"^step(0|[1-9][0-9]{0,5})$")

# Bytes per weight of the stored compute types (int8 variants keep a float scale
# per row, negligible next to the weights).
_BYTES_PER_WEIGHT = {
    "int8": 1, "int8_float32": 1, "int8_float16": 1, "int8_bfloat16": 1,
    "int16": 2, "float16": 2, "bfloat16": 2, "float32": 4,
}
# Activations / KV cache precision for each compute type.
_ACTIVATION_BYTES = {
    "int8": 4, "int8_float32": 4, "int16": 4, "float32": 4,
    "int8_float16": 2, "int8_bfloat16": 2, "float16": 2, "bfloat16": 2,
}
_RUNTIME_OVERHEAD = 1.15  # allocator slack and temporary buffers (measured ~10% on 160m)
_FIXED_OVERHEAD = 64 * 2**20  # runtime libraries and the tokenizer


@dataclass(frozen=True)
class PythiaModel:
    """One servable model: a Pythia from the Hub or an operator's local directory."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    vocab_size: int = 50304  # padded GPT-NeoX-20B vocabulary (12b pads to 50688)
    repo_id: str | None = None  # EleutherAI repo on the Hub
    ct2_repo_id: str | None = None  # pre-converted CT2 repo (revision main only)
    local_path: Path | None = None  # operator-supplied HF or CT2 directory
    random_weights: bool = False  # the offline demo model: say so in the UI
    # Revisions this model has, oldest first. None: the Pythia suite's 154 (Hub models) or
    # only "main" (a local directory). The one place that rule lives.
    own_revisions: tuple[str, ...] | None = None
    description: str = ""  # a sentence for the status line (e.g. what a demo model was trained on)
    main_step: int = MAIN_STEP  # the training step that "main" is
    example_text: str = ""  # a text the model is at home with, for the Score tab (the demo model's held-out prose)

    def step_of(self, revision: str) -> int:
        """The training step of one of this model's revisions (``main`` is the last one)."""
        return self.main_step if revision == "main" else int(revision.removeprefix("step"))

    def source_dir(self, revision: str) -> Path | None:
        """The operator's folder holding ``revision``: one folder per revision when the model has its own."""
        if self.local_path is None:
            return None
        return self.local_path / revision if self.own_revisions is not None else self.local_path

    @property
    def num_parameters(self) -> int:
        """Total parameters: untied input and output embeddings plus the layers."""
        d = self.hidden_size
        per_layer = 12 * d * d + 13 * d  # qkv, dense, 4x MLP, two layer norms
        return 2 * self.vocab_size * d + self.num_layers * per_layer + 2 * d

    @property
    def revisions(self) -> tuple[str, ...]:
        """The revisions a visitor may ask for, ``main`` first."""
        if self.own_revisions is not None:
            return self.own_revisions
        return REVISIONS if self.local_path is None else ("main",)

    def kv_cache_bytes(self, compute_type: str, context: int = CONTEXT_LENGTH) -> int:
        """Keys and values of one full-context row, with allocator slack."""
        raw = 2 * self.num_layers * context * self.hidden_size * _ACTIVATION_BYTES[compute_type]
        return int(raw * _RUNTIME_OVERHEAD)

    def estimate_bytes(self, compute_type: str, batch_size: int = 1,
                       context: int = CONTEXT_LENGTH) -> int:
        """Memory needed to load the model and decode ``batch_size`` full-context rows."""
        if compute_type not in _BYTES_PER_WEIGHT:
            raise ValueError(f"unknown compute type {compute_type!r}")
        weights = int(self.num_parameters * _BYTES_PER_WEIGHT[compute_type] * _RUNTIME_OVERHEAD)
        return weights + batch_size * self.kv_cache_bytes(compute_type, context) + _FIXED_OVERHEAD


def _hub(size: str, layers: int, hidden: int, heads: int, *, vocab: int = 50304,
         deduped: bool = True, ct2: str | None = None) -> list[PythiaModel]:
    base = f"pythia-{size}"
    models = [PythiaModel(base, layers, hidden, heads, vocab, f"EleutherAI/{base}", ct2)]
    if deduped:
        name = f"{base}-deduped"
        models.append(PythiaModel(name, layers, hidden, heads, vocab, f"EleutherAI/{name}"))
    return models


# Pre-converted CT2 repos (the seed's author); each holds revision main only.
_HUB_MODELS: tuple[PythiaModel, ...] = tuple(
    m
    for group in (
        _hub("14m", 6, 128, 4, deduped=False),  # 14m and 31m were released without -deduped
        _hub("31m", 6, 256, 8, deduped=False),
        _hub("70m", 6, 512, 8),
        _hub("160m", 12, 768, 12, ct2="michaelfeil/ct2fast-pythia-160m"),
        _hub("410m", 24, 1024, 16),
        _hub("1b", 16, 2048, 8),
        _hub("1.4b", 24, 2048, 16),
        _hub("2.8b", 32, 2560, 32, ct2="michaelfeil/ct2fast-pythia-2.8b"),
        _hub("6.9b", 32, 4096, 32, ct2="michaelfeil/ct2fast-pythia-6.9b"),
        _hub("12b", 36, 5120, 40, vocab=50688, ct2="michaelfeil/ct2fast-pythia-12b"),
    )
    for m in group
)
SIZES: tuple[str, ...] = tuple(m.name.removeprefix("pythia-") for m in _HUB_MODELS if not m.name.endswith("-deduped"))
DEFAULT_MODEL = "pythia-160m"


def validate_revision(revision: object) -> str:
    """Return ``revision`` if it names a Pythia checkpoint, else raise InvalidRevision."""
    if isinstance(revision, str) and revision == "main":
        return revision
    if isinstance(revision, str):
        match = _REVISION_RE.match(revision)
        if match and int(match.group(1)) in _STEP_SET:
            return revision
    shown = repr(revision)[:60]
    raise InvalidRevision(
        f"Revision {shown} is not a Pythia checkpoint. Use 'main' (= step{MAIN_STEP}), "
        "'step0', a power of two 'step1' ... 'step512', or a multiple of 1000 from "
        f"'step1000' to 'step{MAIN_STEP}'."
    )


def resolve_revision(model: PythiaModel, revision: object) -> str:
    """The canonical revision of ``model`` that ``revision`` names (None means 'main')."""
    revision = "main" if revision is None else revision
    if model.own_revisions is None:
        revision = canonical_revision(revision)  # a Pythia revision name, or a readable error
        if model.local_path is not None and revision != "main":
            raise InvalidRevision(f"{model.name} is a local model with a single revision: use 'main'.")
        return revision
    if isinstance(revision, str) and revision in model.revisions:
        return revision
    raise InvalidRevision(f"Revision {repr(revision)[:60]} is not a checkpoint of {model.name}. "
                          f"Use one of: {', '.join(model.revisions)}.")


def canonical_revision(revision: str) -> str:
    """Map ``step143000`` and ``main`` to one cache key (they are the same weights)."""
    revision = validate_revision(revision)
    return "main" if revision == f"step{MAIN_STEP}" else revision


@dataclass
class Catalog:
    """The models this server may serve: the Pythia suite plus registered local dirs.

    Visitors can only name models that are in here (an allowlist); local
    directories are added by the operator, never from a request.
    """

    _models: dict[str, PythiaModel] = field(default_factory=lambda: {m.name: m for m in _HUB_MODELS})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def models(self) -> list[PythiaModel]:
        with self._lock:
            return list(self._models.values())

    def get(self, name: object) -> PythiaModel:
        """Look a model up by name (or by its Hub id, e.g. EleutherAI/pythia-160m); raise UnknownModel listing
        the valid names."""
        with self._lock:
            model = self._models.get(name) if isinstance(name, str) else None
            if model is None and isinstance(name, str) and "/" in name:
                model = next((m for m in self._models.values() if m.repo_id == name), None)
            if model is None:
                shown = repr(name)[:60]
                raise UnknownModel(f"Unknown model {shown}. Choose one of: {', '.join(self._models)}.")
            return model

    def resolve(self, name: object, revision: object = None) -> tuple[PythiaModel, str]:
        """Validate a (model, revision) request; no revision means 'main'."""
        model = self.get(name)
        return model, resolve_revision(model, revision)

    def add(self, model: PythiaModel) -> PythiaModel:
        """Serve ``model`` too (operator-supplied: local directories, the demo model)."""
        with self._lock:
            self._models[model.name] = model
        return model
