"""Chat transcripts and context trimming: prompt + max_new_tokens never exceed 2048."""

import pytest
from tokenizers import Tokenizer

from model_utils.core.catalog import CONTEXT_LENGTH, Catalog
from model_utils.core.errors import InvalidParameter
from model_utils.engine.interface import Capabilities
from model_utils.engine.prompts import prepare_chat, prepare_completion, render_transcript
from model_utils.service.requests import (
    MAX_PROMPT_CHARS,
    ChatRequest,
    CompletionRequest,
    ParseContext,
    normalize_history,
)

CONTEXT = ParseContext(Catalog(), "pythia-160m", lambda model, revision: Capabilities("CPU int8"))


@pytest.fixture(scope="module")
def tokenizer(tiny_hf_dir):
    return Tokenizer.from_file(str(tiny_hf_dir / "tokenizer.json"))


def test_transcript_format():
    text = render_transcript([("user", "Hi"), ("assistant", "Hello!")], "How are you?")
    assert text == "User: Hi\nBot: Hello!\nUser: How are you?\nBot:"


def test_chat_fits_without_trimming(tokenizer):
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    p = prepare_chat(tokenizer, normalize_history(history), "Who are you?", 100)
    assert p.dropped_turns == 0 and p.truncated_tokens == 0 and p.notice is None
    assert tokenizer.decode(list(p.ids)) == "User: Hi\nBot: Hello\nUser: Who are you?\nBot:"


def test_oldest_turns_are_dropped_first(tokenizer):
    long = " ".join(f"zq{i}" for i in range(300))  # ~1000 tokens: rare pieces
    history = [{"role": "user", "content": f"first {long}"}, {"role": "assistant", "content": f"second {long}"},
               {"role": "user", "content": "third"}, {"role": "assistant", "content": "fourth"}]
    p = prepare_chat(tokenizer, normalize_history(history), "last question", 1024)
    assert len(p.ids) + 1024 <= CONTEXT_LENGTH
    assert p.dropped_turns >= 1
    text = tokenizer.decode(list(p.ids))
    assert "first" not in text and text.endswith("User: last question\nBot:")
    assert "fourth" in text
    assert "oldest chat message" in p.notice


def test_single_overlong_prompt_keeps_its_end(tokenizer):
    text = " ".join(f"w{i}" for i in range(1500))  # < 20k characters, > 2048 tokens
    p = prepare_completion(tokenizer, text, 200)
    assert len(p.ids) == CONTEXT_LENGTH - 200
    assert p.truncated_tokens > 0 and "first" in p.notice
    assert tokenizer.decode(list(p.ids)).endswith("w1499")


def test_gradio_message_parts_are_accepted(tokenizer):
    history = [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    p = prepare_chat(tokenizer, normalize_history(history), "again", 10)
    assert tokenizer.decode(list(p.ids)).startswith("User: Hi\n")


@pytest.mark.parametrize("history", ["not a list", [{"role": "system", "content": "x"}], [{"content": "x"}],
                                     [["user", "x"]], [{"role": "user", "content": 5}]])
def test_bad_history_is_refused(history):
    with pytest.raises(InvalidParameter):
        ChatRequest.parse(CONTEXT, message="hi", history=history)


@pytest.mark.parametrize("message", [None, 5, ["a"], "x" * (MAX_PROMPT_CHARS + 1)],
                         ids=["none", "number", "list", "one-char-over-the-limit"])
def test_bad_prompt_is_refused(message):
    with pytest.raises(InvalidParameter):
        CompletionRequest.parse(CONTEXT, prompt=message)
    with pytest.raises(InvalidParameter):
        ChatRequest.parse(CONTEXT, message=message)
