"""Benchmarks across training: lm-eval in-process over the demo model (ServiceLM), the SQLite results store, its
single-flight, EleutherAI's published curves, and the readable refusals of /benchmark's arguments."""

from __future__ import annotations

import math
import multiprocessing.pool
import subprocess
import threading
from contextlib import contextmanager

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import InvalidParameter, PythiaError
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.generation import generate
from model_utils.engine.scoring import score_text
from model_utils.service import BenchmarkRequest, PythiaService
from model_utils.service.benchmark_lm import EvaluationStopped, ServiceLM
from model_utils.service.benchmark_store import Metric, ResultKey, ResultsStore, SingleFlight, StoredResult, run_once
from model_utils.service.benchmarks import default_revisions, metrics_of, quick_revisions
from model_utils.service.published import published_curve
from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore

LIMIT = 24  # documents of kjv_lambada per checkpoint: a few seconds
HANG = 60  # seconds after which a wait counts as stuck


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The demo model in float32 and a service whose results live in a temporary folder."""
    catalog = Catalog()
    catalog.add(demo_model())
    root = tmp_path_factory.mktemp("bench")
    engine = Engine(resolve_device("cpu", "float32", 1), catalog=catalog,
                    store=ModelStore(root / "models", precision="float32"), memory_budget_bytes=2**30)
    service = PythiaService(engine, catalog, DEMO_MODEL, results_dir=root)
    yield service, engine, root
    engine.close()


def _key(**changes) -> ResultKey:
    base = dict(model="m", revision="step1", task="t", task_version="1.0", num_fewshot=0, limit=None,
                compute_type="CPU int8", lm_eval_version="0.4.13")
    return ResultKey(**{**base, **changes})


def _result(key: ResultKey, value: float = 0.5) -> StoredResult:
    return StoredResult(key, 1, (Metric("acc", value, 0.01),), {"results": {"acc,none": value}})


# -- the store -----------------------------------------------------------------------------------------------
def test_the_store_keeps_results_across_a_restart_under_the_whole_key(tmp_path):
    path = tmp_path / "benchmarks.sqlite3"
    ResultsStore(path).put(_result(_key(), 0.25))
    again = ResultsStore(path)  # a new process opens the same file
    stored = again.get(_key())
    assert stored.metrics == (Metric("acc", 0.25, 0.01),) and stored.results == {"results": {"acc,none": 0.25}}
    for other in (dict(limit=100), dict(compute_type="CPU float32"), dict(num_fewshot=5), dict(task_version="2"),
                  dict(lm_eval_version="0.4.14"), dict(revision="main")):
        assert again.get(_key(**other)) is None, other  # any part of the key that differs is another result


def test_the_same_key_is_evaluated_once_while_a_second_asker_follows_it(tmp_path):
    store, flights = ResultsStore(tmp_path / "b.sqlite3"), SingleFlight()
    key = _key()
    follower_waiting, calls, got = threading.Event(), [], {}

    def evaluate(flight):
        calls.append(threading.current_thread().name)
        flight.progress = "half way"
        assert follower_waiting.wait(30)  # the second asker has joined this flight before it lands
        return _result(key, 0.75)

    def follow(flight):
        got["progress"] = flight.progress
        follower_waiting.set()
        assert flight.done.wait(30)

    owner = threading.Thread(target=lambda: got.setdefault("owner", run_once(store, flights, key, evaluate, follow)),
                             name="owner")
    owner.start()
    while flights.running() == 0:  # the owner's flight is registered before its evaluation starts
        threading.Event().wait(0.01)
    got["follower"] = run_once(store, flights, key, evaluate, follow)
    owner.join(30)
    assert calls == ["owner"]
    assert got["progress"] == "half way"  # the follower read the owner's progress
    assert got["owner"][1] is True and got["follower"][1] is False
    assert got["follower"][0].metrics == got["owner"][0].metrics
    assert run_once(store, flights, key, evaluate, follow)[1] is False  # now stored: no evaluation at all
    assert calls == ["owner"]


def test_a_flight_that_failed_is_run_again_by_the_next_asker(tmp_path):
    store, flights = ResultsStore(tmp_path / "b.sqlite3"), SingleFlight()

    def failing(flight):
        raise EvaluationStopped("stopped")

    with pytest.raises(EvaluationStopped):
        run_once(store, flights, _key(), failing, lambda f: None)
    assert flights.running() == 0 and store.get(_key()) is None
    result, computed = run_once(store, flights, _key(), lambda f: _result(_key()), lambda f: None)
    assert computed and store.get(_key()) is not None


def test_lm_eval_metric_names_lose_their_filter_suffix():
    metrics = metrics_of({"alias": "x", "acc,none": 0.5, "acc_stderr,none": 0.1, "perplexity,none": 12.0,
                          "perplexity_stderr,none": "N/A", "exact_match,strict": 0.2})
    assert metrics == (Metric("acc", 0.5, 0.1), Metric("perplexity", 12.0, None), Metric("exact_match,strict", 0.2,
                                                                                          None))


# -- EleutherAI's published numbers ---------------------------------------------------------------------------
def test_published_curves_come_from_the_shipped_csv():
    acc = published_curve("pythia-160m", "lambada_openai", "acc", 0)
    assert [p.step for p in acc][:3] == [0, 1, 2] and len(acc) == 27
    assert acc[-1].step == 143000 and acc[-1].value == pytest.approx(0.3284, abs=1e-4)
    assert max(acc, key=lambda p: p.value).step == 63000
    ppl = published_curve("pythia-160m", "lambada_openai", "perplexity", 0)  # published as "ppl"
    assert len(ppl) == 27 and ppl[-1].value > 1
    assert len(published_curve("pythia-160m", "piqa", "acc", 5)) == 15
    assert published_curve("pythia-14m", "piqa", "acc", 0) == ()  # none were published


def test_default_checkpoints_are_the_published_ones_the_model_has():
    catalog = Catalog()
    pythia = catalog.get("pythia-160m")
    chosen = default_revisions(pythia)
    assert len(chosen) == 27 and chosen[0] == "step0" and chosen[-1] == "main" and "step13000" in chosen
    assert 6 <= len(quick_revisions(pythia)) <= 9
    assert default_revisions(demo_model())[-1] == "main" and len(default_revisions(demo_model())) == 9


# -- ServiceLM: lm-eval's requests answered by the served model ----------------------------------------------
class _Request:
    def __init__(self, *args):
        self.args = args


def test_service_lm_answers_lm_eval_requests_from_the_scoring_path(served):
    service, engine, _ = served
    with engine.open(service.model(DEMO_MODEL), "main") as loaded:
        lm = ServiceLM(loaded)
        text = "And God said, Let there be light: and there was light."
        (rolling,) = lm.loglikelihood_rolling([_Request(text)])
        assert rolling == pytest.approx(score_text(loaded, text).log_likelihood, abs=1e-4)
        context, word = "And God said, Let there be", " light"
        (ll, greedy), = lm.loglikelihood([_Request(context, word)])
        ids = loaded.tokenizer.encode(context + word).ids
        n = len(ids) - len(loaded.tokenizer.encode(context).ids)
        # lm-eval's context has no start token (Pythia has no BOS); CT2's score_batch, another path, agrees
        assert ll == pytest.approx(sum(loaded.score([ids])[0][-n:]), abs=1e-4)
        top = loaded.score_prompts([ids], 1)[0].positions[-n:]
        assert greedy == all(p.alternatives[0][0] == t for p, t in zip(top, ids[-n:], strict=True))
        (text_out,) = lm.generate_until([_Request("And the LORD said unto", {"until": ["."], "max_gen_toks": 12,
                                                                               "do_sample": False})])
        from model_utils.core.sampling import SamplingParams
        expected = generate(loaded, "And the LORD said unto", SamplingParams(
            greedy=True, repetition_penalty=1.0, no_repeat_ngram_size=0, max_new_tokens=12)).text
        assert text_out == expected.split(".")[0]
        with pytest.raises(InvalidParameter, match="greedy"):
            lm.generate_until([_Request("In the", {"until": ["."], "do_sample": True, "temperature": 1.0})])
        lm.cancel.set()
        with pytest.raises(EvaluationStopped):  # Stop: the next batch does not start
            lm.loglikelihood([_Request(context, word)])


# -- jobs ----------------------------------------------------------------------------------------------------
def _run(service, **raw):
    request = service.parse(BenchmarkRequest, **raw)
    updates = list(service.benchmark(request))
    return updates[-1]


def test_a_benchmark_curve_on_the_demo_model_learns_and_comes_back_at_once(served, tmp_path):
    service, engine, root = served
    raw = dict(model=DEMO_MODEL, revisions=["step0", "main"], tasks=["kjv_lambada"], limit=LIMIT)
    first = _run(service, **raw)
    assert first.done and not first.stopped and [u.status for u in first.units] == ["ok", "ok"]
    assert [u.cached for u in first.units] == [False, False]
    acc = {r.revision: r for r in first.rows if r.metric == "acc"}
    ppl = {r.revision: r for r in first.rows if r.metric == "perplexity"}
    assert acc["step0"].value < acc["main"].value and ppl["main"].value < ppl["step0"].value / 100  # it learned
    assert acc["main"].stderr == pytest.approx(math.sqrt(acc["main"].value * (1 - acc["main"].value) / (LIMIT - 1)))
    assert first.units[0].results["n-samples"]["kjv_lambada"]["effective"] == LIMIT
    again = _run(service, **raw)
    assert [u.cached for u in again.units] == [True, True] and again.rows == first.rows
    # a restart: a new service over the same cache dir finds them too
    restarted = PythiaService(engine, service.catalog, DEMO_MODEL, results_dir=root)
    assert [u.cached for u in _run(restarted, **raw).units] == [True, True]
    assert [u.cached for u in _run(service, **{**raw, "limit": LIMIT + 1}).units[:1]] == [False]  # another key


def test_an_evaluation_forks_no_process_and_starts_no_program(served, monkeypatch):
    """lm-eval forks a multiprocessing pool for bootstrapped standard errors (perplexity's) unless told not to: a
    fork of the multithreaded server could wait for ever on a lock another thread held. And simple_evaluate
    describes the machine after each evaluation (git, and where torch is installed, as here, pip, nvidia-smi and
    more through torch's collect_env: seconds per checkpoint, unbounded). Neither happens."""
    service, _, _ = served
    pools, started = [], []
    real_pool, real_init = multiprocessing.pool.Pool.__init__, subprocess.Popen.__init__

    def recording_pool(self, *args, **kwargs):
        pools.append(args)
        real_pool(self, *args, **kwargs)

    def recording_init(self, args, *rest, **kwargs):
        started.append(args)
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(multiprocessing.pool.Pool, "__init__", recording_pool)
    monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
    last = _run(service, model=DEMO_MODEL, revisions=["step16"], tasks=["kjv_lambada"], limit=LIMIT - 3)
    assert [u.status for u in last.units] == ["ok"] and not last.units[0].cached
    assert "perplexity_stderr,none" in last.units[0].results["results"]  # bootstrapped: it ran
    assert pools == [] and started == []


def test_the_last_update_says_the_job_ended_however_fast_its_end_came(served):
    """The job's end (its last units and 'done') can all come while the consumer still holds the previous update (a
    Gradio handler sending it to the page): the stream still ends on an update that is done and holds every unit.
    (It ended on the held one: the page stayed at "step1: loading the checkpoint" after Stop, 1 run in 25.)"""
    service, engine, _ = served
    gate, cancel = threading.Event(), threading.Event()
    real_open = engine.open

    @contextmanager
    def held_open(model, revision="main", progress=None):
        assert gate.wait(HANG)
        with real_open(model, revision, progress) as loaded:
            yield loaded

    engine.open = held_open
    try:
        request = service.parse(BenchmarkRequest, model=DEMO_MODEL, revisions=["step1", "step2000"],
                                tasks=["kjv_lambada"], limit=LIMIT - 4)
        updates = service.benchmark(request, cancel=cancel)
        assert not next(updates).done  # the consumer holds this one...
        cancel.set()  # ...while Stop comes and the whole job ends
        gate.set()
        for job in [t for t in threading.enumerate() if t.name == "benchmark-job"]:
            job.join(HANG)
        rest = list(updates)
    finally:
        del engine.open
    assert rest and rest[-1].done and rest[-1].stopped
    assert [u.status for u in rest[-1].units] == ["stopped", "stopped"]


def test_stop_ends_the_job_and_keeps_what_finished(served):
    service, engine, _ = served
    cancel = threading.Event()
    real_open = engine.open

    @contextmanager
    def open_and_stop(model, revision="main", progress=None):
        if revision == "step1000":
            cancel.set()  # Stop pressed while the second checkpoint loads
        with real_open(model, revision, progress) as loaded:
            yield loaded

    engine.open = open_and_stop
    try:
        request = service.parse(BenchmarkRequest, model=DEMO_MODEL, revisions=["step512", "step1000", "step2000"],
                                tasks=["kjv_lambada"], limit=LIMIT - 2)
        last = list(service.benchmark(request, cancel=cancel))[-1]
    finally:
        del engine.open
    assert last.done and last.stopped
    assert [u.status for u in last.units] == ["ok", "stopped", "stopped"]
    kept = list(service.benchmark(request))[-1]  # asked again: the finished checkpoint is kept, the rest run
    assert [u.cached for u in kept.units] == [True, False, False] and all(u.status == "ok" for u in kept.units)


@pytest.mark.parametrize(("raw", "words"), [
    (dict(tasks=["no_such_task_at_all"]), "lm-eval has no task named 'no_such_task_at_all'"),
    (dict(tasks=["kjv_lambda"]), "Did you mean kjv_lambada"),
    (dict(tasks=["lambada"]), "lambada is a group of lm-eval tasks; name its tasks one by one"),
    (dict(limit=0), "limit must be a whole number of documents of at least 1"),
    (dict(limit=-3), "limit must be a whole number of documents of at least 1"),
    (dict(limit=2.5), "limit must be a whole number"),
    (dict(revisions=["step3"]), "Revision 'step3' is not a checkpoint of demo-pythia-kjv"),
    (dict(tasks=[]), "Choose 1 to 8 tasks"),
    (dict(num_fewshot=-1), "num_fewshot"),
    (dict(model="pythia-99m"), "pythia-99m"),
])
def test_bad_input_is_refused_in_words_before_anything_runs(served, raw, words):
    service, _, root = served
    before = service.benchmarks.store.count()
    with pytest.raises(PythiaError) as refused:
        request = service.parse(BenchmarkRequest, **{"model": DEMO_MODEL, "tasks": ["kjv_lambada"], "limit": 3,
                                                     **raw})
        list(service.benchmark(request))
    assert words in str(refused.value)
    assert service.benchmarks.store.count() == before  # nothing evaluated, nothing stored


def test_the_benchmark_endpoint_takes_exactly_its_declared_arguments():
    from model_utils.ui.api import ENDPOINTS, argument_declarations

    (endpoint,) = [e for e in ENDPOINTS if e.name == "benchmark"]
    assert list(argument_declarations(endpoint)) == ["model", "revisions", "tasks", "limit", "num_fewshot"]
    assert endpoint.streams


# -- a real lm-eval task definition, its dataset downloaded through `datasets` from the (fake) Hub --------------
LAMBADA_README = b"""---
configs:
- config_name: default
  data_files:
  - split: test
    path: default/test.jsonl
---
LAMBADA's shape (one "text" per document, the last word to predict), eight documents for the tests.
"""


@pytest.mark.slow  # datasets downloads through HF_ENDPOINT: the test session's fake Hub
def test_lambada_openai_runs_end_to_end_from_the_hub(served, hub, tmp_path, monkeypatch):
    import datasets

    from model_utils.store.demo_model import DEMO_DIR

    from hub_server import Revision

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    texts = (DEMO_DIR / "tasks" / "kjv_lambada.jsonl").read_text().splitlines()[:8]
    hub.state.repos["EleutherAI/lambada_openai"] = {"main": Revision(
        "0" * 39 + "1", {"README.md": LAMBADA_README, "default/test.jsonl": "\n".join(texts).encode()})}
    hub.state.requests.clear()
    service, _, _ = served
    last = _run(service, model=DEMO_MODEL, revisions=["step256", "main"], tasks=["lambada_openai"], limit=None)
    assert [u.status for u in last.units] == ["ok", "ok"], [u.error for u in last.units]
    assert {r.metric for r in last.rows} == {"acc", "perplexity"}
    assert last.units[0].results["n-samples"]["lambada_openai"]["effective"] == 8
    assert "GET /datasets/EleutherAI/lambada_openai/resolve/" + "0" * 39 + "1/default/test.jsonl" in hub.state.requests
    # the same documents through the shipped kjv_lambada (the same task shape): the same numbers
    ours = _run(service, model=DEMO_MODEL, revisions=["step256", "main"], tasks=["kjv_lambada"], limit=8)
    assert [(r.metric, r.value) for r in ours.rows] == pytest.approx([(r.metric, r.value) for r in last.rows])


@pytest.mark.slow
def test_a_task_whose_dataset_the_hub_lacks_fails_in_words(served, hub, tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")
    service, _, _ = served
    last = _run(service, model=DEMO_MODEL, revisions=["main"], tasks=["piqa"], limit=4)
    (unit,) = last.units
    assert unit.status == "failed" and unit.error.startswith("lm-eval could not run this task:")
    assert "piqa" in unit.error


def test_the_chart_draws_eleutherais_published_curve_dashed_beside_ours():
    from model_utils.service.benchmarks import BenchmarkUpdate, UnitResult
    from model_utils.ui.benchmarks_tab import charts_html

    units = tuple(UnitResult("pythia-160m", f"step{s}", s, "lambada_openai", "ok",
                             (Metric("perplexity", 1000 / (1 + s), 5.0), Metric("acc", a, 0.006)))
                  for s, a in ((0, 0.0), (1000, 0.2), (143000, 0.33)))
    html = charts_html(BenchmarkUpdate(units, 3, done=True), shots=0)
    assert "lambada_openai: acc over training" in html
    assert html.count('stroke-dasharray="6 4"') == 2  # the published line, in the wide and the narrow drawing
    assert "pythia-160m (EleutherAI)" in html and html.count('class="error-bar"') == 6  # 3 points x 2 drawings
    assert charts_html(BenchmarkUpdate(units, 3, done=True), shots=5).count("stroke-dasharray") == 2  # 5-shot too
    none = tuple(UnitResult("pythia-14m", u.revision, u.step, u.task, "ok", u.metrics) for u in units)
    assert "stroke-dasharray" not in charts_html(BenchmarkUpdate(none, 3, done=True), shots=0)  # none published


def test_evaluations_beyond_the_limit_wait_their_turn_and_are_told_their_place():
    from model_utils.service.benchmarks import _Slots

    slots, cancel = _Slots(1), threading.Event()
    first, second, told = object(), object(), []
    asked = threading.Event()
    slots.acquire(first, cancel, lambda ahead: None)

    def wait_turn():
        slots.acquire(second, cancel, lambda ahead: (told.append(ahead), asked.set()))

    waiter = threading.Thread(target=wait_turn)
    waiter.start()
    assert asked.wait(30)
    assert told[0] == 1 and waiter.is_alive()  # one evaluation ahead of it, and it waits
    slots.release(first)
    waiter.join(30)
    assert not waiter.is_alive()  # its turn came
    third_cancel = threading.Event()
    third_cancel.set()
    with pytest.raises(EvaluationStopped):  # Stop while waiting: it never starts
        slots.acquire(object(), third_cancel, lambda ahead: None)
    slots.release(second)
