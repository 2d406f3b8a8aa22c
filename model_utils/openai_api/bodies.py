"""The OpenAI request bodies: OpenAI's field names and defaults, nothing else.

A body only says which fields this server honours and what OpenAI means when one is left out; any other
field is kept aside (``model_extra``) for ``tolerance.check_extra``, which accepts it when it changes nothing.
Every value is then validated by the service's own declarations (service/requests.py, core/sampling.py) --
the same bounds and the same words as the Gradio API -- and each field's description is read from them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..service import (
    CONTEXT_LENGTH,
    CONTROLS,
    MAX_PROMPTS,
    BatchChatRequest,
    BatchCompletionRequest,
    field_bounds,
)


def declared(request: type, name: str, default: Any = None, note: str = "") -> Any:
    """A body field whose description is the service's declaration of ``name`` (range included)."""
    b = field_bounds(request.arguments()[name])
    span = f" ({b.minimum:g} to {b.maximum:g})" if b.minimum is not None and b.maximum is not None else ""
    return Field(default, description=f"{b.info}{span}{note}")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = Field(False, strict=True)


class _Fields(BaseModel):
    # other fields are kept for tolerance.check_extra: accepted when neutral, refused when they would change the answer
    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description=(
        "NAME, NAME@REVISION (e.g. pythia-160m@step1000) or a Hub id (EleutherAI/pythia-160m[@REVISION]); "
        "default: the address's model, else this server's default model."))
    stop: Any = declared(BatchCompletionRequest, "stop")
    n: Any = declared(BatchCompletionRequest, "n", 1)
    seed: int | None = Field(None, strict=True, description=(
        "Accepted for compatibility. It does not make sampled choices reproducible: rows share batches and "
        "CTranslate2 has no per-request seed. Greedy choices (temperature 0) do not depend on it."))
    stream: bool = Field(False, strict=True,
                         description="Send the choices as server-sent events, ending with `data: [DONE]`.")
    stream_options: StreamOptions | None = None


# the sampling controls the OpenAI routes offer, under their OpenAI names (core/sampling.py's CONTROLS)
_Body = create_model("_Body", __base__=_Fields, **{
    c.openai: (Any, declared(BatchCompletionRequest, c.name, c.openai_default,
                             f"; default {c.openai_default:g}{c.openai_note}"))
    for c in CONTROLS if c.openai})


class CompletionBody(_Body):
    """POST /v1/completions (OpenAI's legacy completions, as vLLM serves them)."""

    prompt: Any = declared(BatchCompletionRequest, "prompt", ...)
    max_tokens: Any = declared(BatchCompletionRequest, "max_tokens", 16, "; OpenAI's default 16")
    echo: Any = declared(BatchCompletionRequest, "echo", False)
    logprobs: Any = declared(BatchCompletionRequest, "logprobs")


class ChatBody(_Body):
    """POST /v1/chat/completions: the messages become the app's User:/Bot: transcript."""

    messages: Any = Field(..., description=(
        "[{role, content}, ...]: system (or developer) messages lead the transcript, then user and assistant "
        "turns; the last one must be the user's."))
    max_tokens: Any = declared(BatchChatRequest, "max_new_tokens")
    max_completion_tokens: Any = Field(None, description="OpenAI's newer name for max_tokens.")
    logprobs: bool | None = Field(False, strict=True, description="Return each generated token's log-prob.")
    top_logprobs: Any = declared(BatchChatRequest, "logprobs", None, "; needs logprobs true")


# lm-eval's remote tokenizer sends whole documents to /tokenize (a rolling-perplexity document is split into
# windows after tokenizing), so its text may be longer than one prompt; both stay bounded, and run off the event loop.
MAX_TOKENIZE_CHARS = 200_000
MAX_DETOKENIZE_IDS = MAX_PROMPTS * CONTEXT_LENGTH  # a whole request's prompts


class TokenizeBody(BaseModel):
    """POST /tokenize (vLLM's)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    prompt: str = Field(..., max_length=MAX_TOKENIZE_CHARS, description=(
        f"The text to tokenize (at most {MAX_TOKENIZE_CHARS:,} characters)."))
    add_special_tokens: bool = Field(False, strict=True, description="Pythia adds none: it has no BOS token.")


class DetokenizeBody(BaseModel):
    """POST /detokenize (vLLM's)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    tokens: list[int] = Field(..., max_length=MAX_DETOKENIZE_IDS, description=(
        f"Token ids to turn back into text (at most {MAX_DETOKENIZE_IDS:,})."))
