"""Batches of choices: several prompts, ``n`` choices each, decoded or scored together on one model.

This is what OpenAI-style clients send (the OpenAI routes translate to and from it) and what lm-eval's
``local-completions`` model relies on: with ``echo`` and ``logprobs`` every prompt token is scored; with
``max_tokens`` 0 or 1 and greedy decoding, a choice is *scored*, not decoded: one forward pass gives every
prompt token's log-prob and the next token, so the numbers agree with each other exactly (lm-eval checks
``token_logprob == max(top_logprobs)``) and nothing waits for a decoding lane.

Decoded choices go through the model's batch scheduler like any visitor's reply (all rows of a request
are submitted at once, so they share a batch when their settings agree). Log-probs of generated tokens
come from one forward pass after decoding, as in the Completion tab, so decoding runs at full speed; a
streamed choice that asked for log-probs therefore arrives when it is complete.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

from ..core.catalog import CONTEXT_LENGTH
from ..core.errors import InvalidParameter
from ..core.sampling import FinishReason, SamplingParams
from ..engine.detokenizer import StopStringFilter
from ..engine.generation import GenerationChunk, ReplyBuilder, stream
from ..engine.interface import PromptScores, ServedModel, TokenChoices
from ..engine.prompts import PreparedPrompt
from ..engine.tokens import ScoredToken

_DONE = object()


@dataclass(frozen=True)
class ChoiceDelta:
    """New text of one choice; its last delta has the finish reason (and a notice when the context was full)."""

    index: int
    text: str
    tokens: tuple[ScoredToken, ...] = ()  # filled when log-probs were asked for
    finish_reason: FinishReason | None = None
    notice: str | None = None
    completion_tokens: int = 0  # on the last delta: tokens this choice generated
    timing: GenerationChunk | None = None  # on a decoded choice's last delta: its time to first token and speed


@dataclass(frozen=True)
class BatchUsage:
    """Sent last: tokens read (each prompt once) and written (every choice)."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class BatchJob:
    """What to do for every prompt: typed values from a parsed request."""

    n: int
    max_tokens: int
    params: SamplingParams
    echo: bool = False
    logprobs: int | None = None
    stop: tuple[str, ...] = ()
    strip_leading: bool = False  # chat: the Bot's line starts after "Bot:"; its leading space is not shown
    live: bool = False  # with log-probs, still send the text as it grows (the page); else the choice comes whole


def check_fits(prompts: Sequence[PreparedPrompt]) -> None:
    for i, prompt in enumerate(prompts):
        if len(prompt.ids) > CONTEXT_LENGTH:
            raise InvalidParameter(f"prompt[{i}] has {len(prompt.ids):,} tokens; the context is {CONTEXT_LENGTH:,}.")


def room(prompt: PreparedPrompt, wanted: int) -> tuple[int, str | None]:
    """How many tokens can follow ``prompt``: the last generated token is never fed back, so a prompt that fills
    the whole context still gets one. Also what could not be generated, in words."""
    fits = min(wanted, CONTEXT_LENGTH + 1 - len(prompt.ids))
    if fits >= wanted:
        return wanted, None
    return fits, (f"The prompt has {len(prompt.ids):,} tokens of the {CONTEXT_LENGTH:,}-token context: "
                  f"{fits} of the {wanted} tokens asked for could be generated.")


def run_batch(model: ServedModel, prompts: Sequence[PreparedPrompt], job: BatchJob,
              cancel: threading.Event | None = None) -> Iterator[ChoiceDelta | BatchUsage]:
    """Every prompt's ``job.n`` choices; choice ``i * n + j`` is prompt i's j-th. Ends with a BatchUsage."""
    check_fits(prompts)
    cancel = cancel or threading.Event()
    scored = job.max_tokens == 0 or (job.max_tokens == 1 and _plain_greedy(job.params))
    deltas = _scored(model, prompts, job) if scored else _decoded(model, prompts, job, cancel)
    completion = 0
    for delta in deltas:
        completion += delta.completion_tokens
        yield delta
    yield BatchUsage(sum(len(p.ids) for p in prompts), completion)


