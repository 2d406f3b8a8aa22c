"""Prompts for a base model: plain continuation, and chat as a User:/Bot: transcript.

Pythia is not chat-tuned, so a chat is rendered as a transcript (the framing the
seed model card uses) and the model continues it; generation stops before it
starts writing the next ``User:`` line. Prompt tokens plus new tokens never
exceed the 2048-token context: the oldest turns go first, then the oldest tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN
from ..core.errors import InvalidParameter

MAX_PROMPT_CHARS = 20_000  # cap before tokenizing: a visitor cannot make us tokenize megabytes
USER, BOT = "User:", "Bot:"
CHAT_STOP_STRINGS = (f"\n{USER}", f"\n{BOT}")
ROLES = {"user": USER, "assistant": BOT}


@dataclass(frozen=True)
class PreparedPrompt:
    """Token ids to feed the model, and what had to be cut to fit the context."""

    ids: tuple[int, ...]
    dropped_turns: int = 0
    truncated_tokens: int = 0

    @property
    def notice(self) -> str | None:
        """A sentence for the user when something was trimmed, else None."""
        parts = []
        if self.dropped_turns:
            parts.append(f"the {self.dropped_turns} oldest chat message(s) were left out")
        if self.truncated_tokens:
            parts.append(f"the first {self.truncated_tokens} token(s) of the prompt were cut")
        if not parts:
            return None
        return f"To fit the {CONTEXT_LENGTH}-token context, " + " and ".join(parts) + "."


def check_text(text: Any, what: str = "prompt") -> str:
    """A prompt must be a string of at most MAX_PROMPT_CHARS characters."""
    if not isinstance(text, str):
        raise InvalidParameter(f"The {what} must be text, not {type(text).__name__}.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameter(f"The {what} is {len(text):,} characters long; the limit is {MAX_PROMPT_CHARS:,}.")
    return text


def _budget(max_new_tokens: int) -> int:
    return CONTEXT_LENGTH - max_new_tokens


def _eos_id(tokenizer) -> int:
    return tokenizer.token_to_id(EOS_TOKEN)


def prepare_completion(tokenizer, text: Any, max_new_tokens: int) -> PreparedPrompt:
    """Tokenize a continuation prompt, keeping its last tokens if it is too long.

    An empty prompt starts from ``<|endoftext|>``: Pythia has no BOS token, and
    that is the token its training documents were separated by.
    """
    text = check_text(text)
    ids = tokenizer.encode(text, add_special_tokens=False).ids if text else []
    if not ids:
        return PreparedPrompt((_eos_id(tokenizer),))
    budget = _budget(max_new_tokens)
    cut = max(0, len(ids) - budget)
    return PreparedPrompt(tuple(ids[cut:]), truncated_tokens=cut)


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


def normalize_history(history: Any) -> list[tuple[str, str]]:
    """Validate a list of {"role", "content"} messages; return (role, text) pairs."""
    if history is None:
        return []
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
    return turns


def render_transcript(turns: Sequence[tuple[str, str]], message: str) -> str:
    """The chat as Pythia sees it: one ``User:``/``Bot:`` line per turn, ending with ``Bot:``."""
    lines = [f"{ROLES[role]} {text.strip()}" for role, text in turns]
    lines.append(f"{USER} {message.strip()}")
    lines.append(BOT)
    return "\n".join(lines)


def prepare_chat(tokenizer, history: Any, message: Any, max_new_tokens: int) -> PreparedPrompt:
    """Render and tokenize a chat, dropping the oldest turns until it fits the context."""
    message = check_text(message, "message")
    turns = normalize_history(history)
    budget = _budget(max_new_tokens)
    for dropped in range(len(turns) + 1):
        ids = tokenizer.encode(render_transcript(turns[dropped:], message), add_special_tokens=False).ids
        if len(ids) <= budget:
            return PreparedPrompt(tuple(ids), dropped_turns=dropped)
    cut = len(ids) - budget
    return PreparedPrompt(tuple(ids[cut:]), dropped_turns=len(turns), truncated_tokens=cut)
