"""Incremental decoding never shows U+FFFD for characters split across tokens."""

import pytest
from tokenizers import Tokenizer

from model_utils.engine.detokenizer import StopStringFilter, StreamingDetokenizer

TEXTS = [
    "Emoji 🙂🚀🎉 👩‍💻 and flags 🇫🇷",
    "中文字符：你好，世界！機械学習と日本語。한국어 문장",
    "café naïve Straße Ελληνικά Русский العربية",
    "plain ascii, with numbers 3.14159",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_hf_dir):
    return Tokenizer.from_file(str(tiny_hf_dir / "tokenizer.json"))


@pytest.mark.parametrize("text", TEXTS, ids=["emoji", "cjk", "accents-greek-cyrillic-arabic", "ascii"])
def test_round_trip_through_streaming(tokenizer, text):
    ids = tokenizer.encode(text).ids
    assert len(ids) > len(text) // 4, "multi-byte text should need several tokens"
    detok = StreamingDetokenizer(tokenizer)
    pieces = [detok.step(i) for i in ids]
    pieces.append(detok.flush())
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_split_bytes_are_held_back(tokenizer):
    text = "🙂"
    ids = tokenizer.encode(text).ids
    detok = StreamingDetokenizer(tokenizer)
    pieces = [detok.step(i) for i in ids]
    assert len(ids) > 1, "the tiny vocabulary splits the emoji into byte tokens"
    assert pieces[:-1] == [""] * (len(ids) - 1), "nothing shows until the character is whole"
    assert "".join(pieces) + detok.flush() == text


def test_stop_filter_holds_back_partial_matches():
    f = StopStringFilter(["\nUser:"])
    out = [f.push("Hello"), f.push("\nUs"), f.push("ual text")]
    assert "".join(out) + f.finish() == "Hello\nUsual text"
    assert out[1] == ""  # "\nUs" might have been the start of the stop string

    f = StopStringFilter(["\nUser:"])
    out = [f.push("Hi there"), f.push("\nUse"), f.push("r: more")]
    assert "".join(out) + f.finish() == "Hi there"
    assert f.stopped
