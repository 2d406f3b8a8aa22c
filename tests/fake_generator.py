"""A scripted stand-in for a CT2 Generator (the idea of simonw/llm's MockModel), for the fast tier:
service, UI-handler, cancellation and batching-policy logic in milliseconds, with each decoding step
under the test's control. The slow tier runs the real CT2."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Step:
    """What CT2 passes to a generate_batch callback."""

    step: int
    batch_id: int
    token_id: int
    log_prob: float
    is_last: bool = False


class FakeGenerator:
    """Emits ``script(prompt_tokens)`` token ids for each row, in lockstep like a batch.

    ``gate``: if given, each step waits for it to be released once (``gate.release()``), so a
    test decides exactly when tokens appear. ``batches`` records each batch's prompts.
    """

    def __init__(self, script: Callable[[Sequence[str]], Sequence[int]], vocab_size: int = 512,
                 gate: threading.Semaphore | None = None):
        self.script, self.vocab_size, self.gate = script, vocab_size, gate
        self.batches: list[list[list[str]]] = []
        self.num_active_batches = 0
        self.loaded = True

    def generate_batch(self, prompts, max_length, end_token=(), callback=None, **options):
        self.batches.append([list(p) for p in prompts])
        self.num_active_batches += 1
        try:
            rows = [list(self.script(p)) for p in prompts]
            done = [False] * len(rows)
            for step in range(max_length):
                for row, ids in enumerate(rows):
                    if done[row]:
                        continue
                    if self.gate is not None:
                        self.gate.acquire()
                    token = ids[step] if step < len(ids) else end_token[0]
                    if callback(Step(step, row, token, -0.5)) or token in end_token:
                        done[row] = True
                if all(done):
                    break
        finally:
            self.num_active_batches -= 1
        return []

    def forward_batch(self, batch, return_log_probs=False):
        """A uniform distribution at every position (padded to the longest row, as CT2 pads)."""
        longest = max(len(row) for row in batch)
        value = -np.log(self.vocab_size) if return_log_probs else 0.0
        return np.full((len(batch), longest, self.vocab_size), value, dtype=np.float32)

    def unload_model(self):
        self.loaded = False


def fake_loader(script: Callable[[Sequence[str]], Sequence[int]], gate: threading.Semaphore | None = None):
    """An Engine loader that serves any converted directory's tokenizer with a FakeGenerator."""
    from tokenizers import Tokenizer

    from model_utils.engine.loaded_model import LoadedModel

    def load(path: Path, info, revision, device, batching):
        tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
        generator = FakeGenerator(script, tokenizer.get_vocab_size(), gate)
        return LoadedModel(info, revision, device, Path(path), generator, tokenizer, batching)

    return load
