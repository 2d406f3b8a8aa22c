"""Sampling parameters: bounds declared once, used by validation and by the UI sliders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import InvalidParameter


class SamplingParams(BaseModel):
    """A validated, immutable set of decoding options.

    Strict types: 3.7 is not an integer, True is not a number, NaN and infinities
    are refused -- CT2 would silently accept some of these.
    """

    model_config = ConfigDict(frozen=True, strict=True, allow_inf_nan=False, extra="forbid")

    temperature: float = Field(0.7, ge=0.05, le=2.0, description=(
        "Higher is more random, lower is more focused. Ignored when greedy is on."))
    top_k: int = Field(50, ge=0, le=1000, description=(
        "Sample only from the k most likely tokens (0 = no limit)."))
    top_p: float = Field(0.95, ge=0.01, le=1.0, description=(
        "Sample only from the smallest set of tokens whose probabilities add up to p (1 = no limit)."))
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0, description=(
        "Values above 1 make already generated tokens less likely (base models repeat themselves)."))
    no_repeat_ngram_size: int = Field(0, ge=0, le=10, description=(
        "Never repeat an n-gram of this size (0 = off)."))
    max_new_tokens: int = Field(128, ge=1, le=1024, description="Maximum number of tokens to generate.")
    greedy: bool = Field(False, description="Always pick the most likely token (deterministic).")

    @field_validator("top_k", "no_repeat_ngram_size", "max_new_tokens", mode="before")
    @classmethod
    def _integral_float(cls, value: Any) -> Any:
        # JSON clients and Gradio sliders send 50.0 for 50; 3.7 stays a float and is refused.
        if type(value) is float and value.is_integer():
            return int(value)
        return value

    @classmethod
    def parse(cls, **values: Any) -> "SamplingParams":
        """Validate keyword values (None means 'use the default'); raise InvalidParameter."""
        given = {k: v for k, v in values.items() if v is not None}
        try:
            return cls(**given)
        except ValidationError as exc:
            raise InvalidParameter(_explain(exc)) from None

    def ct2_options(self) -> dict[str, Any]:
        """Keyword arguments for ctranslate2 Generator.generate_* calls."""
        return {
            "sampling_topk": 1 if self.greedy else self.top_k,
            "sampling_topp": 1.0 if self.greedy else self.top_p,
            "sampling_temperature": 1.0 if self.greedy else self.temperature,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }


@dataclass(frozen=True)
class Bounds:
    """A parameter's range, for a slider."""

    minimum: float
    maximum: float
    default: Any
    info: str


def bounds(name: str) -> Bounds:
    """The declared range of a SamplingParams field (its Field(ge=, le=))."""
    field = SamplingParams.model_fields[name]
    lo = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), None)
    hi = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), None)
    return Bounds(lo, hi, field.default, field.description or "")


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "value"
        value = repr(err.get("input"))[:40]
        kind = err["type"]
        if kind == "extra_forbidden":
            parts.append(f"unknown option {name!r}; valid options: {', '.join(SamplingParams.model_fields)}")
        elif name in SamplingParams.model_fields and kind not in ("bool_type",):
            b = bounds(name)
            typ = "an integer" if SamplingParams.model_fields[name].annotation is int else "a number"
            parts.append(f"{name} must be {typ} from {b.minimum} to {b.maximum} (got {value})")
        else:
            parts.append(f"{name}: {err['msg']} (got {value})")
    return "Invalid sampling options: " + "; ".join(parts) + "."
