"""Research tools: scoring against a transformers reference, token probabilities, learning
curves across checkpoints, side-by-side comparison."""

import math
import threading
import time

import numpy as np
import pytest
import torch
from transformers import GPTNeoXForCausalLM

from model_utils.core.catalog import Catalog
from model_utils.core.sampling import SamplingParams
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.engine.generation import generate
from model_utils.engine.prompts import PreparedPrompt
from model_utils.engine.scoring import WINDOW, TextScore, score_text
from model_utils.engine.tokens import ScoredToken, TokenText
from model_utils.service import (
    CompareRequest,
    MemorizationRequest,
    PythiaService,
    ScoreAcrossRequest,
    ScoreRequest,
)
from model_utils.service.choices import BatchJob, decode_choice
from model_utils.store.disk import ModelStore

from ct2_hooks import hooked_loader


@pytest.fixture(scope="module")
def reference(tiny_hf_dir):
    return GPTNeoXForCausalLM.from_pretrained(str(tiny_hf_dir), dtype=torch.float32).eval()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """The reference: numpy's log-softmax, independent of CT2's."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference_log_probs(reference, eos_id, ids):
    """transformers' log-prob of every token, windows of WINDOW tokens each after <|endoftext|>."""
    out = []
    for start in range(0, len(ids), WINDOW):
        window = ids[start:start + WINDOW]
        with torch.no_grad():
            logits = reference(torch.tensor([[eos_id, *window]])).logits[0].numpy()
        rows = log_softmax(logits[:-1])
        out += [float(rows[i, t]) for i, t in enumerate(window)]
    return np.array(out)


@pytest.mark.parametrize("text", ["Once upon a time, in a quiet village by the river 🙂 中文",
                                  " ".join(f"w{i}" for i in range(1500))],  # the second spans 3 windows
                         ids=["one-window-emoji-cjk", "three-windows"])
def test_scores_match_transformers(tiny_model, reference, text):
    result = score_text(tiny_model, text)
    ids = tiny_model.tokenizer.encode(text).ids
    assert [t.token_id for t in result.tokens] == ids
    expected = reference_log_probs(reference, tiny_model.eos_id, ids)
    got = np.array([t.logprob for t in result.tokens])
    assert np.abs(got - expected).max() < 1e-4
    assert result.windows == math.ceil(len(ids) / WINDOW)
    assert (result.note is not None) == (result.windows > 1)


def test_perplexity_and_bits_per_byte_by_hand():
    tokens = tuple(ScoredToken(i, TokenText(t, t.encode()), lp)
                   for i, (t, lp) in enumerate([("ab", -1.0), ("c", -2.0), ("def", -3.0)]))
    score = TextScore(tokens, num_bytes=6, windows=1)
    assert score.log_likelihood == -6.0
    assert score.perplexity == pytest.approx(math.exp(2.0))  # exp(6 / 3 tokens)
    assert score.bits_per_byte == pytest.approx(6 / math.log(2) / 6)  # 6 nats = 8.66 bits over 6 bytes


def test_alternatives_agree_with_softmax_over_forward_batch(tiny_model):
    """The page's token views come from the one generation path (a choice with log-probs, as the OpenAI routes')."""
    prompt = tiny_model.tokenizer.encode("The capital of France").ids
    params = SamplingParams(greedy=True, max_new_tokens=12, repetition_penalty=1.0)
    job = BatchJob(1, 12, params, logprobs=5, live=True)
    *_, last = decode_choice(tiny_model, 0, PreparedPrompt(tuple(prompt)), job, threading.Event())
    scores = last.tokens[:last.timing.num_tokens]
    generated = [t.token_id for t in scores]
    assert len(generated) == last.timing.num_tokens > 0
    logits = np.asarray(tiny_model.generator.forward_batch([tiny_model.tokens(list(prompt) + generated)]))
    probs = np.exp(log_softmax(logits[0].astype(np.float64)))
    for k, score in enumerate(scores):
        row = probs[len(prompt) - 1 + k]
        top = np.argsort(-row)[:5]
        assert [math.exp(a.logprob) for a in score.top] == pytest.approx(row[top].tolist(), abs=1e-5)
        assert score.probability == pytest.approx(row[score.token_id], abs=1e-5)
        assert score.top[0].logprob == pytest.approx(score.logprob, abs=1e-6)  # greedy picked the top token
        assert score.token_id == top[0]


def make_hub_service(tmp_path, **engine_options) -> PythiaService:
    catalog = Catalog()
    engine = Engine(resolve_device("cpu", "int8", 1), catalog=catalog, store=ModelStore(tmp_path / "store"),
                    memory_budget_bytes=8 * 2**30, **engine_options)
    return PythiaService(engine, catalog, "pythia-160m")


