"""Research operations over typed requests: a learning curve across checkpoints, and side-by-side
comparison. Called by the service after validation; no Gradio here."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterator, TypeVar

from ..core.catalog import PythiaModel
from ..core.errors import InvalidParameter, PythiaError
from ..core.progress import Progress, ProgressCallback, report
from ..core.sampling import FinishReason, SamplingParams
from ..engine.generation import ReplyBuilder, stream
from ..engine.interface import ModelEngine, ServedModel
from ..engine.prompts import PreparedPrompt, prepare_completion
from ..engine.scoring import score_text
from ..engine.tokens import ScoredToken
from .requests import CompareRequest, MemorizationRequest, ScoreAcrossRequest

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.service"

T = TypeVar("T")

# A log-spaced learning curve from initialisation to the end of training.
DEFAULT_CURVE = ("step0", "step16", "step128", "step512", "step1000", "step4000", "step16000", "step64000", "main")


@dataclass(frozen=True)
class CurvePoint:
    """One checkpoint of a learning curve: its scores, or why it failed."""

    model: str
    revision: str
    step: int
    status: str  # "ok", "failed" or "stopped"
    perplexity: float | None = None
    bits_per_byte: float | None = None
    log_likelihood: float | None = None
    num_tokens: int | None = None
    error: str | None = None
    tokens: tuple[ScoredToken, ...] = field(default=(), repr=False)  # per-token log-probs (not in the API rows)

    def as_dict(self) -> dict:
        row = asdict(self)
        del row["tokens"]
        return row


@dataclass(frozen=True)
class CompareColumn:
    """One column of a side-by-side comparison, as it stands."""

    model: str
    revision: str
    text: str = ""
    error: str | None = None
    done: bool = False
    num_tokens: int = 0
    tokens_per_second: float = 0.0
    finish_reason: FinishReason | None = None
    served_by: str = ""  # e.g. "CPU int8" or "remote vLLM engine"


def default_curve(revisions: tuple[str, ...]) -> tuple[str, ...]:
    """The default checkpoints of a model's learning curve: the suite's log-spaced ones, or all of a model's own."""
    chosen = tuple(r for r in DEFAULT_CURVE if r in revisions)
    return chosen if len(chosen) == len(DEFAULT_CURVE) else revisions


class TextTooShort(InvalidParameter):
    """The text is too short for what was asked, at every checkpoint alike (they share the tokenizer): said
    once, for the whole request, rather than once per checkpoint."""


def sweep(engine: ModelEngine, pairs: list[tuple[PythiaModel, str]], work: Callable[[ServedModel], T],
          progress: ProgressCallback | None,
          cancel: threading.Event | None = None) -> list[tuple[PythiaModel, str, T | PythiaError]]:
    """Load each (model, revision) once, those already on disk first, and run ``work`` on it while loaded.

    A pair that cannot be had (download, conversion, memory) fails alone: its result is the error. A
    TextTooShort from ``work`` ends the sweep: the request itself is refused.
    Setting ``cancel`` (Stop) ends the sweep before the next checkpoint; the rest say they were stopped.
    """
    order = sorted(pairs, key=lambda pair: not engine.is_cached(*pair))
    results = []
    for i, (model, revision) in enumerate(order):
        if cancel is not None and cancel.is_set():
            results.append((model, revision, Stopped("Stopped before this checkpoint.")))
            continue
        report(progress, Progress(f"scoring {model.name} {revision}", i, len(order), "checkpoints"))
        try:
            with engine.open(model, revision) as loaded:
                results.append((model, revision, work(loaded)))
        except TextTooShort:
            raise
        except PythiaError as exc:
            results.append((model, revision, exc))
    return sorted(results, key=lambda r: (request_order(pairs, r[0]), r[0].step_of(r[1])))


class Stopped(PythiaError):
    """The visitor stopped the sweep before this checkpoint."""


def _status(error: PythiaError) -> str:
    return "stopped" if isinstance(error, Stopped) else "failed"


def request_order(pairs, model: PythiaModel) -> int:
    return next(i for i, (m, _) in enumerate(pairs) if m is model)


def reasons_said_once(rows) -> list[str | None]:
    """Each failed row's reason for a page to show, or None where an earlier row already gave it: the rows of a
    sweep often fail alike (the Hub unreachable, a model too large here), with messages that differ only by
    the row's own model and checkpoint and by numbers (a retry countdown). Rows that did not fail get None."""
    seen, shown = set(), []
    for row in rows:
        if not row.error:
            shown.append(None)
            continue
        own = (f"{row.model} ({row.revision})", row.model, row.revision)
        key = re.sub(r"\d+", "#", re.sub("|".join(map(re.escape, own)), "", row.error))
        shown.append(None if key in seen else row.error)
        seen.add(key)
    return shown


