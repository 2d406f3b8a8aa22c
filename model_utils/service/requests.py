"""Requests as they enter the service: every argument declared once, here, and validated once.

Each field is a pydantic ``Field`` with its default, bounds and description (the sampling options are
declared the same way in ``core/sampling.py``). Everything else derives from these declarations: the
Gradio endpoints' signatures and API-page text (ui/api.py), the sliders (ui/blocks.py) and the OpenAI
routes' validation (openai_api/). The layers below take the typed values and never check them again.

A rule that needs more than a range is a function that raises a readable ``PythiaError``
(``check_text``, ``normalize_history``, ``Catalog.get``, ``resolve_revision``, the engine's
``Capabilities``), so the words a visitor reads are the same on every surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from ..core.catalog import CONTEXT_LENGTH, Catalog, PythiaModel, resolve_revision
from ..core.errors import InvalidParameter, PythiaError
from ..core.sampling import MAX_NEW_TOKENS, SamplingParams, explain
from ..core.sampling import integral as _integer
from ..engine.interface import Capabilities
from ..engine.prompts import ROLES

R = TypeVar("R", bound="Request")
MAX_PROMPT_CHARS = 20_000  # cap before tokenizing: a visitor cannot make us tokenize megabytes
MAX_REVISIONS = 16  # checkpoints in one learning curve
MAX_COMPARE = 4  # columns in one comparison
MAX_MODELS = 8  # models in one sweep (the Pythia sizes)
MAX_ALTERNATIVES = 10  # likeliest alternatives per token: token views, the Gradio API, the OpenAI routes


@dataclass(frozen=True)
class ParseContext:
    """What validation needs to know about this server: its models, its default, what its engines can do."""

    catalog: Catalog
    default_model: str
    capabilities: Callable[[PythiaModel, str], Capabilities]


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


# -- the rules ------------------------------------------------------------------------------------
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


def _message(value: Any) -> str:
    text = _rule(check_text, value, "message")
    if not text.strip():
        raise _Carrier(InvalidParameter("Type a message first."))
    return text


def _scored_text(value: Any) -> str:
    text = _rule(check_text, value, "text")
    if not text:
        raise _Carrier(InvalidParameter("The text to score is empty."))
    return text


def _context(info: ValidationInfo) -> ParseContext:
    return info.context["service"]


def _model(value: Any, info: ValidationInfo) -> PythiaModel:
    context = _context(info)
    return _rule(context.catalog.get, context.default_model if value is None else value)


def _revision(value: Any, info: ValidationInfo) -> str:
    model = info.data.get("model")
    if model is None:  # the model itself was refused; that error is reported
        return value
    return _rule(resolve_revision, model, value)


def _sampling(value: Any) -> SamplingParams:
    if isinstance(value, SamplingParams):
        return value
    return _rule(lambda: SamplingParams.parse(**(value or {})))


def _models(value: Any, info: ValidationInfo) -> tuple[PythiaModel, ...]:
    """``models`` (a list of names) or, when it is absent, ``model`` (one name, or the default)."""
    if value is None:
        return (info.data["model"],) if info.data.get("model") is not None else ()
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_MODELS:
        raise _Carrier(InvalidParameter(f"Choose 1 to {MAX_MODELS} models."))
    return tuple(dict.fromkeys(_model(v, info) for v in value))


def _sweep_revisions(value: Any, info: ValidationInfo) -> tuple[str, ...]:
    """Revisions every model of the sweep has (validated against each); () means each model's default curve."""
    models = info.data.get("models")
    if value is None or not models:
        return ()
    if not isinstance(value, (list, tuple)) or not value:
        raise _Carrier(InvalidParameter("Choose at least one checkpoint."))
    if len(value) > MAX_REVISIONS:
        raise _Carrier(InvalidParameter(f"Choose at most {MAX_REVISIONS} checkpoints ({len(value)} were chosen)."))
    # every model must have every revision; their canonical names agree, so the first model's are returned
    canonical = [tuple(dict.fromkeys(_rule(resolve_revision, model, r) for r in value)) for model in models]
    return canonical[0]