@pytest.fixture
def hub_service(fresh_hub, tmp_path):
    service = make_hub_service(tmp_path)
    yield service
    service.engine.close()


def test_learning_curve_has_a_point_per_revision_and_survives_a_failure(hub_service):
    rows = hub_service.score_across(hub_service.parse(
        ScoreAcrossRequest, text="Once upon a time there was a clockmaker.", model="pythia-160m",
        revisions=["step1000", "main", "step2000", "step3000", "step143000"]))
    by_revision = {r.revision: r for r in rows}
    assert list(by_revision) == ["step1000", "step2000", "step3000", "main"]  # by step; step143000 is main
    assert by_revision["step2000"].status == "failed" and "step2000" in by_revision["step2000"].error
    for revision in ("step1000", "step3000", "main"):
        assert by_revision[revision].status == "ok" and by_revision[revision].perplexity > 1
    assert len({by_revision[r].perplexity for r in ("step1000", "step3000", "main")}) == 3


def test_compare_streams_every_column_and_stop_stops_all(fresh_hub, tmp_path):
    stop = threading.Event()  # what the Stop button sets
    stop_returned = threading.Event()
    steps_after_stop = []

    def on_step(step, prompt):  # each column decodes alone: a batch of one row, whose steps count from 0
        if stop_returned.is_set():
            steps_after_stop.append(step.step)
        if step.step == 3:  # three tokens each, then every column holds until Stop comes
            assert stop.wait(30), "Stop never came"

    service = make_hub_service(tmp_path, loader=hooked_loader(on_step))
    engine = service.engine
    try:
        params = SamplingParams(greedy=True, max_new_tokens=1024, repetition_penalty=1.0)
        pairs = [["pythia-160m", "step1000"], {"model": "pythia-160m", "revision": "step3000"},
                 ["pythia-70m-deduped", "main"]]
        request = service.parse(CompareRequest, prompt="Every morning the clockmaker", pairs=pairs, sampling=params)
        updates = service.compare(request, cancel=stop)
        seen = [next(updates)]
        while not all(c.num_tokens == 3 or c.done for c in seen[-1]):
            seen.append(next(updates))
        assert len(seen) > 1, "replies arrive in several updates"
        assert [c.model for c in seen[-1]] == ["pythia-160m", "pythia-160m", "pythia-70m-deduped"]
        assert [(c.num_tokens, c.done) for c in seen[-1]] == [(3, False)] * 3, "every column is decoding"
        updates.close()  # the visitor pressed Stop / left: every column stops
        stop_returned.set()
        generators, schedulers = [], []
        for model, revision in [("pythia-160m", "step1000"), ("pythia-160m", "step3000"),
                                ("pythia-70m-deduped", "main")]:
            with engine.open(model, revision) as loaded:
                generators.append(loaded.generator)
                schedulers.append(loaded.scheduler)
        deadline = time.monotonic() + 30  # poll with a deadline: CT2 ends each batch once its row stopped
        while any(g.num_active_batches for g in generators) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not any(g.num_active_batches for g in generators), "CT2 still decodes after Stop"
        assert steps_after_stop == [], "decoding went on after Stop"
        assert [s.stats.tokens for s in schedulers] == [3, 3, 3], "each column stopped where Stop found it"
    finally:
        engine.close()


def test_compare_whole_run_matches_single_generations(hub_service):
    params = SamplingParams(greedy=True, max_new_tokens=20, repetition_penalty=1.0)
    pairs = [["pythia-160m", "step1000"], ["pythia-160m", "step3000"]]
    final = list(hub_service.compare(hub_service.parse(CompareRequest, prompt="Hello there", pairs=pairs,
                                                       sampling=params)))[-1]
    for column, (model, revision) in zip(final, pairs, strict=True):
        with hub_service.engine.open(model, revision) as loaded:
            assert column.text == generate(loaded, "Hello there", params).text
        assert column.done and column.error is None and column.num_tokens > 0


def test_bad_research_arguments(hub_service):
    from model_utils.core.errors import InvalidParameter, InvalidRevision, UnknownModel

    with pytest.raises(InvalidRevision):
        hub_service.parse(ScoreAcrossRequest, text="text", model="pythia-160m", revisions=["step7"])
    with pytest.raises(InvalidParameter):
        hub_service.parse(ScoreAcrossRequest, text="text", model="pythia-160m", revisions=[])
    with pytest.raises(UnknownModel):
        hub_service.parse(CompareRequest, prompt="hi", pairs=[["gpt2", "main"]])
    with pytest.raises(InvalidParameter):
        hub_service.parse(CompareRequest, prompt="hi", pairs=[["pythia-160m"]] * 5)
    with pytest.raises(InvalidParameter):
        hub_service.parse(ScoreRequest, text="", model="pythia-160m", revision="step1000")


