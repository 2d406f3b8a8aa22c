"""The research tabs: score a text (heatmap, learning curve across checkpoints) and
side-by-side comparison. Built inside build_demo's Tabs; the logic lives in the service."""

from __future__ import annotations

import math
import gradio as gr

from ..service import PythiaService
from .common import gradio_progress, guarded, guarded_call
from .handlers import Handlers, sampling_kwargs
from .heatmap import token_heatmap
from .charts import Series, line_chart
from .exports import csv_file
from .wording import column_metrics

SCORE_EXAMPLE = ("The Pile is a large, diverse, open source language modelling data set that consists of many "
                 "smaller datasets combined together.")


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.3f}"


def score_markdown(result) -> str:
    text = (f"**{len(result.tokens)} tokens** · log-likelihood {result.log_likelihood:,.2f} · "
            f"perplexity **{_fmt(result.perplexity)}** · bits per byte **{_fmt(result.bits_per_byte)}**")
    return text + (f"\n\nℹ️ {result.note}" if result.note else "")


CURVE_HEADER = ["checkpoint", "perplexity", "bits/byte", "status"]  # four columns: readable on a phone
CSV_HEADER = ["revision", "step", "status", "perplexity", "bits_per_byte", "error"]


def curve_outputs(model: str, points):
    """The chart, the table and its CSV for one learning curve."""
    ok = [(p.step, p.perplexity) for p in points if p.status == "ok"]
    chart = line_chart([Series(model, ok)], "perplexity", f"Perplexity of {model} over training")
    table = [[p.revision if p.revision != "main" else f"main (step{p.step})", _fmt(p.perplexity),
              _fmt(p.bits_per_byte), "ok" if p.status == "ok" else f"failed: {p.error}"] for p in points]
    raw = [[p.revision, p.step, p.status, p.perplexity, p.bits_per_byte, p.error or ""] for p in points]
    return chart, table, csv_file("learning-curve", CSV_HEADER, raw)


def build_research_tabs(service: PythiaService, h: Handlers, model, revision, controls, concurrency: int) -> None:
    """Add the Score and Compare tabs (call inside a gr.Tabs block)."""
    with gr.Tab("Score", id="score"):
        gr.Markdown("Paste text to see how likely the selected model finds each token (red: surprising, "
                    "green: expected), its perplexity and bits per byte — and how that changes over training.")
        score_text = gr.Textbox(label="Text", lines=5, value=h.example_text(service.default_model, SCORE_EXAMPLE),
                                elem_id="score-text")
        score_btn = gr.Button("Score", variant="primary", elem_id="score-button")
        score_summary = gr.Markdown(elem_id="score-summary")
        score_heat = gr.HTML(elem_id="score-heatmap")
        with gr.Accordion("Across training: perplexity at each checkpoint", open=True):
            curve_revisions = gr.Dropdown(h.revisions(service.default_model),
                                          value=h.default_curve(service.default_model), multiselect=True,
                                          label="Checkpoints", elem_id="curve-revisions",
                                          info="Checkpoints already on disk are scored first; the others are "
                                               "downloaded and converted on first use.")
            curve_btn = gr.Button("Plot learning curve", elem_id="curve-button")
            curve_plot = gr.HTML(elem_id="curve-plot")
            curve_table = gr.Dataframe(headers=CURVE_HEADER, elem_id="curve-table", interactive=False, wrap=True)
            curve_csv = gr.DownloadButton("Download the table (CSV)", visible=False, elem_id="curve-csv", size="sm")

        def do_score(text, model_name, rev, progress=gr.Progress()):
            result = guarded_call(service.score, text, model_name, rev,
                                  progress=gradio_progress(progress, model_name, rev))
            return score_markdown(result), token_heatmap(result.tokens)

        def do_curve(text, model_name, revisions, progress=gr.Progress()):
            points = guarded_call(service.score_across, text, model_name, revisions, progress=gradio_progress(progress))
            chart, table, csv_path = curve_outputs(model_name, points)
            return chart, table, gr.update(value=csv_path, visible=True)

        # the curve offers only the selected model's checkpoints
        model.change(lambda name: gr.update(choices=h.revisions(name), value=h.default_curve(name)), model,
                     curve_revisions, queue=False, api_visibility="private")
        score_btn.click(do_score, [score_text, model, revision], [score_summary, score_heat],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        curve_btn.click(do_curve, [score_text, model, curve_revisions], [curve_plot, curve_table, curve_csv],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")

    with gr.Tab("Compare", id="compare"):
        gr.Markdown("One prompt, several models or checkpoints, replies side by side with the same settings. "
                    "Greedy decoding gives a deterministic comparison; sampled replies differ run to run.")
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
        def do_compare(prompt, m0, r0, m1, r1, m2, r2, temperature, top_k, top_p, rep, ngram, max_new, greedy,
                       request: gr.Request):
            pairs = [[m0, r0], [m1, r1], [m2, r2]]
            with h.cancels.running(request.session_hash or "") as cancel:
                for columns in guarded(lambda: service.compare(
                        prompt, pairs, cancel=cancel,
                        **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))):
                    yield [c.text if c.error is None else f"⚠️ {c.error}" for c in columns] + \
                          [f"<small>{c.model} @ {c.revision} · {column_metrics(c)}</small>" if column_metrics(c)
                           else "" for c in columns]

        compare_btn.click(do_compare, [compare_prompt, *pickers, *controls], outputs + metrics,
                          concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        compare_stop.click(h.stop, None, None, queue=False, api_visibility="private")
