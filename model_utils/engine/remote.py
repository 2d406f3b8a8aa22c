"""The remote engine: models that a vLLM server serves, behind the same interface as local CT2.

An operator names them with ``--remote-model NAME[@REVISION]=URL`` (or ``PYTHIA_REMOTE_MODELS``);
visitors can never supply a URL. The app keeps the tokenizer of each remote model here, sends
token ids, and gets token ids back, so prompts, context fitting, stop strings, streaming text,
metrics and the research views are the very code the local models use.

A server that does not answer is never fatal: the status line says so, and the next request (or a
status check once ``RETRY_S`` has passed) asks again.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..core.catalog import EOS_TOKEN, PythiaModel
from ..core.errors import ModelUnavailable
from ..core.progress import ProgressCallback
from ..core.remote_spec import RemoteSpec
from ..core.sampling import CONTROLS
from .interface import Between, Capabilities, PromptScores, TokenChoices, checked_continuations
from .model_status import ModelStatus
from .vllm_client import RemoteProblem, VLLMClient

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"

SERVED_BY = "remote vLLM engine"
CAPABILITIES = Capabilities(SERVED_BY, unsupported=tuple(c.name for c in CONTROLS if not c.remote))
RETRY_S = 15.0  # a server found down is asked again at most this often by status checks
SCORE_REQUEST = 64  # sequences per prompt_logprobs request of score_continuations: each request bounded, Stop between
TOKEN_PREFIX = "token_id:"  # how vLLM names tokens when return_tokens_as_token_ids is on


@dataclass(frozen=True)
class RemoteStep:
    token_id: int
    log_prob: float | None


@dataclass
class EndpointState:
    answering: bool | None = None  # None: not asked yet
    problem: str | None = None  # why not, in a visitor's words
    checked_at: float = 0.0


class RemoteEndpoint:
    """One server for one (model, revision): which id it serves under, and whether it answers."""

    def __init__(self, spec: RemoteSpec, model: PythiaModel, client: VLLMClient):
        self.spec, self.model, self.client = spec, model, client
        self.state = EndpointState()
        self._model_id: str | None = None
        self._lock = threading.Lock()
        self._probing = False

    def model_id(self) -> str:
        """The id to send, asked from the server once (raises a readable error if it does not answer)."""
        if self._model_id is None:
            self.probe()
        if self._model_id is None:
            raise RemoteProblem(self.state.problem or f"The remote engine serving {self.model.name} is not answering.")
        return self._model_id

    def probe(self) -> None:
        """Ask ``/v1/models`` now and record the answer."""
        try:
            ids = self.client.model_ids()
            chosen = self._choose(ids)
        except ModelUnavailable as exc:
            self._record(False, str(exc))
            return
        self._model_id = chosen
        self._record(True, None)

    def probe_soon(self) -> None:
        """Probe in the background when the last answer was a failure older than RETRY_S (never blocks)."""
        with self._lock:
            stale = self.state.answering is not True and time.monotonic() - self.state.checked_at >= RETRY_S
            if not stale or self._probing:
                return
            self._probing = True

        def run():
            try:
                self.probe()
            finally:
                self._probing = False

        threading.Thread(target=run, name=f"probe-{self.model.name}", daemon=True).start()

    def succeeded(self) -> None:
        if self.state.answering is not True:
            self._record(True, None)

    def failed(self, exc: Exception) -> None:
        self._record(False, str(exc))

    def _record(self, answering: bool, problem: str | None) -> None:
        with self._lock:
            self.state = EndpointState(answering, problem, time.monotonic())

    def _choose(self, ids: list[str]) -> str:
        if not ids:
            raise RemoteProblem(f"The remote engine for {self.model.name} serves no model.")
        wanted = {self.model.name, self.model.repo_id or ""}
        matches = [i for i in ids if i in wanted or i.rsplit("/", 1)[-1] == self.model.name]
        if matches:
            return matches[0]
        if len(ids) > 1:
            log.warning("remote engine for %s serves %s; using %s", self.model.name, ids, ids[0])
        return ids[0]


@dataclass
class RemoteModel:
    """A model served by vLLM: the ServedModel interface over HTTP."""

    info: PythiaModel
    revision: str
    tokenizer: Any
    endpoint: RemoteEndpoint
    eos_id: int = field(init=False)

    def __post_init__(self):
        self.eos_id = self.tokenizer.token_to_id(EOS_TOKEN)

    @property
    def label(self) -> str:
        return self.info.name if self.revision == "main" else f"{self.info.name} @ {self.revision}"

    @property
    def served_by(self) -> str:
        return SERVED_BY

    def steps(self, prompt_ids: Sequence[int], params, cancel: threading.Event | None = None) -> Iterator[RemoteStep]:
        # an option vLLM has no equivalent for was refused when the request was parsed (CAPABILITIES)
        body = {"prompt": list(prompt_ids), "logprobs": 0, **params.vllm_options()}
        return self._steps(body, cancel)

    def _steps(self, body: dict, cancel: threading.Event | None) -> Iterator[RemoteStep]:
        events = self.endpoint.client.stream(self._with_model(body))
        answered = False
        try:
            for event in events:
                if not answered:  # once per request, not per token
                    answered = True
                    self.endpoint.succeeded()
                for choice in event.get("choices", ()):
                    logprobs = choice.get("logprobs") or {}
                    tokens, token_logprobs = logprobs.get("tokens") or (), logprobs.get("token_logprobs") or ()
                    for token, lp in zip(tokens, token_logprobs, strict=True):
                        yield RemoteStep(_token_id(token), lp)
                if cancel is not None and cancel.is_set():
                    return  # closing the stream (below) makes vLLM abort the request
        except RemoteProblem as exc:
            self.endpoint.failed(exc)
            raise
        finally:
            events.close()

    def give_way(self) -> None:
        """The remote server schedules its own visitors, and this app holds no queue of them for this model."""

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """Prompt log-probs (vLLM's ``prompt_logprobs``), all windows in one request."""
        result = self._prompt_logprobs([list(s) for s in sequences], 0)
        return [[entry[str(token)]["logprob"] for token, entry in zip(seq[1:], choice[1:], strict=True)]
                for seq, choice in zip(sequences, result, strict=True)]

    def score_prompts(self, sequences: Sequence[Sequence[int]], top: int) -> list[PromptScores]:
        """vLLM's ``prompt_logprobs`` for the positions and one greedy token's ``logprobs`` for what comes next,
        all sequences in one request."""
        top = max(1, top)
        body = {"prompt": [list(s) for s in sequences], "max_tokens": 1, "temperature": 0.0,
                "prompt_logprobs": top, "logprobs": top}
        answer = self._call(self.endpoint.client.complete, body)
        results = []
        for ids, choice in zip(sequences, sorted(answer["choices"], key=lambda c: c["index"]), strict=True):
            positions = tuple(TokenChoices(entry[str(token)]["logprob"], _ranked(
                ((int(i), e["logprob"]) for i, e in entry.items() if e.get("rank", 1) <= top), top))
                for token, entry in zip(ids[1:], choice["prompt_logprobs"][1:], strict=True))
            following = (choice.get("logprobs") or {}).get("top_logprobs") or [{}]
            results.append(PromptScores(positions, _ranked(
                ((_token_id(t), lp) for t, lp in following[0].items()), top)))
        return results

    def score_continuations(self, pairs: Sequence[tuple[Sequence[int], int]],
                            between: Between | None = None) -> list[tuple[float, bool]]:
        """vLLM's ``prompt_logprobs`` (the likeliest token and the given one at every position), up to
        SCORE_REQUEST sequences a request (``between`` called after each); only the last ``n`` positions of each
        are read."""
        pairs = checked_continuations(pairs)
        asked = [i for i, (_, n) in enumerate(pairs) if n]
        results = [(0.0, True)] * len(pairs)
        for start in range(0, len(asked), SCORE_REQUEST):
            part = asked[start:start + SCORE_REQUEST]
            self._read_continuations(pairs, part, self._prompt_logprobs([pairs[i][0] for i in part], 1), results)
            if between is not None:
                between(len(pairs) - len(asked) + start + len(part))
        return results

    @staticmethod
    def _read_continuations(pairs: list[tuple[list[int], int]], asked: list[int], answers: list[list[dict]],
                            results: list[tuple[float, bool]]) -> None:
        for i, entries in zip(asked, answers, strict=True):
            ids, n = pairs[i]
            total, greedy = 0.0, True
            for token, entry in zip(ids[len(ids) - n:], entries[len(ids) - n:], strict=True):
                given = entry[str(token)]
                total += given["logprob"]
                rank = given.get("rank")
                greedy &= rank == 1 if rank is not None else given["logprob"] >= max(
                    e["logprob"] for e in entry.values())
            results[i] = (total, greedy)

    def _prompt_logprobs(self, prompts: list[list[int]], top: int) -> list[list[dict]]:
        body = {"prompt": prompts, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": top}
        answer = self._call(self.endpoint.client.complete, body)
        by_index = sorted(answer["choices"], key=lambda c: c["index"])
        return [c["prompt_logprobs"] for c in by_index]

    def _with_model(self, body: dict) -> dict:
        return {**body, "model": self.endpoint.model_id(), "return_tokens_as_token_ids": True}

    def _call(self, method: Callable, body: dict):
        try:
            result = method(self._with_model(body))
        except RemoteProblem as exc:
            self.endpoint.failed(exc)
            raise
        self.endpoint.succeeded()
        return result


def _token_id(token: str) -> int:
    return int(token.removeprefix(TOKEN_PREFIX))


def _ranked(pairs, top: int) -> tuple[tuple[int, float], ...]:
    return tuple(sorted(pairs, key=lambda pair: -pair[1])[:top])


class RemoteEngine:
    """The models an operator points at vLLM servers, one endpoint per (model, revision)."""

    def __init__(self, endpoints: dict[tuple[str, str], RemoteEndpoint],
                 tokenizer_loader: Callable[[PythiaModel, str, ProgressCallback | None], Path]):
        self._endpoints = endpoints
        self._tokenizer_path = tokenizer_loader
        self._models: dict[tuple[str, str], RemoteModel] = {}  # one per configured endpoint: bounded
        self._lock = threading.Lock()

    @classmethod
    def build(cls, specs: Sequence[RemoteSpec], catalog, *, api_key: str | None, timeout_s: float,
              tokenizer_loader) -> "RemoteEngine":
        endpoints = {}
        for spec in specs:
            model, revision = catalog.resolve(spec.name, spec.revision)
            client = VLLMClient(spec.url, model.name, api_key=api_key, timeout_s=timeout_s)
            endpoints[(model.name, revision)] = RemoteEndpoint(spec, model, client)
        return cls(endpoints, tokenizer_loader)

    def serves(self, model: PythiaModel, revision: str) -> bool:
        return (model.name, revision) in self._endpoints

    def endpoint(self, model: PythiaModel, revision: str) -> RemoteEndpoint:
        return self._endpoints[(model.name, revision)]

    def start(self) -> None:
        """Ask every server which model it serves, in the background (the app starts either way)."""
        for endpoint in self._endpoints.values():
            endpoint.probe_soon()

    @contextmanager
    def open(self, model: PythiaModel, revision: str = "main",
             progress: ProgressCallback | None = None) -> Iterator[RemoteModel]:
        key = (model.name, revision)
        with self._lock:
            loaded = self._models.get(key)
        if loaded is None:
            from tokenizers import Tokenizer

            path = self._tokenizer_path(model, revision, progress)
            loaded = RemoteModel(model, revision, Tokenizer.from_file(str(path)), self._endpoints[key])
            with self._lock:
                loaded = self._models.setdefault(key, loaded)
        yield loaded

    def capabilities(self, model: PythiaModel, revision: str = "main") -> Capabilities:
        return CAPABILITIES

    def is_cached(self, model: PythiaModel, revision: str) -> bool:
        return True  # nothing to download: the server holds the weights

    def status(self, model: PythiaModel, revision: str = "main") -> ModelStatus:
        endpoint = self.endpoint(model, revision)
        state = endpoint.state  # what is known now; a stale failure is asked again in the background
        endpoint.probe_soon()
        return ModelStatus(model.name, revision, model.num_parameters, 0, cached=True,
                           loaded=state.answering is True, fits=True, random_weights=model.random_weights,
                           local=False, description=model.description, served_by=SERVED_BY, engine="vllm",
                           remote_problem=state.problem if state.answering is False else None)

    def close(self) -> None:
        for endpoint in self._endpoints.values():
            endpoint.client.close()
