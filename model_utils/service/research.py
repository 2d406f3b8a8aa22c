"""Research operations behind /score, /score_across and /compare (no Gradio here)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..core.catalog import MAIN_STEP, canonical_revision
from ..engine.engine import Engine
from ..core.errors import InvalidParameter, PythiaError
from ..engine.generation import stream
from ..core.progress import Progress, ProgressCallback, report
from ..engine.prompts import check_text, prepare_completion
from ..core.sampling import SamplingParams
from ..engine.scoring import TextScore, score_text

# A log-spaced learning curve from initialisation to the end of training.
DEFAULT_CURVE = ("step0", "step16", "step128", "step512", "step1000", "step4000", "step16000", "step64000", "main")
MAX_REVISIONS = 16
MAX_COMPARE = 4


def revision_step(revision: str) -> int:
    return MAIN_STEP if revision == "main" else int(revision.removeprefix("step"))


@dataclass
class CompareColumn:
    """One column of a side-by-side comparison."""

    model: str
    revision: str
    text: str = ""
    metrics: str = ""
    error: str | None = None
    done: bool = False


@dataclass
class Researcher:
    engine: Engine
    default_model: str
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _model(self, model: Any) -> Any:
        return self.default_model if model is None else model

    def score(self, text: Any, model: Any = None, revision: Any = None,
              progress: ProgressCallback | None = None) -> TextScore:
        check_text(text, "text")
        with self.engine.open(self._model(model), revision, progress) as loaded:
            return score_text(loaded, text)

    def score_across(self, text: Any, model: Any = None, revisions: Any = None,
                     progress: ProgressCallback | None = None) -> list[dict]:
        """One row per revision: perplexity and bits per byte, or why that revision failed.

        Revisions already on disk are scored first; the others are fetched lazily.
        """
        check_text(text, "text")
        name = self._model(model)
        revisions = list(DEFAULT_CURVE) if revisions is None else revisions
        if not isinstance(revisions, (list, tuple)) or not revisions or len(revisions) > MAX_REVISIONS:
            raise InvalidParameter(f"revisions must be a list of 1 to {MAX_REVISIONS} checkpoints.")
        canonical = []
        for r in revisions:
            self.engine.catalog.resolve(name, r)  # validates model and revision before any work
            canonical.append(canonical_revision(r))
        canonical = list(dict.fromkeys(canonical))
        info = self.engine.catalog.get(name)
        order = sorted(canonical, key=lambda r: self.engine.store.cached_path(info, r) is None)
        rows = {}
        for i, revision in enumerate(order):
            report(progress, Progress(f"scoring {revision}", i, len(order), "checkpoints"))
            try:
                result = self.score(text, name, revision)
                rows[revision] = {"revision": revision, "step": revision_step(revision), "status": "ok",
                                  "perplexity": result.perplexity, "bits_per_byte": result.bits_per_byte,
                                  "log_likelihood": result.log_likelihood, "num_tokens": len(result.tokens),
                                  "error": None}
            except PythiaError as exc:
                rows[revision] = {"revision": revision, "step": revision_step(revision), "status": "failed",
                                  "perplexity": None, "bits_per_byte": None, "log_likelihood": None,
                                  "num_tokens": None, "error": str(exc)}
        return sorted(rows.values(), key=lambda row: row["step"])

    def compare(self, prompt: Any, pairs: Any, params: SamplingParams,
                cancel: threading.Event | None = None, interval: float = 0.1) -> Iterator[list[CompareColumn]]:
        """Stream the same prompt through several (model, revision) pairs side by side."""
        check_text(prompt)
        columns = self._columns(pairs)
        cancel = cancel or threading.Event()

        def run(column: CompareColumn) -> None:
            try:
                with self.engine.open(column.model, column.revision) as loaded:
                    prepared = prepare_completion(loaded.tokenizer, prompt, params.max_new_tokens)
                    for chunk in stream(loaded, prepared, params, cancel=cancel):
                        with self._lock:
                            column.text += chunk.text
                            if chunk.finish_reason:
                                column.metrics = (f"{chunk.num_tokens} tokens · {chunk.tokens_per_second:.1f} tok/s"
                                                  f" · {chunk.finish_reason}")
            except PythiaError as exc:
                column.error = str(exc)
            except Exception:
                column.error = "Generation failed on the server."
            finally:
                column.done = True

        threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in columns]
        for t in threads:
            t.start()
        try:
            while not all(c.done for c in columns):
                time.sleep(interval)
                with self._lock:
                    yield [CompareColumn(**c.__dict__) for c in columns]
            yield columns
        finally:
            cancel.set()  # the consumer left (Stop, closed tab): stop every column
            for t in threads:
                t.join(timeout=10)

    def _columns(self, pairs: Any) -> list[CompareColumn]:
        if not isinstance(pairs, (list, tuple)) or not 1 <= len(pairs) <= MAX_COMPARE:
            raise InvalidParameter(f"pairs must be a list of 1 to {MAX_COMPARE} [model, revision] pairs.")
        columns = []
        for pair in pairs:
            if isinstance(pair, dict):
                model, revision = pair.get("model"), pair.get("revision", "main")
            elif isinstance(pair, (list, tuple)) and len(pair) == 2:
                model, revision = pair
            else:
                raise InvalidParameter("Each pair must be [model, revision] or {'model': ..., 'revision': ...}.")
            model_info, revision = self.engine.catalog.resolve(model, revision)
            self.engine.check_fits(model_info)
            columns.append(CompareColumn(model_info.name, revision))
        return columns
