"""OpenAI's request bodies to the service's requests: the messages to a transcript, OpenAI's nulls to defaults, and
the fields this server does not use checked (accepted when neutral, refused when they would change the answer)."""

from __future__ import annotations

from typing import Any

from ..service import CONTROLS, PythiaError, message_text
from .errors import OpenAIError
from .tolerance import STREAM_OPTIONS_NEUTRAL, check_extra


def split_messages(messages: Any) -> tuple[str, list[dict], Any]:
    """OpenAI messages -> (system text, earlier user/assistant turns, the last user message)."""
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "messages must be a non-empty list of {role, content} objects.", param="messages")
    system, turns = [], []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise OpenAIError(400, f"messages[{i}] must have role system, user or assistant.", param="messages")
        try:
            text = message_text(message.get("content", ""))
        except PythiaError as exc:
            raise OpenAIError(400, f"messages[{i}]: {exc}", param="messages") from None
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] != "user":
        raise OpenAIError(400, "The last message must be the user's: the model writes the assistant's next turn.",
                          param="messages")
    return "\n".join(system), turns[:-1], turns[-1]["content"]


def tolerate(body) -> None:
    """Fields this server does not use: accepted when neutral (logged once), refused when they would matter."""
    check_extra(body.model_extra)
    if body.stream_options is not None:
        if not body.stream:
            raise OpenAIError(400, "stream_options can only be given when stream is true.", param="stream_options")
        check_extra(body.stream_options.model_extra, STREAM_OPTIONS_NEUTRAL, "stream_options.")


def canonical(name: str) -> str:
    """NAME@REVISION, whichever way the model was named (a Hub id, no revision for main)."""
    model, _, revision = name.partition("@")
    return f"{model.removeprefix('EleutherAI/')}@{revision or 'main'}"


def given(value: Any, default: Any) -> Any:
    """OpenAI's null means the default."""
    return default if value is None else value


def sampling(body) -> dict:
    """The sampling controls a body carries, under their OpenAI names, as the service's options."""
    return {c.name: c.from_openai(given(getattr(body, c.openai), c.openai_default)) for c in CONTROLS if c.openai}