class Column(BaseModel):
    """One (model, revision) of a comparison."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    model: PythiaModel
    revision: str


def _pairs(pairs: Any, info: ValidationInfo) -> tuple[Column, ...]:
    if not isinstance(pairs, (list, tuple)) or not 1 <= len(pairs) <= MAX_COMPARE:
        raise _Carrier(InvalidParameter(f"Compare 1 to {MAX_COMPARE} [model, revision] pairs."))
    columns = []
    for pair in pairs:
        if isinstance(pair, dict):
            name, revision = pair.get("model"), pair.get("revision", "main")
        elif isinstance(pair, (list, tuple)) and len(pair) == 2:
            name, revision = pair
        else:
            raise _Carrier(InvalidParameter("Each pair must be [model, revision] or {'model': ..., 'revision': ...}."))
        model, revision = _rule(_context(info).catalog.resolve, name, revision)
        columns.append(Column(model=model, revision=revision))
    return tuple(columns)


_STRINGS = {"type": "array", "items": {"type": "string"}}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


# -- the declarations: one annotated type per argument, shared by every request that takes it ---------
# Each carries its rule (a validator), its JSON shape for the API pages (WithJsonSchema, where the Python
# type is internal) and its description. Fields validate in declaration order, so a request reports the
# first wrong argument in the order the endpoint lists them.
Message = Annotated[str, BeforeValidator(_message), Field(
    description=f"The new user message (text, at most {MAX_PROMPT_CHARS:,} characters).")]
History = Annotated[
    tuple[tuple[str, str], ...], BeforeValidator(lambda value: _rule(normalize_history, value)),
    WithJsonSchema({"type": "array", "items": {"type": "object"}}),
    Field(description='Earlier turns, oldest first: [{"role": "user" or "assistant", "content": text}, ...].')]
Prompt = Annotated[str, BeforeValidator(lambda value: _rule(check_text, value, "prompt")), Field(
    description=f"Text for the model to continue (at most {MAX_PROMPT_CHARS:,} characters).")]
Text = Annotated[str, BeforeValidator(_scored_text), Field(
    description=f"The text to score (at most {MAX_PROMPT_CHARS:,} characters).")]
Model = Annotated[PythiaModel, BeforeValidator(_model), WithJsonSchema({"type": "string"}), Field(
    description="A model name from /models, e.g. pythia-410m-deduped (default: this server's default model).")]
Revision = Annotated[str, BeforeValidator(_revision), WithJsonSchema({"type": "string"}), Field(
    description="main, or a training checkpoint the model has (/models lists them), e.g. step3000.")]
Sampling = Annotated[SamplingParams, BeforeValidator(_sampling)]
LogProbs = Annotated[int | None, BeforeValidator(_integer)]


def logprobs_field():
    """The one declaration of ``logprobs``, for every request that takes it (pydantic applies a range to an optional
    number only as the field's own constraint)."""
    return Field(None, ge=0, le=MAX_ALTERNATIVES, strict=True, description=(
        f"Return each generated token's log-prob (natural log) and this many likeliest alternatives at its position "
        f"(0 to {MAX_ALTERNATIVES}); none by default."))


Models = Annotated[tuple[PythiaModel, ...], BeforeValidator(_models), WithJsonSchema(_nullable(_STRINGS)), Field(
    description=f"Several model names (scaling curves, up to {MAX_MODELS}); every row names its model. "
                "Wins over `model`.")]
Revisions = Annotated[tuple[str, ...], BeforeValidator(_sweep_revisions), WithJsonSchema(_nullable(_STRINGS)),
                      Field(description=f"1 to {MAX_REVISIONS} checkpoints every chosen model has, e.g. "
                                        "['step1000', 'main'] (default: a log-spaced selection from step0 to main).")]
Pairs = Annotated[tuple[Column, ...], BeforeValidator(_pairs), WithJsonSchema({"type": "array", "items": _STRINGS}),
                  Field(description=f"1 to {MAX_COMPARE} [model, revision] pairs, one column each.")]


class Request(BaseModel):
    """Base of every request: frozen, no unknown fields, parsed with this server's ParseContext."""

    # validate_default: a missing model means the default model, checked like a named one
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, validate_default=True)

    @classmethod
    def parse(cls: type[R], context: ParseContext, **raw: Any) -> R:
        """Validate ``raw``; raise the first rule's own readable error (a PythiaError).

        Sampling options may be given flat (``temperature=0.5``): they are gathered into ``sampling``.
        """
        flat = {k: raw.pop(k) for k in list(raw) if k in SamplingParams.model_fields}
        if flat and "sampling" in cls.model_fields:
            given = raw.get("sampling")
            given = given.model_dump() if isinstance(given, SamplingParams) else given or {}
            raw["sampling"] = {**given, **flat}
        else:
            raw.update(flat)  # refused below as unknown options
        try:
            return cls.model_validate(raw, context={"service": context})
        except ValidationError as exc:
            first = exc.errors()[0]
            param = str(first["loc"][0]) if first["loc"] else None
            error = (first.get("ctx") or {}).get("error")
            if isinstance(error, _Carrier):
                raise error.error.naming(param) from None
            if isinstance(error, PythiaError):
                raise error.naming(param) from None
            raise InvalidParameter(explain(exc, cls, names=list(cls.arguments()))).naming(param) from None

    @classmethod
    def arguments(cls) -> dict[str, Any]:
        """Every argument this request takes, by name: its own fields, and the sampling options it takes."""
        fields = {name: f for name, f in cls.model_fields.items() if name != "sampling"}
        if "sampling" in cls.model_fields:
            fields.update(SamplingParams.model_fields)
        return fields


