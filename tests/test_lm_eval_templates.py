"""lm-eval inside the server compiles each of a task's prompt templates once (lm-eval itself compiles it again for
every document: most of the Python time of building a task's requests, taken from the server's event loop), and
renders exactly what lm-eval renders."""

from __future__ import annotations

import jinja2
import lm_eval.utils
import pytest

from model_utils.service.benchmarks import lm_eval_for_a_server

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
