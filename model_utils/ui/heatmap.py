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
              '<span style="background:hsl(120,75%,82%)">1</span>). '
              'Tap or hover a token for its top alternatives.</div>')
    return f'<div class="token-heatmap" style="line-height:1.9">{head}{"".join(spans)}</div>{legend}'


def alternatives_table(tokens: Sequence[TokenScore]) -> list[list]:
    """Rows for a table: position, token, probability, then the top alternatives."""
    return [[i, token.text, round(token.probability, 4),
             ", ".join(f"{alt!r} {math.exp(lp):.3f}" for alt, lp in token.alternatives)]
            for i, token in enumerate(tokens)]


def learned_heatmap(points, max_tokens: int = 48) -> str:
    """When was each token learned: a checkpoints x tokens grid of each token's probability (one model).

    ``points`` are learning-curve points (oldest first) carrying per-token scores. Long texts show
    their first ``max_tokens`` tokens, and say so.
    """
    rows = [p for p in points if p.status == "ok" and p.tokens]
    if not rows:
        return ""
    tokens = rows[0].tokens[:max_tokens]
    head = "".join(f'<th title="{html.escape(t.text)}">{html.escape(t.text.strip() or "␣")}</th>' for t in tokens)
    body = []
    for p in rows:
        cells = "".join(
            f'<td style="background:{_color(t.probability)}" title="{html.escape(t.text)} at {p.revision}: '
            f'p = {t.probability:.4f}">{t.probability:.2f}</td>' for t in p.tokens[:max_tokens])
        body.append(f'<tr><th class="ckpt">{html.escape(p.revision)}</th>{cells}</tr>')
    more = (f'<div class="note">The first {max_tokens} of {len(rows[0].tokens)} tokens.</div>'
            if len(rows[0].tokens) > max_tokens else "")
    return ('<div class="learned-heatmap" style="overflow-x:auto;max-width:100%">'
            '<table style="border-collapse:collapse;font-size:0.75em"><thead><tr><th></th>' + head + "</tr></thead>"
            "<tbody>" + "".join(body) + "</tbody></table></div>" + more +
            '<div style="font-size:0.8em;color:#666;margin-top:6px">Each cell: the probability the checkpoint gave '
            "that token (red: surprising, green: expected). Read down a column to see when the token was learned."
            "</div>")
