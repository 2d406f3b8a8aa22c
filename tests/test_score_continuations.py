"""lm-eval's loglikelihood through ``score_continuations``: the numbers of the ``score_prompts`` path (what
``/v1/completions`` echo + logprobs gives), computed on the continuation positions only; and evaluation's scoring
giving way to visitors' first tokens in the batch scheduler. Tiny model, float32: milliseconds."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import InvalidParameter
from model_utils.core.sampling import SamplingParams
from model_utils.engine import loaded_model
from model_utils.engine.batching import BatchingConfig
from model_utils.engine.loaded_model import load_ct2_model
from model_utils.service.benchmark_lm import EvaluationStopped, ServiceLM
from model_utils.store.local_dirs import describe_local_dir

GREEDY = SamplingParams(greedy=True, max_new_tokens=8, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def two_lanes(tiny_ct2_dir, cpu_device):
    """The tiny model with two base lanes (two scoring groups side by side), as on a 2-core CPU."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device, BatchingConfig(workers=2))
    yield model
    model.close()


def _by_score_prompts(model, pairs):
    """What lm-eval's scoring read from score_prompts before: the last n positions' log-probs and top tokens."""
    out = []
    for (ids, n), scores in zip(pairs, model.score_prompts([ids for ids, _ in pairs], 1), strict=True):
        positions = scores.positions[len(scores.positions) - n:] if n else ()
        out.append((float(sum(p.log_prob for p in positions)),
                    all(p.alternatives[0][0] == t for p, t in zip(positions, ids[len(ids) - n:], strict=True))))
    return out


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for (total, greedy), (want_total, want_greedy) in zip(got, expected, strict=True):
        assert total == pytest.approx(want_total, rel=1e-6, abs=1e-5)
        assert greedy == want_greedy


def _pairs(model, seed=0):
    rng = np.random.default_rng(seed)
    vocab = model.tokenizer.get_vocab_size()

    def seq(length):
        return [int(t) for t in rng.integers(1, vocab, length)]

    pairs = [(seq(length), n) for length, n in [(40, 3), (33, 1), (21, 20), (12, 5), (7, 1), (3, 2), (9, 0)]]
    pairs.append(([0, 0], 1))  # the shortest: one token of context, the end-of-text token twice
    pairs.append((seq(5) + [model.eos_id] + seq(4) + [model.eos_id] + seq(3), 6))  # end-of-text inside
    # longer than one group: scored alone, however many tokens a group holds
    pairs.append((seq(loaded_model.GROUP_TOKENS + 300), 200))
    pairs += [(seq(int(rng.integers(60, 90))), int(rng.integers(1, 4))) for _ in range(40)]  # LAMBADA's shape
    # greedy continuations: each token the likeliest after those before it
    for length in (10, 30):
        ids = seq(length)
        (scores,) = model.score_prompts([ids], 1)
        pairs.append(([*ids, scores.next_tokens[0][0]], 1))
    return pairs


def test_continuations_score_as_the_score_prompts_path_does(two_lanes):
    pairs = _pairs(two_lanes)
    expected = _by_score_prompts(two_lanes, pairs)
    assert any(greedy for _, greedy in expected[-2:]), "the greedy continuations are found greedy"
    _assert_same(two_lanes.score_continuations(pairs), expected)
    assert two_lanes.score_continuations([]) == []
    assert two_lanes.score_continuations([([5, 6, 7], 0)]) == [(0.0, True)]


@pytest.mark.parametrize("path", ["_score_forward", "_score_generated"])
def test_both_ct2_calls_give_the_same_numbers(two_lanes, path):
    """The two ways a group is scored (every position's log-probs from forward_batch, or generate_batch's steps
    past the shortest context) agree with score_prompts, on groups of mixed lengths and continuations."""
    pairs = [p for p in _pairs(two_lanes, seed=1) if p[1] and len(p[0]) - p[1] >= 2]
    for group in (pairs[:7], pairs[7:20], pairs[20:]):
        _assert_same(getattr(two_lanes, path)(group), _by_score_prompts(two_lanes, group))


def test_a_continuation_the_sequence_cannot_hold_is_refused_in_words(two_lanes):
    for pair in [([5, 6, 7], 3), ([5], 1), ([], 0), ([5, 6], -1)]:
        with pytest.raises(InvalidParameter, match="first token has no log-prob"):
            two_lanes.score_continuations([pair])


