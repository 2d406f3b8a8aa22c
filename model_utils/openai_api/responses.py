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

from ..service import BatchUsage, ChoiceDelta, ChoiceToken


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


def completion_logprobs(tokens: tuple[ChoiceToken, ...]) -> dict:
    return {"tokens": [t.text for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [None if t.top is None else dict(t.top) for t in tokens],
            "text_offset": [t.offset for t in tokens]}


def chat_logprobs(tokens: tuple[ChoiceToken, ...]) -> dict:
    def entry(text: str, logprob: float) -> dict:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(t.text, t.logprob), "top_logprobs": [entry(a, lp) for a, lp in t.top or ()]}
                        for t in tokens]}


@dataclass
class Assembler:
    """Gathers the deltas of a whole (non-streamed) response."""

    meta: Meta
    logprobs: bool
    texts: dict[int, list[str]] = field(default_factory=dict)
    tokens: dict[int, list[ChoiceToken]] = field(default_factory=dict)
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


def _reason(delta: ChoiceDelta | None) -> str | None:
    return None if delta is None or delta.finish_reason is None else str(delta.finish_reason)


def stream_event(meta: Meta, item: ChoiceDelta, logprobs: bool, first: bool) -> dict:
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
    return {**meta.head(streamed=True), "choices": [choice]}


def usage_event(meta: Meta, counts: BatchUsage) -> dict:
    return {**meta.head(streamed=True), "choices": [], "usage": usage(counts)}


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"
