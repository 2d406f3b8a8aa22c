"""Line charts as inline SVG: training steps on a log-like axis labelled with real step numbers,
values on a log axis with round ticks, visible points with tooltips. No plotting library needed,
and it scales to a phone's width."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

STEP_TICKS = (0, 1, 16, 128, 512, 1000, 4000, 16000, 64000, 143000)
COLORS = ("#4f46e5", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#65a30d")
W, H, LEFT, RIGHT, TOP, BOTTOM = 480, 260, 64, 14, 14, 42


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[int, float]]  # (training step, value), value > 0


def _x(step: int) -> float:
    return math.log10(step + 1)  # step 0 has a place on the axis; 1, 10, 100 ... spread evenly


def _round_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k between lo and hi (at least two ticks)."""
    ticks = []
    for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** k
            if lo <= v <= hi:
                ticks.append(v)
    if len(ticks) > 8:
        ticks = [t for t in ticks if str(t).lstrip("0.").startswith("1")]
    return ticks or [lo, hi]


def _label(v: float) -> str:
    return f"{v:,.0f}" if v >= 1 or v == 0 else f"{v:g}"


def _usable(value: float | None, log_y: bool) -> bool:
    return value is not None and math.isfinite(value) and (value > 0 or not log_y)


def line_chart(series: Sequence[Series], y_label: str, title: str = "", log_y: bool = True) -> str:
    """An SVG chart of ``series`` against training step (log y, or a 0-1 linear y for fractions)."""
    points = [p for s in series for p in s.points if _usable(p[1], log_y)]
    if not points:
        return '<div class="chart-empty">Nothing to plot yet.</div>'
    max_step = max(p[0] for p in points)
    x_hi = _x(max(max_step, 1))
    values = [p[1] for p in points]
    if log_y:
        y_lo, y_hi = math.log10(min(values)) - 0.05, math.log10(max(values)) + 0.05
    else:
        y_lo, y_hi = 0.0, max(1.0, max(values))

    def px(step: int) -> float:
        return LEFT + (W - LEFT - RIGHT) * _x(step) / x_hi

    def py(value: float) -> float:
        v = math.log10(value) if log_y else value
        return TOP + (H - TOP - BOTTOM) * (1 - (v - y_lo) / (y_hi - y_lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="line-chart" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{html.escape(title or y_label)}" '
           'style="width:100%;max-width:600px;height:auto;font:12px sans-serif;background:#fff">']
    for step in [t for t in STEP_TICKS if t <= max_step] + ([max_step] if max_step not in STEP_TICKS else []):
        x = px(step)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#e5e7eb"/>'
                   f'<text class="x-tick" x="{x:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{step:,}</text>')
    for v in (_round_ticks(10 ** y_lo, 10 ** y_hi) if log_y else (0, 0.25, 0.5, 0.75, 1.0)):
        y = py(v)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
                   f'<text class="y-tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(v)}</text>')
    out.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" text-anchor="middle">training step</text>'
               f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{html.escape(y_label)}'
               f'{" (log scale)" if log_y else ""}</text>')
    for i, s in enumerate(series):
        color = COLORS[i % len(COLORS)]
        pts = sorted((st, v) for st, v in s.points if _usable(v, log_y))
        if len(pts) > 1:
            path = " ".join(f"{px(st):.1f},{py(v):.1f}" for st, v in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for st, v in pts:
            out.append(f'<circle class="point" cx="{px(st):.1f}" cy="{py(v):.1f}" r="4" fill="{color}">'
                       f'<title>{html.escape(s.name)} · step {st:,}: {v:,.2f}</title></circle>')
    if len(series) > 1:
        for i, s in enumerate(series):
            out.append(f'<text x="{LEFT + 8}" y="{TOP + 12 + 14 * i}" fill="{COLORS[i % len(COLORS)]}">'
                       f'● {html.escape(s.name)}</text>')
    out.append("</svg>")
    return "".join(out)


def png_download_js(selector: str, filename: str) -> str:
    """Client-side: draw the SVG under ``selector`` on a canvas and save it as a PNG (no server round trip)."""
    return f"""() => {{
  const svg = document.querySelector({selector!r});
  if (!svg) return;
  const box = svg.viewBox.baseVal, scale = 2, canvas = document.createElement('canvas');
  canvas.width = box.width * scale; canvas.height = box.height * scale;
  const image = new Image();
  image.onload = () => {{
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    const link = document.createElement('a');
    link.download = {filename!r}; link.href = canvas.toDataURL('image/png'); link.click();
  }};
  image.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(new XMLSerializer().serializeToString(svg));
}}"""
