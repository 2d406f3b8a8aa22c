"""Research operations over typed requests: a learning curve across checkpoints, and side-by-side
comparison. Called by the service after validation; no Gradio here."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Iterator

from ..core.errors import PythiaError
from ..core.progress import Progress, ProgressCallback, report
from ..engine.engine import Engine
from ..engine.generation import ReplyBuilder, stream
from ..engine.prompts import prepare_completion
from ..engine.scoring import score_text
from .requests import CompareRequest, ScoreAcrossRequest

# A log-spaced learning curve from initialisation to the end of training.
DEFAULT_CURVE = ("step0", "step16", "step128", "step512", "step1000", "step4000", "step16000", "step64000", "main")


@dataclass(frozen=True)
class CurvePoint:
    """One checkpoint of a learning curve: its scores, or why it failed."""

    revision: str
    step: int
    status: str  # "ok" or "failed"
    perplexity: float | None = None
    bits_per_byte: float | None = None
    log_likelihood: float | None = None
    num_tokens: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


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
    finish_reason: str | None = None


def default_curve(revisions: tuple[str, ...]) -> tuple[str, ...]:
    """The default checkpoints of a model's learning curve: the suite's log-spaced ones, or all of a model's own."""
    chosen = tuple(r for r in DEFAULT_CURVE if r in revisions)
    return chosen if len(chosen) == len(DEFAULT_CURVE) else revisions


def score_across(engine: Engine, request: ScoreAcrossRequest, progress: ProgressCallback | None) -> list[CurvePoint]:
    """Score the text at each revision, those already on disk first; each revision fails alone."""
    model = request.model
    revisions = request.revisions or default_curve(model.revisions)
    order = sorted(revisions, key=lambda r: not engine.is_cached(model, r))
    points = []
    for i, revision in enumerate(order):
        report(progress, Progress(f"scoring {revision}", i, len(order), "checkpoints"))
        step = model.step_of(revision)
        try:
            with engine.open(model, revision) as loaded:
                result = score_text(loaded, request.text)
            points.append(CurvePoint(revision, step, "ok", result.perplexity, result.bits_per_byte,
                                     result.log_likelihood, len(result.tokens)))
        except PythiaError as exc:
            points.append(CurvePoint(revision, step, "failed", error=str(exc)))
    return sorted(points, key=lambda p: p.step)


def compare(engine: Engine, request: CompareRequest, cancel: threading.Event | None = None,
            interval: float = 0.1) -> Iterator[list[CompareColumn]]:
    """Stream the same prompt through each column at once; one column's failure leaves the others running."""
    params = request.sampling
    cancel = cancel or threading.Event()
    lock = threading.Lock()
    columns = [CompareColumn(c.model.name, c.revision) for c in request.columns]

    def run(i: int) -> None:
        spec = request.columns[i]
        try:
            with engine.open(spec.model, spec.revision) as loaded:
                prepared = prepare_completion(loaded.tokenizer, request.prompt, params.max_new_tokens)
                reply = ReplyBuilder()
                for chunk in stream(loaded, prepared, params, cancel=cancel):
                    reply.add(chunk)
                    with lock:
                        columns[i] = replace(columns[i], text=reply.text, num_tokens=chunk.num_tokens,
                                             tokens_per_second=chunk.tokens_per_second,
                                             finish_reason=chunk.finish_reason)
        except PythiaError as exc:
            with lock:
                columns[i] = replace(columns[i], error=str(exc))
        except Exception:
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
