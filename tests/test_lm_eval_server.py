"""lm-eval inside the server (model_utils/service/lm_eval_server.py): each of a task's prompt templates compiled once
(lm-eval itself compiles it again for every document: most of the Python time of building a task's requests, taken
from the server's event loop) and rendered exactly as lm-eval renders it; and the evaluation's Python giving way to
visitors awaiting a first token, in the evaluation's thread only."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import jinja2
import lm_eval.utils
import pytest
from tokenizers import Tokenizer

from model_utils.service.benchmark_lm import ServiceLM
from model_utils.service.lm_eval_server import lm_eval_for_a_server, visitors_first
from model_utils.store.demo_model import DEMO_DIR

DOCS = [{"text": "And God said, Let there be light: and there was light.", "question": "a cat", "n": 3},
        {"text": "In the beginning", "question": "", "n": 0}]
TEMPLATES = ["{{text.split(' ')[:-1]|join(' ')}}", "{{' '+text.split(' ')[-1]}}",
             "Q: {{question | regex_replace('a', 'o')}}\nA:\n", "{{ [n, n + 1] }}", "plain text, no fields"]


def lm_evals_own(template: str, doc: dict) -> str:
    """What lm_eval.utils.apply_template does, in lm-eval's own environment (its filters, StrictUndefined)."""
    return lm_eval.utils.env.from_string(template).render(**doc)


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_template_renders_as_lm_eval_renders_it(template):
    lm_eval_for_a_server()
    for doc in DOCS:
        assert lm_eval.utils.apply_template(template, doc) == lm_evals_own(template, doc)


def test_a_missing_field_is_still_an_error():
    lm_eval_for_a_server()
    with pytest.raises(jinja2.exceptions.UndefinedError):
        lm_eval.utils.apply_template("{{answer}}", DOCS[0])


def test_a_template_is_compiled_once_for_every_document(monkeypatch):
    lm_eval_for_a_server()
    compiled = []
    from_string = lm_eval.utils.env.from_string
    monkeypatch.setattr(lm_eval.utils.env, "from_string", lambda source: compiled.append(source) or from_string(source))
    template = "{{text}} (compiled once: test_lm_eval_templates)"
    rendered = [lm_eval.utils.apply_template(template, doc) for doc in DOCS * 50]
    assert rendered == [doc["text"] + " (compiled once: test_lm_eval_templates)" for doc in DOCS * 50]
    assert compiled == [template]


def test_inside_visitors_first_every_rendered_document_and_encoded_text_gives_way_first():
    lm_eval_for_a_server()
    turns = []
    lm = ServiceLM(SimpleNamespace(tokenizer=Tokenizer.from_file(str(DEMO_DIR / "main" / "tokenizer.json"))))
    lm.tok_encode("before the evaluation")
    lm_eval.utils.apply_template("{{text}}", DOCS[0])
    assert turns == []
    with visitors_first(lambda: turns.append("turn")):
        for doc in DOCS:
            lm_eval.utils.apply_template("{{text}}", doc)
        assert lm.tok_encode("And God said") == lm.model.tokenizer.encode("And God said").ids
        assert len(turns) == len(DOCS) + 1
    lm_eval.utils.apply_template("{{text}}", DOCS[0])
    lm.tok_encode("after it")
    assert len(turns) == len(DOCS) + 1


def test_another_threads_lm_eval_gives_way_to_its_own_model_only():
    """Evaluations side by side (two models): each thread's lm-eval waits for its own model's visitors."""
    lm_eval_for_a_server()
    turns = []

    def other_evaluation() -> None:
        lm_eval.utils.apply_template("{{text}}", DOCS[0])  # outside any visitors_first: no turn

    with visitors_first(lambda: turns.append("this thread's model")):
        other = threading.Thread(target=other_evaluation)
        other.start()
        other.join()
        lm_eval.utils.apply_template("{{text}}", DOCS[0])
    assert turns == ["this thread's model"]
