"""The one record of a token with its log-prob: a scored text's tokens, a reply's tokens on the page and in the Gradio
API, an OpenAI choice's tokens. Each surface reads what it needs: the page a token's ``piece``, OpenAI its ``text``
and its bytes."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .token_pieces import api_token_text, token_bytes


@dataclass(frozen=True)
class TokenText:
    """A token's own bytes, and how it reads: ``text`` as OpenAI's and vLLM's APIs write it (``bytes:\\xe4`` for a
    fragment of a character), ``piece`` as the page shows it on its own (``\\xe4``)."""

    text: str
    raw: bytes

    @classmethod
    def of(cls, tokenizer, token_id: int) -> "TokenText":
        raw = token_bytes(tokenizer, token_id)
        return cls(api_token_text(raw), raw)

    @property
    def piece(self) -> str:
        return self.raw.decode("utf-8", errors="backslashreplace")


@dataclass(frozen=True)
class Alternative:
    """One of the likeliest tokens at a position."""

    token_id: int
    token: TokenText
    logprob: float


@dataclass(frozen=True)
class ScoredToken:
    """A token with its log-prob (natural log; None for a first prompt token, which nothing came before) and, when
    asked for, the likeliest tokens at its position, best first."""

    token_id: int
    token: TokenText
    logprob: float | None = None
    top: tuple[Alternative, ...] | None = None
    offset: int = 0  # where it starts in its text (an OpenAI choice's, echoed prompt included)

    @property
    def text(self) -> str:
        return self.token.text

    @property
    def piece(self) -> str:
        return self.token.piece

    @property
    def probability(self) -> float:
        return math.exp(self.logprob)

    @classmethod
    def of(cls, tokenizer, token_id: int, logprob: float | None, top=None, offset: int = 0) -> "ScoredToken":
        """``top``: (token id, log-prob) pairs, best first, or None."""
        alternatives = None if top is None else tuple(Alternative(i, TokenText.of(tokenizer, i), lp) for i, lp in top)
        return cls(token_id, TokenText.of(tokenizer, token_id), logprob, alternatives, offset)
