"""Streaming generation: token ids from an engine in, text chunks with metrics out."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..core.sampling import FinishReason, SamplingParams
from .detokenizer import StopStringFilter, StreamingDetokenizer
from .interface import ServedModel
from .prompts import PreparedPrompt, prepare_completion

# Python hands the interpreter lock over every sys.getswitchinterval() (5 ms by default): a decode
# interval shorter than four of those is mostly waiting, not decoding.
MIN_TIMED_SECONDS = 4 * sys.getswitchinterval()


@dataclass(frozen=True)
class GenerationChunk:
    """One streamed step: the new text plus what a UI or a benchmark wants to show."""

    text: str  # text added by this step ('' while a character or stop string is pending)
    token_id: int | None  # None on the final chunk when it carries no token
    log_prob: float | None
    num_tokens: int  # tokens generated so far
    elapsed: float  # seconds since the request started
    time_to_first_token: float | None
    finish_reason: FinishReason | None = None  # set on the last chunk only
    ended_by_eos: bool = False  # on the last chunk: the model wrote <|endoftext|> (not counted in num_tokens)

    @property
    def tokens_per_second(self) -> float:
        """Decoding speed after the first token (prompt processing excluded); 0.0 when too short to time.

        The clock reads when this thread receives each token; CT2 decodes ahead, so a thread that
        waited for the interpreter lock can receive several tokens at once: two tokens 11 us apart
        once read as 87772 tokens/s. An interval of a few thread switches says nothing about decoding.
        """
        if self.time_to_first_token is None or self.num_tokens < 2:
            return 0.0
        decode_time = self.elapsed - self.time_to_first_token
        return (self.num_tokens - 1) / decode_time if decode_time >= MIN_TIMED_SECONDS else 0.0


@dataclass(frozen=True)
class GenerationResult:
    """A whole reply, as :func:`generate` returns it."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: FinishReason
    num_tokens: int
    time_to_first_token: float | None
    tokens_per_second: float
    prompt: PreparedPrompt


def stream(model: ServedModel, prompt: PreparedPrompt | str, params: SamplingParams, *,
           stop: Sequence[str] = (), cancel: threading.Event | None = None) -> Iterator[GenerationChunk]:
    """Generate text chunk by chunk.

    The last chunk has ``finish_reason``: ``stop`` (end of text or a stop string,
    which is never shown), ``length`` (max_new_tokens reached) or ``cancelled``
    (``cancel`` was set). Closing the iterator early stops CT2 within one step.
    """
    if isinstance(prompt, str):
        prompt = prepare_completion(model.tokenizer, prompt, params.max_new_tokens)
    start = time.perf_counter()
    detok = StreamingDetokenizer(model.tokenizer)
    stops = StopStringFilter(stop)
    count, first, eos = 0, None, False
    # CT2 decodes ahead of a slow consumer; the scheduler checks ``cancel`` in CT2's own
    # callback, so a cancel stops decoding at the next step, not when the consumer catches up.
    steps = model.steps(prompt.ids, params, cancel=cancel)
    finish = FinishReason.LENGTH
    try:
        for step in steps:
            if cancel is not None and cancel.is_set():
                finish = FinishReason.CANCELLED
                break
            if step.token_id == model.eos_id:
                finish, eos = FinishReason.STOP, True
                break
            count += 1
            now = time.perf_counter() - start
            first = now if first is None else first
            # as in vLLM, stop strings are looked for only once the minimum length is generated
            text = detok.step(step.token_id)
            text = stops.push(text) if count > params.min_tokens else text
            yield GenerationChunk(text, step.token_id, step.log_prob, count, now, first)
            if stops.stopped:
                finish = FinishReason.STOP
                break
        else:
            # The row ended without a step telling us why: cancelled (the scheduler saw the
            # flag first), max_new_tokens, or the end token.
            if cancel is not None and cancel.is_set():
                finish = FinishReason.CANCELLED
            else:
                finish = FinishReason.LENGTH if count >= params.max_new_tokens else FinishReason.STOP
                eos = finish == FinishReason.STOP  # the scheduler ended the row at the end token
    finally:
        steps.close()
    tail = "" if stops.stopped else stops.push(detok.flush()) + stops.finish()
    if stops.stopped and finish != FinishReason.CANCELLED:
        finish = FinishReason.STOP
    yield GenerationChunk(tail, None, None, count, time.perf_counter() - start, first, finish,
                          eos and not stops.stopped and finish == FinishReason.STOP)


class ReplyBuilder:
    """Turns a stream of chunks into a reply: the text so far, the generated ids, the last chunk.

    The one place that does this; every caller (generate, the service's streams, Compare) uses it.
    """

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.token_ids: list[int] = []
        self.last: GenerationChunk | None = None

    def add(self, chunk: GenerationChunk) -> GenerationChunk:
        self._pieces.append(chunk.text)
        if chunk.token_id is not None:
            self.token_ids.append(chunk.token_id)
        self.last = chunk
        return chunk

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    @property
    def finished(self) -> bool:
        return self.last is not None and self.last.finish_reason is not None


def generate(model: ServedModel, prompt: PreparedPrompt | str, params: SamplingParams, *,
             stop: Sequence[str] = ()) -> GenerationResult:
    """The whole reply at once: a loop over :func:`stream`."""
    if isinstance(prompt, str):
        prompt = prepare_completion(model.tokenizer, prompt, params.max_new_tokens)
    reply = ReplyBuilder()
    for chunk in stream(model, prompt, params, stop=stop):
        reply.add(chunk)
    last = reply.last
    return GenerationResult(reply.text, tuple(reply.token_ids), last.finish_reason, last.num_tokens,
                            last.time_to_first_token, last.tokens_per_second, prompt)
