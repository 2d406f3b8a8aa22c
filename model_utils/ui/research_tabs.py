"""The research tabs' layout: score a text (heatmap, learning curve across checkpoints, memorization) and
side-by-side comparison. Built inside build_demo's Tabs; what a click does is research_handlers.py's."""

from __future__ import annotations

import gradio as gr

from ..service import MemorizationRequest, PythiaService
from ..service.requests import MAX_COMPARE, MAX_MODELS, MAX_REVISIONS
from .charts import png_download_js
from .common import declared_slider
from .controls import with_controls
from .handlers import Handlers
from .research_handlers import (
    COMPARE,
    CURVE,
    CURVE_HEADER,
    MEMO_HEADER,
    MEMORIZATION,
    TABLE_MAX_HEIGHT,
    ResearchHandlers,
)
from .stopping import queued_with_stop

SCORE_EXAMPLE = ("The Pile is a large, diverse, open source language modelling data set that consists of many "
                 "smaller datasets combined together.")


def build_research_tabs(service: PythiaService, h: Handlers, model, revision, controls, concurrency: int) -> None:
    """Add the Score and Compare tabs (call inside a gr.Tabs block); their handlers are ResearchHandlers'."""
    research = ResearchHandlers(service, h.runs)
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

        # the curve offers only the selected model's checkpoints
        model.change(lambda name: gr.update(choices=h.revisions(name), value=h.default_curve(name)), model,
                     curve_revisions, queue=False, api_visibility="private")
        gr.on([model.change, revision.change], lambda: ("",) * 3, None, [score_notice, curve_notice, memo_notice],
              queue=False, api_visibility="private")
        # A visitor who edits the text and clicks again while a score runs (the first use converts the
        # model) gets the newest text scored next; Gradio's default would drop that click silently.
        score_btn.click(research.score_clicked, [score_text, model, revision],
                        [score_summary, score_heat, score_notice],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private",
                        trigger_mode="always_last")
        curve_png.click(None, js=png_download_js("#curve-plot svg", "learning-curve.png"))
        memo_png.click(None, js=png_download_js("#memo-plot svg", "memorization.png"))
        queued = dict(concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        # one Stop for both sweeps: it stops whichever runs or waits
        queued_with_stop(h.runs, MEMORIZATION, [memo_btn.click], research.memorization_clicked,
                         [score_text, model, curve_revisions, curve_models, prefix, continuation],
                         [memo_plot, memo_table, memo_csv, memo_notice], notice=memo_notice, stopped_line=memo_notice,
                         stop_buttons=[sweep_stop], **queued)
        queued_with_stop(h.runs, CURVE, [curve_btn.click], research.curve_clicked,
                         [score_text, model, curve_revisions, curve_models],
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
                with gr.Column(min_width=280):  # three side by side from a 900 px wide page
                    m = gr.Dropdown(service.model_names(), value=service.default_model,
                                    label=f"Model {i + 1}", elem_id=f"compare-model-{i}")
                    r = gr.Dropdown(h.revisions(service.default_model), value=compare_defaults[i],
                                    label="Checkpoint", elem_id=f"compare-revision-{i}")
                    # one height for the three, whatever each wrote (a longer reply scrolls in its box)
                    out = gr.Textbox(label="Reply", lines=8, max_lines=8, interactive=False,
                                     elem_id=f"compare-output-{i}")
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

        queued_with_stop(h.runs, COMPARE, [compare_btn.click], with_controls(research.compare_clicked),
                         [compare_prompt, *pickers, *controls],
                         outputs + metrics + [compare_notice], notice=compare_notice, stopped_line=compare_notice,
                         stop_buttons=[compare_stop], concurrency_limit=concurrency, concurrency_id="generate",
                         api_visibility="private")
