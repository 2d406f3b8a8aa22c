"""Line charts as inline SVG: training steps on a log-like axis labelled with the checkpoints the
curve has, values on a log axis with round ticks, visible points with tooltips. No plotting library.

An SVG scales its text with its width, so one drawing cannot be readable both on a 1280-px page
and on a phone: each chart is drawn twice, wide and narrow, and the page's CSS shows the one that
fits its container (PAGE_CSS: `.chart` container query). The PNG download takes the visible one and
adds a title: what was measured, on which model and text, and when.
"""

from __future__ import annotations

import datetime
import html
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

COLORS = ("#4f46e5", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#65a30d")
GRID = "#e5e7eb"
# Widths of a sans-serif font's digits and punctuation, in em, at most (Arial's digits are 0.56 em,
# DejaVu Sans's 0.64): enough to keep labels apart and inside the drawing without a browser to measure.
NARROW_CHARS, NARROW_WIDTH, CHAR_WIDTH = ",.:;'", 0.32, 0.65
TICK_GAP = 6  # the least space between two x-tick labels, in SVG units


@dataclass(frozen=True)
class Layout:
    """One drawing size, in the SVG's own units; text is ``font`` units tall."""

    name: str  # the CSS class that shows or hides it
    width: int
    height: int
    font: int


# Drawn 1:1.2 in the 1,150-px column of a 1280-px page (text ~15 px) and about 1:1 on a phone (~12 px).
WIDE = Layout("wide", 960, 340, 13)
NARROW = Layout("narrow", 360, 260, 12)
LAYOUTS = (WIDE, NARROW)


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[int, float]]  # (training step, value), value > 0
    errors: Mapping[int, float] = field(default_factory=dict)  # step -> standard error: drawn as +-1 bars
    dashed: bool = False  # a reference (e.g. EleutherAI's published numbers), drawn dashed without points
    color: int | None = None  # index into COLORS (default: the series' own position), to pair a reference with


def _x(step: int) -> float:
    return math.log10(step + 1)  # step 0 has a place on the axis; 1, 10, 100 ... spread evenly