def _engine_allows(model: PythiaModel, revision: str, sampling: SamplingParams, info: ValidationInfo) -> None:
    """Refuse, while parsing, a sampling option that the engine serving (model, revision) cannot honour."""
    _rule(_context(info).capabilities(model, revision).check, model, sampling)


class TargetRequest(Request):
    """A (model, revision) on its own: the status line, the pickers."""

    model: Model = None
    revision: Revision = None


class _Generation(Request):
    """A request that decodes with one model: checked against what its engine can do."""

    @property
    def tokens_asked(self) -> int:
        """The most tokens a reply may have (what the sampling options' minimum must stay within)."""
        return self.sampling.max_new_tokens

    @model_validator(mode="after")
    def _capable(self, info: ValidationInfo):
        _engine_allows(self.model, self.revision, self.sampling, info)
        _rule(self.sampling.check_length, self.tokens_asked)
        return self


class ChatRequest(_Generation):
    """The next Bot turn of a User:/Bot: transcript."""

    message: Message
    history: History = ()
    model: Model = None
    revision: Revision = None
    sampling: Sampling = SamplingParams()
    logprobs: LogProbs = logprobs_field()


class CompletionRequest(_Generation):
    """A plain continuation of a prompt (the natural use of a base model)."""

    prompt: Prompt
    model: Model = None
    revision: Revision = None
    sampling: Sampling = SamplingParams()
    logprobs: LogProbs = logprobs_field()


class ScoreRequest(Request):
    """Per-token log-probs of a text, its perplexity and bits per byte."""

    text: Text
    model: Model = None
    revision: Revision = None


class ScoreAcrossRequest(Request):
    """A learning curve: the text's perplexity at several checkpoints, of one model or several."""

    text: Text
    model: Model = None
    models: Models = None
    revisions: Revisions = None


class MemorizationRequest(Request):
    """Biderman et al. (2023): a prefix of the text, greedy continuation, compared token by token with the text."""

    text: Text
    model: Model = None
    models: Models = None
    revisions: Revisions = None
    prefix_tokens: Annotated[int, BeforeValidator(_integer)] = Field(
        32, ge=1, le=512, strict=True, description="Tokens of the text given to the model.")
    continuation_tokens: Annotated[int, BeforeValidator(_integer)] = Field(
        32, ge=1, le=256, strict=True,
        description="Tokens the model writes greedily and that are compared with the text.")


class CompareRequest(Request):
    """One prompt through several (model, revision) pairs, side by side with the same settings."""

    prompt: Prompt
    pairs: Pairs
    sampling: Sampling = SamplingParams()

    @model_validator(mode="after")
    def _capable(self, info: ValidationInfo):
        for column in self.pairs:
            _engine_allows(column.model, column.revision, self.sampling, info)
        _rule(self.sampling.check_length, self.sampling.max_new_tokens)
        return self


# -- batches: several prompts, several choices each (what OpenAI-style clients and lm-eval send) -----
MAX_PROMPTS = 64  # prompts in one request (lm-eval sends its batch_size prompts as one request)
MAX_CHOICES = 16  # choices per prompt (`n`)
MAX_STOPS = 32  # stop strings: lm-eval sends a task's whole `until` list and the end-of-text token
MAX_STOP_CHARS = 200


