"""The random test model's shipped tokenizer: GPT-NeoX's special ids, byte-level, lossless."""

from tokenizers import Tokenizer

from model_utils.store.tiny_model import CORPUS, copy_tiny_tokenizer


def test_shipped_tokenizer_has_gpt_neox_special_ids_and_round_trips_any_text(tmp_path):
    vocab = copy_tiny_tokenizer(tmp_path)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert vocab == tok.get_vocab_size(with_added_tokens=True) == 512
    assert tok.token_to_id("<|endoftext|>") == 0 and tok.token_to_id("<|padding|>") == 1
    for text in [CORPUS.read_text()[:300], "naïve café ☕ — 日本語\n\ttabs"]:
        ids = tok.encode(text).ids
        assert tok.decode(ids) == text  # byte-level: nothing is ever unknown
    assert len(tok.encode(CORPUS.read_text()[:300]).ids) < 200  # merges learned, not bytes only
