"""Benchmarks at the edges of what a model can do: documents longer than its 2,048-token context, continuations that
cannot fit at all, generation tasks on a model too small (or too early in training) to answer. Each ends in a result
or a refusal a person can read, and the rest of the job is kept."""

from __future__ import annotations

import json

import pytest

from model_utils.core.catalog import CONTEXT_LENGTH, Catalog
from model_utils.core.errors import InvalidParameter
from model_utils.core.sampling import MAX_NEW_TOKENS, SamplingParams
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.generation import generate
from model_utils.engine.prompts import PreparedPrompt
from model_utils.service import BenchmarkRequest, PythiaService
from model_utils.service.benchmark_lm import ServiceLM
from model_utils.store.demo_model import DEMO_DIR, DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore
from model_utils.ui.benchmarks_tab import documents_limit, notes_line

VERSES = [json.loads(line)["text"] for line in (DEMO_DIR / "tasks" / "kjv_lambada.jsonl").read_text().splitlines()]
LAST_WORD = """output_type: loglikelihood
test_split: test
doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}"
doc_to_target: "{{' '+text.split(' ')[-1]}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
GEN_PROMPTS = ["And God said", "In the beginning", "And the LORD spake unto Moses, saying", "Blessed is the man"]
MAX_GEN = 6


def _task(folder, name: str, docs: list[dict], body: str) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("\n".join(json.dumps(d) for d in docs))
    (folder / f"{name}.yaml").write_text(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                                         f"    test: {data}\n{body}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The demo model in float32, with three local tasks written for these tests."""
    root = tmp_path_factory.mktemp("bench-limits")
    tasks = root / "tasks"
    tasks.mkdir()
    long = " ".join(VERSES)  # the held-out chapters: some 20,000 tokens
    words = long.split(" ")
    # one document that fits, two that do not (about 3,000 and 4,000 tokens)
    _task(tasks, "kjv_long", [{"text": VERSES[0]}, {"text": " ".join(words[:2600])}, {"text": " ".join(words[:3400])}],
          LAST_WORD)
    # a continuation that cannot fit in the context whatever is cut: the whole text after its first word
    _task(tasks, "kjv_long_target", [{"context": "And", "target": " " + " ".join(words[1:3400])}],
          LAST_WORD.replace("text.split(' ')[:-1]|join(' ')", "context").replace("' '+text.split(' ')[-1]", "target"))
    # greedy generation with a stop string no verse has: every answer ends at the end-of-text token or the limit
    _task(tasks, "kjv_gen_short", [{"prompt": p, "target": " and it was so."} for p in GEN_PROMPTS],
          f"""output_type: generate_until
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{target}}}}"
generation_kwargs:
  until: ["@@"]
  max_gen_toks: {MAX_GEN}
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
""")
    catalog = Catalog()
    catalog.add(demo_model())
    engine = Engine(resolve_device("cpu", "float32", 1), catalog=catalog,
                    store=ModelStore(root / "models", precision="float32"), memory_budget_bytes=2**30)
    service = PythiaService(engine, catalog, DEMO_MODEL, results_dir=root, tasks_dir=tasks)
    yield service, engine
    engine.close()


def _run(service, **raw):
    request = service.parse(BenchmarkRequest, **{"model": DEMO_MODEL, "limit": None, **raw})
    return list(service.benchmark(request))[-1]


class _Request:
    def __init__(self, *args):
        self.args = args


def test_documents_longer_than_the_context_are_cut_from_the_left_as_lm_evals_hf_model_does_and_it_is_said(served):
    service, engine = served
    first = _run(service, revisions=["main"], tasks=["kjv_long"])
    (unit,) = first.units
    assert unit.status == "ok", unit.error
    with engine.open(service.model(DEMO_MODEL), "main") as loaded:
        tokenizer = loaded.tokenizer
        lengths = [len(tokenizer.encode(d).ids) for d in (VERSES[0], " ".join(" ".join(VERSES).split(" ")[:3400]))]
        assert lengths[0] < CONTEXT_LENGTH < lengths[1]
        (note,) = unit.notes
        assert note.startswith(f"kjv_long: 2 of 3 scored requests were longer than the model's 2,048-token context "
                               f"(the longest {lengths[1]:,} tokens); as lm-eval's hf model does, their contexts were "
                               f"cut from the left to fit")
        # what was scored: the last 2,048 tokens of the document, the last word's log-likelihood among them
        text = " ".join(" ".join(VERSES).split(" ")[:3400])
        context, word = text.rsplit(" ", 1)
        lm = ServiceLM(loaded, task="kjv_long")
        ((ll, _),) = lm.loglikelihood([_Request(context, " " + word)])
        ids = tokenizer.encode(text).ids
        n = len(ids) - len(tokenizer.encode(context).ids)
        assert ll == pytest.approx(sum(loaded.score([ids[-CONTEXT_LENGTH:]])[0][-n:]), abs=1e-4)
        assert lm.notes() == [note.replace("2 of 3", "1 of 1").replace(f"{lengths[1]:,}", f"{len(ids):,}")]
    assert notes_line(first) == f"ℹ️ {DEMO_MODEL} main: {note}"  # the page shows it under the status line
    again = _run(service, revisions=["main"], tasks=["kjv_long"])
    assert again.units[0].cached and again.units[0].notes == (note,)  # kept with the result
    assert again.units[0].results["notes"] == [note]  # and in lm-eval's results JSON the page offers


