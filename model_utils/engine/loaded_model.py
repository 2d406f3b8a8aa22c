"""A CT2 generator and its tokenizer, loaded and ready to decode."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN, PythiaModel
from ..core.errors import ModelUnavailable
from .batching import BatchingConfig, BatchScheduler
from .devices import DeviceConfig
from .interface import TokenChoices

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@dataclass
class LoadedModel:
    """One model in memory. Call :meth:`close` to free it (the cache does)."""

    info: PythiaModel
    revision: str
    device: DeviceConfig
    path: Path
    generator: Any  # ctranslate2.Generator
    tokenizer: Any  # tokenizers.Tokenizer
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    eos_id: int = field(init=False)
    scheduler: BatchScheduler = field(init=False)

    def __post_init__(self):
        self.eos_id = self.tokenizer.token_to_id(EOS_TOKEN)
        self.scheduler = BatchScheduler(self.generator, self.eos_id, self.batching)

    @property
    def label(self) -> str:
        """E.g. ``pythia-160m @ step3000``."""
        return self.info.name if self.revision == "main" else f"{self.info.name} @ {self.revision}"

    @property
    def served_by(self) -> str:
        """Where the tokens come from, for reply metrics: e.g. ``CPU int8``."""
        return self.device.describe()

    def tokens(self, ids) -> list[str]:
        """Token strings for ids: CT2's Generator takes strings, not ids."""
        return [self.tokenizer.id_to_token(i) for i in ids]

    # -- ServedModel (engine/interface.py): what generation and scoring call, for every engine --
    def steps(self, prompt_ids: Sequence[int], params, cancel=None):
        """Generated steps (``token_id``, ``log_prob``) through the batch scheduler; close to stop."""
        return self.scheduler.steps(self.tokens(prompt_ids), params, cancel=cancel)

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """For each sequence, the log-prob of each token after the first given those before it."""
        # score_batch truncates at 1024 tokens unless told otherwise.
        results = self.generator.score_batch([self.tokens(s) for s in sequences], max_input_length=CONTEXT_LENGTH)
        return [[float(lp) for lp in r.log_probs] for r in results]

    def top_log_probs(self, ids: Sequence[int], start: int, top: int) -> list[TokenChoices]:
        """For positions ``start``..end of ``ids``: the token's log-prob and the ``top`` likeliest
        tokens there, from one ``forward_batch`` pass (raw logits)."""
        import ctranslate2

        logits = self.generator.forward_batch([self.tokens(ids)])
        if logits.device != "cpu":
            logits = logits.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
        logits = np.asarray(logits)[0].astype(np.float32)
        rows = log_softmax(logits[start - 1:len(ids) - 1])  # the logits at position p predict token p + 1
        candidates = np.argpartition(-rows, top - 1, axis=-1)[:, :top]  # top-k without sorting the vocabulary
        choices = []
        for row, token_id, cand in zip(rows, ids[start:], candidates, strict=True):
            best = cand[np.argsort(-row[cand])]
            choices.append(TokenChoices(float(row[token_id]), tuple((int(i), float(row[i])) for i in best)))
        return choices

    def close(self) -> None:
        """Free the weights now instead of at interpreter exit.

        CT2 can abort the process when a Generator is still alive at exit, so
        every owner tears its generators down explicitly.
        """
        generator, self.generator = self.generator, None
        if generator is not None:
            self.scheduler.close()  # waits for running batches; releases its reference
            generator.unload_model()
            del generator  # the last reference: the Generator is destroyed here, deterministically


def load_ct2_model(path: Path, info: PythiaModel, revision: str, device: DeviceConfig,
                   batching: BatchingConfig = BatchingConfig()) -> LoadedModel:
    """Load a converted CT2 model directory (model.bin, vocabulary, tokenizer.json)."""
    import ctranslate2
    from tokenizers import Tokenizer

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise ModelUnavailable(f"{info.name}: the converted model has no tokenizer.json.")
    try:
        generator = ctranslate2.Generator(
            str(path), device=device.device, compute_type=device.compute_type,
            intra_threads=device.intra_threads, inter_threads=batching.max_lanes,
        )
    except (RuntimeError, ValueError) as exc:
        # CT2's message names server paths: log it, tell the user what failed.
        log.error("loading %s from %s failed: %s", info.name, path, exc, exc_info=exc)
        raise ModelUnavailable(f"{info.name} could not be loaded on {device.describe()}: its files are "
                               "damaged or incomplete. Try again; the operator has the details in the log.") from exc
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    return LoadedModel(info, revision, device, path, generator, tokenizer, batching)
