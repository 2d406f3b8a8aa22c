"""Requests as they enter the service: validated exactly once, here.

Every public operation of :class:`~model_utils.service.service.PythiaService` turns its raw
arguments (from the UI, the API or MCP) into one of these frozen models first; the layers below
take the typed values and never check them again. Each field's rule is the function that states
it (``check_text``, ``normalize_history``, ``SamplingParams.parse``, ``Catalog.get``,
``resolve_revision``), so the messages a visitor reads are the ones those rules write.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from ..core.catalog import Catalog, PythiaModel, resolve_revision
from ..core.errors import InvalidParameter, PythiaError
from ..core.sampling import SamplingParams
from ..engine.prompts import ROLES

R = TypeVar("R", bound="Request")
MAX_REVISIONS = 16  # checkpoints in one learning curve
MAX_COMPARE = 4  # columns in one comparison
MAX_MODELS = 8  # models in one sweep (the Pythia sizes)
MAX_ALTERNATIVES = 10  # top-k alternatives per token in a token view
MAX_PROMPT_CHARS = 20_000  # cap before tokenizing: a visitor cannot make us tokenize megabytes


class _Carrier(ValueError):
    """Carries one of our readable errors through pydantic (which only collects ValueErrors)."""

    def __init__(self, error: PythiaError):
        super().__init__(str(error))
        self.error = error


def _rule(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except PythiaError as exc:
        raise _Carrier(exc) from None


def check_text(text: Any, what: str = "prompt") -> str:
    """A prompt must be a string of at most MAX_PROMPT_CHARS characters."""
    if not isinstance(text, str):
        raise InvalidParameter(f"The {what} must be text, not {type(text).__name__}.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameter(f"The {what} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    return text


def message_text(content: Any) -> str:
    """Text of a chat message content: a string, or Gradio's list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = [p.get("text") if isinstance(p, dict) else p for p in content]
        if all(isinstance(t, str) for t in texts):
            return "".join(texts)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    raise InvalidParameter("Chat messages must contain text.")


def normalize_history(history: Any) -> tuple[tuple[str, str], ...]:
    """Validate a list of {"role", "content"} messages; return (role, text) pairs."""
    if history is None:
        return ()
    if not isinstance(history, (list, tuple)):
        raise InvalidParameter("history must be a list of {'role': ..., 'content': ...} messages.")
    turns = []
    for i, message in enumerate(history):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise InvalidParameter(
                f"history[{i}] must be a dict with role 'user' or 'assistant' and a text content.")
        turns.append((message["role"], check_text(message_text(message.get("content", "")), "chat history")))
    if sum(len(t) for _, t in turns) > MAX_PROMPT_CHARS:
        raise InvalidParameter(f"The chat history is longer than {MAX_PROMPT_CHARS:,} characters; clear the chat.")
    return tuple(turns)


class Request(BaseModel):
    """Base of every request: frozen, no unknown fields, parsed with the catalog in context."""

    # validate_default: a missing model means the default model, checked like a named one
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, validate_default=True)

    @classmethod
    def parse(cls: type[R], catalog: Catalog, default_model: str, **raw: Any) -> R:
        """Validate ``raw``; raise the first rule's own readable error (a PythiaError)."""
        try:
            return cls.model_validate(raw, context={"catalog": catalog, "default_model": default_model})
        except ValidationError as exc:
            first = exc.errors()[0]
            error = (first.get("ctx") or {}).get("error")
            if isinstance(error, _Carrier):
                raise error.error from None
            if isinstance(error, PythiaError):
                raise error from None
            raise InvalidParameter(f"{'.'.join(map(str, first['loc']))}: {first['msg']}.") from None


def _catalog(info: ValidationInfo) -> Catalog:
    return info.context["catalog"]


def _model(value: Any, info: ValidationInfo) -> PythiaModel:
    return _rule(_catalog(info).get, info.context["default_model"] if value is None else value)


def _revision(value: Any, info: ValidationInfo) -> str:
    model = info.data.get("model")
    if model is None:  # the model itself was refused; that error is reported
        return value
    return _rule(resolve_revision, model, value)


def _sampling(value: Any) -> SamplingParams:
    if isinstance(value, SamplingParams):
        return value
    return _rule(lambda: SamplingParams.parse(**(value or {})))


def _text(what: str):
    return BeforeValidator(lambda value: _rule(check_text, value, what))


# Field types: each names the rule that checks it. Fields validate in declaration order,
# so a request reports the first wrong argument in the order the endpoint lists them.
def _message(value: Any) -> str:
    text = _rule(check_text, value, "message")
    if not text.strip():
        raise _Carrier(InvalidParameter("Type a message first."))
    return text


Prompt = Annotated[str, _text("prompt")]
Message = Annotated[str, BeforeValidator(_message)]


def _scored_text(value: Any) -> str:
    text = _rule(check_text, value, "text")
    if not text:
        raise _Carrier(InvalidParameter("The text to score is empty."))
    return text


