"""The research tabs' handlers (Score, learning curve, memorization, Compare) driven in process, as the page's
clicks call them, over the real demo model (CTranslate2, float32): what each output shows, what a refused request
says, and a Stop that comes before the request starts."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import gradio as gr
import pytest

from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.ui.common import Runs
from model_utils.ui.controls import ControlValues
from model_utils.ui.research_handlers import COMPARE, CURVE, MEMORIZATION, ResearchHandlers

VISITOR = SimpleNamespace(session_hash="visitor")
TEXT = demo_model().example_text
NO_PROGRESS = lambda *a, **k: None  # noqa: E731


@pytest.fixture(scope="module")
def service(float32_service):
    return float32_service


@pytest.fixture
def r(service):
    return ResearchHandlers(service, Runs())


def test_score_shows_the_numbers_and_a_heatmap_and_a_refusal_clears_them(r):
    summary, heatmap, notice = r.score_clicked(TEXT, DEMO_MODEL, "main", NO_PROGRESS)
    assert "perplexity" in summary and "bits per byte" in summary and notice == ""
    assert heatmap.count("<span") > 10, "one span per token"
    summary, heatmap, notice = r.score_clicked("", DEMO_MODEL, "main", NO_PROGRESS)
    assert (summary, heatmap) == ("", "") and notice == "⚠️ The text to score is empty."


def test_a_learning_curve_has_a_point_a_row_and_a_csv_line_per_checkpoint(r):
    ticket = r.runs.accept(VISITOR.session_hash, CURVE)
    chart, table, download, grid, notice = r.curve_clicked(ticket, TEXT, DEMO_MODEL, ["step0", "step1000", "main"], [],
                                                   VISITOR, NO_PROGRESS)
    assert notice == "" and "<svg" in chart and grid
    assert [row[0] for row in table] == ["step0", "step1000", "main (step3000)"]
    assert all(row[-1] == "ok" for row in table)
    perplexities = [float(row[1].replace(",", "")) for row in table]
    assert perplexities[0] > perplexities[-1], "the demo model learns: step0 is the most surprised"
    assert download["visible"] is True
    with open(download["value"], newline="") as f:
        assert [row["revision"] for row in csv.DictReader(f)] == ["step0", "step1000", "main"]
    assert len(r.runs) == 0, "the request is forgotten when it ends"


def test_a_curve_stopped_before_it_started_changes_nothing_and_a_refused_one_says_why(r):
    ticket = r.runs.accept(VISITOR.session_hash, CURVE)
    r.runs.stop(VISITOR.session_hash, CURVE)
    assert r.curve_clicked(ticket, TEXT, DEMO_MODEL, ["main"], [], VISITOR, NO_PROGRESS) == (gr.update(),) * 5
    ticket = r.runs.accept(VISITOR.session_hash, CURVE)
    *cleared, notice = r.curve_clicked(ticket, TEXT, DEMO_MODEL, ["step7"], [], VISITOR, NO_PROGRESS)
    assert "step7" in notice and cleared[0] == "" and cleared[1] == []


def test_memorization_compares_the_continuation_with_the_text(r):
    ticket = r.runs.accept(VISITOR.session_hash, MEMORIZATION)
    chart, table, download, notice = r.memorization_clicked(ticket, TEXT, DEMO_MODEL, ["step0", "main"], [], 8, 8,
                                                            VISITOR, NO_PROGRESS)
    assert notice == "" and "<svg" in chart and len(table) == 2
    checkpoint, exact, matched, share, wrote = table[-1]
    assert exact in ("yes", "no") and 0 <= matched <= 8 and wrote
    ticket = r.runs.accept(VISITOR.session_hash, MEMORIZATION)
    *_, notice = r.memorization_clicked(ticket, TEXT, DEMO_MODEL, ["main"], [], 0, 8, VISITOR, NO_PROGRESS)
    assert "prefix_tokens" in notice


def test_compare_streams_three_columns_with_the_controls_and_refuses_in_words(r):
    ticket = r.runs.accept(VISITOR.session_hash, COMPARE)
    greedy = ControlValues.defaults(greedy=True, repetition_penalty=1.0, max_new_tokens=8)
    pairs = (DEMO_MODEL, "step0", DEMO_MODEL, "step1000", DEMO_MODEL, "main")
    *_, last = r.compare_clicked(ticket, "And God said", *pairs, greedy, VISITOR)
    texts, metrics, notice = last[:3], last[3:6], last[6]
    assert notice == "" and all(texts) and len(set(texts)) > 1, "three checkpoints, different replies"
    assert all(f"{DEMO_MODEL} @ " in m for m in metrics)
    ticket = r.runs.accept(VISITOR.session_hash, COMPARE)
    (refused,) = list(r.compare_clicked(ticket, "And God said", *pairs,
                                ControlValues.defaults(max_new_tokens=4, min_tokens=5), VISITOR))
    assert refused[:6] == [gr.update()] * 6, "the columns keep what they showed"
    assert "min_tokens is 5, more than the 4 tokens asked for" in refused[6]


def test_the_page_events_leave_the_api_names_to_the_endpoints(service):
    """Gradio names a page event after its function: none may take an endpoint's name (it would become "score_1")."""
    from model_utils.ui.api import ENDPOINTS
    from model_utils.ui.blocks import build_demo

    endpoints = {e.name for e in ENDPOINTS} | {"models"}
    names = {fn.api_name for fn in build_demo(service).fns.values()}
    assert endpoints <= names
    pushed = [n for n in names if n and n.rsplit("_", 1)[0] in endpoints and n.rsplit("_", 1)[-1].isdigit()]
    assert not pushed, pushed