def _token_ids(value: Any, where: str, model: PythiaModel | None) -> tuple[int, ...]:
    if not value:
        raise _Carrier(InvalidParameter(f"{where} is empty."))
    if len(value) > CONTEXT_LENGTH:
        raise _Carrier(InvalidParameter(f"{where} has {len(value):,} tokens; the context is {CONTEXT_LENGTH:,}."))
    vocab = model.vocab_size if model is not None else None
    for token in value:
        if not isinstance(token, int) or isinstance(token, bool) or token < 0 or (vocab and token >= vocab):
            raise _Carrier(InvalidParameter(
                f"{where} holds {token!r:.20}, which is not a token id of {model.name if model else 'the model'}"
                f"{f' (0 to {vocab - 1})' if vocab else ''}."))
    return tuple(value)


def _prompt_batch(value: Any, info: ValidationInfo) -> tuple[str | tuple[int, ...], ...]:
    """A text, a list of texts, a list of token ids, or a list of token-id lists -> one entry per prompt."""
    model = info.data.get("model")
    if isinstance(value, str):
        return (_rule(check_text, value, "prompt"),)
    if not isinstance(value, (list, tuple)) or not value:
        raise _Carrier(InvalidParameter("prompt must be a text, a list of texts, a list of token ids, or a list "
                                        "of token-id lists."))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return (_token_ids(value, "prompt", model),)
    if len(value) > MAX_PROMPTS:
        raise _Carrier(InvalidParameter(f"prompt holds {len(value)} prompts; send at most {MAX_PROMPTS} at once."))
    prompts = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            prompts.append(_rule(check_text, item, f"prompt[{i}]"))
        elif isinstance(item, (list, tuple)):
            prompts.append(_token_ids(item, f"prompt[{i}]", model))
        else:
            raise _Carrier(InvalidParameter(f"prompt[{i}] must be a text or a list of token ids."))
    return tuple(prompts)


