"""Scoring texts and looking inside generations: per-token log-probs, perplexity, bits per byte,
and the alternatives the model considered.

Pythia has no BOS token, so every scored window starts from ``<|endoftext|>`` (the document
separator it was trained with). Texts longer than the context are scored in consecutive
windows of at most CONTEXT_LENGTH - 1 tokens, each starting fresh; the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.catalog import CONTEXT_LENGTH
from .loaded_model import LoadedModel

WINDOW = CONTEXT_LENGTH - 1  # one position goes to the <|endoftext|> start token


@dataclass(frozen=True)
class TokenScore:
    """One scored token: its text, id, log-probability, and optionally the top alternatives."""

    text: str
    token_id: int
    log_prob: float
    alternatives: tuple[tuple[str, float], ...] = ()  # (token text, log-probability), most likely first

    @property
    def probability(self) -> float:
        return math.exp(self.log_prob)


@dataclass(frozen=True)
class TextScore:
    """Scores of a whole text."""

    tokens: tuple[TokenScore, ...]
    num_bytes: int
    windows: int

    @property
    def log_likelihood(self) -> float:
        return float(sum(t.log_prob for t in self.tokens))

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-likelihood per token."""
        return math.exp(-self.log_likelihood / len(self.tokens)) if self.tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        """Total negative log-likelihood in bits over the UTF-8 bytes of the text."""
        return -self.log_likelihood / math.log(2) / self.num_bytes if self.num_bytes else float("nan")

    @property
    def note(self) -> str | None:
        if self.windows <= 1:
            return None
        return (f"The text is longer than the {CONTEXT_LENGTH}-token context: it was scored in {self.windows} "
                f"consecutive windows of up to {WINDOW} tokens, each starting fresh.")

    def as_dict(self) -> dict:
        return {"tokens": [t.text for t in self.tokens], "token_ids": [t.token_id for t in self.tokens],
                "log_probs": [t.log_prob for t in self.tokens], "log_likelihood": self.log_likelihood,
                "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte, "num_tokens": len(self.tokens),
                "num_bytes": self.num_bytes, "windows": self.windows, "note": self.note}


def _piece(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def score_text(model: LoadedModel, text: str) -> TextScore:
    """Per-token log-probabilities of a non-empty ``text`` under ``model`` (CT2 ``score_batch``)."""
    ids = model.tokenizer.encode(text, add_special_tokens=False).ids
    windows = [ids[i:i + WINDOW] for i in range(0, len(ids), WINDOW)]
    batch = [model.tokens([model.eos_id, *w]) for w in windows]
    # score_batch truncates at 1024 tokens unless told otherwise.
    results = model.generator.score_batch(batch, max_input_length=CONTEXT_LENGTH)
    scored = []
    for window, result in zip(windows, results):
        if len(result.log_probs) != len(window):
            raise RuntimeError("CT2 scored a different number of tokens than it was given")
        scored += [TokenScore(_piece(model.tokenizer, i), i, float(lp)) for i, lp in zip(window, result.log_probs)]
    return TextScore(tuple(scored), len(text.encode("utf-8")), len(windows))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def token_probabilities(model: LoadedModel, prompt_ids: Sequence[int], generated_ids: Sequence[int],
                        top: int = 5) -> list[TokenScore]:
    """Probability of each generated token and the ``top`` alternatives at its position.

    One ``forward_batch`` pass over prompt + generated tokens after the generation, so
    generation itself runs at full speed. ``forward_batch`` returns raw logits.
    """
    import ctranslate2

    if not generated_ids:
        return []
    ids = list(prompt_ids) + list(generated_ids)
    logits = model.generator.forward_batch([model.tokens(ids)])
    if logits.device != "cpu":
        logits = logits.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
    logits = np.asarray(logits)[0].astype(np.float32)
    # the logits at position p predict token p + 1
    rows = log_softmax(logits[len(prompt_ids) - 1:len(ids) - 1])
    scores = []
    # top-k per row without sorting the whole vocabulary
    candidates = np.argpartition(-rows, top - 1, axis=-1)[:, :top]
    for row, token_id, cand in zip(rows, generated_ids, candidates):
        best = cand[np.argsort(-row[cand])]
        alternatives = tuple((_piece(model.tokenizer, int(i)), float(row[i])) for i in best)
        scores.append(TokenScore(_piece(model.tokenizer, int(token_id)), int(token_id), float(row[token_id]),
                                 alternatives))
    return scores
