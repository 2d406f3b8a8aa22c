"""The charts and the learning grid, as the page builds them (fast, no browser).

What a browser shows of them (text positions, contrast, the PNG) is in test_page_polish.py."""

import datetime
import math
import re

from model_utils.engine.tokens import Alternative
from model_utils.service import CurvePoint, ScoredToken, TokenText
from model_utils.ui.charts import LAYOUTS, NARROW, WIDE, Series, chart_caption, line_chart
from model_utils.ui.heatmap import alternatives_table, learned_heatmap, short_probability
from model_utils.ui.research_handlers import curve_outputs

DEMO_STEPS = (0, 1, 16, 64, 256, 512, 1000, 2000, 3000)  # the demo model's checkpoints
PYTHIA_CURVE = (0, 16, 128, 512, 1000, 4000, 16000, 64000, 143000)  # Pythia's default learning curve


def layouts(chart: str) -> list[str]:
    """The names of the chart's drawings."""
    return re.findall(r'<svg [^>]*class="line-chart (\w+)"', chart)


def drawing(chart: str, layout) -> str:
    return re.search(rf'<svg [^>]*class="line-chart {layout.name}".*?</svg>', chart, re.S).group(0)


def x_ticks(svg: str) -> list[str]:
    return re.findall(r'class="x-tick"[^>]*>([^<]*)<', svg)


def curve(steps, values) -> list[Series]:
    return [Series("demo", list(zip(steps, values, strict=True)))]


def test_every_chart_comes_wide_for_a_page_and_narrow_for_a_phone():
    chart = line_chart(curve(DEMO_STEPS, [1000 / (1 + s) ** 0.4 for s in DEMO_STEPS]), "perplexity")
    assert layouts(chart) == ["wide", "narrow"]
    for layout in LAYOUTS:
        svg = drawing(chart, layout)
        assert f'viewBox="0 0 {layout.width} {layout.height}"' in svg
        assert len(re.findall(r"<circle", svg)) == len(DEMO_STEPS)  # every checkpoint, in each drawing
    # the narrow one is for a ~340-px phone column: drawn about 1:1 there, its text stays ~12 px
    assert NARROW.width <= 400 and NARROW.font >= 12 and WIDE.width >= 900


def test_step_ticks_sit_on_the_curves_own_checkpoints_and_the_last_one_is_labelled():
    for steps in (DEMO_STEPS, PYTHIA_CURVE):
        chart = line_chart(curve(steps, [10.0 + i for i in range(len(steps))]), "perplexity")
        for layout in LAYOUTS:
            ticks = x_ticks(drawing(chart, layout))
            assert set(ticks) <= {f"{s:,}" for s in steps}, ticks  # no 128 on a curve without step128
            assert ticks[0] == "0" and ticks[-1] == f"{steps[-1]:,}"
            assert len(ticks) >= 5, (layout.name, ticks)
    wide = x_ticks(drawing(line_chart(curve(DEMO_STEPS, [10.0] * 9), "perplexity"), WIDE))
    assert {"64", "256", "1,000", "2,000"} <= set(wide), wide


def test_margins_make_room_for_the_labels_they_hold():
    """The last x label is centred on the right end of the axis: the margin holds its half. The y
    title sits left of the widest y label, however wide the perplexities make it."""
    small = drawing(line_chart(curve(DEMO_STEPS, [12.0 + s / 1000 for s in DEMO_STEPS]), "perplexity"), WIDE)
    large = drawing(line_chart(curve(DEMO_STEPS, [80000.0 / (1 + s) for s in DEMO_STEPS]), "perplexity"), WIDE)

    def plot_left(svg):  # where the horizontal grid lines start (y1 == y2)
        return float(re.search(r'<line x1="([\d.]+)" x2="[\d.]+" y1="([\d.]+)" y2="\2"', svg).group(1))

    assert "10,000" in large and plot_left(large) > plot_left(small) + 15
    last = max(float(x) for x in re.findall(r'class="x-tick" x="([\d.]+)"', small))
    assert WIDE.width - last >= len("3,000") * 0.55 * WIDE.font / 2  # Arial's digits: 0.56 em


def test_a_constant_curve_still_gets_two_value_ticks():
    svg = drawing(line_chart(curve(DEMO_STEPS, [14.4] * 9), "perplexity"), WIDE)
    assert len(re.findall(r'class="y-tick"', svg)) >= 2


def test_the_png_caption_names_the_model_the_text_and_the_day():
    caption = chart_caption("Perplexity over training", ["pythia-160m"], "The Pile is a large, diverse, open " * 5,
                            when=datetime.date(2025, 1, 31))
    head, text = caption.split("\n")
    assert head == "Perplexity over training · pythia-160m · 2025-01-31"
    assert text.startswith("“The Pile is a large") and text.endswith("…”") and len(text) < 90
    chart = line_chart(curve(DEMO_STEPS, [10.0] * 9), "perplexity", caption=caption)
    assert chart.count('data-caption="Perplexity over training · pythia-160m · 2025-01-31\n“The Pile') == 2