def _stops(value: Any) -> tuple[str, ...]:
    stops = (value,) if isinstance(value, str) else value
    if stops is None:
        return ()
    if (not isinstance(stops, (list, tuple)) or len(stops) > MAX_STOPS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise _Carrier(InvalidParameter(f"stop must be a text or a list of at most {MAX_STOPS} texts of 1 to "
                                        f"{MAX_STOP_CHARS} characters."))
    return tuple(stops)


def _system(value: Any) -> str:
    return "" if value is None else _rule(check_text, value, "system message")


PromptBatch = Annotated[
    tuple[str | tuple[int, ...], ...], BeforeValidator(_prompt_batch),
    WithJsonSchema({"anyOf": [{"type": "string"}, _STRINGS, {"type": "array", "items": {"type": "integer"}},
                              {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}]}),
    Field(description=f"A text, a list of texts, a list of token ids, or a list of token-id lists (up to "
                      f"{MAX_PROMPTS} prompts, each at most {CONTEXT_LENGTH:,} tokens).")]
Stops = Annotated[tuple[str, ...], BeforeValidator(_stops), WithJsonSchema(_nullable(_STRINGS)), Field(
    description=f"Up to {MAX_STOPS} texts; a choice ends before the first of them (which is not returned).")]
Choices = Annotated[int, BeforeValidator(_integer)]
System = Annotated[str, BeforeValidator(_system), Field(
    description="Text that leads the transcript, before its first User: line (what a system message says).")]


class _Batch(_Generation):
    """Several choices decoded or scored together: the row count the per-client limit counts."""

    n: Choices = Field(1, ge=1, le=MAX_CHOICES, strict=True, description="Choices to generate for each prompt.")
    stop: Stops = ()
    logprobs: LogProbs = logprobs_field()


class BatchCompletionRequest(_Batch):
    """Plain continuations of several prompts (texts or token ids), with OpenAI's echo and logprobs."""

    model: Model = None
    revision: Revision = None
    prompt: PromptBatch
    sampling: Sampling = SamplingParams()  # its max_new_tokens is not used: max_tokens says how many
    max_tokens: Annotated[int, BeforeValidator(_integer)] = Field(
        16, ge=0, le=MAX_NEW_TOKENS, strict=True,
        description="Tokens to generate for each choice; 0 (with echo) scores the prompt only.")
    echo: bool = Field(False, strict=True, description="Return the prompt before the generated text (and, with "
                                                       "logprobs, the log-prob of every prompt token).")

    @model_validator(mode="after")
    def _scoring_needs_echo(self):
        if self.max_tokens == 0 and not self.echo:
            raise _Carrier(InvalidParameter("max_tokens is 0: nothing would be returned. Set echo to true to score "
                                            "the prompt, or ask for at least one token.").naming("max_tokens"))
        return self

    @property
    def rows(self) -> int:
        return len(self.prompt) * self.n

    @property
    def tokens_asked(self) -> int:
        return self.max_tokens


class BatchChatRequest(_Batch):
    """The next Bot turn of a User:/Bot: transcript, led by an optional system text; n choices."""

    model: Model = None
    revision: Revision = None
    system: System = ""
    history: History = ()
    message: Message
    sampling: Sampling = SamplingParams()

    @property
    def rows(self) -> int:
        return self.n


# -- benchmarks: lm-eval tasks at several checkpoints --------------------------------------------------------
MAX_TASKS = 8  # tasks in one benchmark job
MAX_BENCHMARK_REVISIONS = 160  # every checkpoint of a Pythia model (154) fits
MAX_FEWSHOT = 25


def _benchmark_revisions(value: Any, info: ValidationInfo) -> tuple[str, ...]:
    """Checkpoints every model of the job has; () means each model's published checkpoints."""
    models = info.data.get("models")
    if value is None or not models:
        return ()
    if not isinstance(value, (list, tuple)) or not value:
        raise _Carrier(InvalidParameter("Choose at least one checkpoint, or leave revisions empty for the "
                                        "checkpoints EleutherAI published results for."))
    if len(value) > MAX_BENCHMARK_REVISIONS:
        raise _Carrier(InvalidParameter(f"Choose at most {MAX_BENCHMARK_REVISIONS} checkpoints."))
    canonical = [tuple(dict.fromkeys(_rule(resolve_revision, model, r) for r in value)) for model in models]
    return canonical[0]


def _tasks(value: Any) -> tuple[str, ...]:
    """lm-eval task names (whether lm-eval knows them is checked against its registry when the job starts)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_TASKS:
        raise _Carrier(InvalidParameter(f"Choose 1 to {MAX_TASKS} tasks, e.g. ['lambada_openai', 'piqa']."))
    names = []
    for name in value:
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise _Carrier(InvalidParameter("Each task must be an lm-eval task name, e.g. 'lambada_openai'."))
        names.append(name.strip())
    return tuple(dict.fromkeys(names))


def _limit(value: Any) -> int | None:
    value = _integer(value)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Carrier(InvalidParameter(f"limit must be a whole number of documents of at least 1, or null for "
                                        f"every document (it was {value!r:.40})."))
    return value


BenchmarkRevisions = Annotated[
    tuple[str, ...], BeforeValidator(_benchmark_revisions), WithJsonSchema(_nullable(_STRINGS)),
    Field(description=f"Up to {MAX_BENCHMARK_REVISIONS} checkpoints the model has, e.g. ['step1000', 'main'] "
                      "(default: the checkpoints EleutherAI published results for that the model has).")]
Tasks = Annotated[tuple[str, ...], BeforeValidator(_tasks), WithJsonSchema(_STRINGS), Field(
    description=f"1 to {MAX_TASKS} lm-eval task names, e.g. ['lambada_openai', 'piqa'] (EleutherAI published "
                "lambada_openai, piqa, arc_easy, arc_challenge, sciq, winogrande, wsc, logiqa), or local tasks.")]
Limit = Annotated[int | None, BeforeValidator(_limit), WithJsonSchema(_nullable({"type": "integer"})), Field(
    description="Evaluate only each task's first N documents (wider error bars), or null for all of them.")]


class BenchmarkRequest(Request):
    """lm-eval tasks evaluated at several checkpoints, of one model or several."""

    model: Model = None
    models: Models = None
    revisions: BenchmarkRevisions = None
    tasks: Tasks = ("lambada_openai",)
    limit: Limit = None
    num_fewshot: Annotated[int, BeforeValidator(_integer)] = Field(
        0, ge=0, le=MAX_FEWSHOT, strict=True,
        description="Examples shown before each question (EleutherAI published 0 and 5).")