def score_across(engine: ModelEngine, request: ScoreAcrossRequest, progress: ProgressCallback | None,
                 cancel: threading.Event | None = None) -> list[CurvePoint]:
    """Score the text at each (model, revision); each fails alone."""
    pairs = [(m, r) for m in request.models for r in (request.revisions or default_curve(m.revisions))]
    points = []
    score = lambda loaded: score_text(loaded, request.text)  # noqa: E731
    for model, revision, result in sweep(engine, pairs, score, progress, cancel):
        step = model.step_of(revision)
        if isinstance(result, PythiaError):
            points.append(CurvePoint(model.name, revision, step, _status(result), error=str(result)))
        else:
            points.append(CurvePoint(model.name, revision, step, "ok", result.perplexity, result.bits_per_byte,
                                     result.log_likelihood, len(result.tokens), tokens=result.tokens))
    return points


@dataclass(frozen=True)
class MemorizationRow:
    """Biderman et al. (2023) at one (model, revision): does greedy decoding reproduce the text?"""

    model: str
    revision: str
    step: int
    status: str  # "ok", "failed" or "stopped"
    exact: bool | None = None  # every continuation token matched
    matched_prefix: int | None = None  # how many leading continuation tokens matched
    match_fraction: float | None = None  # the share of positions that matched
    continuation: str | None = None  # what the model wrote
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def memorize(loaded: ServedModel, text: str, prefix_tokens: int, continuation_tokens: int) -> MemorizationRow:
    """Greedy-decode ``continuation_tokens`` after the text's first ``prefix_tokens`` and compare."""
    ids = loaded.tokenizer.encode(text, add_special_tokens=False).ids
    need = prefix_tokens + continuation_tokens
    if len(ids) < need:
        raise TextTooShort(f"The text is {len(ids)} token{'' if len(ids) == 1 else 's'} long for "
                           f"{loaded.info.name}'s tokenizer; memorization needs prefix_tokens + continuation_tokens "
                           f"= {need}. Paste a longer text, or lower the two lengths.")
    truth = ids[prefix_tokens:need]
    # greedy, nothing else: the model's own choice at every position (no penalty, no n-gram ban)
    params = SamplingParams(greedy=True, repetition_penalty=1.0, no_repeat_ngram_size=0,
                            max_new_tokens=continuation_tokens)
    reply = ReplyBuilder()
    for chunk in stream(loaded, PreparedPrompt(tuple(ids[:prefix_tokens])), params):
        reply.add(chunk)
    got = reply.token_ids
    same = [i < len(got) and got[i] == t for i, t in enumerate(truth)]
    leading = next((i for i, ok in enumerate(same) if not ok), len(same))
    return MemorizationRow(loaded.info.name, loaded.revision, loaded.info.step_of(loaded.revision), "ok",
                           all(same), leading, sum(same) / len(same), reply.text)


def memorization(engine: ModelEngine, request: MemorizationRequest, progress: ProgressCallback | None,
                 cancel: threading.Event | None = None) -> list[MemorizationRow]:
    """One row per (model, revision); each fails alone with its reason."""
    pairs = [(m, r) for m in request.models for r in (request.revisions or default_curve(m.revisions))]
    rows = []
    work = lambda loaded: memorize(loaded, request.text, request.prefix_tokens, request.continuation_tokens)  # noqa: E731
    for model, revision, result in sweep(engine, pairs, work, progress, cancel):
        if isinstance(result, PythiaError):
            rows.append(MemorizationRow(model.name, revision, model.step_of(revision), _status(result),
                                        error=str(result)))
        else:
            rows.append(result)
    return rows


def compare(engine: ModelEngine, request: CompareRequest, cancel: threading.Event | None = None,
            interval: float = 0.1) -> Iterator[list[CompareColumn]]:
    """Stream the same prompt through each column at once; one column's failure leaves the others running."""
    params = request.sampling
    cancel = cancel or threading.Event()
    lock = threading.Lock()
    columns = [CompareColumn(c.model.name, c.revision) for c in request.pairs]

    def run(i: int) -> None:
        spec = request.pairs[i]
        try:
            with engine.open(spec.model, spec.revision) as loaded:
                prepared = prepare_completion(loaded.tokenizer, request.prompt, params.max_new_tokens)
                reply = ReplyBuilder()
                for chunk in stream(loaded, prepared, params, cancel=cancel):
                    reply.add(chunk)
                    with lock:
                        columns[i] = replace(columns[i], text=reply.text, num_tokens=chunk.num_tokens,
                                             tokens_per_second=chunk.tokens_per_second,
                                             finish_reason=chunk.finish_reason, served_by=loaded.served_by)
        except PythiaError as exc:
            with lock:
                columns[i] = replace(columns[i], error=str(exc))
        except Exception:
            log.exception("a Compare column (%s, %s) failed", spec.model.name, spec.revision)
            with lock:
                columns[i] = replace(columns[i], error="Generation failed on the server.")
        finally:
            with lock:
                columns[i] = replace(columns[i], done=True)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(columns))]
    for t in threads:
        t.start()
    try:
        while True:
            with lock:
                snapshot = list(columns)
            yield snapshot
            if all(c.done for c in snapshot):
                return
            time.sleep(interval)  # pace the updates: at most 1/interval a second reach the browser
    finally:
        cancel.set()  # the consumer left (Stop, closed tab): stop every column
        for t in threads:
            t.join(timeout=10)
