"""The Benchmarks tab: lm-eval tasks at each checkpoint, a chart per task that grows as checkpoints finish, with
EleutherAI's published numbers dashed beside it. The job is the service's (PythiaService.benchmark); this
module only turns its updates into a chart, a table and downloads."""

from __future__ import annotations

import json
import math
import os
import tempfile

import gradio as gr

from ..service import BenchmarkRequest, InvalidParameter, PythiaService
from ..service.benchmarks import default_revisions, quick_revisions
from ..service.published import PUBLISHED_TASKS, published_curve
from ..service.requests import MAX_MODELS, MAX_TASKS
from .charts import Series, chart_caption, line_chart, png_download_js
from .common import session_of
from .exports import EXPORT_DIR, csv_file
from .handlers import Handlers, notice
from .stopping import queued_with_stop

BENCHMARK = "benchmark"  # the section Stop reaches
TABLE_HEADER = ["checkpoint", "task", "metric", "value ± stderr"]  # four columns: readable on a phone
CSV_HEADER = ["model", "revision", "step", "task", "metric", "value", "stderr"]
PRIMARY = ("acc", "acc_norm", "exact_match", "word_perplexity", "perplexity")  # the metric a task's chart shows
LOG_METRICS = ("perplexity", "word_perplexity", "byte_perplexity")
INTRO = ("Evaluate the field's own benchmarks at each training checkpoint with EleutherAI's "
         "[lm-evaluation-harness](https://github.com/EleutherAI/lm-evaluation-harness) (its tasks, prompts and "
         "metrics, run here on this server's models), and watch each curve grow beside EleutherAI's published "
         "numbers (dashed). Results are kept: a curve computed once comes back at once, for everyone.")
LIMIT_INFO = ("Empty: every document. Fewer documents run faster but widen the error bars (about ∝ 1/√N; "
              "100 documents give ±4–5 points of accuracy).")


def documents_limit(text: str | None) -> int | None:
    """The "Documents per task" box: empty for every document, else a whole number of at least 1. A text box, not a
    number field: Gradio's number field shows an empty value as 0 and sends 0 (measured, Gradio 6.31), which read
    as "no documents" and was refused ("Value 0 is less than minimum value 1.") on the tab's default Run."""
    typed = (text or "").strip()
    digits = typed.replace(",", "").replace("_", "")  # 1,000 as people write it
    if not digits:
        return None
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise InvalidParameter(f"Documents per task must be a whole number of at least 1, or empty for every "
                               f"document (it was {typed!r:.40}).")
    return int(digits)


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4f}"


def primary_metric(names: list[str]) -> str | None:
    return next((m for m in PRIMARY if m in names), names[0] if names else None)


def charts_html(update, shots: int) -> str:
    """One chart per task: its primary metric against step, one line per model with ±1 stderr bars, and
    EleutherAI's published curve for the same model, task, metric and shots, dashed in the same colour."""
    rows = update.rows
    tasks = list(dict.fromkeys(u.task for u in update.units)) or []
    blocks = []
    for task in tasks:
        metric = primary_metric(list(dict.fromkeys(r.metric for r in rows if r.task == task)))
        if metric is None:
            continue
        models = list(dict.fromkeys(r.model for r in rows if r.task == task))
        series = []
        for i, model in enumerate(models):
            mine = [r for r in rows if r.task == task and r.model == model and r.metric == metric]
            series.append(Series(model, [(r.step, r.value) for r in mine],
                                 {r.step: r.stderr for r in mine if r.stderr}, color=i))
            published = published_curve(model, task, metric, shots)
            if published:
                series.append(Series(f"{model} (EleutherAI)", [(p.step, p.value) for p in published], dashed=True,
                                     color=i))
        title = f"{task}: {metric} over training"
        log_y = metric in LOG_METRICS
        caption = chart_caption(title, models, f"{shots}-shot")
        blocks.append(f'<div class="benchmark-chart" data-task="{task}"><h4>{title}</h4>'
                      f'{line_chart(series, metric, title, log_y=log_y, caption=caption)}</div>')
    return "".join(blocks) or '<div class="chart-empty">Nothing to plot yet.</div>'


