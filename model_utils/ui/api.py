"""The named Gradio API endpoints (also MCP tools with --mcp): stateless, every argument but the text
optional. Their names, arguments and result fields are a contract: programs already call them.

Nothing about an argument is written here. Each endpoint names the service request it parses and the
arguments it takes, in order; its signature (types and defaults), its docstring (what MCP reads) and
its API-page description are generated from the request's declarations (service/requests.py and
core/sampling.py). The result shapes are the TypedDicts below, which the API page shows.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Callable, TypedDict, Union

import gradio as gr
from pydantic import TypeAdapter

from ..service import (
    CONTROLS,
    BenchmarkRequest,
    ChatRequest,
    CompareRequest,
    CompletionRequest,
    InvalidParameter,
    MemorizationRequest,
    PythiaService,
    Reply,
    Request,
    ScoreAcrossRequest,
    ScoreRequest,
    field_bounds,
)
from .common import guarded, guarded_call
from .wording import column_metrics, model_note


# -- what the endpoints return (the API page shows these shapes) ------------------------------------
class TokenLogprob(TypedDict):
    token: str  # the token read on its own (a fragment of a character reads as its bytes, e.g. \xe4)
    token_id: int
    logprob: float  # natural log
    top: list[list]  # the likeliest tokens at that position, best first: [token, logprob] pairs


class CompletionWithLogprobs(TypedDict):
    text: str
    tokens: list[TokenLogprob]


class TextScoreResult(TypedDict):
    tokens: list[str]
    token_ids: list[int]
    log_probs: list[float]
    log_likelihood: float
    perplexity: float
    bits_per_byte: float
    num_tokens: int
    num_bytes: int
    windows: int
    note: str | None


class CurveRow(TypedDict):
    model: str
    revision: str
    step: int
    status: str  # "ok", "failed" or "stopped"
    perplexity: float | None
    bits_per_byte: float | None
    log_likelihood: float | None
    num_tokens: int | None
    error: str | None


class MemorizationResult(TypedDict):
    model: str
    revision: str
    step: int
    status: str  # "ok", "failed" or "stopped"
    exact: bool | None
    matched_prefix: int | None
    match_fraction: float | None
    continuation: str | None
    error: str | None


class CompareResult(TypedDict):
    model: str
    revision: str
    text: str
    error: str | None
    metrics: str
    done: bool


class BenchmarkResultRow(TypedDict):
    model: str
    revision: str
    step: int
    task: str
    metric: str  # as lm-eval names it, without the ",none" filter suffix: acc, acc_norm, perplexity ...
    value: float
    stderr: float | None


class ModelRow(TypedDict):
    model: str
    parameters: int
    revisions: list[str]
    cached: bool
    loaded: bool
    fits: bool
    estimated_gib: float
    conversations_at_once: int
    random_weights: bool
    engine: str  # "ctranslate2" or "vllm"
    note: str


# -- endpoints generated from the declarations -------------------------------------------------------
def with_controls(own: tuple[str, ...], trailing: tuple[str, ...] = ()) -> tuple[str, ...]:
    """An endpoint's arguments: its own, the sampling controls in the declared order, and its own ``trailing`` ones
    placed before the controls added later (so every value keeps the place it had in the endpoint's first version;
    a shorter list of values, as programs written then send, gets the defaults of the rest: pad_short_calls)."""
    first = tuple(c.name for c in CONTROLS if c.gradio_api and not c.added_later)
    later = tuple(c.name for c in CONTROLS if c.gradio_api and c.added_later)
    return (*own, *first, *trailing, *later)


def pad_short_calls(demo) -> None:
    """A call of a named endpoint with fewer values than it takes (a program written before arguments were added)
    gets None for the missing ones, which the endpoint reads as their defaults. Gradio 6.31 (pinned) refuses such a
    call outright ("didn't receive enough input values"); this wraps its check on this page's Blocks only."""
    check = demo.validate_inputs
    named = {e.name for e in ENDPOINTS}

    def validate_inputs(block_fn, inputs: list) -> None:
        if block_fn.api_name in named and len(inputs) < len(block_fn.inputs):
            inputs.extend([None] * (len(block_fn.inputs) - len(inputs)))
        check(block_fn, inputs)

    demo.validate_inputs = validate_inputs