PLAIN_GREEDY = SamplingParams(greedy=True, repetition_penalty=1.0)


def _plain_greedy(params: SamplingParams) -> bool:
    """The next token is the most likely one, unchanged by any penalty or minimum length: the forward pass alone
    says which (the decoder would be given exactly these options)."""
    return params.ct2_options() == PLAIN_GREEDY.ct2_options()


def _notice(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


# -- scored choices: one forward pass per prompt --------------------------------------------------------
def _scored(model: ServedModel, prompts: Sequence[PreparedPrompt], job: BatchJob) -> Iterator[ChoiceDelta]:
    top = job.logprobs or 0
    for i, (prompt, scores) in enumerate(zip(prompts, model.score_prompts([p.ids for p in prompts], top),
                                             strict=True)):
        delta = _scored_choice(model, prompt, scores, job)
        for j in range(job.n):  # greedy: every choice of a prompt is the same
            yield ChoiceDelta(i * job.n + j, delta.text, delta.tokens, delta.finish_reason, delta.notice,
                              delta.completion_tokens)


def _scored_choice(model: ServedModel, prompt: PreparedPrompt, scores: PromptScores, job: BatchJob) -> ChoiceDelta:
    tokenizer = model.tokenizer
    generated: list[int] = []
    finish = FinishReason.LENGTH
    if job.max_tokens:
        # the end-of-text token is a generated token like any other (it has its log-prob entry and is counted),
        # only its text is empty: lm-eval drops the last entry as the generated one, whatever it is
        generated.append(scores.next_tokens[0][0])
        if generated[-1] == model.eos_id:
            finish = FinishReason.STOP
    text, cut = _generated_text(tokenizer, generated, job.stop)
    if cut:
        finish = FinishReason.STOP
    prompt_text = tokenizer.decode(list(prompt.ids), skip_special_tokens=True) if job.echo else ""
    tokens: tuple[ScoredToken, ...] = ()
    if job.logprobs is not None:
        positions = [None, *scores.positions]
        shown = list(prompt.ids) if job.echo else []
        choices = positions[:len(shown)] + ([_next_choice(scores)] if generated else [])
        tokens = _tokens(tokenizer, shown + generated, choices, job.logprobs, prompt_text + text, model.eos_id)
    return ChoiceDelta(0, prompt_text + _shown(text, job.strip_leading), tokens, finish, prompt.notice,
                       len(generated))


def _next_choice(scores: PromptScores) -> TokenChoices:
    """The greedy next token, as a position's choices: its log-prob is the best one's."""
    return TokenChoices(scores.next_tokens[0][1], scores.next_tokens)


# -- decoded choices: through the batch scheduler, all rows at once ---------------------------------------
def _decoded(model: ServedModel, prompts: Sequence[PreparedPrompt], job: BatchJob,
             cancel: threading.Event) -> Iterator[ChoiceDelta]:
    rows = [(i * job.n + j, prompt) for i, prompt in enumerate(prompts) for j in range(job.n)]
    if len(rows) == 1:  # one choice (most requests): decoded in the caller's thread, without a hop per token
        try:
            yield from decode_choice(model, *rows[0], job, cancel)
        finally:
            cancel.set()  # the consumer left (a closed connection) or the row failed
        return
    events: queue.SimpleQueue = queue.SimpleQueue()

    def decode(index: int, prompt: PreparedPrompt) -> None:
        try:
            for delta in decode_choice(model, index, prompt, job, cancel):
                events.put(delta)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            events.put(exc)
        finally:
            events.put(_DONE)

    threads = [threading.Thread(target=decode, args=row, name=f"choice-{row[0]}", daemon=True) for row in rows]
    for thread in threads:
        thread.start()
    try:
        running = len(threads)
        while running:
            item = events.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        cancel.set()  # the consumer left (a closed connection) or a row failed: stop every row
        for thread in threads:
            thread.join(timeout=30)


def decode_choice(model: ServedModel, index: int, prompt: PreparedPrompt, job: BatchJob,
                  cancel: threading.Event) -> Iterator[ChoiceDelta]:
    """One choice, through the model's batch scheduler: its text as it grows (unless it waits for its log-probs,
    see ``BatchJob.live``), then a last delta with the rest, the tokens and how it ended. The one generation path:
    the OpenAI routes' choices, and the page's and the Gradio API's replies (one choice each)."""
    tokenizer = model.tokenizer
    wanted, notice = room(prompt, job.max_tokens)
    params = job.params.model_copy(update={"max_new_tokens": wanted})
    prompt_text = tokenizer.decode(list(prompt.ids), skip_special_tokens=True) if job.echo else ""
    reply = ReplyBuilder()
    live = job.logprobs is None or job.live
    sent = ""
    if live and prompt_text:
        yield ChoiceDelta(index, prompt_text)
    for chunk in stream(model, prompt, params, stop=job.stop, cancel=cancel):
        reply.add(chunk)
        if live and chunk.finish_reason is None:
            shown = _shown(reply.text, job.strip_leading)
            if len(shown) > len(sent):
                yield ChoiceDelta(index, shown[len(sent):])
                sent = shown
    last = reply.last
    text = _shown(reply.text, job.strip_leading)
    # the end-of-text token that ended a choice is one of its tokens (counted, and with its log-prob entry)
    generated = [*reply.token_ids, *([model.eos_id] if last.ended_by_eos else [])]
    tokens: tuple[ScoredToken, ...] = ()
    if job.logprobs is not None:  # one forward pass after decoding: decoding ran at full speed
        ids = (list(prompt.ids) if job.echo else []) + generated
        (scores,) = model.score_prompts([[*prompt.ids, *generated]], job.logprobs)
        choices = [None, *scores.positions]
        start = 0 if job.echo else len(prompt.ids)
        # offsets over the text as generated (a chat reply's leading space included), cut where the stop string
        # began
        tokens = _tokens(tokenizer, ids, choices[start:start + len(ids)], job.logprobs, prompt_text + reply.text,
                         model.eos_id)
    rest = text[len(sent):] if live else prompt_text + text
    yield ChoiceDelta(index, rest, tokens, last.finish_reason, _notice(prompt.notice, notice), len(generated), last)


def _shown(text: str, strip_leading: bool) -> str:
    return text.lstrip() if strip_leading else text


def _generated_text(tokenizer, ids: list[int], stop: Sequence[str]) -> tuple[str, bool]:
    """The text of ``ids`` cut before the first stop string; whether one was found."""
    stops = StopStringFilter(stop)
    text = stops.push(tokenizer.decode(ids, skip_special_tokens=True)) if ids else ""
    return text + stops.finish(), stops.stopped


def _tokens(tokenizer, ids: Sequence[int], choices: Sequence, top: int, text: str,
            eos_id: int) -> tuple[ScoredToken, ...]:
    """Each token with its offset in ``text`` (tokens past the end of a text cut at a stop string are left out;
    an end-of-text token, whose text is empty, never is), its log-prob (None where nothing came before it) and
    ``top`` alternatives."""
    from tokenizers.decoders import DecodeStream

    decoder, offset, tokens = DecodeStream(skip_special_tokens=True), 0, []
    for token_id, choice in zip(ids, choices, strict=True):
        if offset >= len(text) and token_id != eos_id:
            break
        tokens.append(ScoredToken.of(tokenizer, token_id, None if choice is None else choice.log_prob,
                                     None if choice is None else choice.alternatives[:top], offset))
        offset += len(decoder.step(tokenizer, token_id) or "")
    return tuple(tokens)
