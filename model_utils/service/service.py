"""What the endpoints do, independent of Gradio: validate, open the model, stream replies."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator

from ..engine.engine import Engine
from ..engine.generation import GenerationChunk, stream
from ..core.progress import ProgressCallback
from ..engine.prompts import CHAT_STOP_STRINGS, check_text, normalize_history, prepare_chat, prepare_completion
from ..core.sampling import SamplingParams


STREAM_INTERVAL_S = 0.05  # at most 20 updates a second per reply


@dataclass(frozen=True)
class Reply:
    """The reply so far (text grows), and on the last one the finish reason and metrics."""

    text: str
    notice: str | None = None
    finish_reason: str | None = None
    num_tokens: int = 0
    time_to_first_token: float | None = None
    tokens_per_second: float = 0.0
    device: str = ""
    model: str = ""
    prompt_ids: tuple[int, ...] = ()  # on the final reply: what was fed and generated, for token views
    token_ids: tuple[int, ...] = ()

    def metrics(self) -> str:
        """One short line for under the reply."""
        ttft = f"{self.time_to_first_token * 1000:.0f} ms" if self.time_to_first_token is not None else "–"
        return (f"{self.num_tokens} tokens · first token {ttft} · {self.tokens_per_second:.1f} tok/s · "
                f"{self.device} · {self.model} · {self.finish_reason}")


class PythiaService:
    """The stateless operations behind /chat, /complete and /models."""

    def __init__(self, engine: Engine, default_model: str):
        self.engine = engine
        self.default_model = default_model

    def _replies(self, model_name: Any, revision: Any, sampling: dict, prepare, stop, progress, cancel,
                 strip_leading: bool) -> Iterator[Reply]:
        params = SamplingParams.parse(**sampling)
        # engine.open validates the model and revision before anything is downloaded or loaded
        with self.engine.open(self._name(model_name), revision, progress) as model:
            prompt = prepare(model.tokenizer, params.max_new_tokens)
            pieces, last, ids, sent, sent_at = [], None, [], 0, 0.0
            for chunk in stream(model, prompt, params, stop=stop, cancel=cancel):
                pieces.append(chunk.text)
                last = chunk
                if chunk.token_id is not None:
                    ids.append(chunk.token_id)
                # Send the first text at once, then at most every STREAM_INTERVAL_S: each update
                # re-sends the growing reply to the browser, and per-token updates for many
                # visitors cost more CPU than the decoding itself on a 2-vCPU Space.
                now = time.monotonic()
                if chunk.finish_reason is None and chunk.text and (not sent or now - sent_at >= STREAM_INTERVAL_S):
                    shown = _shown(pieces, strip_leading)
                    if shown:
                        sent, sent_at = sent + 1, now
                        yield Reply(shown, prompt.notice)
            yield _final(_shown(pieces, strip_leading), prompt.notice, last, model, prompt.ids, tuple(ids))

    def _name(self, model: Any) -> Any:
        return self.default_model if model is None else model

    def chat(self, message: Any, history: Any = None, model: Any = None, revision: Any = None, *,
             progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
             **sampling) -> Iterator[Reply]:
        """Stream the next Bot turn of a User:/Bot: transcript."""
        check_text(message, "message")
        normalize_history(history)
        return self._replies(model, revision, sampling,
                             lambda tok, n: prepare_chat(tok, history, message, n),
                             CHAT_STOP_STRINGS, progress, cancel, strip_leading=True)

    def complete(self, prompt: Any, model: Any = None, revision: Any = None, *,
                 progress: ProgressCallback | None = None, cancel: threading.Event | None = None,
                 **sampling) -> Iterator[Reply]:
        """Stream a plain continuation of ``prompt``."""
        check_text(prompt)
        return self._replies(model, revision, sampling, lambda tok, n: prepare_completion(tok, prompt, n),
                             (), progress, cancel, strip_leading=False)

    def token_probabilities(self, model: Any, revision: Any, reply: Reply, top: int = 5):
        """Probabilities and top alternatives of a finished reply's tokens (one forward pass)."""
        from ..engine.scoring import token_probabilities

        with self.engine.open(self._name(model), revision) as loaded:
            return token_probabilities(loaded, reply.prompt_ids, reply.token_ids, top)

    def models(self) -> list[dict]:
        """Every servable model with its cached / loaded / fits-here status (revision main)."""
        rows = []
        for m in self.engine.catalog.models():
            s = self.engine.status(m.name)
            rows.append({"model": m.name, "parameters": m.num_parameters, "revisions": "local" if m.local_path
                         else "main, step0 … step143000", "cached": s.cached, "loaded": s.loaded, "fits": s.fits,
                         "estimated_gib": round(s.estimated_bytes / 2**30, 2), "random_weights": m.random_weights,
                         "note": s.note})
        return rows


def _shown(pieces: list[str], strip_leading: bool) -> str:
    text = "".join(pieces)
    return text.lstrip() if strip_leading else text


def _final(text: str, notice: str | None, chunk: GenerationChunk, model, prompt_ids, token_ids) -> Reply:
    return Reply(text, notice, chunk.finish_reason, chunk.num_tokens, chunk.time_to_first_token,
                 chunk.tokens_per_second, model.device.describe(), model.label, tuple(prompt_ids), token_ids)
