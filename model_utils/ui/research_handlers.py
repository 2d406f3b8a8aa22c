"""What the research tabs (Score, learning curve, memorization, Compare) do when a visitor acts: a class over the
service, beside the Chat and Completion tabs' Handlers, so the fast test tier can drive them without a server."""

from __future__ import annotations

import math
from typing import Iterator

import gradio as gr

from ..service import CompareRequest, MemorizationRequest, PythiaService, ScoreAcrossRequest, ScoreRequest
from ..service.research import reasons_said_once
from .charts import Series, chart_caption, line_chart
from .common import Runs, gradio_progress, session_of
from .controls import ControlValues
from .exports import csv_file
from .handlers import notice, with_notice
from .heatmap import learned_heatmap, token_heatmap
from .wording import column_metrics, plural

CURVE, MEMORIZATION, COMPARE = "curve", "memorization", "compare"  # sections whose requests Stop reaches
NO_PROGRESS = gr.Progress()


def _fmt(value) -> str:
    """Four significant figures or so: 1,047 · 33.28 · 1.498 (the CSV keeps every digit)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def score_markdown(result) -> str:
    text = (f"**{plural(len(result.tokens), 'token')}** · log-likelihood {result.log_likelihood:,.2f} · "
            f"perplexity **{_fmt(result.perplexity)}** · bits per byte **{_fmt(result.bits_per_byte)}**")
    return text + (f"\n\nℹ️ {result.note}" if result.note else "")


CURVE_HEADER = ["checkpoint", "perplexity", "bits/byte", "status"]  # four columns: readable on a phone
# Column widths are the browser's (PAGE_CSS lets Gradio measure them from the content): fixed
# percentages broke header words on a phone. A default curve's table (nine checkpoints; on a phone each
# memorization row wraps to several lines) fits whole, with no inner scroll hiding its last rows.
TABLE_MAX_HEIGHT = 4000
CSV_HEADER = ["model", "revision", "step", "status", "perplexity", "bits_per_byte", "error"]


def _checkpoint(row, several: bool) -> str:
    name = row.revision if row.revision != "main" else f"main (step{row.step})"
    return f"{row.model} {name}" if several else name


def _status(row, reason: str | None) -> str:
    """'ok', or why the row failed: the reason where it is first given, 'as above' where it repeats."""
    if row.status == "ok":
        return "ok"
    return f"{row.status}: {reason}" if reason else f"{row.status} (as above)"


def _series(rows, value) -> list[Series]:
    """One line per model, in the order the rows name them."""
    models = list(dict.fromkeys(r.model for r in rows))
    return [Series(m, [(r.step, value(r)) for r in rows if r.model == m and r.status == "ok"]) for m in models]


def curve_outputs(points, text: str = ""):
    """The chart, the table, its CSV and (one model) the when-was-each-token-learned grid of a learning curve
    (``text``, the scored text, titles the chart's PNG)."""
    several = len({p.model for p in points}) > 1
    series = _series(points, lambda p: p.perplexity)
    title = "Perplexity over training"
    chart = line_chart(series, "perplexity", title, caption=chart_caption(title, [s.name for s in series], text))
    table = [[_checkpoint(p, several), _fmt(p.perplexity), _fmt(p.bits_per_byte), _status(p, reason)]
             for p, reason in zip(points, reasons_said_once(points), strict=True)]
    raw = [[p.model, p.revision, p.step, p.status, p.perplexity, p.bits_per_byte, p.error or ""] for p in points]
    return chart, table, csv_file("learning-curve", CSV_HEADER, raw), "" if several else learned_heatmap(points)


# short headers, each one word or breakable between words: five columns fit a phone
MEMO_HEADER = ["checkpoint", "exact", "matched", "share", "the model wrote"]
MEMO_CSV_HEADER = ["model", "revision", "step", "status", "exact", "matched_prefix", "match_fraction",
                   "continuation", "error"]


def memorization_outputs(rows, text: str = ""):
    several = len({r.model for r in rows}) > 1
    series = _series(rows, lambda r: r.match_fraction)
    title = "Memorization over training"
    chart = line_chart(series, "share of tokens reproduced", title, log_y=False,
                       caption=chart_caption(title, [s.name for s in series], text))
    table = [[_checkpoint(r, several), "yes" if r.exact else "no", r.matched_prefix, _fmt(r.match_fraction),
              r.continuation] if r.status == "ok"
             else [_checkpoint(r, several), "–", "–", "–", _status(r, reason)]
             for r, reason in zip(rows, reasons_said_once(rows), strict=True)]
    raw = [[r.model, r.revision, r.step, r.status, r.exact, r.matched_prefix, r.match_fraction, r.continuation,
            r.error or ""] for r in rows]
    return chart, table, csv_file("memorization", MEMO_CSV_HEADER, raw)


def _models(model_name: str, extra: list[str] | None) -> list[str] | None:
    """The selected model and the extra ones of a scaling curve (None: the selected model alone)."""
    return list(dict.fromkeys([model_name, *extra])) if extra else None


class ResearchHandlers:
    """The research tabs' handlers; ``runs`` (shared with the Chat and Completion handlers) holds the requests that
    the tabs' Stop buttons act on. (Gradio names a page event after its function, even a private one: a handler
    named like an API endpoint, "score", would push the endpoint to "score_1".)"""

    def __init__(self, service: PythiaService, runs: Runs):
        self.service = service
        self.runs = runs

    @with_notice(outputs=2, cleared=("", ""))  # a failed score leaves no result of an earlier text beside it
    def score_clicked(self, text: str, model_name: str, rev: str, progress=NO_PROGRESS):
        """Outputs: (summary, heatmap, notice)."""
        request = self.service.parse(ScoreRequest, text=text, model=model_name, revision=rev)
        result = self.service.score(request, progress=gradio_progress(progress, model_name, rev))
        return score_markdown(result), token_heatmap(result.tokens)

    @with_notice(outputs=4, cleared=("", [], gr.update(visible=False), ""))
    def curve_clicked(self, ticket: str, text: str, model_name: str, revisions, extra, request: gr.Request = None,
              progress=NO_PROGRESS):
        """Outputs: (chart, table, CSV download, learned-token grid, notice)."""
        with self.runs.running(session_of(request), CURVE, ticket) as run:
            if run is None:
                return None  # stopped before it started: the page already says so
            parsed = self.service.parse(ScoreAcrossRequest, text=text, model=model_name,
                                        models=_models(model_name, extra), revisions=revisions)
            points = self.service.score_across(parsed, progress=gradio_progress(progress), cancel=run.stop)
        chart, table, csv_path, grid = curve_outputs(points, text)
        return chart, table, gr.update(value=csv_path, visible=True), grid

    @with_notice(outputs=3, cleared=("", [], gr.update(visible=False)))
    def memorization_clicked(self, ticket: str, text: str, model_name: str, revisions, extra, prefix_tokens,
                     continuation_tokens, request: gr.Request = None, progress=NO_PROGRESS):
        """Outputs: (chart, table, CSV download, notice)."""
        with self.runs.running(session_of(request), MEMORIZATION, ticket) as run:
            if run is None:
                return None  # stopped before it started: the page already says so
            parsed = self.service.parse(MemorizationRequest, text=text, model=model_name,
                                        models=_models(model_name, extra), revisions=revisions,
                                        prefix_tokens=prefix_tokens, continuation_tokens=continuation_tokens)
            rows = self.service.memorization(parsed, progress=gradio_progress(progress), cancel=run.stop)
        chart, table, csv_path = memorization_outputs(rows, text)
        return chart, table, gr.update(value=csv_path, visible=True)

    def compare_clicked(self, ticket: str, prompt: str, m0, r0, m1, r1, m2, r2, controls: ControlValues,
                request: gr.Request = None) -> Iterator[list]:
        """The three columns as they grow. Outputs: (reply x3, metrics x3, notice)."""
        pairs = [[m0, r0], [m1, r1], [m2, r2]]
        with self.runs.running(session_of(request), COMPARE, ticket) as run:
            if run is None:  # stopped before it started: the page already says so
                yield [gr.update()] * (2 * len(pairs) + 1)
                return
            try:
                parsed = self.service.parse(CompareRequest, prompt=prompt, pairs=pairs, **controls.kwargs())
                for columns in self.service.compare(parsed, cancel=run.stop):
                    yield [c.text if c.error is None else f"⚠️ {c.error}" for c in columns] + \
                          [f"<small>{c.model} @ {c.revision} · {column_metrics(c)}</small>" if column_metrics(c)
                           else "" for c in columns] + [""]
            except Exception as exc:  # a refused request: the columns stay, the reason stays readable
                yield [gr.update()] * (2 * len(pairs)) + [notice(exc)]