def token(text: str, token_id: int, logprob: float) -> ScoredToken:
    return ScoredToken(token_id, TokenText(text, text.encode()), logprob)


def points(probabilities_by_revision: dict[str, list[float]]) -> list[CurvePoint]:
    return [CurvePoint("demo", rev, step, "ok", perplexity=10.0, bits_per_byte=1.0,
                       tokens=tuple(token(f"t{i}", i, math.log(p)) for i, p in enumerate(probs)))
            for step, (rev, probs) in enumerate(probabilities_by_revision.items())]


def cells(grid: str) -> list[tuple[str, str]]:
    """(shown text, tooltip) of every cell."""
    return re.findall(r'<td [^>]*title="([^"]*)"[^>]*>([^<]*)</td>', grid)


def test_the_learning_grid_tells_small_probabilities_apart():
    """Two decimals printed 0.00 for everything below 0.005, in cells of different colours."""
    probs = [0.004, 0.0004, 4e-5, 4e-9, 0.0051, 0.02, 0.49, 0.999]
    grid = learned_heatmap(points({"step0": probs, "main": probs}))
    shown = [text for _, text in cells(grid)][:len(probs)]
    assert "0.00" not in shown
    assert len(set(shown)) == len(probs), shown  # different colours, different text
    for p, text in zip(probs, shown, strict=True):
        value = float(text)
        assert abs(value - p) <= 0.005 if p >= 0.01 else 0.5 * p <= value <= 1.5 * p, (p, text)
    assert short_probability(0.0) == "0"


def test_the_learning_grid_says_how_many_tokens_it_shows_and_how_to_see_the_rest():
    long = learned_heatmap(points({"main": [0.5] * 100}), max_tokens=48)
    assert "The first 48 of the text's 100 tokens" in long and "paste that part of the text" in long
    assert len(cells(long)) == 48
    short = learned_heatmap(points({"main": [0.5] * 12}), max_tokens=48)
    assert "All 12 tokens" in short


def test_pastel_cells_carry_their_own_dark_text():
    """In dark mode the page's text is light: on a pastel cell it must not be inherited."""
    grid = learned_heatmap(points({"main": [0.5, 1e-5]}))
    assert all("color:#1f2937" in style for style in re.findall(r'<td style="([^"]*)"', grid))
    chart, *_ = curve_outputs(points({"main": [0.5, 1e-5]}), "Some text")
    assert "Some text" in chart


def test_the_alternatives_table_writes_a_chosen_token_as_it_writes_its_alternatives():
    alternatives = tuple(Alternative(i, TokenText(text, text.encode()), math.log(p))
                         for i, (text, p) in enumerate(((" P", 0.468), (" the", 0.2098), (",", 0.031), ("x", 0.004))))
    chosen = ScoredToken(262, TokenText(" the", b" the"), math.log(0.2098), alternatives)
    [[position, token, probability, alternatives]] = alternatives_table([chosen])
    assert (position, token, probability) == (0, "' the'", "0.21")  # the leading space shows
    assert alternatives == "' P' 0.47, ' the' 0.21, ',' 0.03, 'x' 4e-3"  # one precision, as the heatmap writes them


def test_the_legend_covers_no_point_and_leaves_out_series_with_none():
    """Learning curves start highest at step0 (top left): the legend goes where no line is, and a model whose rows
    all failed is named under the chart, not in the legend."""
    steps = (0, 16, 256, 1000, 143000)
    falling = [Series(f"pythia-{n}", [(st, 5000 / (1 + k) ** (1 + i)) for k, st in enumerate(steps)])
               for i, n in enumerate(("70m", "160m", "410m"))]
    failed = Series("pythia-12b", [(st, float("nan")) for st in steps])
    html_out = line_chart([*falling, failed], "perplexity", "t")
    assert "No point to draw for pythia-12b" in html_out
    for svg in re.findall(r"<svg.*?</svg>", html_out, re.S):
        labels = re.findall(r'<text class="legend" x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>', svg)
        assert [name for *_, name in labels] == ["● pythia-70m", "● pythia-160m", "● pythia-410m"]
        font = int(re.search(r'data-font="(\d+)"', svg).group(1))
        x0, y_first, y_last = float(labels[0][0]), float(labels[0][1]), float(labels[-1][1])
        width = max(len(name) for *_, name in labels) * 0.65 * font
        circles = re.findall(r'<circle class="point" cx="([\d.]+)" cy="([\d.]+)"', svg)
        points = [(float(x), float(y)) for x, y in circles]
        assert not [p for p in points if x0 <= p[0] <= x0 + width and y_first - font <= p[1] <= y_last + 2], \
            "the legend covers a point"
