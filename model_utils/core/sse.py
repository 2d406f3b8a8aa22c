"""Reading a server-sent event stream line by line, where the SSE format ends lines and nowhere else.

httpx's ``iter_lines`` splits as ``str.splitlines`` does: also at U+2028, U+2029, U+0085 and \\x1c-\\x1e, which JSON
leaves raw inside a string and a model's text can hold (a random checkpoint wrote one during a 16-user benchmark).
A ``data:`` line cut there is no longer JSON. The SSE format ends a line with CRLF, LF or CR only, as browsers read
it; this reader does the same.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

_LINE_END = re.compile(r"\r\n|\r|\n")


def event_lines(chunks: Iterable[str]) -> Iterator[str]:
    """The lines of a stream that arrives as ``chunks`` of text (httpx: ``response.iter_text()``)."""
    rest = ""
    for chunk in chunks:
        rest += chunk
        held = rest.endswith("\r")  # perhaps the first half of a CRLF that the next chunk completes
        *lines, rest = _LINE_END.split(rest[:-1] if held else rest)
        rest += "\r" if held else ""
        yield from lines
    if rest:
        *lines, last = _LINE_END.split(rest)
        yield from lines
        if last:
            yield last