def test_memorization_equals_a_transformers_greedy_reference(engine, reference, tiny_hf_dir):
    """Float32 CT2 against transformers without a KV cache: the same 32 greedy tokens after the same prefix."""
    from tokenizers import Tokenizer

    service = PythiaService(engine, engine.catalog, "tiny-pythia")
    text = open(__file__.replace("test_research.py", "../model_utils/store/data/tiny_corpus.txt")).read()[:3000]
    (row,) = service.memorization(service.parse(MemorizationRequest, text=text, model="tiny-pythia",
                                                revisions=["main"]))
    ids = Tokenizer.from_file(str(tiny_hf_dir / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    with torch.no_grad():
        out = reference.generate(torch.tensor([ids[:32]]), max_new_tokens=32, do_sample=False, use_cache=False,
                                 eos_token_id=0, pad_token_id=0, repetition_penalty=1.0)
    expected = [t for t in out[0, 32:].tolist()]
    if 0 in expected:  # both stop at <|endoftext|>
        expected = expected[:expected.index(0)]
    truth = ids[32:64]
    same = [i < len(expected) and expected[i] == t for i, t in enumerate(truth)]
    assert row.status == "ok"
    assert row.match_fraction == pytest.approx(sum(same) / 32)
    assert row.matched_prefix == next((i for i, ok in enumerate(same) if not ok), 32)
    tokenizer = Tokenizer.from_file(str(tiny_hf_dir / "tokenizer.json"))
    assert row.continuation == tokenizer.decode(expected)


def test_memorization_refuses_bad_arguments_before_any_work(engine):
    from model_utils.core.errors import InvalidParameter

    service = PythiaService(engine, engine.catalog, "tiny-pythia")
    for kwargs in (dict(prefix_tokens=0), dict(continuation_tokens=1000), dict(models=[]), dict(prefix_tokens=3.5)):
        with pytest.raises(InvalidParameter):
            service.parse(MemorizationRequest, text="some text", model="tiny-pythia", **kwargs)
    assert engine.cache.loaded() == []
    with pytest.raises(InvalidParameter, match="memorization needs"):  # said once, not once per checkpoint
        service.memorization(service.parse(MemorizationRequest, text="too short", model="tiny-pythia"))


def test_scaling_curves_name_each_model_and_fail_per_pair(hub_service):
    rows = hub_service.score_across(hub_service.parse(
        ScoreAcrossRequest, text="Once upon a time there was a clockmaker.",
        models=["pythia-160m", "pythia-70m-deduped"], revisions=["main", "step3000"]))
    got = {(r.model, r.revision): r.status for r in rows}
    assert got == {("pythia-160m", "step3000"): "ok", ("pythia-160m", "main"): "ok",
                   ("pythia-70m-deduped", "step3000"): "failed", ("pythia-70m-deduped", "main"): "ok"}
    assert [r.model for r in rows] == ["pythia-160m", "pythia-160m", "pythia-70m-deduped", "pythia-70m-deduped"]
    assert all("model" in r.as_dict() and "tokens" not in r.as_dict() for r in rows)


def test_stop_ends_a_sweep_before_the_next_checkpoint(hub_service):
    cancel = threading.Event()
    seen = []

    def progress(p):  # the visitor presses Stop while the second checkpoint is being scored
        seen.append(p)
        if len(seen) == 2:
            cancel.set()

    request = hub_service.parse(ScoreAcrossRequest, text="Once upon a time", model="pythia-160m",
                                revisions=["step1000", "step3000", "main"])
    rows = hub_service.score_across(request, progress=progress, cancel=cancel)
    assert [r.status for r in rows].count("stopped") == 1 and [r.status for r in rows].count("ok") == 2
    assert "Stopped before this checkpoint" in next(r.error for r in rows if r.status == "stopped")


def test_one_failing_compare_column_leaves_the_others_running(hub_service):
    pairs = [["pythia-160m", "step2000"], ["pythia-160m", "step1000"]]  # the fake Hub has no step2000
    request = hub_service.parse(CompareRequest, prompt="Hello there", pairs=pairs, greedy=True, max_new_tokens=8)
    final = list(hub_service.compare(request))[-1]
    assert final[0].error and "step2000" in final[0].error and not final[0].text
    assert final[1].error is None and final[1].text and final[1].done
