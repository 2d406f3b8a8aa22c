"""Scoring texts: per-token log-probs, perplexity, bits per byte (a reply's tokens and the alternatives the model
considered come with the reply: service/choices.py).

Pythia has no BOS token, so every scored window starts from ``<|endoftext|>`` (the document
separator it was trained with). Texts longer than the context are scored in consecutive
windows of at most CONTEXT_LENGTH - 1 tokens, each starting fresh; the result says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.catalog import CONTEXT_LENGTH
from .interface import ServedModel
from .tokens import ScoredToken

WINDOW = CONTEXT_LENGTH - 1  # one position goes to the <|endoftext|> start token


@dataclass(frozen=True)
class TextScore:
    """Scores of a whole text."""

    tokens: tuple[ScoredToken, ...]
    num_bytes: int
    windows: int

    @property
    def log_likelihood(self) -> float:
        return float(sum(t.logprob for t in self.tokens))

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
        return {"tokens": [t.piece for t in self.tokens], "token_ids": [t.token_id for t in self.tokens],
                "log_probs": [t.logprob for t in self.tokens], "log_likelihood": self.log_likelihood,
                "perplexity": self.perplexity, "bits_per_byte": self.bits_per_byte, "num_tokens": len(self.tokens),
                "num_bytes": self.num_bytes, "windows": self.windows, "note": self.note}


def score_text(model: ServedModel, text: str) -> TextScore:
    """Per-token log-probabilities of a non-empty ``text`` under ``model``."""
    ids = model.tokenizer.encode(text, add_special_tokens=False).ids
    windows = [ids[i:i + WINDOW] for i in range(0, len(ids), WINDOW)]
    results = model.score([[model.eos_id, *w] for w in windows])
    scored = []
    for window, log_probs in zip(windows, results, strict=True):
        if len(log_probs) != len(window):
            raise RuntimeError("the engine scored a different number of tokens than it was given")
        scored += [ScoredToken.of(model.tokenizer, i, lp) for i, lp in zip(window, log_probs, strict=True)]
    return TextScore(tuple(scored), len(text.encode("utf-8")), len(windows))