Text = Annotated[str, BeforeValidator(_scored_text)]
History = Annotated[tuple[tuple[str, str], ...], BeforeValidator(lambda value: _rule(normalize_history, value))]
Sampling = Annotated[SamplingParams, BeforeValidator(_sampling)]
Model = Annotated[PythiaModel, BeforeValidator(_model)]
Revision = Annotated[str, BeforeValidator(_revision)]


def _logprobs(value: Any) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_ALTERNATIVES:
        raise _Carrier(InvalidParameter(f"The number of alternatives must be from 1 to {MAX_ALTERNATIVES}."))
    return value


LogProbs = Annotated[int | None, BeforeValidator(_logprobs)]  # top-k alternatives per generated token


class TargetRequest(Request):
    """A (model, revision) on its own: the status line, the pickers."""

    model: Model = None
    revision: Revision = None


class ChatRequest(Request):
    message: Message
    history: History = ()
    sampling: Sampling = SamplingParams()
    model: Model = None
    revision: Revision = None
    logprobs: LogProbs = None


class CompletionRequest(Request):
    prompt: Prompt
    sampling: Sampling = SamplingParams()
    model: Model = None
    revision: Revision = None
    logprobs: LogProbs = None


class ScoreRequest(Request):
    text: Text
    model: Model = None
    revision: Revision = None


def _models(value: Any, info: ValidationInfo) -> tuple[PythiaModel, ...]:
    """``models`` (a list of names) or, when it is absent, ``model`` (one name, or the default)."""
    if value is None:
        return (_model(info.data.get("model_name"), info),)
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_MODELS:
        raise _Carrier(InvalidParameter(f"models must be a list of 1 to {MAX_MODELS} model names."))
    return tuple(dict.fromkeys(_model(v, info) for v in value))


def _sweep_revisions(value: Any, info: ValidationInfo) -> tuple[str, ...]:
    """Revisions every model of the sweep has (validated against each); () means each model's default curve."""
    models = info.data.get("models")
    if value is None or not models:
        return ()
    if not isinstance(value, (list, tuple)) or not value or len(value) > MAX_REVISIONS:
        raise _Carrier(InvalidParameter(f"revisions must be a list of 1 to {MAX_REVISIONS} checkpoints."))
    # every model must have every revision; their canonical names agree, so the first model's are returned
    canonical = [tuple(dict.fromkeys(_rule(resolve_revision, model, r) for r in value)) for model in models]
    return canonical[0]


def _count(name: str, low: int, high: int):
    def check(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _Carrier(InvalidParameter(f"{name} must be an integer from {low} to {high} (got {value!r:.40})."))
        return value
    return BeforeValidator(check)


class ScoreAcrossRequest(Request):
    """A learning curve: one model, or several (scaling curves), at several checkpoints."""

    text: Text
    model_name: Any = None  # `model`: one name; `models` wins when given
    models: Annotated[tuple[PythiaModel, ...], BeforeValidator(_models)] = None
    # canonical, without duplicates; () means each model's default learning curve
    revisions: Annotated[tuple[str, ...], BeforeValidator(_sweep_revisions)] = ()


class MemorizationRequest(Request):
    """Biderman et al. (2023): a prefix of the text, greedy continuation, compared token by token with the text."""

    text: Text
    model_name: Any = None  # `model`: one name; `models` wins when given
    models: Annotated[tuple[PythiaModel, ...], BeforeValidator(_models)] = None
    revisions: Annotated[tuple[str, ...], BeforeValidator(_sweep_revisions)] = ()
    prefix_tokens: Annotated[int, _count("prefix_tokens", 1, 512)] = 32
    continuation_tokens: Annotated[int, _count("continuation_tokens", 1, 256)] = 32


class Column(BaseModel):
    """One (model, revision) of a comparison."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    model: PythiaModel
    revision: str


def _columns(pairs: Any, info: ValidationInfo) -> tuple[Column, ...]:
    if not isinstance(pairs, (list, tuple)) or not 1 <= len(pairs) <= MAX_COMPARE:
        raise _Carrier(InvalidParameter(f"pairs must be a list of 1 to {MAX_COMPARE} [model, revision] pairs."))
    columns = []
    for pair in pairs:
        if isinstance(pair, dict):
            name, revision = pair.get("model"), pair.get("revision", "main")
        elif isinstance(pair, (list, tuple)) and len(pair) == 2:
            name, revision = pair
        else:
            raise _Carrier(InvalidParameter("Each pair must be [model, revision] or {'model': ..., 'revision': ...}."))
        model, revision = _rule(_catalog(info).resolve, name, revision)
        columns.append(Column(model=model, revision=revision))
    return tuple(columns)


class CompareRequest(Request):
    prompt: Prompt
    columns: Annotated[tuple[Column, ...], BeforeValidator(_columns)]
    sampling: Sampling = SamplingParams()
