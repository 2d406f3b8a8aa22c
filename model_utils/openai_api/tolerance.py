"""Fields a client may send that this server does not use: accepted when they change nothing, refused when they would.

Clients send OpenAI's optional fields with their neutral values by default (``presence_penalty: 0``,
``logit_bias: {}``, ``user``...), and lm-eval passes a task's extra generation arguments straight through. As vLLM
does, such a request is served: a field OpenAI (or vLLM) defines that is left at a value that changes nothing is
accepted and logged once; the same field with a value this server cannot honour is a 400 that names it (a silently
ignored ``logit_bias`` would give wrong numbers); a field nobody defines is accepted and logged once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from .errors import OpenAIError

log = logging.getLogger(__package__)


def _empty(value: Any) -> bool:
    return value is None or value in ({}, [], "")


def _anything(value: Any) -> bool:
    return True


def _zero(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def _one(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 1)


def _false(value: Any) -> bool:
    return value is None or value is False


def _true(value: Any) -> bool:
    return value is None or value is True


# field -> whether a value changes nothing here. Both OpenAI's fields and vLLM's extensions (clients written for
# vLLM send those).
NEUTRAL: dict[str, Callable[[Any], bool]] = {
    # OpenAI's
    "presence_penalty": _zero, "frequency_penalty": _zero, "logit_bias": _empty, "user": _anything,
    "service_tier": _anything, "store": _anything, "metadata": _anything, "best_of": _one, "suffix": _empty,
    "parallel_tool_calls": _anything, "tools": _empty, "tool_choice": lambda v: v in (None, "none", "auto"),
    "functions": _empty, "function_call": lambda v: v in (None, "none", "auto"),
    "response_format": lambda v: v is None or v == {"type": "text"}, "modalities": lambda v: v in (None, ["text"]),
    "prediction": _empty, "audio": _empty, "reasoning_effort": _empty, "web_search_options": _empty,
    # vLLM's
    "ignore_eos": _false, "min_p": _zero, "stop_token_ids": _empty, "bad_words": _empty,
    "include_stop_str_in_output": _false, "skip_special_tokens": _true, "spaces_between_special_tokens": _true,
    "use_beam_search": _false, "length_penalty": _one, "prompt_logprobs": _empty, "truncate_prompt_tokens": _empty,
    "add_special_tokens": _anything,  # Pythia's tokenizer adds no special token either way
    "add_generation_prompt": _true, "continue_final_message": _false, "return_tokens_as_token_ids": _false,
    "priority": _zero, "guided_json": _empty, "guided_regex": _empty, "guided_choice": _empty,
    "guided_grammar": _empty, "guided_decoding_backend": _anything, "structured_outputs": _empty,
    "logits_processors": _empty, "allowed_token_ids": _empty, "chat_template": _empty,
    "chat_template_kwargs": _empty, "documents": _empty, "request_id": _anything, "cache_salt": _anything,
    "mm_processor_kwargs": _empty, "kv_transfer_params": _empty, "vllm_xargs": _empty,
    "echo": _false,  # chat's (vLLM): completions honour their own echo
    "do_sample": _anything,  # lm-eval's generation argument: temperature says whether a choice samples
}
STREAM_OPTIONS_NEUTRAL: dict[str, Callable[[Any], bool]] = {"continuous_usage_stats": _false}
MAX_REMEMBERED = 256  # field names logged once each; past that they are no longer told one by one


class FieldLog:
    """Logs each ignored field once per server (a bounded memory: field names come from anyone)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._full_said = False
        self._lock = threading.Lock()

    def once(self, key: str, message: str, *args: Any) -> None:
        with self._lock:
            if key in self._seen:
                return
            if len(self._seen) >= MAX_REMEMBERED:
                if not self._full_said:
                    self._full_said = True
                    log.info("more ignored request fields: no longer logged one by one")
                return
            self._seen.add(key)
        log.info(message, *args)


FIELDS = FieldLog()


def check_extra(extra: dict[str, Any] | None, table: dict[str, Callable[[Any], bool]] = NEUTRAL,
                prefix: str = "") -> None:
    """Accept (and log once) fields this server does not use; refuse one whose value would change the answer."""
    for name, value in (extra or {}).items():
        shown = f"{prefix}{name}"[:60]
        neutral = table.get(name)
        if neutral is None:
            FIELDS.once(f"unknown:{shown}", "ignored a request field this server does not know: %r", shown)
        elif neutral(value):
            FIELDS.once(f"neutral:{shown}", "accepted %s at a value that changes nothing here (not used)", shown)
        else:
            raise OpenAIError(400, f"{shown} is not supported by this server; leave it out (or at its default).",
                              param=shown, code="unsupported_field")
