"""The one service object the UI, the Gradio API, MCP and the OpenAI routes talk to.

Callers turn raw arguments into a typed request with ``PythiaService.parse`` (requests.py: the only
validation on the way down); each operation takes that request and passes typed values to the engine.
No Gradio here, and no wording for people beyond the errors the rules raise: the surfaces say things.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..core.catalog import Catalog, PythiaModel
from ..core.errors import InvalidParameter
from ..core.progress import ProgressCallback
from ..core.sampling import FinishReason, SamplingParams
from ..engine.interface import ModelEngine
from ..engine.model_status import ModelStatus
from ..engine.prompts import CHAT_STOP_STRINGS, PreparedPrompt, prepare_chat, prepare_completion
from ..engine.scoring import TextScore, score_text
from ..engine.tokens import ScoredToken
from ..store.disk import default_cache_dir
from . import research
from .benchmark_store import FILE_NAME as STORE_FILE
from .benchmarks import SHIPPED_TASKS_DIR, Benchmarks, BenchmarkUpdate
from .choices import BatchJob, BatchUsage, ChoiceDelta, decode_choice, run_batch
from .client_limits import ClientLimits
from .requests import (
    BatchChatRequest,
    BatchCompletionRequest,
    BenchmarkRequest,
    ChatRequest,
    CompareRequest,
    CompletionRequest,
    MemorizationRequest,
    ParseContext,
    R,
    ScoreAcrossRequest,
    ScoreRequest,
    TargetRequest,
)

STREAM_INTERVAL_S = 0.05  # at most 20 updates a second per reply
DEFAULT_CLIENT_ROWS = 8  # choices one API client may have queued or decoding at once (--max-client-rows)


@dataclass(frozen=True)
class Capacity:
    """What this server does at once, as its settings and machine make it (the page says so)."""

    rows: int  # replies decoded at once (--max-batch-size x workers)
    queue: int = 0  # visitors who may wait in line beyond them (--max-queue)
    api_rows: int | None = None  # of the rows, the most API clients may hold together (--max-api-rows)


@dataclass(frozen=True)
class Reply:
    """The reply so far (text grows); the last one also has the finish reason and metrics."""

    text: str
    notice: str | None = None  # what was cut to fit the context, in words
    finish_reason: FinishReason | None = None  # set on the last reply
    num_tokens: int = 0
    time_to_first_token: float | None = None
    tokens_per_second: float = 0.0
    served_by: str = ""  # what decoded it, e.g. "CPU int8" or "remote vLLM engine"
    model: str = ""
    revision: str = ""
    token_scores: tuple[ScoredToken, ...] | None = None  # when asked for: each generated token's log-prob

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class PythiaService:
    """Chat, completion, scoring and comparison over the engine, for every caller alike.

    Callers turn raw arguments into a typed request with :meth:`parse` (the one validation) and pass it
    to the operation; operations never see raw values.
    """

    def __init__(self, engine: ModelEngine, catalog: Catalog, default_model: str, *,
                 max_client_rows: int = DEFAULT_CLIENT_ROWS, max_api_rows: int | None = None,
                 capacity: Capacity | None = None, results_dir: str | Path | None = None,
                 tasks_dir: str | Path | None = None, benchmark_jobs: int = 1):
        self.engine = engine
        self.catalog = catalog
        self.default_model = default_model
        self.context = ParseContext(catalog, default_model, engine.capabilities)
        self.client_limits = ClientLimits(max_client_rows, max_api_rows)
        self.capacity = capacity
        self._benchmarks_at = (results_dir, tasks_dir, benchmark_jobs)  # the benchmarks are built on first use
        self._benchmarks: Benchmarks | None = None
        self._benchmarks_lock = threading.Lock()

    def parse(self, request: type[R], **raw: Any) -> R:
        """Validate raw arguments (from the UI, the Gradio API, MCP or the OpenAI routes) into ``request``;
        a refusal is a PythiaError whose words every surface shows as they are."""
        return request.parse(self.context, **raw)

    # -- what the pickers and status line show ----------------------------------------------
    @property
    def device_label(self) -> str:
        return self.engine.device.describe()

    def model_names(self) -> list[str]:
        return self.catalog.names()

    def model(self, name: Any = None) -> PythiaModel:
        """The catalog entry for ``name`` (default: the default model)."""
        return self.parse(TargetRequest, model=name).model

    def default_curve(self, name: Any = None) -> tuple[str, ...]:
        """The checkpoints a learning curve of this model shows unless told otherwise."""
        return research.default_curve(self.model(name).revisions)

    def status(self, target: TargetRequest) -> ModelStatus:
        return self.engine.status(target.model, target.revision)

    def statuses(self) -> list[tuple[PythiaModel, ModelStatus]]:
        """Every servable model with its status at ``main``."""
        return [(m, self.engine.status(m)) for m in self.catalog.models()]

    # -- generation -------------------------------------------------------------------------
    def chat(self, r: ChatRequest, *, progress: ProgressCallback | None = None,
             cancel: threading.Event | None = None) -> Iterator[Reply]:
        """Stream the next Bot turn of a User:/Bot: transcript."""
        return self._replies(r.model, r.revision, r.sampling, r.logprobs, progress, cancel, strip_leading=True,
                             stop=CHAT_STOP_STRINGS,
                             prepare=lambda tok: prepare_chat(tok, r.history, r.message, r.sampling.max_new_tokens))

    def complete(self, r: CompletionRequest, *, progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> Iterator[Reply]:
        """Stream a plain continuation of the prompt; with ``logprobs`` = k, the last reply has token scores."""
        return self._replies(r.model, r.revision, r.sampling, r.logprobs, progress, cancel, strip_leading=False,
                             stop=(), prepare=lambda tok: prepare_completion(tok, r.prompt, r.sampling.max_new_tokens))

    def _replies(self, model: PythiaModel, revision: str, params: SamplingParams, logprobs: int | None,
                 progress, cancel, *, strip_leading: bool, stop, prepare) -> Iterator[Reply]:
        """One choice of the OpenAI routes' path (choices.decode_choice), as the page and the Gradio API show it."""
        with self.engine.open(model, revision, progress) as loaded:
            prompt: PreparedPrompt = prepare(loaded.tokenizer)
            job = BatchJob(1, params.max_new_tokens, params, logprobs=logprobs, stop=stop,
                           strip_leading=strip_leading, live=True)
            text, sent_at = "", None
            for delta in decode_choice(loaded, 0, prompt, job, cancel or threading.Event()):
                text += delta.text
                if delta.finish_reason is None:
                    # Send the first text at once, then at most every STREAM_INTERVAL_S: each update
                    # re-sends the growing reply to the browser, and per-token updates for many
                    # visitors cost more CPU than the decoding itself on a 2-vCPU Space.
                    now = time.monotonic()
                    if sent_at is None or now - sent_at >= STREAM_INTERVAL_S:
                        sent_at = now
                        yield Reply(text, prompt.notice)
                    continue
                last = delta.timing
                # the page shows the reply's own tokens: not the end-of-text token that ended it
                tokens = delta.tokens[:last.num_tokens] if logprobs is not None else None
                yield Reply(text, delta.notice, delta.finish_reason, last.num_tokens, last.time_to_first_token,
                            last.tokens_per_second, loaded.served_by, model.name, revision, tokens)

    # -- batches of choices (the OpenAI routes) ------------------------------------------------
    def tokenizer(self, target: TargetRequest, progress: ProgressCallback | None = None):
        """The tokenizer of (model, revision): what the model reads and writes (loads the model if need be)."""
        with self.engine.open(target.model, target.revision, progress) as loaded:
            return loaded.tokenizer

    def batch_completion(self, r: BatchCompletionRequest, *, cancel: threading.Event | None = None
                         ) -> Iterator[ChoiceDelta | BatchUsage]:
        """Every prompt's ``n`` continuations (or scores, with echo and max_tokens 0 or 1), then the usage."""
        with self.engine.open(r.model, r.revision) as loaded:
            prompts = [_batch_prompt(loaded, i, p) for i, p in enumerate(r.prompt)]
            job = BatchJob(r.n, r.max_tokens, r.sampling, r.echo, r.logprobs, r.stop)
            yield from run_batch(loaded, prompts, job, cancel)

    def batch_chat(self, r: BatchChatRequest, *, cancel: threading.Event | None = None
                   ) -> Iterator[ChoiceDelta | BatchUsage]:
        """``n`` next Bot turns of the transcript, then the usage."""
        with self.engine.open(r.model, r.revision) as loaded:
            prompt = prepare_chat(loaded.tokenizer, r.history, r.message, r.sampling.max_new_tokens, r.system)
            job = BatchJob(r.n, r.sampling.max_new_tokens, r.sampling, logprobs=r.logprobs,
                           stop=(*CHAT_STOP_STRINGS, *r.stop), strip_leading=True)
            yield from run_batch(loaded, [prompt], job, cancel)

    # -- research -----------------------------------------------------------------------------
    def score(self, r: ScoreRequest, progress: ProgressCallback | None = None) -> TextScore:
        """Per-token log-probs of the text, its perplexity and bits per byte."""
        with self.engine.open(r.model, r.revision, progress) as loaded:
            return score_text(loaded, r.text)

    def score_across(self, r: ScoreAcrossRequest, progress: ProgressCallback | None = None,
                     cancel: threading.Event | None = None) -> list[research.CurvePoint]:
        """The text's perplexity at several checkpoints (of one model, or of ``models``): one point per
        (model, revision), failed ones say why."""
        return research.score_across(self.engine, r, progress, cancel)

    def memorization(self, r: MemorizationRequest, progress: ProgressCallback | None = None,
                     cancel: threading.Event | None = None) -> list[research.MemorizationRow]:
        """Does greedy decoding reproduce the text after its prefix, at each checkpoint (and model)?"""
        return research.memorization(self.engine, r, progress, cancel)

    @property
    def benchmarks(self) -> Benchmarks:
        """lm-eval jobs, their results store (``benchmarks.sqlite3`` under the cache dir) and the task registry."""
        with self._benchmarks_lock:
            if self._benchmarks is None:
                results_dir, tasks_dir, jobs = self._benchmarks_at
                self._benchmarks = Benchmarks(self.engine, Path(results_dir or default_cache_dir()) / STORE_FILE,
                                              (SHIPPED_TASKS_DIR, *((Path(tasks_dir),) if tasks_dir else ())), jobs)
            return self._benchmarks

    def benchmark(self, r: BenchmarkRequest, cancel: threading.Event | None = None) -> Iterator[BenchmarkUpdate]:
        """Evaluate lm-eval tasks at each checkpoint (of each model); stream the job as it stands. Stored results
        come back at once; setting ``cancel`` (or leaving the stream) ends it at its next batch."""
        return self.benchmarks.run(r.models, r.revisions or None, r.tasks, r.limit, r.num_fewshot, cancel)

    def compare(self, r: CompareRequest, *, cancel: threading.Event | None = None
                ) -> Iterator[list[research.CompareColumn]]:
        """Stream one prompt through several (model, revision) pairs side by side."""
        return research.compare(self.engine, r, cancel)


def _batch_prompt(model, index: int, prompt: str | tuple[int, ...]) -> PreparedPrompt:
    """A batch prompt as token ids: a text is tokenized whole (it is refused later if it does not fit); ids
    must be tokens of this model's tokenizer (the request checked them against its embedding size only)."""
    if isinstance(prompt, str):
        return prepare_completion(model.tokenizer, prompt, max_new_tokens=0, truncate=False)
    check_token_ids(model.tokenizer, prompt, f"prompt[{index}]")
    return PreparedPrompt(tuple(prompt))


def check_token_ids(tokenizer, ids, where: str) -> None:
    """Refuse ids that are not tokens of ``tokenizer`` (a model's embedding has padding rows past its vocabulary:
    an id there has no text). The one such check past parsing: batch prompts and /detokenize."""
    size = tokenizer.get_vocab_size()
    wrong = next((t for t in ids if not 0 <= t < size), None)
    if wrong is not None:
        raise InvalidParameter(f"{where} holds {wrong}, which is not a token of this model's vocabulary "
                               f"(0 to {size - 1}).")
