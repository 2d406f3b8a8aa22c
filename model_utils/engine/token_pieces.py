"""How one token reads on its own, in the per-token views (heatmap, learned grid, alternatives).

Pythia's tokenizer is byte-level BPE, so a token can be a fragment of one UTF-8 character ("中" is
three tokens in the demo model's vocabulary). Decoded alone, every such fragment reads "\ufffd",
so different tokens would look the same. On their own they read as their bytes instead: the
fragment ``e4 b8`` reads ``\\xe4\\xb8``, the way Python prints bytes that are not text.
"""

from __future__ import annotations


def _gpt2_byte_chars() -> dict[str, int]:
    """GPT-2's reversible map (used by every ByteLevel vocabulary) from vocabulary characters to bytes.

    Printable bytes stand for themselves; the others are shifted past U+0100. tokenizers applies
    this map internally but does not expose it, so it is written out here (it is fixed by the format).
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [b for b in range(256) if b not in kept]
    chars = {chr(b): b for b in kept}
    chars.update({chr(256 + i): b for i, b in enumerate(shifted)})
    return chars


_BYTE_OF = _gpt2_byte_chars()


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The token's own bytes: a fragment of a multi-byte character is that fragment (``e4`` for a byte of "中"),
    a special token its text (``<|endoftext|>``)."""
    text = tokenizer.decode([token_id], skip_special_tokens=False)
    if "\ufffd" not in text:
        return text.encode("utf-8")
    entry = tokenizer.id_to_token(token_id)
    if entry is None or any(c not in _BYTE_OF for c in entry):
        return text.encode("utf-8")
    return bytes(_BYTE_OF[c] for c in entry)


def api_token_text(raw: bytes) -> str:
    """A token as OpenAI's and vLLM's APIs write it: its text, or, when its bytes are not text on their own
    (a fragment of a character), ``bytes:`` followed by each byte as ``\\xNN`` -- which a client can reverse."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)
