"""The service's choices in OpenAI's response shapes: completions and chat completions, whole or streamed.

A choice's log-probs follow OpenAI's legacy shape for completions (``tokens``, ``token_logprobs`` with
``None`` for the first prompt token, ``top_logprobs`` as {token: log-prob}, ``text_offset``) and its
``content`` list for chat. ``notice`` (not an OpenAI field; clients ignore it) says what could not be
generated when a prompt filled the context.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..service import BatchUsage, ChoiceDelta, FinishReason, ScoredToken, TokenText


@dataclass
class Meta:
    """What every object of one response repeats."""

    kind: str  # "completion" or "chat"
    model: str  # NAME or NAME@REVISION, as the request resolved it
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: int = field(default_factory=lambda: int(time.time()))

    def head(self, streamed: bool) -> dict:
        if self.kind == "chat":
            return {"id": f"chatcmpl-{self.id}", "object": "chat.completion.chunk" if streamed else "chat.completion",
                    "created": self.created, "model": self.model}
        return {"id": f"cmpl-{self.id}", "object": "text_completion", "created": self.created, "model": self.model}


def usage(u: BatchUsage) -> dict:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


FLOOR = -9999.0  # what a log-prob of -inf is written as (JSON has no infinity; vLLM's convention)


def _logprob(value: float | None) -> float | None:
    return None if value is None else max(value, FLOOR)


def completion_logprobs(tokens: tuple[ScoredToken, ...]) -> dict:
    """OpenAI's legacy shape. ``top_logprobs`` holds the asked-for alternatives and, as in vLLM, the chosen token
    too when it is not among them (so ``logprobs: 0`` gives the chosen token alone)."""
    def top(t: ScoredToken) -> dict | None:
        if t.top is None:
            return None
        entries = {a.token.text: _logprob(a.logprob) for a in t.top}
        if all(a.token_id != t.token_id for a in t.top):
            entries.setdefault(t.text, _logprob(t.logprob))
        return entries

    return {"tokens": [t.text for t in tokens], "token_logprobs": [_logprob(t.logprob) for t in tokens],
            "top_logprobs": [top(t) for t in tokens], "text_offset": [t.offset for t in tokens]}


def chat_logprobs(tokens: tuple[ScoredToken, ...]) -> dict:
    """OpenAI's chat shape: each token's text, log-prob and its own bytes (a fragment of a character is its
    byte), with the asked-for alternatives."""
    def entry(token: TokenText, logprob: float | None) -> dict:
        return {"token": token.text, "logprob": _logprob(logprob), "bytes": list(token.raw)}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(a.token, a.logprob) for a in t.top or ()]}
                        for t in tokens]}


@dataclass
class Assembler:
    """Gathers the deltas of a whole (non-streamed) response."""

    meta: Meta
    logprobs: bool
    texts: dict[int, list[str]] = field(default_factory=dict)
    tokens: dict[int, list[ScoredToken]] = field(default_factory=dict)
    finished: dict[int, ChoiceDelta] = field(default_factory=dict)
    counts: BatchUsage | None = None

    def add(self, item: ChoiceDelta | BatchUsage) -> None:
        if isinstance(item, BatchUsage):
            self.counts = item
            return
        self.texts.setdefault(item.index, []).append(item.text)
        self.tokens.setdefault(item.index, []).extend(item.tokens)
        if item.finish_reason is not None:
            self.finished[item.index] = item

    def body(self) -> dict:
        choices = []
        for index in sorted(self.texts):
            text, tokens, last = "".join(self.texts[index]), tuple(self.tokens[index]), self.finished.get(index)
            choice: dict[str, Any] = {"index": index}
            if self.meta.kind == "chat":
                choice["message"] = {"role": "assistant", "content": text}
                choice["logprobs"] = chat_logprobs(tokens) if self.logprobs else None
            else:
                choice["text"] = text
                choice["logprobs"] = completion_logprobs(tokens) if self.logprobs else None
            choice["finish_reason"] = _reason(last)
            if last is not None and last.notice:
                choice["notice"] = last.notice
            choices.append(choice)
        return {**self.meta.head(streamed=False), "choices": choices,
                "usage": usage(self.counts) if self.counts else None}


# OpenAI has no word for a request the server stopped (it is shutting down, or the client left): vLLM's is "abort"
REASONS = {FinishReason.STOP: "stop", FinishReason.LENGTH: "length", FinishReason.CANCELLED: "abort"}


def _reason(delta: ChoiceDelta | None) -> str | None:
    return None if delta is None or delta.finish_reason is None else REASONS[delta.finish_reason]


def stream_event(meta: Meta, item: ChoiceDelta, logprobs: bool, first: bool, include_usage: bool) -> dict:
    """One server-sent event for one delta (chat: the first of a choice also says its role)."""
    if meta.kind == "chat":
        delta: dict[str, Any] = {"role": "assistant"} if first else {}
        if item.text or not first:
            delta["content"] = item.text
        choice: dict[str, Any] = {"index": item.index, "delta": delta,
                                  "logprobs": chat_logprobs(item.tokens) if logprobs and item.tokens else None}
    else:
        choice = {"index": item.index, "text": item.text,
                  "logprobs": completion_logprobs(item.tokens) if logprobs and item.tokens else None}
    choice["finish_reason"] = _reason(item)
    if item.notice:
        choice["notice"] = item.notice
    event = {**meta.head(streamed=True), "choices": [choice]}
    if include_usage:
        event["usage"] = None  # OpenAI's shape: every chunk has it, the last (usage) event fills it
    return event


def usage_event(meta: Meta, counts: BatchUsage) -> dict:
    return {**meta.head(streamed=True), "choices": [], "usage": usage(counts)}


# The characters JSON leaves raw in a string (json.dumps escapes those below U+0020) that line readers (Python's
# str.splitlines, httpx's iter_lines) take for line ends: written raw, one would cut its `data:` line in two.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def encode(body: dict) -> bytes:
    """A whole answer as JSON (log-probs are clamped, so it is always valid JSON)."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def sse(data: dict | str) -> str:
    """One server-sent event: a single line of JSON, whatever the text holds."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, allow_nan=False)
    return f"data: {text.translate(_LINE_BREAKS)}\n\n"