def test_a_continuation_that_cannot_fit_the_context_is_refused_naming_the_task_and_the_rest_is_kept(served):
    service, _ = served
    last = _run(service, revisions=["main"], tasks=["kjv_lambada", "kjv_long_target"], limit=3)
    ok, refused = last.units
    assert ok.task == "kjv_lambada" and ok.status == "ok" and ok.metrics
    assert refused.task == "kjv_long_target" and refused.status == "failed"
    assert refused.error.startswith("kjv_long_target has a continuation of ")
    assert "tokens to score; the model's context holds 2,048 tokens" in refused.error
    assert service.benchmarks.store.count() >= 1  # kjv_lambada's result was stored
    assert [u.cached for u in _run(service, revisions=["main"], tasks=["kjv_lambada"], limit=3).units] == [True]


def test_a_generation_task_on_a_model_too_small_to_answer_scores_zero_and_says_what_it_wrote(served):
    service, engine = served
    last = _run(service, revisions=["step0"], tasks=["kjv_gen_short"])
    (unit,) = last.units
    assert unit.status == "ok", unit.error
    assert [(r.metric, r.value) for r in last.rows] == [("exact_match", 0.0)]  # scored, not left out
    # what the model wrote, generated again the same way (greedy, the task's token limit, its stop string)
    with engine.open(service.model(DEMO_MODEL), "step0") as loaded:
        replies = [generate(loaded, PreparedPrompt(tuple(loaded.tokenizer.encode(p).ids)), SamplingParams(
            greedy=True, repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=MAX_GEN), stop=["@@"])
            for p in GEN_PROMPTS]
    ran_out = sum(r.finish_reason == "length" for r in replies)
    empty = sum(not r.text.strip() for r in replies)
    assert ran_out + empty >= 1
    (note,) = unit.notes
    assert note.startswith("kjv_gen_short: ")
    if ran_out:
        assert (f"{ran_out} of 4 ran to the task's {MAX_GEN}-token limit without reaching its stop strings ('@@'"
                in note)
    if empty:
        assert f"{empty} of 4 answers were empty" in note
    assert f"(the first: {replies[0].text.strip()[:80]!r}" in note or not replies[0].text.strip()
    assert note.endswith("a model this small or this early in training may write nothing usable, which scores 0.")
    assert note in notes_line(last)


def test_a_generation_task_asking_for_more_tokens_than_a_reply_may_have_is_refused_naming_it(served):
    service, engine = served
    with engine.open(service.model(DEMO_MODEL), "main") as loaded:
        lm = ServiceLM(loaded, task="long_answers")
        with pytest.raises(InvalidParameter) as refused:
            lm.generate_until([_Request("In the", {"until": ["."], "max_gen_toks": MAX_NEW_TOKENS + 1})])
    assert str(refused.value) == (f"long_answers asks for up to {MAX_NEW_TOKENS + 1:,} generated tokens per answer; "
                                  f"this server generates at most {MAX_NEW_TOKENS:,} per reply (the model's context "
                                  f"holds 2,048 tokens).")


@pytest.mark.parametrize("typed, limit", [("", None), ("   ", None), (None, None), ("100", 100), (" 1,000 ", 1000),
                                          ("1", 1)])
def test_the_documents_box_reads_empty_as_every_document_and_a_number_as_the_first_n(typed, limit):
    assert documents_limit(typed) == limit


@pytest.mark.parametrize("typed", ["0", "-5", "ten", "3.5", "1e3", "²", "100 documents"])
def test_the_documents_box_refuses_anything_else_in_words(typed):
    with pytest.raises(InvalidParameter, match="whole number of at least 1, or empty for every document"):
        documents_limit(typed)
