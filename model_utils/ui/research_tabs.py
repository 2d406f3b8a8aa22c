"""The research tabs: score a text (heatmap, learning curve across checkpoints) and
side-by-side comparison. Built inside build_demo's Tabs; logic lives in research.py."""

from __future__ import annotations

import math
from typing import Iterator

import gradio as gr

from ..core.catalog import REVISIONS
from .heatmap import token_heatmap
from ..service.research import DEFAULT_CURVE, Researcher
from ..core.sampling import SamplingParams
from .common import CancelRegistry, gradio_progress, guarded, guarded_call

SCORE_EXAMPLE = ("The Pile is a large, diverse, open source language modelling data set that consists of many "
                 "smaller datasets combined together.")


def _fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.3f}"


def score_markdown(result) -> str:
    text = (f"**{len(result.tokens)} tokens** · log-likelihood {result.log_likelihood:,.2f} · "
            f"perplexity **{_fmt(result.perplexity)}** · bits per byte **{_fmt(result.bits_per_byte)}**")
    return text + (f"\n\nℹ️ {result.note}" if result.note else "")


def curve_rows(rows: list[dict]):
    import pandas as pd

    ok = [r for r in rows if r["status"] == "ok"]
    plot = pd.DataFrame({"log10(step + 1)": [math.log10(r["step"] + 1) for r in ok],
                         "perplexity": [r["perplexity"] for r in ok],
                         "revision": [r["revision"] for r in ok]})
    table = [[r["revision"], r["step"], r["status"], _fmt(r["perplexity"]), _fmt(r["bits_per_byte"]),
              r["error"] or ""] for r in rows]
    return plot, table


