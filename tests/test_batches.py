"""Batches of choices (what the OpenAI routes and lm-eval send), in process on the real demo model (float32 CT2):
scored prompts agree with /score, the greedy next token comes from the same numbers, a prompt that fills the context
is scored and says what could not be generated, and one client's rows are bounded."""

from __future__ import annotations

import pytest

from model_utils.core.catalog import CONTEXT_LENGTH
from model_utils.core.errors import InvalidParameter
from model_utils.service import (
    BatchChatRequest,
    BatchCompletionRequest,
    BatchUsage,
    ChoiceDelta,
    ClientBusy,
    ScoreRequest,
)
from model_utils.service.client_limits import ApiShareFull, ClientLimits

GREEDY = dict(temperature=0, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def service(float32_service):
    return float32_service


def run(service, request_type=BatchCompletionRequest, **raw) -> tuple[dict[int, list[ChoiceDelta]], BatchUsage]:
    method = service.batch_completion if request_type is BatchCompletionRequest else service.batch_chat
    choices: dict[int, list[ChoiceDelta]] = {}
    usage = None
    for item in method(service.parse(request_type, **raw)):
        if isinstance(item, BatchUsage):
            usage = item
        else:
            choices.setdefault(item.index, []).append(item)
    return choices, usage


def whole(deltas: list[ChoiceDelta]) -> tuple[str, tuple]:
    return "".join(d.text for d in deltas), tuple(t for d in deltas for t in d.tokens)


def test_a_scored_prompt_agrees_with_score_and_its_next_token_is_the_top_one(service):
    text = "And God said, Let there be light: and there was light."
    reference = service.score(service.parse(ScoreRequest, text=text))
    choices, usage = run(service, prompt=[[0, *(t.token_id for t in reference.tokens)]], echo=True, max_tokens=1,
                         logprobs=2, **GREEDY)
    shown, tokens = whole(choices[0])
    assert tokens[0].logprob is None and tokens[0].top is None  # nothing came before the first token
    prompt_part = tokens[1:len(reference.tokens) + 1]
    assert [t.logprob for t in prompt_part] == pytest.approx([t.logprob for t in reference.tokens], abs=1e-4)
    generated = tokens[-1]
    assert generated.logprob == generated.top[0].logprob == max(a.logprob for a in generated.top)
    assert shown.startswith(text) and usage == BatchUsage(len(reference.tokens) + 1, 1)
    for token in tokens[1:]:
        assert token.logprob <= token.top[0].logprob  # the top alternative is at least as likely as the token


def test_a_prompt_that_fills_the_context_is_scored_and_says_what_could_not_be_generated(service):
    ids = [(11 * i) % 1000 + 3 for i in range(CONTEXT_LENGTH)]
    choices, _ = run(service, prompt=[ids], echo=True, max_tokens=1, logprobs=0, **GREEDY)
    (last,) = choices[0]
    assert len(last.tokens) == CONTEXT_LENGTH + 1 and last.notice is None  # the prompt, and the token after it
    choices, usage = run(service, prompt=[ids], max_tokens=3, **GREEDY)
    last = choices[0][-1]
    assert last.finish_reason == "length" and usage.completion_tokens == 1
    assert "1 of the 3 tokens asked for could be generated" in last.notice
    with pytest.raises(InvalidParameter, match="2,049 tokens; the context is 2,048") as refused:
        service.parse(BatchCompletionRequest, prompt=[ids + [3]], echo=True, max_tokens=0)
    assert refused.value.param == "prompt"


def test_choices_are_numbered_prompt_by_prompt_and_counted(service):
    choices, usage = run(service, prompt=["And God said", "In the beginning"], n=3, max_tokens=5, temperature=0.9)
    assert sorted(choices) == list(range(6))
    assert usage.completion_tokens == sum(d.completion_tokens for deltas in choices.values() for d in deltas)
    assert all(deltas[-1].finish_reason is not None for deltas in choices.values())


def test_decoded_log_probs_line_up_with_the_text(service):
    choices, _ = run(service, prompt=["And the LORD said unto Moses,"], max_tokens=10, logprobs=3, echo=True,
                     **GREEDY)
    text, tokens = whole(choices[0])
    assert tokens[0].offset == 0 and [t.offset for t in tokens] == sorted(t.offset for t in tokens)
    assert all(text[t.offset:].startswith(t.text) for t in tokens if t.text.isascii())
    assert all(t.logprob == t.top[0].logprob for t in tokens[-10:])  # greedy


def test_stop_strings_end_a_choice_and_are_not_returned(service):
    free, _ = run(service, prompt=["And God said"], max_tokens=30, **GREEDY)
    text, _ = whole(free[0])
    assert "," in text, text  # the demo continues with a comma-separated verse
    stopped, _ = run(service, prompt=["And God said"], max_tokens=30, stop=[","], **GREEDY)
    cut, _ = whole(stopped[0])
    assert cut == text[:text.index(",")] and stopped[0][-1].finish_reason == "stop"


def test_a_chat_batch_is_the_transcript_led_by_the_system_text(service):
    plain, plain_usage = run(service, BatchChatRequest, message="Who made the heaven?", max_new_tokens=8, **GREEDY)
    led, led_usage = run(service, BatchChatRequest, system="A dialogue.", message="Who made the heaven?",
                         max_new_tokens=8, **GREEDY)
    assert led_usage.prompt_tokens > plain_usage.prompt_tokens
    assert not whole(plain[0])[0].startswith(" ")  # the Bot's line starts after "Bot:"


def test_one_client_holds_at_most_its_rows_and_the_table_empties():
    limits = ClientLimits(max_rows=4)
    with limits.hold("a", 3):
        with pytest.raises(ClientBusy, match="You have 3 choices"):
            with limits.hold("a", 2):
                pass
        with limits.hold("b", 4):  # another client is not affected
            assert limits.in_flight("a") == 3 and limits.in_flight("b") == 4
        with limits.hold("a", 1):
            assert limits.in_flight("a") == 4
    with pytest.raises(InvalidParameter, match="at most 4"):
        with limits.hold("a", 5):
            pass
    assert len(limits) == 0  # nothing per client is kept once its requests end


def test_api_clients_together_hold_at_most_the_api_rows_however_many_addresses(caplog):
    limits = ClientLimits(max_rows=8, max_api_rows=16)
    with limits.hold("address:127.0.0.1", 8), limits.hold("address:127.0.0.2", 8):
        for i in range(3, 40):  # every new address is turned away, each within its own cap
            with pytest.raises(ApiShareFull, match="busy with other API requests"):
                with limits.hold(f"address:127.0.0.{i}", 1):
                    pass
        assert limits.total() == 16
    with limits.hold("address:127.0.0.3", 8):  # rows given back are free again
        assert limits.total() == 8
    assert limits.total() == 0 and len(limits) == 0
    refusals = [r.getMessage() for r in caplog.records if "API rows full" in r.getMessage()]
    assert len(refusals) <= 5, "a flood of refusals is a few lines, not one each"


def test_no_api_row_limit_means_only_each_clients_own():
    limits = ClientLimits(max_rows=8, max_api_rows=None)
    with limits.hold("a", 8), limits.hold("b", 8), limits.hold("c", 8):
        assert limits.total() == 24


def test_sequences_shared_among_the_cores_score_as_one_call_does(tiny_ct2_dir, cpu_device):
    """score_prompts shares many sequences among the base lanes' workers (one forward each, side by side): the
    numbers and their order are those of one worker scoring them all (to float rounding: a batch of other
    sequences pads and sums in another order)."""
    from model_utils.engine.batching import BatchingConfig
    from model_utils.engine.loaded_model import load_ct2_model
    from model_utils.store.local_dirs import describe_local_dir

    info = describe_local_dir(tiny_ct2_dir, name="tiny")
    sequences = [[0, *range(5, 5 + n)] for n in (40, 33, 21, 12, 7)]  # longest first, as lm-eval sends them
    scored = {}
    for workers in (1, 2):
        model = load_ct2_model(tiny_ct2_dir, info, "main", cpu_device, BatchingConfig(workers=workers))
        try:
            scored[workers] = model.score_prompts(sequences, 3)
        finally:
            model.close()
    assert [len(s.positions) for s in scored[2]] == [len(s) - 1 for s in sequences]
    for shared, alone in zip(scored[2], scored[1], strict=True):
        assert [p.log_prob for p in shared.positions] == pytest.approx([p.log_prob for p in alone.positions], abs=1e-4)
        assert [p.alternatives[0][0] for p in shared.positions] == [p.alternatives[0][0] for p in alone.positions]
        assert shared.next_tokens[0][0] == alone.next_tokens[0][0]