def table_rows(update) -> list[list]:
    several = len({u.model for u in update.units}) > 1
    out = []
    for u in update.units:
        name = u.revision if u.revision != "main" else f"main (step{u.step})"
        name = f"{u.model} {name}" if several else name
        if u.status != "ok":
            out.append([name, u.task, u.status, u.error or ""])
            continue
        for m in u.metrics:
            out.append([name, u.task, m.name, _fmt(m.value) + (f" ± {_fmt(m.stderr)}" if m.stderr else "")])
    return out


def results_json(update) -> str:
    """Every finished (checkpoint, task)'s lm-eval results, one JSON file."""
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="benchmark-results-", suffix=".json", dir=EXPORT_DIR)
    with os.fdopen(fd, "w") as f:
        json.dump([u.results for u in update.units if u.status == "ok"], f, indent=1, default=str)
    return path


def progress_line(update) -> str:
    finished = sum(1 for u in update.units if u.status == "ok")
    failed = [u for u in update.units if u.status == "failed"]
    cached = sum(1 for u in update.units if u.cached)
    parts = [f"**{finished} of {update.total}** checkpoint × task results"]
    if cached:
        parts.append(f"{cached} from earlier runs")
    if failed:
        parts.append(f"{len(failed)} failed ({failed[0].task} at {failed[0].revision}: {failed[0].error})")
    if update.done:
        parts.append("stopped: the finished points are kept" if update.stopped else "done")
    elif update.message:
        parts.append(f"now: {update.message}")
    return " · ".join(parts)


NOTES_SHOWN = 3  # notes listed under the status line; the rest are in the results JSON


def notes_line(update) -> str:
    """What the numbers do not say (documents cut to fit the context, answers a model could not write), one line per
    (checkpoint, task) that has any; empty when none has."""
    noted = [(u, note) for u in update.units if u.status == "ok" for note in u.notes]
    if not noted:
        return ""
    lines = [f"ℹ️ {u.model} {u.revision}: {note}" for u, note in noted[:NOTES_SHOWN]]
    if len(noted) > NOTES_SHOWN:
        lines.append(f"… and {len(noted) - NOTES_SHOWN} more notes, in lm-eval's results JSON (\"notes\").")
    return "\n\n".join(lines)