def _round_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k between lo and hi; every 1..9 x 10^k when that gives fewer than two."""
    for multipliers in ((1, 2, 5), range(1, 10)):
        ticks = [m * 10 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in multipliers if lo <= m * 10 ** k <= hi]
        if len(ticks) > 8:
            ticks = [t for t in ticks if f"{t:g}".lstrip("0.").startswith("1")]
        if len(ticks) >= 2:
            return ticks
    return [lo, hi]


def _label(v: float) -> str:
    return f"{v:,.0f}" if v >= 1 or v == 0 else f"{v:g}"


def _text_width(text: str, font: int) -> float:
    return sum(NARROW_WIDTH if c in NARROW_CHARS else CHAR_WIDTH for c in text) * font


def _usable(value: float | None, log_y: bool) -> bool:
    return value is not None and math.isfinite(value) and (value > 0 or not log_y)


def step_ticks(steps: Sequence[int], px, font: int) -> list[int]:
    """The steps to label: the curve's own checkpoints (and 0, where the axis starts), as many as fit
    without overlapping; the last one always, since the eye reads the end of a curve first."""
    candidates = sorted({0, *steps})
    last = candidates[-1]

    def box(step: int) -> tuple[float, float]:
        half = _text_width(f"{step:,}", font) / 2
        return px(step) - half, px(step) + half

    kept = [last]
    for step in candidates[:-1]:
        lo, hi = box(step)
        if all(hi + TICK_GAP <= box(k)[0] or lo >= box(k)[1] + TICK_GAP for k in kept):
            kept.append(step)
    return sorted(kept)


def _svg(series: Sequence[Series], y_label: str, title: str, log_y: bool, layout: Layout, caption: str) -> str:
    W, H, font = layout.width, layout.height, layout.font
    pts_by_series = [sorted((st, v) for st, v in s.points if _usable(v, log_y)) for s in series]
    points = [p for pts in pts_by_series for p in pts]
    steps = sorted({p[0] for p in points})
    values = [p[1] for p in points]
    if log_y:
        y_lo, y_hi = math.log10(min(values)) - 0.05, math.log10(max(values)) + 0.05
        y_ticks = _round_ticks(10 ** y_lo, 10 ** y_hi)
    else:
        y_lo, y_hi = 0.0, max(1.0, max(values))
        y_ticks = [0, 0.25, 0.5, 0.75, 1.0]
    y_title = f"{y_label} (log scale)" if log_y else y_label
    # margins from what they hold: the rotated y title, the widest y label, half the last x label
    left = round(font * 1.6 + max(_text_width(_label(v), font) for v in y_ticks) + 8)
    right = round(max(12.0, _text_width(f"{steps[-1]:,}", font) / 2 + 4))
    top, bottom = 12, round(font * 2.6 + 12)
    x_hi = _x(max(steps[-1], 1))

    def px(step: int) -> float:
        return left + (W - left - right) * _x(step) / x_hi

    def py(value: float) -> float:
        v = math.log10(value) if log_y else value
        return top + (H - top - bottom) * (1 - (v - y_lo) / (y_hi - y_lo))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="line-chart {layout.name}" viewBox="0 0 {W} {H}" '
           f'role="img" aria-label="{html.escape(title or y_label)}" data-caption="{html.escape(caption)}" '
           f'data-font="{font}" style="width:100%;height:auto;font:{font}px sans-serif;background:#fff">']
    for step in step_ticks(steps, px, font):
        x = px(step)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{H - bottom}" stroke="{GRID}"/>'
                   f'<text class="x-tick" x="{x:.1f}" y="{H - bottom + font + 4}" text-anchor="middle">'
                   f'{step:,}</text>')
    for v in y_ticks:
        y = py(v)
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
                   f'<text class="y-tick" x="{left - 6}" y="{y + font / 3:.1f}" text-anchor="end">{_label(v)}</text>')
    mid_y = (top + H - bottom) / 2
    out.append(f'<text class="x-title" x="{(left + W - right) / 2:.1f}" y="{H - 6}" text-anchor="middle">'
               f'training step</text>'
               f'<text class="y-title" x="{font}" y="{mid_y:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 {font} {mid_y:.1f})">{html.escape(y_title)}</text>')
    for i, (s, pts) in enumerate(zip(series, pts_by_series, strict=True)):
        color = COLORS[(i if s.color is None else s.color) % len(COLORS)]
        if len(pts) > 1:
            path = " ".join(f"{px(st):.1f},{py(v):.1f}" for st, v in pts)
            dash = ' stroke-dasharray="6 4" class="reference"' if s.dashed else ""
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for st, v in pts:
            error = s.errors.get(st)
            if error and not s.dashed:  # +-1 standard error, clipped to what the axis shows
                hi, lo = v + error, v - error
                y_hi_px = py(min(hi, 10 ** y_hi if log_y else y_hi))
                y_lo_px = py(lo) if (lo > 0 or not log_y) else H - bottom
                out.append(f'<line class="error-bar" x1="{px(st):.1f}" x2="{px(st):.1f}" y1="{y_hi_px:.1f}" '
                           f'y2="{min(y_lo_px, H - bottom):.1f}" stroke="{color}" stroke-width="1.5" opacity="0.6"/>')
        for st, v in ([] if s.dashed else pts):
            out.append(f'<circle class="point" cx="{px(st):.1f}" cy="{py(v):.1f}" r="4" fill="{color}">'
                       f'<title>{html.escape(s.name)} · step {st:,}: {v:,.2f}</title></circle>')
    shown = [(i, s) for i, (s, pts) in enumerate(zip(series, pts_by_series, strict=True)) if pts]
    if len(shown) > 1:  # a series with no point (all its rows failed) is named under the chart, not here
        labels = [f'{"┄" if s.dashed else "●"} {s.name}' for _, s in shown]
        box_w = max(_text_width(label, font) for label in labels) + 8
        box_h = (font + 2) * len(labels) + 4
        drawn = [xy for pts in pts_by_series for xy in _dense([(px(st), py(v)) for st, v in pts])]
        x0, y0 = _legend_corner(drawn, box_w, box_h, left + 8, W - right - 8, top + 2, H - bottom - 4)
        for row, ((i, s), label) in enumerate(zip(shown, labels, strict=True)):
            color = COLORS[(i if s.color is None else s.color) % len(COLORS)]
            out.append(f'<text class="legend" x="{x0:.1f}" y="{y0 + font + (font + 2) * row:.1f}" fill="{color}">'
                       f'{html.escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def _dense(xys: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """A drawn line's points and eight more along each of its segments, in SVG units: what a legend must not
    cover."""
    out = list(xys)
    for (x0, y0), (x1, y1) in zip(xys, xys[1:], strict=False):
        out += [(x0 + (x1 - x0) * k / 9, y0 + (y1 - y0) * k / 9) for k in range(1, 9)]
    return out


def _legend_corner(drawn: Sequence[tuple[float, float]], w: float, h: float, x_lo: float, x_hi: float,
                   y_lo: float, y_hi: float) -> tuple[float, float]:
    """The top-left of the legend: the corner of the plot where its box covers the fewest drawn points (the
    curves start high at step0, so the top-left corner is often the worst); top-right first on a tie."""
    corners = [(x_hi - w, y_lo), (x_lo, y_lo), (x_hi - w, y_hi - h), (x_lo, y_hi - h)]

    def covered(corner: tuple[float, float]) -> int:
        x0, y0 = corner
        return sum(1 for x, y in drawn if x0 - 6 <= x <= x0 + w + 6 and y0 - 6 <= y <= y0 + h + 6)

    return min(corners, key=covered)


def chart_caption(title: str, models: Sequence[str], text: str, when: datetime.date | None = None,
                  excerpt: int = 80) -> str:
    """The PNG's title, two lines: 'Perplexity over training · pythia-160m · 2025-01-31' and the text's start."""
    flat = " ".join(text.split())
    quoted = f"“{flat[:excerpt].rstrip()}…”" if len(flat) > excerpt else f"“{flat}”" if flat else ""
    head = " · ".join(x for x in (title, ", ".join(models), (when or datetime.date.today()).isoformat()) if x)
    return f"{head}\n{quoted}" if quoted else head


def line_chart(series: Sequence[Series], y_label: str, title: str = "", log_y: bool = True,
               caption: str = "") -> str:
    """The chart of ``series`` against training step (log y, or a 0-1 linear y for fractions), drawn
    wide and narrow; ``caption`` titles the PNG download (default: ``title``)."""
    if not any(_usable(v, log_y) for s in series for _, v in s.points):
        return '<div class="chart-empty">Nothing to plot yet.</div>'
    drawings = "".join(_svg(series, y_label, title, log_y, layout, caption or title) for layout in LAYOUTS)
    empty = [s.name for s in series if not any(_usable(v, log_y) for _, v in s.points)]
    note = (f'<div class="chart-note">No point to draw for {html.escape(", ".join(empty))}: see the table for '
            "why.</div>" if empty else "")
    return f'<div class="chart">{drawings}</div>{note}'


def png_download_js(selector: str, filename: str) -> str:
    """Client-side: draw the visible SVG under ``selector`` on a canvas, under a title band made of
    its ``data-caption``, and save it as a PNG (no server round trip)."""
    return f"""() => {{
  const svg = [...document.querySelectorAll({selector!r})].find(s => s.getBoundingClientRect().width > 0);
  if (!svg) return;
  const box = svg.viewBox.baseVal, scale = 2, font = +(svg.dataset.font || 12);
  // the title's lines, 1.5 font sizes apart, with room above and below for ascenders and descenders
  const lines = (svg.dataset.caption || '').split('\\n').filter(Boolean);
  const band = lines.length ? Math.round((lines.length * 1.5 + 0.4) * font) : 0;
  const canvas = document.createElement('canvas');
  canvas.width = box.width * scale; canvas.height = (box.height + band) * scale;
  const image = new Image();
  image.onload = () => {{
    const ctx = canvas.getContext('2d');
    ctx.scale(scale, scale);
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, box.width, box.height + band);
    ctx.fillStyle = '#111'; ctx.textBaseline = 'middle';
    lines.forEach((line, i) => {{
      ctx.font = `${{i ? '' : 'bold '}}${{font}}px sans-serif`;
      let text = line;  // shortened until it fits the width, never clipped mid-glyph
      while (text.length > 1 && ctx.measureText(text).width > box.width - font) text = text.slice(0, -2) + '…';
      ctx.fillText(text, font / 2, (0.2 + (i + 0.5) * 1.5) * font);
    }});
    ctx.drawImage(image, 0, band, box.width, box.height);
    const link = document.createElement('a');
    link.download = {filename!r}; link.href = canvas.toDataURL('image/png'); link.click();
  }};
  image.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(new XMLSerializer().serializeToString(svg));
}}"""
