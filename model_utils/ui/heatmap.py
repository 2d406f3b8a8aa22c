"""HTML for per-token probabilities: each token coloured from red (unlikely) to green (likely),
with its probability and the alternatives the model considered in the tooltip.

The cells are pastel in both colour schemes, so their text is always dark ink (INK): the page's own
text colour is light in dark mode and would vanish on them. Everything else takes the page's colours,
which follow the scheme.
"""

from __future__ import annotations

import html
import math
from typing import Sequence

from ..service import ScoredToken

INK = "#1f2937"  # on every pastel cell: contrast at least 10:1 against hsl(h, 75%, 82%)
# Notes take the page's own text colour: Gradio's "subdued" grey is below 4.5:1 contrast in light mode.
NOTE = "font-size:0.8em;margin-top:6px"


def _color(probability: float) -> str:
    # hue 0 (red) .. 120 (green) on a log scale: 1e-4 and below are fully red
    level = min(1.0, max(0.0, (math.log10(max(probability, 1e-12)) + 4) / 4))
    return f"hsl({int(120 * level)}, 75%, 82%)"


def token_heatmap(tokens: Sequence[ScoredToken], prefix: str = "") -> str:
    """An HTML block of coloured tokens (``prefix`` is shown plain, e.g. the prompt)."""
    spans = []
    for i, token in enumerate(tokens):
        tip = f"p = {token.probability:.4f} (log-prob {token.logprob:.3f})"
        if token.top:
            tip += "\n" + "\n".join(f"{a.token.piece!r}: {math.exp(a.logprob):.4f}" for a in token.top)
        spans.append(f'<span class="tok" data-index="{i}" data-prob="{token.probability:.6f}" '
                     f'title="{html.escape(tip)}" style="background:{_color(token.probability)};color:{INK};'
                     f'border-radius:3px;padding:0 1px;white-space:pre-wrap">{html.escape(token.piece)}</span>')
    head = f'<span style="white-space:pre-wrap">{html.escape(prefix)}</span>' if prefix else ""
    legend = (f'<div class="legend" style="{NOTE}">Colour: probability of each token '
              f'(<span style="background:{_color(0)};color:{INK}">≤ 0.0001</span> … '
              f'<span style="background:{_color(1)};color:{INK}">1</span>). '
              'Tap or hover a token for its top alternatives.</div>')
    return f'<div class="token-heatmap" style="line-height:1.9">{head}{"".join(spans)}</div>{legend}'


def alternatives_table(tokens: Sequence[ScoredToken]) -> list[list]:
    """Rows for a table: position, token, probability, then the top alternatives. Tokens are quoted, the
    chosen one as its alternatives are: a table cell would drop a leading space (' the' and 'the' differ).
    Every probability is written alike (short_probability), the chosen token's and its alternatives'."""
    return [[i, repr(token.piece), short_probability(token.probability),
             ", ".join(f"{a.token.piece!r} {short_probability(math.exp(a.logprob))}" for a in token.top or ())]
            for i, token in enumerate(tokens)]


def short_probability(p: float) -> str:
    """Four characters or so, and distinct where the colours are: 0.49 · 0.05 · 7e-3 · 2e-12.

    Two decimals would print every probability below 0.005 as 0.00, though the colour scale
    separates them down to 1e-4; below 0.01 the order of magnitude is what tells them apart.
    """
    if p >= 0.0095:  # rounds to 0.01 or more
        return f"{p:.2f}"
    if p <= 0:
        return "0"
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def learned_heatmap(points, max_tokens: int = 48) -> str:
    """When was each token learned: a checkpoints x tokens grid of each token's probability (one model).

    ``points`` are learning-curve points (oldest first) carrying per-token scores. Long texts show
    their first ``max_tokens`` tokens, and say so and how to see the others.
    """
    rows = [p for p in points if p.status == "ok" and p.tokens]
    if not rows:
        return ""
    total = len(rows[0].tokens)
    tokens = rows[0].tokens[:max_tokens]
    head = "".join(f'<th title="{html.escape(t.piece)}">{html.escape(t.piece.strip() or "␣")}</th>' for t in tokens)
    body = []
    for p in rows:
        cells = "".join(
            f'<td style="background:{_color(t.probability)};color:{INK};white-space:nowrap" '
            f'title="{html.escape(t.piece)} at '
            f'{p.revision}: p = {t.probability:.3g} (log-prob {t.logprob:.2f})">'
            f'{short_probability(t.probability)}</td>'
            for t in p.tokens[:max_tokens])
        body.append(f'<tr><th class="ckpt">{html.escape(p.revision)}</th>{cells}</tr>')
    sideways = "scroll the grid sideways if it is wider than the page"
    shown = (f"The first {max_tokens} of the text's {total} tokens ({sideways}). To follow later tokens, "
             "paste that part of the text and plot again." if total > max_tokens
             else f"All {total} tokens of the text ({sideways}).")
    return (f'<div class="note" style="font-size:0.85em;margin-bottom:4px">{shown}</div>'
            '<div class="learned-heatmap" style="overflow-x:auto;max-width:100%">'
            '<table style="border-collapse:collapse;font-size:0.75em"><thead><tr><th></th>' + head + "</tr></thead>"
            "<tbody>" + "".join(body) + "</tbody></table></div>" +
            f'<div class="legend" style="{NOTE}">Each cell: the probability the checkpoint gave that token '
            "(red: surprising, green: expected; 0.49 is 49%, 7e-3 is 0.007). Read down a column to see "
            "when the token was learned. Tap or hover a cell for its exact value.</div>")