@dataclass(frozen=True)
class Endpoint:
    """One named endpoint: the request it parses and the arguments it takes, in the order callers pass them."""

    name: str
    request: type[Request]
    arguments: tuple[str, ...]
    summary: str
    returns: Any  # each output's type, for the API page (a generator endpoint: what each update is)
    streams: bool = False


ENDPOINTS = (
    Endpoint("chat", ChatRequest, with_controls(("message", "history", "model", "revision")),
             "Reply to `message` after the chat `history`, streamed: each update is the reply so far.", str, True),
    Endpoint("complete", CompletionRequest, with_controls(("prompt", "model", "revision"), ("logprobs",)),
             "Continue `prompt` (the natural way to use a base language model), streamed: each update is the text "
             "so far. With `logprobs`, the last update is {text, tokens: [{token, token_id, logprob, top}]}, "
             "top being [token, logprob] pairs.", Union[str, CompletionWithLogprobs], True),
    Endpoint("score", ScoreRequest, ("text", "model", "revision"),
             "Per-token log-probabilities of `text` (natural log; scoring starts from <|endoftext|>), its "
             "log-likelihood, perplexity and bits per byte.", TextScoreResult),
    Endpoint("score_across", ScoreAcrossRequest, ("text", "model", "models", "revisions"),
             "Score `text` at several training checkpoints, of one model or several: one row per (model, "
             "revision); a row that failed says why.", list[CurveRow]),
    Endpoint("memorization", MemorizationRequest,
             ("text", "model", "models", "revisions", "prefix_tokens", "continuation_tokens"),
             "Memorization (Biderman et al. 2023): give the model the text's first `prefix_tokens` tokens, decode "
             "`continuation_tokens` greedily, compare with the text. One row per (model, revision).",
             list[MemorizationResult]),
    Endpoint("compare", CompareRequest, with_controls(("prompt", "pairs")),
             "Stream `prompt` through each [model, revision] pair side by side: each update has one entry per pair.",
             list[CompareResult], True),
    Endpoint("benchmark", BenchmarkRequest, ("model", "revisions", "tasks", "limit", "num_fewshot"),
             "Evaluate lm-eval tasks (EleutherAI's lm-evaluation-harness) at each checkpoint of `model`, streamed: "
             "each update is every {model, revision, step, task, metric, value, stderr} row finished so far. "
             "Results already computed on this server come back at once.", list[BenchmarkResultRow], True),
)


def argument_declarations(endpoint: Endpoint) -> dict[str, Any]:
    """The pydantic fields that declare each of the endpoint's arguments."""
    declared = endpoint.request.arguments()
    return {name: declared[name] for name in endpoint.arguments}


def _json_schema(field) -> dict:
    annotated = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
    return TypeAdapter(annotated).json_schema()


def _python_type(schema: dict) -> Any:
    """The Python type Gradio shows for a JSON schema (string, number, list of strings, optional ...)."""
    if "anyOf" in schema:
        return Union[tuple(_python_type(s) for s in schema["anyOf"])]
    if schema.get("type") == "array":
        return list[_python_type(schema.get("items", {}))]
    return {"string": str, "integer": int, "number": float, "boolean": bool, "object": dict,
            "null": type(None)}.get(schema.get("type"), Any)


def _default(name: str, field, service: PythiaService) -> Any:
    if name == "model":
        return service.default_model
    if name == "revision":
        return "main"
    value = field_bounds(field).default
    return list(value) if isinstance(value, tuple) else value


def argument_help(field) -> str:
    """'Higher is more random ... (0-2)': an argument's declared description and range (the page shows the
    default next to it)."""
    b = field_bounds(field)
    span = f" ({b.minimum:g}-{b.maximum:g})" if b.minimum is not None and b.maximum is not None else ""
    return f"{b.info}{span}"


def describe(endpoint: Endpoint) -> str:
    """The endpoint's docstring (what MCP reads): its summary, then one line per argument."""
    lines = [f"{name}: {argument_help(field)}" for name, field in argument_declarations(endpoint).items()]
    return endpoint.summary + "\n\nArgs:\n" + "\n".join(f"    {line}" for line in lines)