def build_research_tabs(researcher: Researcher, model, revision, controls, concurrency: int) -> None:
    """Add the Score and Compare tabs (call inside a gr.Tabs block)."""
    with gr.Tab("Score a text", id="score"):
        gr.Markdown("Paste text to see how likely the selected model finds each token (red: surprising, "
                    "green: expected), its perplexity and bits per byte — and how that changes over training.")
        score_text = gr.Textbox(label="Text", lines=5, value=SCORE_EXAMPLE, elem_id="score-text")
        score_btn = gr.Button("Score", variant="primary", elem_id="score-button")
        score_summary = gr.Markdown(elem_id="score-summary")
        score_heat = gr.HTML(elem_id="score-heatmap")
        with gr.Accordion("Across training: perplexity at each checkpoint", open=True):
            curve_revisions = gr.Dropdown(list(REVISIONS), value=list(DEFAULT_CURVE), multiselect=True,
                                          label="Checkpoints", elem_id="curve-revisions",
                                          info="Checkpoints already on disk are scored first; the others are "
                                               "downloaded and converted on first use.")
            curve_btn = gr.Button("Plot learning curve", elem_id="curve-button")
            curve_plot = gr.LinePlot(x="log10(step + 1)", y="perplexity", title="Perplexity over training",
                                     elem_id="curve-plot", height=320)
            curve_table = gr.Dataframe(headers=["revision", "step", "status", "perplexity", "bits/byte", "error"],
                                       elem_id="curve-table", interactive=False)

        def do_score(text, model_name, rev, progress=gr.Progress()):
            result = guarded_call(researcher.score, text, model_name, rev, progress=gradio_progress(progress))
            return score_markdown(result), token_heatmap(result.tokens)

        def do_curve(text, model_name, revisions, progress=gr.Progress()):
            if guarded_call(researcher.engine.catalog.get, model_name).local_path is not None:
                revisions = ["main"]  # a local model has a single checkpoint
            return curve_rows(guarded_call(researcher.score_across, text, model_name, revisions,
                                           progress=gradio_progress(progress)))

        score_btn.click(do_score, [score_text, model, revision], [score_summary, score_heat],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        curve_btn.click(do_curve, [score_text, model, curve_revisions], [curve_plot, curve_table],
                        concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")

    with gr.Tab("Compare", id="compare"):
        gr.Markdown("One prompt, several models or checkpoints, replies side by side with the same settings. "
                    "Greedy decoding gives a deterministic comparison; sampled replies differ run to run.")
        compare_prompt = gr.Textbox(label="Prompt", lines=3, value="The meaning of life is", elem_id="compare-prompt")
        pickers, outputs, metrics = [], [], []
        with gr.Row():
            for i in range(3):
                with gr.Column():
                    m = gr.Dropdown(researcher.engine.catalog.names(), value=researcher.default_model,
                                    label=f"Model {i + 1}", elem_id=f"compare-model-{i}")
                    r = gr.Dropdown(list(REVISIONS), value=["main", "step1000", "step16000"][i],
                                    label="Checkpoint", elem_id=f"compare-revision-{i}")
                    out = gr.Textbox(label="Reply", lines=8, interactive=False, elem_id=f"compare-output-{i}")
                    met = gr.Markdown(elem_id=f"compare-metrics-{i}")
                    pickers += [m, r]
                    outputs.append(out)
                    metrics.append(met)
        with gr.Row():
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-button")
            compare_stop = gr.Button("Stop", variant="stop", elem_id="compare-stop")
        cancels = CancelRegistry()

        def do_compare(prompt, m0, r0, m1, r1, m2, r2, temperature, top_k, top_p, rep, ngram, max_new, greedy,
                       request: gr.Request):
            cancel = cancels.start(request.session_hash or "")
            params = guarded_call(SamplingParams.parse, temperature=temperature, top_k=top_k, top_p=top_p,
                                  repetition_penalty=rep, no_repeat_ngram_size=ngram, max_new_tokens=max_new,
                                  greedy=greedy)
            pairs = [[m0, r0], [m1, r1], [m2, r2]]
            for columns in guarded(lambda: researcher.compare(prompt, pairs, params, cancel=cancel)):
                yield [c.text if c.error is None else f"⚠️ {c.error}" for c in columns] + \
                      [f"<small>{c.model} @ {c.revision} · {c.metrics}</small>" if c.metrics else "" for c in columns]

        def stop_compare(request: gr.Request):
            cancels.cancel(request.session_hash or "")

        compare_btn.click(do_compare, [compare_prompt, *pickers, *controls], outputs + metrics,
                          concurrency_limit=concurrency, concurrency_id="generate", api_visibility="private")
        compare_stop.click(stop_compare, None, None, queue=False, api_visibility="private")


def api_endpoints(researcher: Researcher, concurrency: int) -> None:
    """/score, /score_across and /compare (stateless; inside the Blocks context)."""

    def score(text: str, model: str | None = None, revision: str | None = None) -> dict:
        """Per-token log-probabilities of `text`, its log-likelihood, perplexity and bits per byte."""
        return guarded_call(researcher.score, text, model, revision).as_dict()

    def score_across(text: str, model: str | None = None, revisions: list[str] | None = None) -> list[dict]:
        """Score `text` at several training checkpoints: one row per revision (failed ones say why)."""
        return guarded_call(researcher.score_across, text, model, revisions)

    def compare(prompt: str, pairs: list, temperature: float | None = None, top_k: int | None = None,
                top_p: float | None = None, repetition_penalty: float | None = None,
                max_new_tokens: int | None = None, greedy: bool | None = None) -> Iterator[list[dict]]:
        """Stream `prompt` through each [model, revision] pair; yields one {model, revision, text} per pair."""
        params = guarded_call(SamplingParams.parse, temperature=temperature, top_k=top_k, top_p=top_p,
                              repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens, greedy=greedy)
        for columns in guarded(lambda: researcher.compare(prompt, pairs, params)):
            yield [{"model": c.model, "revision": c.revision, "text": c.text, "error": c.error,
                    "metrics": c.metrics, "done": c.done} for c in columns]

    gr.api(score, api_name="score", concurrency_limit=concurrency, concurrency_id="generate")
    gr.api(score_across, api_name="score_across", concurrency_limit=concurrency, concurrency_id="generate")
    gr.api(compare, api_name="compare", concurrency_limit=concurrency, concurrency_id="generate")
