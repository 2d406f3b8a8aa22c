"""A CT2 generator and its tokenizer, loaded and ready to decode."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN, PythiaModel
from ..core.errors import ModelUnavailable
from .batching import BatchingConfig, BatchScheduler
from .devices import DeviceConfig
from .interface import PromptScores, TokenChoices

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"


LOGITS_BYTES = 512 * 2**20  # the most float32 log-probs one forward_batch call may return


def _groups(sequences: Sequence[Sequence[int]], vocab_size: int,
            budget: int = LOGITS_BYTES) -> Iterator[list[Sequence[int]]]:
    """Consecutive sequences whose padded batch of log-probs stays under ``budget`` bytes (one at least)."""
    group: list[Sequence[int]] = []
    for ids in sequences:
        longest = max([len(ids), *(len(s) for s in group)])
        if group and (len(group) + 1) * longest * vocab_size * 4 > budget:
            yield group
            group = []
        group.append(ids)
    if group:
        yield group


def _best(rows: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` largest entries of each row, best first, without sorting the vocabulary."""
    if top == 1:
        return rows.argmax(axis=-1)[:, None]
    candidates = np.argpartition(-rows, top - 1, axis=-1)[:, :top]
    order = np.argsort(-np.take_along_axis(rows, candidates, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(candidates, order, axis=-1)


def _prompt_scores(log_probs: np.ndarray, ids: Sequence[int], top: int) -> PromptScores:
    """Position p's log-probs predict token p + 1; the last position's predict the next token."""
    best = _best(log_probs, top)
    positions = tuple(
        TokenChoices(float(log_probs[p, token]), tuple((int(i), float(log_probs[p, i])) for i in best[p]))
        for p, token in enumerate(ids[1:]))
    last = len(ids) - 1
    return PromptScores(positions, tuple((int(i), float(log_probs[last, i])) for i in best[last]))


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

    def score_prompts(self, sequences: Sequence[Sequence[int]], top: int) -> list[PromptScores]:
        """Each sequence's log-probs at every position, from ``forward_batch`` (CT2 computes the log-softmax).

        One ``forward_batch`` runs on one CT2 worker (one core on CPU): several sequences are shared among the base
        lanes' workers, every ``workers``-th sequence to each (a caller that sorted them by length, as lm-eval does,
        gives each part alike lengths), and scored side by side. The full distributions are materialized (positions
        x vocabulary floats), so each part goes through in groups of at most its share of LOGITS_BYTES; a
        full-context Pythia sequence alone is ~400 MB."""
        parts = min(self.batching.workers, len(sequences))
        if parts <= 1:
            return self._score_part(sequences, top, LOGITS_BYTES)
        with ThreadPoolExecutor(parts, thread_name_prefix="score") as pool:
            scored = list(pool.map(lambda i: self._score_part(sequences[i::parts], top, LOGITS_BYTES // parts),
                                   range(parts)))
        results: list[PromptScores] = [None] * len(sequences)  # type: ignore[list-item]
        for i, part in enumerate(scored):
            results[i::parts] = part
        return results

    def _score_part(self, sequences: Sequence[Sequence[int]], top: int, budget: int) -> list[PromptScores]:
        import ctranslate2

        top = max(1, top)
        results: list[PromptScores] = []
        for group in _groups(sequences, self.info.vocab_size, budget):
            log_probs = self.generator.forward_batch([list(map(int, s)) for s in group], return_log_probs=True)
            if log_probs.device != "cpu":
                log_probs = log_probs.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
            array = np.asarray(log_probs)
            for row, ids in zip(array, group, strict=True):
                results.append(_prompt_scores(row[:len(ids)].astype(np.float32, copy=False), ids, top))
        return results

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