def test_a_visitor_arriving_while_an_evaluation_scores_gets_its_first_token_before_its_next_group(two_lanes):
    """The visitor arrives between two of the evaluation's scoring groups (from its progress report, in the
    evaluation's own thread); the scheduler counts the groups that started between the visitor's arrival and its
    first token: none, though the evaluation went on afterwards."""
    scheduler = two_lanes.scheduler
    visitor: dict = {}
    arrived = threading.Event()

    def read(stream) -> None:
        try:
            next(iter(stream))
            visitor["groups_before"] = stream.groups_before_first_token
            visitor["groups_at_first"] = scheduler.stats.scoring_groups
            for _ in stream:
                pass
        finally:
            stream.close()

    def progress(done: int, total: int) -> None:
        if not arrived.is_set():
            arrived.set()
            ids = two_lanes.tokenizer.encode("And God said", add_special_tokens=False).ids
            stream = two_lanes.steps(ids, GREEDY)  # queued now: the evaluation's next group comes after it
            visitor["thread"] = threading.Thread(target=read, args=(stream,), daemon=True)
            visitor["thread"].start()

    lm = ServiceLM(two_lanes, progress=progress)
    # 190 LAMBADA-like pairs, a few groups (the 1,324-token one scored alone is the other tests' case)
    distinct = [p for p in _pairs(two_lanes, seed=2) if p[1] and len(p[0]) < 100][:10]
    repeats = 19
    requests = [(None, ids[:len(ids) - n], ids[len(ids) - n:]) for ids, n in distinct * repeats]
    scored = lm._loglikelihood_tokens(requests)
    visitor["thread"].join(timeout=60)
    assert visitor["groups_before"] == 0
    assert scheduler.stats.scoring_groups > visitor["groups_at_first"], "the evaluation went on after it"
    _assert_same(scored, _by_score_prompts(two_lanes, distinct) * repeats)


def test_a_stop_between_groups_ends_the_scoring_once_the_running_groups_end(two_lanes):
    """lm-eval's whole batch of pairs goes to the engine in one call; Stop acts between its groups: a Stop at the
    first progress report lets only the groups already running end, and the rest are never scored."""
    cancel, reports = threading.Event(), []

    def progress(done: int, total: int) -> None:
        reports.append((done, total))
        cancel.set()  # the visitor presses Stop as the first group ends

    distinct = [p for p in _pairs(two_lanes, seed=2) if p[1] and len(p[0]) < 100][:10]
    requests = [(None, ids[:len(ids) - n], ids[len(ids) - n:]) for ids, n in distinct * 19]
    groups = two_lanes.scheduler.stats.scoring_groups
    with pytest.raises(EvaluationStopped):
        ServiceLM(two_lanes, cancel=cancel, progress=progress)._loglikelihood_tokens(requests)
    assert len(reports) == 1 and 0 < reports[0][0] < reports[0][1] == len(requests), reports
    started = two_lanes.scheduler.stats.scoring_groups - groups
    assert started <= two_lanes.batching.workers, f"{started} groups started, one per worker at most"
    everything = ServiceLM(two_lanes, progress=lambda done, total: reports.append((done, total)))
    everything._loglikelihood_tokens(requests)
    assert reports[-1] == (len(requests), len(requests)), "the last report says every pair was scored"
    assert two_lanes.scheduler.stats.scoring_groups - groups > 3 * started, "many groups: the Stop saved most"


def test_a_visitor_that_cannot_start_delays_a_group_only_for_the_bound(tiny_ct2_dir, cpu_device):
    """Evaluation is never starved: a visitor's request that waits (here for a batch partner that never comes)
    holds the next scoring group back only for the bound, and the group then starts, counted."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device,
                           BatchingConfig(max_batch_size=2, window_s=3600.0, quiet_s=3600.0))
    try:
        stream = model.steps([5, 6, 7], GREEDY)  # waits for a second row for an hour
        assert model.scheduler.visitors_about()
        assert model.scheduler.start_scoring_group(timeout=0.01) is True  # visitors about: short groups
        assert model.scheduler.stats.gave_way == 1 and model.scheduler.stats.scoring_groups == 1
        stream.close()
    finally:
        model.close()


def test_an_evaluations_python_waits_for_a_visitors_first_token(two_lanes):
    """``give_way`` (called by lm-eval's Python between documents) returns only once a waiting visitor has its first
    token."""
    ids = two_lanes.tokenizer.encode("And God said", add_special_tokens=False).ids
    gave_way = two_lanes.scheduler.stats.gave_way
    stream = two_lanes.steps(ids, GREEDY)
    try:
        two_lanes.give_way()
        assert stream.groups_before_first_token is not None, "it returned before the visitor's first token"
        assert two_lanes.scheduler.stats.gave_way == gave_way + 1
        list(stream)
    finally:
        stream.close()


def test_on_a_saturated_server_an_evaluations_python_waits_for_the_bound_then_has_its_turn(tiny_ct2_dir,
                                                                                        cpu_device):
    """A visitor who waits for a lane, not for the evaluation: the evaluation's Python waits for it only for the
    bound, then goes on for as long before it waits again (it is never starved by a queue it did not make)."""
    info = Catalog().add(describe_local_dir(tiny_ct2_dir, name="tiny-pythia"))
    model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device,
                           BatchingConfig(max_batch_size=2, window_s=3600.0, quiet_s=3600.0))
    try:
        model.scheduler.give_way(timeout=0.5)
        assert model.scheduler.stats.gave_way == 0, "no visitor: no wait"
        stream = model.steps([5, 6, 7], GREEDY)  # waits for a second row for an hour
        model.scheduler.give_way(timeout=0.5)
        assert model.scheduler.stats.gave_way == 1 and stream.groups_before_first_token is None
        model.scheduler.give_way(timeout=0.5)  # right after: the evaluation's turn
        assert model.scheduler.stats.gave_way == 1
        stream.close()
    finally:
        model.close()
