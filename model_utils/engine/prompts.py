"""Prompts for a base model: plain continuation, and chat as a User:/Bot: transcript.

Pythia is not chat-tuned, so a chat is rendered as a transcript (the framing the
seed model card uses) and the model continues it; generation stops before it
starts writing the next ``User:`` line. Prompt tokens plus new tokens never
exceed the 2048-token context: the oldest turns go first, then the oldest tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN

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
        if self.dropped_turns == 1:
            parts.append("the oldest chat message was left out")
        elif self.dropped_turns:
            parts.append(f"the {self.dropped_turns} oldest chat messages were left out")
        if self.truncated_tokens == 1:
            parts.append("the first token of the prompt was cut")
        elif self.truncated_tokens:
            parts.append(f"the first {self.truncated_tokens:,} tokens of the prompt were cut")
        if not parts:
            return None
        return f"To fit the {CONTEXT_LENGTH}-token context, " + " and ".join(parts) + "."


def _budget(max_new_tokens: int) -> int:
    return CONTEXT_LENGTH - max_new_tokens


def _eos_id(tokenizer) -> int:
    return tokenizer.token_to_id(EOS_TOKEN)


def prepare_completion(tokenizer, text: str, max_new_tokens: int, *, truncate: bool = True) -> PreparedPrompt:
    """Tokenize a continuation prompt, keeping its last tokens if it is too long (unless ``truncate`` is off:
    API batches refuse a prompt that does not fit rather than cut it).

    An empty prompt starts from ``<|endoftext|>``: Pythia has no BOS token, and
    that is the token its training documents were separated by.
    """
    ids = tokenizer.encode(text, add_special_tokens=False).ids if text else []
    if not ids:
        return PreparedPrompt((_eos_id(tokenizer),))
    if not truncate:
        return PreparedPrompt(tuple(ids))
    budget = _budget(max_new_tokens)
    cut = max(0, len(ids) - budget)
    return PreparedPrompt(tuple(ids[cut:]), truncated_tokens=cut)


def render_transcript(turns: Sequence[tuple[str, str]], message: str, system: str = "") -> str:
    """The chat as Pythia sees it: the system text (if any) first, then one ``User:``/``Bot:`` line per turn,
    ending with ``Bot:``."""
    lines = [system.strip()] if system.strip() else []
    lines += [f"{ROLES[role]} {text.strip()}" for role, text in turns]
    lines.append(f"{USER} {message.strip()}")
    lines.append(BOT)
    return "\n".join(lines)


def prepare_chat(tokenizer, turns: Sequence[tuple[str, str]], message: str, max_new_tokens: int,
                 system: str = "") -> PreparedPrompt:
    """Render and tokenize a chat (``turns``: (role, text) pairs), dropping the oldest turns until it fits
    (the system text stays: it leads the transcript)."""
    budget = _budget(max_new_tokens)
    for dropped in range(len(turns) + 1):
        text = render_transcript(turns[dropped:], message, system)
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) <= budget:
            return PreparedPrompt(tuple(ids), dropped_turns=dropped)
    cut = len(ids) - budget
    return PreparedPrompt(tuple(ids[cut:]), dropped_turns=len(turns), truncated_tokens=cut)
