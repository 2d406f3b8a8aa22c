"""The live app driven through gradio_client, one Client per simulated user."""

import math
import threading
import time
from collections import Counter

import pytest
from gradio_client import Client
from scheduler_log import waiting

from model_utils.settings import Settings

from concurrency import wait_for
from ct2_hooks import Hold, hooked_steps, load_hookable_ct2_model
from live_app import running_app

pytestmark = pytest.mark.slow  # a live server, a browser or a subprocess

DEMO = "demo-pythia-kjv"
HANG = 60  # seconds a step may take on a loaded 2-core machine before the test counts it as stuck


@pytest.fixture(scope="module")
def live(model_cache):
    settings = Settings(demo=True, cache_dir=str(model_cache), device="cpu")
    with running_app(settings) as (url, engine):
        yield url, engine


@pytest.fixture
def client(live):
    return Client(live[0], verbose=False)


def test_the_api_page_says_what_the_declarations_say(client, live):
    """Every endpoint's arguments on the API page -- names, order, defaults, range and help -- are the
    service's declarations, and every result has a type (never "Any")."""
    from model_utils.core.sampling import field_bounds
    from model_utils.ui.api import ENDPOINTS, argument_declarations

    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/chat", "/complete", "/models", "/score", "/score_across", "/memorization", "/compare"} <= set(info)
    for endpoint in ENDPOINTS:
        shown = info[f"/{endpoint.name}"]
        declared = argument_declarations(endpoint)
        assert [p["parameter_name"] for p in shown["parameters"]] == list(declared), endpoint.name
        for parameter, (name, field) in zip(shown["parameters"], declared.items(), strict=True):
            b = field_bounds(field)
            assert b.info and b.info in parameter["python_type"]["description"], (endpoint.name, name)
            if b.minimum is not None:
                assert f"({b.minimum:g}-{b.maximum:g})" in parameter["python_type"]["description"], name
            if not field.is_required() and name not in ("model", "revision"):
                default = list(b.default) if isinstance(b.default, tuple) else b.default
                assert parameter["parameter_default"] == default, (endpoint.name, name)
        assert shown["description"] == endpoint.summary
        for returned in shown["returns"]:
            assert returned["python_type"]["type"] not in ("Any", ""), (endpoint.name, returned)
    chat = {p["parameter_name"]: p for p in info["/chat"]["parameters"]}
    assert chat["model"]["parameter_default"] == DEMO and chat["revision"]["parameter_default"] == "main"
    assert "greedy" in chat["temperature"]["python_type"]["description"]  # 0 means greedy; /chat has no `greedy`
    assert [p["parameter_name"] for p in info["/score_across"]["parameters"]] == ["text", "model", "models",
                                                                                   "revisions"]


def test_streamed_chunks_grow_and_end_with_predict_text(client):
    kwargs = dict(prompt="Once upon a time", temperature=0.05, top_k=1, max_new_tokens=40,
                  repetition_penalty=1.0)
    job = client.submit(api_name="/complete", **kwargs)
    chunks = list(job)
    final = client.predict(api_name="/complete", **kwargs)
    assert len(chunks) > 1
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.startswith(a)
    assert chunks[-1] == final == job.outputs()[-1]


def test_chat_honours_history(client, live):
    _, engine = live
    history = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    args = dict(message="Who are you?", top_k=1, max_new_tokens=30, repetition_penalty=1.0, temperature=0.05)
    with_history = client.predict(history=history, api_name="/chat", **args)
    without = client.predict(api_name="/chat", **args)
    # the same request computed directly from the transcript, through the engine
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.generation import generate
    from model_utils.engine.prompts import CHAT_STOP_STRINGS, prepare_chat
    from model_utils.service.requests import normalize_history

    params = SamplingParams(top_k=1, max_new_tokens=30, repetition_penalty=1.0, temperature=0.05)
    with engine.open(DEMO) as model:
        chat_prompt = prepare_chat(model.tokenizer, normalize_history(history), "Who are you?", 30)
        expected = generate(model, chat_prompt, params, stop=CHAT_STOP_STRINGS).text.lstrip()
        expected_without = generate(model, prepare_chat(model.tokenizer, [], "Who are you?", 30), params,
                                    stop=CHAT_STOP_STRINGS).text.lstrip()
    assert with_history == expected
    assert without == expected_without


