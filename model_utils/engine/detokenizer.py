"""Incremental detokenization and stop strings for streamed text."""

from __future__ import annotations

from typing import Sequence


class StreamingDetokenizer:
    """Turn token ids into text pieces as they arrive, never splitting a UTF-8 character.

    ``tokenizers.decoders.DecodeStream`` holds back bytes until they form whole
    characters. Bytes that never become valid UTF-8 (a random model can emit
    them) are released by :meth:`flush`, so the concatenated pieces always equal
    ``tokenizer.decode(ids)``.
    """

    def __init__(self, tokenizer):
        from tokenizers.decoders import DecodeStream

        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=True)
        self._ids: list[int] = []
        self._emitted = 0  # characters handed out so far

    def step(self, token_id: int) -> str:
        """Add one token; return the text it completes ('' while a character is split)."""
        self._ids.append(token_id)
        piece = self._stream.step(self._tokenizer, token_id) or ""
        self._emitted += len(piece)
        return piece

    def flush(self) -> str:
        """Return whatever text is still held back, once decoding is over."""
        full = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        rest = full[self._emitted:]
        self._emitted = len(full)
        return rest


class StopStringFilter:
    """Cut the text at the first stop string, without ever showing part of one.

    Text that could be the beginning of a stop string is held back until the
    next piece shows whether it is one.
    """

    def __init__(self, stop_strings: Sequence[str]):
        self._stops = [s for s in stop_strings if s]
        self._pending = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Add text; return the part that is safe to show."""
        if self.stopped:
            return ""
        self._pending += text
        cut = min((i for i in (self._pending.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            shown, self._pending = self._pending[:cut], ""
            return shown
        hold = self._longest_partial_stop(self._pending)
        shown = self._pending[: len(self._pending) - hold]
        self._pending = self._pending[len(shown):]
        return shown

    def finish(self) -> str:
        """Release held-back text when generation ended without a stop string."""
        shown, self._pending = ("" if self.stopped else self._pending), ""
        return shown

    def _longest_partial_stop(self, text: str) -> int:
        best = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
