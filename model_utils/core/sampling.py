"""Sampling parameters, each declared once (default, bounds, description): request validation, the UI
sliders, the Gradio API page and the OpenAI routes all read these declarations."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Callable, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from .errors import InvalidParameter

MAX_NEW_TOKENS = 1024  # per reply: half of Pythia's 2048-token context


def integral(value: Any) -> Any:
    """JSON has one number type and Gradio sliders send 50.0 for 50: an integral float is a fine integer. 3.7 stays
    a float and is refused, and True is no number. The one such coercion: every declared integer argument uses it."""
    return int(value) if type(value) is float and value.is_integer() else value


class FinishReason(StrEnum):
    """Why a reply ended (the values are OpenAI's words, so the API can pass them on)."""

    STOP = "stop"  # the end-of-text token or a stop string (never shown)
    LENGTH = "length"  # max_new_tokens reached, or the context is full
    CANCELLED = "cancelled"  # Stop, a closed tab or a dropped connection


class SamplingParams(BaseModel):
    """A validated, immutable set of decoding options.

    Strict types: 3.7 is not an integer, True is not a number, NaN and infinities
    are refused -- CT2 would silently accept some of these.
    """

    model_config = ConfigDict(frozen=True, strict=True, allow_inf_nan=False, extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description=(
        "Higher is more random, lower is more focused; 0 always picks the most likely token (greedy)."))
    top_k: int = Field(50, ge=0, le=1000, description=(
        "Sample only from the k most likely tokens (0 = no limit)."))
    top_p: float = Field(0.95, ge=0.01, le=1.0, description=(
        "Sample only from the smallest set of tokens whose probabilities add up to p (1 = no limit)."))
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0, description=(
        "Values above 1 make already generated tokens less likely (base models repeat themselves)."))
    no_repeat_ngram_size: int = Field(0, ge=0, le=10, description=(
        "Never repeat an n-gram of this size (0 = off)."))
    max_new_tokens: int = Field(128, ge=1, le=MAX_NEW_TOKENS, description="Maximum number of tokens to generate.")
    greedy: bool = Field(False, description=(
        "Always pick the most likely token (deterministic), whatever the temperature, top-k and top-p."))
    min_tokens: int = Field(0, ge=0, le=MAX_NEW_TOKENS, description=(
        "Generate at least this many tokens before the end of the text or a stop string may end the reply "
        "(0 = off; at most the tokens asked for)."))

    @field_validator("*", mode="before")
    @classmethod
    def _json_number(cls, value: Any, info) -> Any:
        kind = cls.model_fields[info.field_name].annotation
        if kind is int:
            return integral(value)
        if kind is float and type(value) is int:  # JSON's 1 is a fine temperature (but True is not)
            return float(value)
        return value

    @classmethod
    def parse(cls, **values: Any) -> "SamplingParams":
        """Validate keyword values (None means 'use the default'); raise InvalidParameter."""
        given = {k: v for k, v in values.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            first = exc.errors()[0]["loc"]
            error = InvalidParameter(explain(exc, cls, "Invalid sampling options: "))
            raise error.naming(str(first[0]) if first else None) from None

    @property
    def is_greedy(self) -> bool:
        """The most likely token at every step: asked for outright, or by temperature 0."""
        return self.greedy or self.temperature == 0

    def check_length(self, max_tokens: int) -> None:
        """Refuse a minimum length above the tokens asked for (``max_tokens``: the request's own maximum, which is
        max_new_tokens except on the OpenAI completions route)."""
        if self.min_tokens > max_tokens:
            raise InvalidParameter(f"min_tokens is {self.min_tokens}, more than the {max_tokens} tokens asked "
                                   "for.").naming("min_tokens")

    def ct2_options(self) -> dict[str, Any]:
        """Keyword arguments for ctranslate2 Generator.generate_* calls (besides max_length)."""
        greedy = self.is_greedy
        return {
            "sampling_topk": 1 if greedy else self.top_k,
            "sampling_topp": 1.0 if greedy else self.top_p,
            "sampling_temperature": 1.0 if greedy else self.temperature,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "min_length": self.min_tokens,
        }

    def vllm_options(self) -> dict[str, Any]:
        """Fields of a vLLM request, by each control's declared vLLM name (greedy is vLLM's temperature 0)."""
        values = self.model_dump()
        if self.is_greedy:
            values.update(temperature=0.0, top_p=1.0, top_k=0)
        return {c.vllm: values[c.name] for c in CONTROLS if c.vllm}


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Control:
    """Where one sampling option appears, and under what name (its range, default and help are its Field above).

    The table below is the one list of the controls, in the order the Gradio endpoints take them: the page's
    sliders, the handlers' and endpoints' arguments, the OpenAI bodies, the remote vLLM engine's request and the
    README's table all derive from it."""

    name: str  # the SamplingParams field
    label: str  # the page's label
    row: int  # the page's row of controls (at most three to a row, and a checkbox alone: a phone stacks a row's
    # sliders, but squeezes a checkbox beside a slider)
    step: float | None = 1  # the slider's step; None: a checkbox
    gradio_api: bool = True  # an argument of /chat, /complete and /compare
    # added to the Gradio endpoints after their first version: it comes after an endpoint's own trailing arguments,
    # so that the places of the values programs already send keep their meaning
    added_later: bool = False
    openai: str | None = None  # the field of the OpenAI routes' bodies (None: not offered there)
    openai_default: Any = None  # what the OpenAI routes assume when the field is left out
    openai_note: str = ""  # said after the default on the OpenAI routes' description
    from_openai: Callable[[Any], Any] = _same  # an OpenAI value in this server's terms
    vllm: str | None = None  # the field of a vLLM request that carries it (None: none, or folded into another)
    remote: bool = True  # the remote vLLM engine can honour it (else a value other than the default is refused)


CONTROLS: tuple[Control, ...] = (
    Control("temperature", "Temperature", 0, step=0.05, openai="temperature", openai_default=1.0,
            openai_note=" (OpenAI's)", vllm="temperature"),
    Control("top_k", "Top k", 0, openai="top_k", openai_default=0,
            openai_note=" (no limit; -1 also means no limit, as in vLLM)", from_openai=lambda v: 0 if v == -1 else v,
            vllm="top_k"),
    Control("top_p", "Top p", 0, step=0.01, openai="top_p", openai_default=1.0, vllm="top_p"),
    Control("repetition_penalty", "Repetition penalty", 2, step=0.01, openai="repetition_penalty",
            openai_default=1.0, openai_note=" (off)", vllm="repetition_penalty"),
    # the OpenAI routes' max_tokens is the request's own field (its 0 scores a prompt, with echo)
    Control("max_new_tokens", "Max new tokens", 1, vllm="max_tokens"),
    Control("greedy", "Greedy", 3, step=None, added_later=True),  # vLLM's and OpenAI's temperature 0
    Control("no_repeat_ngram_size", "No repeat ngram size", 2, remote=False, added_later=True),  # vLLM has none
    Control("min_tokens", "Min tokens", 1, openai="min_tokens", openai_default=0, vllm="min_tokens",
            added_later=True),
)


@dataclass(frozen=True)
class Bounds:
    """A declared argument: its range (None where it has none), default and description."""

    minimum: float | None
    maximum: float | None
    default: Any
    info: str

    @property
    def range_words(self) -> str:
        """'0-2, default 0.7' for the API page; '' when the argument has no numeric range."""
        if self.minimum is None or self.maximum is None:
            return "" if self.default is None else f"default {self.default}"
        return f"{_number(self.minimum)}-{_number(self.maximum)}, default {self.default}"


def field_bounds(field: FieldInfo) -> Bounds:
    """The declaration of one pydantic field, as a Bounds (its Field(ge=, le=) and description)."""
    lo = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    return Bounds(lo, hi, default, field.description or "")


def bounds(name: str) -> Bounds:
    """The declared range of a SamplingParams field."""
    return field_bounds(SamplingParams.model_fields[name])


def _number(value: float) -> str:
    return f"{value:g}"


def explain(exc: ValidationError, model: type[BaseModel], prefix: str = "", names: list[str] | None = None) -> str:
    """pydantic's errors in our words: each names the argument, its declared range and what was sent.
    ``names``: the arguments to list when one is unknown (default: the model's fields)."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "value"
        value = repr(err.get("input"))[:40]
        kind = err["type"]
        field = model.model_fields.get(str(err["loc"][0])) if err["loc"] else None
        kinds = {t for t in get_args(field.annotation) or (field.annotation,) if t is not type(None)} if field else {}
        if kind == "extra_forbidden":
            parts.append(f"unknown option {name!r}; valid options: {', '.join(names or model.model_fields)}")
        elif field is not None and kinds in ({int}, {float}):
            b = field_bounds(field)
            typ = "an integer" if kinds == {int} else "a number"
            span = f" from {_number(b.minimum)} to {_number(b.maximum)}" if b.minimum is not None else ""
            parts.append(f"{name} must be {typ}{span} (got {value})")
        elif field is not None and field.annotation is bool:
            parts.append(f"{name} must be true or false (got {value})")
        else:
            parts.append(f"{name}: {err['msg']} (got {value})")
    return prefix + "; ".join(parts) + "."
