"""How tokens read one by one in the per-token views: fragments of a character read as bytes."""

from tokenizers import Tokenizer

from model_utils.engine.scoring import score_text
from model_utils.engine.tokens import TokenText
from model_utils.store.tiny_model import TINY_TOKENIZER


def test_every_token_reads_as_its_text_or_as_its_bytes():
    tokenizer = Tokenizer.from_file(str(TINY_TOKENIZER))
    for token_id in range(tokenizer.get_vocab_size(with_added_tokens=True)):
        decoded = tokenizer.decode([token_id], skip_special_tokens=False)
        piece = TokenText.of(tokenizer, token_id).piece
        if "\ufffd" in decoded:  # a fragment of a character: its bytes, never the replacement character
            assert "\ufffd" not in piece and "\\x" in piece, (token_id, piece)
        else:
            assert piece == decoded


def test_fragments_of_a_character_read_as_their_bytes():
    tokenizer = Tokenizer.from_file(str(TINY_TOKENIZER))
    ids = tokenizer.encode("中 café", add_special_tokens=False).ids
    # "中" is e4 b8 ad and "é" is c3 a9 in UTF-8; the shipped vocabulary splits both
    assert [TokenText.of(tokenizer, i).piece for i in ids] == ["\\xe4\\xb8", "\\xad", " ca", "f\\xc3", "\\xa9"]


def test_score_shows_distinct_fragments_and_plain_text_unchanged(tiny_model):
    scored = score_text(tiny_model, "中文 naïve")
    texts = [t.piece for t in scored.tokens]
    assert not any("\ufffd" in t for t in texts)
    assert any(t.startswith("\\x") for t in texts)
    plain = "Hello world, said the clockmaker."
    assert "".join(t.piece for t in score_text(tiny_model, plain).tokens) == plain