def api_function(service: PythiaService, endpoint: Endpoint, run: Callable[[Any], Any]) -> Callable:
    """A function Gradio can serve: its signature (types, defaults) and docstring come from the declarations;
    it parses its arguments into the endpoint's request (readable refusals) and hands that to ``run``."""
    parameters = []
    for name, field in argument_declarations(endpoint).items():
        default = inspect.Parameter.empty if field.is_required() else _default(name, field, service)
        parameters.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default,
                                            annotation=_python_type(_json_schema(field))))
    signature = inspect.Signature(parameters, return_annotation=endpoint.returns)

    def parse(args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return service.parse(endpoint.request, **bound.arguments)

    if endpoint.streams:
        def fn(*args, **kwargs):
            yield from guarded(lambda: run(parse(args, kwargs)))
    else:
        def fn(*args, **kwargs):
            return guarded_call(lambda: run(parse(args, kwargs)))
    fn.__name__ = fn.__qualname__ = endpoint.name
    fn.__signature__ = signature
    # Gradio reads the types through typing.get_type_hints, which looks at __annotations__
    fn.__annotations__ = {**{p.name: p.annotation for p in parameters}, "return": endpoint.returns}
    fn.__doc__ = describe(endpoint)
    return fn


def _show_argument_help(dependency, endpoint: Endpoint) -> None:
    """Put each argument's declared line on the API page, next to the argument.

    Gradio 6.31 (pinned in requirements.txt) gives MCP the docstring's "Args:" but shows each gr.api argument
    on the API page with a generic line: gr.api builds its Api input components with an empty description and
    offers no public way to pass one. So this writes the description into each component's API info, a private
    attribute; tests/test_app_api.py reads the API page and fails if a Gradio upgrade changes that.
    """
    from gradio.context import get_blocks_context

    block_fn = get_blocks_context().fns[dependency["id"]]
    for component, field in zip(block_fn.inputs, argument_declarations(endpoint).values(), strict=True):
        component._api_info = {**component._api_info, "additional_description": argument_help(field)}


def _completion_output(reply: Reply) -> str | CompletionWithLogprobs:
    if reply.token_scores is None:
        return reply.text
    return {"text": reply.text, "tokens": [
        {"token": t.piece, "token_id": t.token_id, "logprob": t.logprob,
         "top": [[a.token.piece, a.logprob] for a in t.top or ()]}
        for t in reply.token_scores]}


def _benchmark_rows(service: PythiaService, request) -> Any:
    """The rows finished so far, sent again each time more finish; a job of which nothing could be evaluated
    (an unknown dataset, a model that cannot be had) is refused with the first reason."""
    sent = -1
    for update in service.benchmark(request):
        rows = [row.as_dict() for row in update.rows]
        if update.done and not rows:
            failed = next((u for u in update.units if u.status == "failed"), None)
            if failed is not None:
                raise InvalidParameter(f"{failed.task} at {failed.model} {failed.revision}: {failed.error}")
        if len(rows) != sent or update.done:
            sent = len(rows)
            yield rows


def register_api(service: PythiaService, concurrency: int) -> None:
    """Declare the endpoints (call inside the Blocks context)."""
    runs: dict[str, Callable[[Any], Any]] = {
        "chat": lambda r: (reply.text for reply in service.chat(r)),
        "complete": lambda r: (_completion_output(reply) for reply in service.complete(r)),
        "score": lambda r: service.score(r).as_dict(),
        "score_across": lambda r: [p.as_dict() for p in service.score_across(r)],
        "memorization": lambda r: [row.as_dict() for row in service.memorization(r)],
        "benchmark": lambda r: _benchmark_rows(service, r),
        "compare": lambda r: ([{"model": c.model, "revision": c.revision, "text": c.text, "error": c.error,
                                "metrics": column_metrics(c), "done": c.done} for c in columns]
                              for columns in service.compare(r)),
    }
    generating = dict(concurrency_limit=concurrency, concurrency_id="generate")
    for endpoint in ENDPOINTS:
        fn = api_function(service, endpoint, runs[endpoint.name])
        dependency = gr.api(fn, api_name=endpoint.name, api_description=endpoint.summary, **generating)
        _show_argument_help(dependency, endpoint)

    def models() -> list[ModelRow]:
        """Every model with whether it is cached on disk, loaded in memory, and fits this machine."""
        return [{"model": m.name, "parameters": m.num_parameters, "revisions": list(m.revisions),
                 "cached": s.cached, "loaded": s.loaded, "fits": s.fits,
                 "estimated_gib": round(s.weights_bytes / 2**30, 3), "conversations_at_once": s.conversations,
                 "random_weights": m.random_weights, "engine": s.engine,
                 "note": model_note(s)} for m, s in service.statuses()]

    gr.api(models, api_name="models", queue=False)