def test_models_lists_everything(client):
    rows = client.predict(api_name="/models")
    names = {r["model"] for r in rows}
    assert {"pythia-14m", "pythia-160m", "pythia-160m-deduped", "pythia-12b", "pythia-12b-deduped", DEMO} <= names
    demo = next(r for r in rows if r["model"] == DEMO)
    assert not demo["random_weights"] and demo["fits"]
    assert demo["revisions"][0] == "main" and len(demo["revisions"]) >= 8  # its own training checkpoints
    assert all({"cached", "loaded", "fits", "note"} <= set(r) for r in rows)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(message="hi", model="gpt2"), "Unknown model"),
    (dict(message="hi", model="pythia-160m", revision="step7"), "not a Pythia checkpoint"),
    (dict(message="hi", revision="step7"), "not a checkpoint of demo-pythia-kjv. Use one of: main, step0"),
    (dict(message="   "), "Type a message first"),
    (dict(message="hi", temperature=-1), "temperature must be"),
    (dict(message="hi", top_k=3.7), "top_k must be an integer"),
    (dict(message="hi", max_new_tokens=100000), "max_new_tokens"),
    (dict(message="x" * 20001), "limit is 20,000"),
    (dict(message="hi", history=[{"role": "system", "content": "x"}]), "history[0]"),
], ids=["unknown-model", "hub-model-bad-revision", "demo-bad-revision", "blank-message", "negative-temperature",
        "fractional-top_k", "too-many-new-tokens", "message-too-long", "history-with-system-role"])
def test_bad_arguments_get_readable_errors(client, kwargs, expected):
    kwargs.setdefault("model", DEMO)
    with pytest.raises(Exception) as info:
        client.predict(api_name="/chat", **kwargs)
    message = str(info.value)
    assert expected in message
    assert "Traceback" not in message and "/model_utils/" not in message


def test_hub_model_without_network_says_how_to_run_offline(client, monkeypatch):
    # The test Hub serves no pythia-31m: the request fails like an unreachable Hub would.
    with pytest.raises(Exception) as info:
        client.predict(message="hi", model="pythia-31m", api_name="/chat")
    assert "pythia-31m" in str(info.value)


def test_concurrent_users_are_batched_and_correct(model_cache, queue_log):
    """Four users whose requests wait together for the lane decode in one batch, each reply as it is alone.

    One lane and no extra batches; a reply ahead holds the lane (in CT2's own step, tests/ct2_hooks.py) until all
    four wait, as the scheduler's log says: what they share does not depend on how fast their requests arrive."""
    settings = Settings(demo=True, cache_dir=str(model_cache), device="cpu", workers=1, max_batches=1)
    with running_app(settings, loader=load_hookable_ct2_model) as (url, engine):
        prompts = [f"User {i} says" for i in range(4)]
        args = dict(max_new_tokens=20, top_k=1, repetition_penalty=1.0, model=DEMO, api_name="/complete")
        solo = Client(url, verbose=False)
        expected = [solo.predict(prompt=p, **args) for p in prompts]
        with engine.open(DEMO) as model:
            scheduler = model.scheduler
        hold = Hold(HANG)  # the reply ahead holds the lane until the test lets it go
        clients = [Client(url, verbose=False) for _ in prompts]  # one client per simulated user
        with hooked_steps(model, hold):
            ahead = Client(url, verbose=False).submit(prompt="Once upon a time", max_new_tokens=4, model=DEMO,
                                                      api_name="/complete")
            assert hold.decoding(), "the reply ahead never started"
            before = scheduler.stats.sizes.copy()
            jobs = [c.submit(prompt=p, **args) for c, p in zip(clients, prompts, strict=True)]
            wait_for(lambda: waiting(queue_log) == len(prompts), "the four requests never waited together", HANG)
            hold.release()
        ahead.result(timeout=HANG)
        assert [job.result(timeout=HANG) for job in jobs] == expected
        assert scheduler.stats.sizes - before == Counter({len(prompts): 1}), "they did not share one batch"