def build_benchmarks_tab(service: PythiaService, h: Handlers, concurrency: int) -> None:
    """Add the Benchmarks tab (call inside a gr.Tabs block)."""
    default = service.default_model
    local = service.benchmarks.tasks.local_tasks()
    task_choices = list(dict.fromkeys([*PUBLISHED_TASKS, *local]))
    default_task = "kjv_lambada" if default.startswith("demo") and "kjv_lambada" in local else "lambada_openai"
    with gr.Tab("Benchmarks", id="benchmarks"):
        gr.Markdown(INTRO, elem_id="benchmark-intro")
        with gr.Row():
            models = gr.Dropdown(service.model_names(), value=[default], multiselect=True, max_choices=MAX_MODELS,
                                 label="Models", elem_id="benchmark-models", min_width=260,
                                 info="Several sizes (or -deduped twins): one line each, step for step.")
            tasks = gr.Dropdown(task_choices, value=[default_task], multiselect=True, max_choices=MAX_TASKS,
                                allow_custom_value=True, label="Tasks", elem_id="benchmark-tasks", min_width=260,
                                info="EleutherAI's published set, local tasks, or type any lm-eval task name.")
        with gr.Row():
            preset = gr.Radio(["published", "quick"], value="published", label="Checkpoints",
                              elem_id="benchmark-preset", min_width=200,
                              info="published: every step EleutherAI evaluated; quick: about eight.")
            revisions = gr.Dropdown(h.revisions(default), value=list(default_revisions(service.model(default))),
                                    multiselect=True, label="Checkpoints to evaluate", elem_id="benchmark-revisions",
                                    min_width=260, scale=2)
        with gr.Row():
            limit = gr.Textbox(value="", placeholder="every document", max_lines=1, label="Documents per task",
                               elem_id="benchmark-limit", info=LIMIT_INFO, min_width=200)
            shots = gr.Radio([0, 5], value=0, label="Shots (examples before each question)",
                             elem_id="benchmark-shots", min_width=200)
        with gr.Row():
            run_btn = gr.Button("Run", variant="primary", elem_id="benchmark-run")
            stop_btn = gr.Button("Stop", variant="stop", elem_id="benchmark-stop")
        status = gr.Markdown(elem_id="benchmark-status")
        bench_notice = gr.Markdown(elem_id="benchmark-notice", elem_classes="notice")
        charts = gr.HTML(elem_id="benchmark-charts")
        with gr.Row():
            png = gr.Button("Download the first chart (PNG)", size="sm", elem_id="benchmark-png")
            csv_btn = gr.DownloadButton("Download the table (CSV)", visible=False, size="sm", elem_id="benchmark-csv")
            json_btn = gr.DownloadButton("Download lm-eval's results (JSON)", visible=False, size="sm",
                                         elem_id="benchmark-json")
        table = gr.Dataframe(headers=TABLE_HEADER, interactive=False, wrap=True, elem_id="benchmark-table")

        def pick_revisions(names, which):
            name = (names or [default])[0]
            model = service.model(name)
            chosen = default_revisions(model) if which == "published" else quick_revisions(model)
            return gr.update(choices=h.revisions(name), value=list(chosen))

        def run(ticket, model_names, task_names, revision_names, doc_limit, num_shots, request: gr.Request):
            outputs = 6
            with h.runs.running(session_of(request), BENCHMARK, ticket) as job:
                if job is None:
                    yield (gr.update(),) * outputs + ("",)
                    return
                try:
                    names = list(model_names or [])
                    parsed = service.parse(BenchmarkRequest, model=names[0] if names else None,
                                           models=names or None, revisions=revision_names or None,
                                           tasks=list(task_names or []), num_fewshot=int(num_shots or 0),
                                           limit=documents_limit(doc_limit))
                    last = None
                    for update in service.benchmark(parsed, cancel=job.stop):
                        last = update
                        yield (progress_line(update), charts_html(update, parsed.num_fewshot), table_rows(update),
                               gr.update(), gr.update(), gr.update(), notes_line(update))
                    if last is not None:
                        raw = [[r.model, r.revision, r.step, r.task, r.metric, r.value, r.stderr] for r in last.rows]
                        yield (progress_line(last), charts_html(last, parsed.num_fewshot), table_rows(last),
                               gr.update(value=csv_file("benchmark", CSV_HEADER, raw), visible=bool(raw)),
                               gr.update(value=results_json(last), visible=bool(raw)), gr.update(), notes_line(last))
                except Exception as exc:  # a refused request: what was shown stays, the reason is readable
                    yield (gr.update(),) * outputs + (notice(exc),)

        quick = dict(queue=False, api_visibility="private")
        preset.change(pick_revisions, [models, preset], revisions, **quick)
        models.change(pick_revisions, [models, preset], revisions, **quick)
        png.click(None, js=png_download_js("#benchmark-charts svg", "benchmark.png"))
        queued_with_stop(h.runs, BENCHMARK, [run_btn.click], run, [models, tasks, revisions, limit, shots],
                         [status, charts, table, csv_btn, json_btn, png, bench_notice], notice=bench_notice,
                         stopped_line=bench_notice, stop_buttons=[stop_btn], concurrency_limit=concurrency,
                         concurrency_id="benchmark", api_visibility="private")
