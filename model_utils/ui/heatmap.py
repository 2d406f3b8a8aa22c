"""HTML for per-token probabilities: each token coloured from red (unlikely) to green (likely),
with its probability and the alternatives the model considered in the tooltip."""

from __future__ import annotations

import html
import math
from typing import Sequence

from ..service import TokenScore


def _color(probability: float) -> str:
    # hue 0 (red) .. 120 (green) on a log scale: 1e-4 and below are fully red
    level = min(1.0, max(0.0, (math.log10(max(probability, 1e-12)) + 4) / 4))
    return f"hsl({int(120 * level)}, 75%, 82%)"


def token_heatmap(tokens: Sequence[TokenScore], prefix: str = "") -> str:
    """An HTML block of coloured tokens (``prefix`` is shown plain, e.g. the prompt)."""
    spans = []
    for i, token in enumerate(tokens):
        tip = f"p = {token.probability:.4f} (log-prob {token.log_prob:.3f})"
        if token.alternatives:
            tip += "\n" + "\n".join(f"{alt!r}: {math.exp(lp):.4f}" for alt, lp in token.alternatives)
        spans.append(f'<span class="tok" data-index="{i}" data-prob="{token.probability:.6f}" '
                     f'title="{html.escape(tip)}" style="background:{_color(token.probability)};'
                     f'border-radius:3px;padding:0 1px;white-space:pre-wrap">{html.escape(token.text)}</span>')
    head = f'<span style="color:#666;white-space:pre-wrap">{html.escape(prefix)}</span>' if prefix else ""
    legend = ('<div style="font-size:0.8em;color:#666;margin-top:6px">Colour: probability of each token '
              '(<span style="background:hsl(0,75%,82%)">≤ 0.0001</span> … '
              '<span style="background:hsl(120,75%,82%)">1</span>). Tap or hover a token for its top alternatives.</div>')
    return f'<div class="token-heatmap" style="line-height:1.9">{head}{"".join(spans)}</div>{legend}'


def alternatives_table(tokens: Sequence[TokenScore]) -> list[list]:
    """Rows for a table: position, token, probability, then the top alternatives."""
    return [[i, token.text, round(token.probability, 4),
             ", ".join(f"{alt!r} {math.exp(lp):.3f}" for alt, lp in token.alternatives)] for i, token in enumerate(tokens)]