def test_loading_a_model_does_not_block_users_of_a_loaded_one(live, fresh_hub, monkeypatch):
    """While one visitor's download is held by the Hub, another chats with the loaded demo model."""
    from huggingface_hub import constants

    url, _ = live
    state = fresh_hub.state
    state.stall_after = {"model.safetensors": 4096}  # the Hub goes silent mid-file until released
    state.release.clear()
    # huggingface_hub gives up on a silent download after this (10 s by default): not while the test holds it
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 300)
    slow_done = threading.Event()

    def slow_user():
        c = Client(url, verbose=False)
        c.predict(prompt="Hi", model="pythia-160m", revision="step3000", max_new_tokens=5, api_name="/complete")
        slow_done.set()

    slow = threading.Thread(target=slow_user, daemon=True)
    try:
        slow.start()
        deadline = time.monotonic() + 30  # poll with a deadline until the download is held
        while not any(r.startswith("GET") and r.endswith("model.safetensors") for r in state.requests):
            assert time.monotonic() < deadline, "the slow request never reached the Hub"
            time.sleep(0.02)
        fast = Client(url, verbose=False)
        assert fast.predict(prompt="Hello", model=DEMO, max_new_tokens=5, api_name="/complete")
        assert not slow_done.is_set(), "the other download was still held"
    finally:
        state.release.set()  # the held download resumes where it stopped
        state.stall_after.clear()
    assert slow_done.wait(120), "the slow request should complete too"


def test_research_endpoints(client):
    scored = client.predict(text="Once upon a time", model=DEMO, api_name="/score")
    assert scored["num_tokens"] == len(scored["log_probs"]) == len(scored["tokens"]) > 0
    assert scored["perplexity"] == pytest.approx(math.exp(-sum(scored["log_probs"]) / scored["num_tokens"]))
    rows = client.predict(text="Once upon a time", model=DEMO, revisions=["main"], api_name="/score_across")
    assert [r["revision"] for r in rows] == ["main"] and rows[0]["status"] == "ok"
    assert rows[0]["perplexity"] == pytest.approx(scored["perplexity"])
    job = client.submit(prompt="Hello", pairs=[[DEMO, "main"], [DEMO, "main"]], greedy=True, max_new_tokens=30,
                        api_name="/compare")
    updates = list(job)
    final = updates[-1]
    assert len(final) == 2 and all(c["done"] for c in final)
    assert final[0]["text"] == final[1]["text"]  # same model, greedy: the same reply
    with pytest.raises(Exception, match=r"Compare 1 to 4 \[model, revision\] pairs"):
        client.predict(prompt="Hello", pairs=[], api_name="/compare")


def test_complete_with_logprobs(client):
    args = dict(prompt="Once upon a time", model=DEMO, top_k=1, max_new_tokens=12, repetition_penalty=1.0)
    plain = client.predict(api_name="/complete", **args)
    result = client.predict(logprobs=3, api_name="/complete", **args)
    assert result["text"] == plain
    assert len(result["tokens"]) >= 1
    for token in result["tokens"]:
        assert len(token["top"]) == 3 and token["logprob"] <= 0
        # one unit: the alternatives are natural-log probabilities too, and greedy took the top one
        assert token["top"][0][1] == pytest.approx(token["logprob"], abs=1e-4)
        assert all(lp <= 0 for _, lp in token["top"])
