"""The research tabs: score a text (heatmap, learning curve across checkpoints) and
side-by-side comparison. Built inside build_demo's Tabs; the logic lives in the service."""

from __future__ import annotations

import math

import gradio as gr

from ..service import CompareRequest, MemorizationRequest, PythiaService, ScoreAcrossRequest, ScoreRequest
from ..service.requests import MAX_COMPARE, MAX_MODELS, MAX_REVISIONS
from ..service.research import reasons_said_once
from .charts import Series, chart_caption, line_chart, png_download_js
from .common import declared_slider, gradio_progress, session_of
from .controls import ControlValues, with_controls
from .exports import csv_file
from .handlers import Handlers, notice, with_notice
from .heatmap import learned_heatmap, token_heatmap
from .stopping import queued_with_stop
from .wording import column_metrics, plural

CURVE, MEMORIZATION, COMPARE = "curve", "memorization", "compare"  # sections whose requests Stop reaches
SCORE_EXAMPLE = ("The Pile is a large, diverse, open source language modelling data set that consists of many "
                 "smaller datasets combined together.")


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


def build_research_tabs(service: PythiaService, h: Handlers, model, revision, controls, concurrency: int) -> None:
    """Add the Score and Compare tabs (call inside a gr.Tabs block)."""
    with gr.Tab("Score", id="score"):
        gr.Markdown("Paste text to see how likely the selected model finds each token (red: surprising, "
                    "green: expected), its perplexity and bits per byte — and how that changes over training.")
        score_text = gr.Textbox(label="Text", lines=5, value=h.example_text(service.default_model, SCORE_EXAMPLE),
                                elem_id="score-text")
        score_btn = gr.Button("Score", variant="primary", elem_id="score-button")
        score_notice = gr.Markdown(elem_id="score-notice", elem_classes="notice")
        score_summary = gr.Markdown(elem_id="score-summary")
        score_heat = gr.HTML(elem_id="score-heatmap")
        with gr.Accordion("Across training: perplexity at each checkpoint", open=True):
            curve_revisions = gr.Dropdown(h.revisions(service.default_model),
                                          value=h.default_curve(service.default_model), multiselect=True,
                                          max_choices=MAX_REVISIONS, label=f"Checkpoints (up to {MAX_REVISIONS})",
                                          elem_id="curve-revisions",
                                          info="Checkpoints already on disk are scored first; the others are "
                                               "downloaded and converted on first use.")
            curve_models = gr.Dropdown(service.model_names(), value=[], multiselect=True, elem_id="curve-models",
                                       max_choices=MAX_MODELS - 1,
                                       label=f"Scaling curves: also plot these models (up to {MAX_MODELS - 1})",
                                       info="All Pythia sizes saw the same data in the same order: compare them "
                                            "step for step. Leave empty for the selected model alone.")
            with gr.Row():
                curve_btn = gr.Button("Plot learning curve", elem_id="curve-button")
                sweep_stop = gr.Button("Stop", variant="stop", elem_id="sweep-stop")
            curve_notice = gr.Markdown(elem_id="curve-notice", elem_classes="notice")
            curve_plot = gr.HTML(elem_id="curve-plot")
            with gr.Row():
                curve_png = gr.Button("Download the chart (PNG)", size="sm", elem_id="curve-png")
                curve_csv = gr.DownloadButton("Download the table (CSV)", visible=False, elem_id="curve-csv", size="sm")
            curve_table = gr.Dataframe(headers=CURVE_HEADER, elem_id="curve-table", interactive=False, wrap=True,
                                       max_height=TABLE_MAX_HEIGHT)
            learned = gr.HTML(elem_id="learned-heatmap")
        with gr.Accordion("Memorization: does the model reproduce this text?", open=False):
            gr.Markdown("Biderman et al. (2023): give the model the text's first tokens, let it continue greedily, "
                        "and count how many of the text's next tokens it reproduces, at each checkpoint of the "
                        "curve above (and each model). Training text is memorized more as training goes on.")
            with gr.Row():
                prefix, continuation = (declared_slider(MemorizationRequest, name, elem_id=elem_id)
                                        for name, elem_id in (("prefix_tokens", "memo-prefix"),
                                                              ("continuation_tokens", "memo-continuation")))
            memo_btn = gr.Button("Test memorization", elem_id="memo-button")
            memo_notice = gr.Markdown(elem_id="memo-notice", elem_classes="notice")
            memo_plot = gr.HTML(elem_id="memo-plot")
            with gr.Row():
                memo_png = gr.Button("Download the chart (PNG)", size="sm", elem_id="memo-png")
                memo_csv = gr.DownloadButton("Download the table (CSV)", visible=False, elem_id="memo-csv", size="sm")
            memo_table = gr.Dataframe(headers=MEMO_HEADER, elem_id="memo-table", interactive=False, wrap=True,
                                      max_height=TABLE_MAX_HEIGHT)

        @with_notice(outputs=2, cleared=("", ""))  # a failed score leaves no result of an earlier text beside it
        def do_score(text, model_name, rev, progress=gr.Progress()):
            request = service.parse(ScoreRequest, text=text, model=model_name, revision=rev)
            result = service.score(request, progress=gradio_progress(progress, model_name, rev))
            return score_markdown(result), token_heatmap(result.tokens)

        def models_of(model_name, extra):
            return list(dict.fromkeys([model_name, *extra])) if extra else None

        @with_notice(outputs=4, cleared=("", [], gr.update(visible=False), ""))
        def do_curve(ticket, text, model_name, revisions, extra, request: gr.Request, progress=gr.Progress()):
            with h.runs.running(session_of(request), CURVE, ticket) as run:
                if run is None:
                    return None  # stopped before it started: the page already says so
                parsed = service.parse(ScoreAcrossRequest, text=text, model=model_name,
                                       models=models_of(model_name, extra), revisions=revisions)
                points = service.score_across(parsed, progress=gradio_progress(progress), cancel=run.stop)
            chart, table, csv_path, grid = curve_outputs(points, text)
            return chart, table, gr.update(value=csv_path, visible=True), grid

        @with_notice(outputs=3, cleared=("", [], gr.update(visible=False)))
        def do_memorization(ticket, text, model_name, revisions, extra, prefix_tokens, continuation_tokens,
                            request: gr.Request, progress=gr.Progress()):
            with h.runs.running(session_of(request), MEMORIZATION, ticket) as run:
                if run is None:
                    return None  # stopped before it started: the page already says so
                parsed = service.parse(MemorizationRequest, text=text, model=model_name,
                                       models=models_of(model_name, extra), revisions=revisions,
                                       prefix_tokens=prefix_tokens, continuation_tokens=continuation_tokens)
                rows = service.memorization(parsed, progress=gradio_progress(progress), cancel=run.stop)
            chart, table, csv_path = memorization_outputs(rows, text)
            return chart, table, gr.update(value=csv_path, visible=True)

        # the curve offers only the selected model's checkpoints
        model.change(lambda name: gr.update(choices=h.revisions(name), value=h.default_curve(name)), model,
                     curve_revisions, queue=False, api_visibility="private")
        gr.on([model.change, revision.change], lambda: ("",) * 3, None, [score_notice, curve_notice, memo_notice],
              queue=False, api_visibility="private")
        # A visitor who edits the text and clicks again while a score runs (the first use converts the
        # model) gets the newest text scored next; Gradio's default would drop that click silently.
        score_btn.click(do_score, [score_text, model, revision], [score_summary, score_heat, score_notice],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private",
                        trigger_mode="always_last")
        curve_png.click(None, js=png_download_js("#curve-plot svg", "learning-curve.png"))
        memo_png.click(None, js=png_download_js("#memo-plot svg", "memorization.png"))
        queued = dict(concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        # one Stop for both sweeps: it stops whichever runs or waits
        queued_with_stop(h.runs, MEMORIZATION, [memo_btn.click], do_memorization,
                         [score_text, model, curve_revisions, curve_models, prefix, continuation],
                         [memo_plot, memo_table, memo_csv, memo_notice], notice=memo_notice, stopped_line=memo_notice,
                         stop_buttons=[sweep_stop], **queued)
        queued_with_stop(h.runs, CURVE, [curve_btn.click], do_curve, [score_text, model, curve_revisions, curve_models],
                         [curve_plot, curve_table, curve_csv, learned, curve_notice], notice=curve_notice,
                         stopped_line=curve_notice, stop_buttons=[sweep_stop], **queued)

    with gr.Tab("Compare", id="compare"):
        # three columns read side by side at 1280 px and stack on a phone; the API's fourth is said, not offered
        gr.Markdown(f"One prompt, three models or checkpoints, replies side by side with the same settings "
                    f"(the `/compare` API takes up to {MAX_COMPARE}). Greedy decoding gives a deterministic "
                    "comparison; sampled replies differ run to run.", elem_id="compare-intro")
        compare_prompt = gr.Textbox(label="Prompt", lines=3, value="The meaning of life is", elem_id="compare-prompt")
        pickers, outputs, metrics = [], [], []
        compare_defaults = h.compare_defaults(service.default_model)
        with gr.Row():
            for i in range(3):
                with gr.Column():
                    m = gr.Dropdown(service.model_names(), value=service.default_model,
                                    label=f"Model {i + 1}", elem_id=f"compare-model-{i}")
                    r = gr.Dropdown(h.revisions(service.default_model), value=compare_defaults[i],
                                    label="Checkpoint", elem_id=f"compare-revision-{i}")
                    out = gr.Textbox(label="Reply", lines=8, interactive=False, elem_id=f"compare-output-{i}")
                    met = gr.Markdown(elem_id=f"compare-metrics-{i}")
                    pickers += [m, r]
                    # a column's checkpoint picker offers only what its model has
                    m.change(lambda name, rev: h.pick_model(name, rev)[0], [m, r], r, queue=False,
                             api_visibility="private")
                    outputs.append(out)
                    metrics.append(met)
        with gr.Row():
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
            compare_stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
        compare_notice = gr.Markdown(elem_id="compare-notice", elem_classes="notice")

        def do_compare(ticket, prompt, m0, r0, m1, r1, m2, r2, controls: ControlValues, request: gr.Request):
            pairs = [[m0, r0], [m1, r1], [m2, r2]]
            with h.runs.running(session_of(request), COMPARE, ticket) as run:
                if run is None:  # stopped before it started: the page already says so
                    yield [gr.update()] * (2 * len(pairs) + 1)
                    return
                try:
                    parsed = service.parse(CompareRequest, prompt=prompt, pairs=pairs, **controls.kwargs())
                    for columns in service.compare(parsed, cancel=run.stop):
                        yield [c.text if c.error is None else f"⚠️ {c.error}" for c in columns] + \
                              [f"<small>{c.model} @ {c.revision} · {column_metrics(c)}</small>" if column_metrics(c)
                               else "" for c in columns] + [""]
                except Exception as exc:  # a refused request: the columns stay, the reason stays readable
                    yield [gr.update()] * (2 * len(pairs)) + [notice(exc)]

        queued_with_stop(h.runs, COMPARE, [compare_btn.click], with_controls(do_compare),
                         [compare_prompt, *pickers, *controls],
                         outputs + metrics + [compare_notice], notice=compare_notice, stopped_line=compare_notice,
                         stop_buttons=[compare_stop], concurrency_limit=concurrency, concurrency_id="generate",
                         api_visibility="private")
