"""The engine interface: what the service needs from whatever decodes a model.

Two implementations: the local CTranslate2 engine (``engine.Engine`` yielding ``LoadedModel``)
and a remote vLLM server (``remote.RemoteEngine`` yielding ``RemoteModel``). ``router.EngineRouter``
sends each (model, revision) to the one that serves it. Prompts, streaming, scoring and the research
sweeps are written once against :class:`ServedModel`; the UI only ever sees ``served_by``.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Sequence

from ..core.catalog import PythiaModel
from ..core.errors import InvalidParameter
from ..core.progress import ProgressCallback
from ..core.sampling import SamplingParams


@dataclass(frozen=True)
class TokenChoices:
    """A token's log-prob at its position and the likeliest tokens there (id, log-prob), best first."""

    log_prob: float
    alternatives: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class PromptScores:
    """A sequence scored position by position: every token after the first (its log-prob given those before
    it, and the likeliest tokens there), and the likeliest tokens to come after the last one."""

    positions: tuple[TokenChoices, ...]  # one per token after the first
    next_tokens: tuple[tuple[int, float], ...]  # (id, log-prob), best first


@dataclass(frozen=True)
class Capabilities:
    """What an engine can do for a (model, revision): checked when a request is parsed, so an option it
    cannot honour is refused before anything is downloaded or sent."""

    served_by: str  # in words, e.g. "CPU int8" or "remote vLLM engine"
    unsupported: tuple[str, ...] = ()  # SamplingParams options this engine has no equivalent for

    def check(self, model: PythiaModel, sampling: SamplingParams) -> None:
        for option in self.unsupported:
            default = SamplingParams.model_fields[option].default
            if getattr(sampling, option) != default:
                raise InvalidParameter(f"{model.name} is served by a {self.served_by}, which has no {option}; "
                                       f"leave it at {default}.")


class Step(Protocol):
    """One generated token (CT2's GenerationStepResult has these fields too)."""

    token_id: int
    log_prob: float | None


class ServedModel(Protocol):
    """A model ready to decode: a tokenizer here, the arithmetic wherever the engine runs it."""

    info: PythiaModel
    revision: str
    tokenizer: Any  # tokenizers.Tokenizer: prompts are built and replies decoded here, for every engine
    eos_id: int

    @property
    def label(self) -> str: ...

    @property
    def served_by(self) -> str: ...

    def steps(self, prompt_ids: Sequence[int], params, cancel: threading.Event | None = None) -> Iterator[Step]:
        """Generated tokens one by one; closing the iterator stops the request."""

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per sequence, the log-prob of each token after the first, given those before it."""

    def score_prompts(self, sequences: Sequence[Sequence[int]], top: int) -> list[PromptScores]:
        """Per sequence: each position's log-prob and ``top`` likeliest tokens (at least one), and the ``top``
        likeliest next tokens -- from one pass over the sequence, so every number comes from the same logits."""

    def score_continuations(self, pairs: Sequence[tuple[Sequence[int], int]],
                            between: Between | None = None) -> list[tuple[float, bool]]:
        """Per (sequence, n): the sum of the log-probs of its last ``n`` tokens, each given those before it, and
        whether each of them was the likeliest token at its position (greedy decoding would have written them).
        lm-eval's ``loglikelihood``: only those positions are computed and returned, in the order given. ``n`` is
        0 (``(0.0, True)``) up to the sequence's length less one (the first token has no log-prob).

        ``between(done)``, when given, is called after each part of the work (a scoring group, a request) with the
        number of pairs scored so far: progress; an exception it raises (a Stop) ends the call once the parts
        already running have ended, and is raised from it."""

    def give_way(self) -> None:
        """Called by an evaluation's Python work between small pieces (lm-eval rendering a document, encoding a
        text): returns at once unless a visitor waits for a first token from this model, then waits (bounded) until
        it is out. The evaluation's Python holds the interpreter lock that visitors' requests need."""


Between = Callable[[int], None]  # score_continuations' call between its parts: pairs scored so far; raises to stop


def checked_continuations(pairs: Sequence[tuple[Sequence[int], int]]) -> list[tuple[list[int], int]]:
    """``score_continuations``' pairs as plain ints, each ``n`` checked against its sequence: for every engine."""
    checked = []
    for ids, n in pairs:
        ids, n = [int(i) for i in ids], int(n)
        if not 0 <= n < len(ids):
            raise InvalidParameter(f"Cannot score the last {n} tokens of a sequence of {len(ids)}: the first token "
                                   "has no log-prob.")
        checked.append((ids, n))
    return checked


class ModelEngine(Protocol):
    """Something that opens models: the local engine, the remote one, or the router over both."""

    def open(self, model: PythiaModel, revision: str = "main",
             progress: ProgressCallback | None = None) -> AbstractContextManager[ServedModel]: ...

    def status(self, model: PythiaModel, revision: str = "main"): ...

    def capabilities(self, model: PythiaModel, revision: str = "main") -> Capabilities: ...

    def is_cached(self, model: PythiaModel, revision: str) -> bool: ...

    def close(self) -> None: ...
