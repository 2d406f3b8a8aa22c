"""The OpenAI-compatible routes, driven by real clients: the `openai` package and raw HTTP (httpx) against the live
app. Results are checked against the app's own Gradio API on the same model, so both surfaces say the same.
Every field, error and streaming shape is also checked in process, in the fast tier (test_openai_routes.py)."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from gradio_client import Client
from openai import OpenAI
from test_browser import wait_until_idle

from model_utils.settings import Settings

from conftest import DEMO, SLOW
from live_app import running_app

pytestmark = pytest.mark.slow  # a live server

GREEDY = dict(temperature=0, extra_body={"repetition_penalty": 1.0})


@pytest.fixture(scope="module")
def live(demo_url):
    """(url, engine) of `python app.py --demo`: the session's (conftest), whose engine these tests never touch."""
    return demo_url, None


@pytest.fixture(scope="module")
def openai(live):
    return OpenAI(base_url=live[0] + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def gradio(live):
    return Client(live[0], verbose=False)


def post(url: str, path: str, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(url + path, content=content, headers={"content-type": "application/json"}, timeout=60,
                      **kwargs)


# -- completions --------------------------------------------------------------------------------------------
def test_completion_equals_the_gradio_api_and_streams_the_same_text(openai, gradio):
    prompt = "And the LORD said unto"
    whole = openai.completions.create(model=DEMO, prompt=prompt, max_tokens=16, **GREEDY)
    expected = gradio.predict(prompt=prompt, model=DEMO, temperature=0, repetition_penalty=1.0, max_new_tokens=16,
                              api_name="/complete")
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason in ("length", "stop")
    assert whole.model == DEMO and whole.usage.completion_tokens <= 16
    chunks = list(openai.completions.create(model=DEMO, prompt=prompt, max_tokens=16, stream=True, **GREEDY))
    assert len(chunks) > 2, "tokens arrive as they are decoded"
    assert "".join(c.choices[0].text for c in chunks) == expected
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason


def test_logprobs_and_echo_in_openais_shape(openai, gradio):
    prompt = "In the beginning God created"
    out = openai.completions.create(model=DEMO, prompt=prompt, max_tokens=6, logprobs=2, **GREEDY).choices[0]
    lp = out.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) > 0
    assert "".join(lp.tokens) == out.text and lp.text_offset[0] == 0
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert len(top) == 2 and logprob <= 0
        assert logprob == max(top.values()) and top[token] == logprob  # greedy: each token was the top one
    # echo with max_tokens 0: the prompt scored; led by <|endoftext|>, exactly as /score scores a text
    reference = gradio.predict(text=prompt, model=DEMO, api_name="/score")
    scored = openai.completions.create(model=DEMO, prompt=[0, *reference["token_ids"]], max_tokens=0, echo=True,
                                       logprobs=0).choices[0]
    assert scored.text == prompt and scored.logprobs.token_logprobs[0] is None
    assert scored.logprobs.token_logprobs[1:] == pytest.approx(reference["log_probs"], abs=1e-4)


def test_token_id_prompts_n_choices_stop_and_usage(live, openai):
    url, _ = live
    tokens = httpx.post(url + "/tokenize", json={"prompt": "And God said"}).json()["tokens"]
    many = openai.completions.create(model=DEMO, prompt=[tokens, tokens[:2]], n=3, max_tokens=12, temperature=0.9)
    assert [c.index for c in many.choices] == list(range(6))
    assert many.usage.prompt_tokens == len(tokens) + 2  # each prompt counted once, whatever n
    stopped = openai.completions.create(model=DEMO, prompt="And God said", max_tokens=40, stop=[",", "."],
                                        **GREEDY).choices[0]
    assert "," not in stopped.text and "." not in stopped.text and stopped.finish_reason == "stop"


def test_a_prompt_that_fills_the_context_is_scored_and_says_what_could_not_be_generated(live):
    url, _ = live
    ids = [(7 * i) % 1000 + 5 for i in range(2048)]
    body = {"model": DEMO, "prompt": ids, "echo": True, "max_tokens": 1, "logprobs": 1, "temperature": 0}
    one = post(url, "/v1/completions", body)
    assert one.status_code == 200, one.text
    logprobs = one.json()["choices"][0]["logprobs"]
    assert len(logprobs["token_logprobs"]) == 2049 and logprobs["token_logprobs"][0] is None  # 2048 + the next one
    more = post(url, "/v1/completions", {**body, "max_tokens": 4}).json()
    choice = more["choices"][0]
    assert choice["finish_reason"] == "length" and more["usage"]["completion_tokens"] == 1
    assert "1 of the 4 tokens" in choice["notice"]
    too_long = post(url, "/v1/completions", {**body, "prompt": ids + [5]})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "prompt"


# -- chat ---------------------------------------------------------------------------------------------------
def test_chat_is_the_apps_transcript_streamed_or_not(openai, gradio):
    messages = [{"role": "user", "content": "Who made the heaven?"}]
    whole = openai.chat.completions.create(model=DEMO, messages=messages, max_tokens=12, **GREEDY)
    expected = gradio.predict(message=messages[0]["content"], model=DEMO, temperature=0, repetition_penalty=1.0,
                              max_new_tokens=12, api_name="/chat")
    assert whole.choices[0].message.content == expected and whole.choices[0].message.role == "assistant"
    chunks = list(openai.chat.completions.create(model=DEMO, messages=messages, max_tokens=12, stream=True, **GREEDY))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected
    led = openai.chat.completions.create(model=DEMO, messages=[{"role": "system", "content": "A dialogue."},
                                                               *messages], max_tokens=2, **GREEDY)
    assert led.usage.prompt_tokens > whole.usage.prompt_tokens  # the system text leads the transcript


def test_chat_logprobs(openai):
    out = openai.chat.completions.create(model=DEMO, messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
                                         logprobs=True, top_logprobs=3, **GREEDY)
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens and all(len(t.top_logprobs) == 3 for t in content)
    assert all(t.logprob == t.top_logprobs[0].logprob for t in content)


# -- models and the tokenizer routes -------------------------------------------------------------------------
def test_models_list_the_default_first_with_their_revisions(live, openai):
    models = openai.models.list().data
    assert models[0].id == DEMO
    by_id = {m.id: m.model_extra for m in models}
    assert by_id[DEMO]["revisions"][0] == "main" and "step1000" in by_id[DEMO]["revisions"]
    assert "step143000" in by_id["pythia-160m"]["revisions"]


@pytest.mark.parametrize("name", ["demo-pythia-kjv@step1000", "demo-pythia-kjv"])
def test_a_checkpoint_is_named_in_the_model_or_in_the_address(live, name):
    url, _ = live
    body = {"prompt": "And God", "max_tokens": 4, "temperature": 0}
    named = post(url, "/v1/completions", {**body, "model": name}).json()
    by_address = post(url, f"/m/{name}/v1/completions", body).json()
    assert named["model"] == by_address["model"] == name
    assert named["choices"][0]["text"] == by_address["choices"][0]["text"]
    mismatch = post(url, f"/m/{name}/v1/completions", {**body, "model": "pythia-160m"})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["param"] == "model"


def test_tokenizer_routes_per_model(live):
    url, _ = live
    info = httpx.get(url + f"/m/{DEMO}/tokenizer_info").json()
    assert info["eos_token"] == "<|endoftext|>"
    tokens = httpx.post(url + f"/m/{DEMO}/tokenize", json={"prompt": "<|endoftext|>And God",
                                                            "add_special_tokens": False}).json()["tokens"]
    assert tokens[0] == 0  # the end-of-text token, as lm-eval's remote tokenizer expects
    text = httpx.post(url + f"/m/{DEMO}/detokenize", json={"tokens": tokens}).json()["prompt"]
    assert text == "<|endoftext|>And God"
    unknown = httpx.post(url + "/m/gpt2/tokenize", json={"prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"


# -- bad input: every field's refusal is in test_openai_routes.py (in process); here, the words match the page's --
def test_the_same_words_as_the_gradio_api(live, gradio):
    url, _ = live
    refused = post(url, "/v1/completions", {"model": DEMO, "prompt": "x", "top_k": 5000})
    with pytest.raises(Exception) as gradio_error:
        gradio.predict(prompt="x", model=DEMO, top_k=5000, api_name="/complete")
    assert refused.json()["error"]["message"] == str(gradio_error.value)


# -- a closed connection, the per-client limit and the key -----------------------------------------------------
@pytest.fixture(scope="module")
def slow_live(slow_checkpoint, model_cache):
    settings = Settings(demo=True, model_dir=str(slow_checkpoint), device="cpu", max_client_rows=2,
                        cache_dir=str(model_cache))
    with running_app(settings) as (url, engine):
        yield url, engine


def test_a_client_that_disconnects_mid_stream_stops_decoding(slow_live):
    url, engine = slow_live
    body = {"model": SLOW, "prompt": "Once", "max_tokens": 1000, "temperature": 0, "stream": True}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", url + "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            seen = [line for _, line in zip(range(6), lines, strict=False)]
    assert any(line.startswith("data: {") for line in seen)
    with engine.open(SLOW) as model:
        scheduler = model.scheduler
    wait_until_idle(engine)
    assert scheduler.stats.tokens < 1000
    assert post(url, "/v1/completions", {"model": SLOW, "prompt": "x", "max_tokens": 1}).status_code == 200


def test_a_client_that_gives_up_on_a_whole_answer_stops_its_decoding(slow_live):
    url, engine = slow_live
    body = {"model": SLOW, "prompt": "Once", "max_tokens": 1000, "temperature": 0}
    with engine.open(SLOW) as model:
        scheduler = model.scheduler
    before = scheduler.stats.tokens
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(60, read=1.5))  # then it hangs up
    wait_until_idle(engine)
    assert scheduler.stats.tokens - before < 1000


def test_one_client_may_hold_only_its_rows_and_is_told_when_to_retry(slow_live):
    url, engine = slow_live
    body = {"model": SLOW, "prompt": "Once", "max_tokens": 400, "temperature": 0, "stream": True, "n": 2}
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", url + "/v1/completions", json=body) as first:
            lines = first.iter_lines()  # kept: dropping this iterator would close the connection
            assert next(lines).startswith("data: {")  # decoding: this client holds its 2 rows
            refused = post(url, "/v1/completions", {"model": SLOW, "prompt": "x", "max_tokens": 1})
            assert refused.status_code == 429 and refused.headers["retry-after"]
            assert refused.json()["error"]["type"] == "rate_limit_error"
    wait_until_idle(engine)
    assert post(url, "/v1/completions", {"model": SLOW, "prompt": "x", "max_tokens": 1}).status_code == 200
    too_many = post(url, "/v1/completions", {"model": SLOW, "prompt": "x", "max_tokens": 1, "n": 3})
    assert too_many.status_code == 400 and "at most 2" in too_many.json()["error"]["message"]


def test_an_api_key_guards_the_routes_and_is_never_shown(tmp_path, capfd):
    settings = Settings(demo=True, device="cpu", api_key="sekrit-key", cache_dir=str(tmp_path))
    assert "sekrit-key" not in repr(settings)
    with running_app(settings) as (url, _):
        body = {"model": DEMO, "prompt": "x", "max_tokens": 1}
        missing = post(url, "/v1/completions", body)
        assert missing.status_code == 401 and missing.json()["error"]["type"] == "authentication_error"
        assert httpx.post(url + "/v1/completions", json=body,
                          headers={"Authorization": "Bearer nope"}).status_code == 401
        assert httpx.post(url + "/v1/completions", json=body,
                          headers={"Authorization": "Bearer sekrit-key"}).status_code == 200
        assert httpx.get(url + "/").status_code == 200  # the page stays open, like the Gradio API
    out, err = capfd.readouterr()
    assert "sekrit-key" not in out + err


def test_scores_are_finite_numbers(live):
    url, _ = live
    scored = post(url, "/v1/completions", {"model": DEMO, "prompt": "In the beginning", "echo": True,
                                           "max_tokens": 0, "logprobs": 5}).json()["choices"][0]["logprobs"]
    assert all(math.isfinite(v) for v in scored["token_logprobs"][1:])
    for token, top in zip(scored["tokens"][1:], scored["top_logprobs"][1:], strict=True):
        assert token in top and 5 <= len(top) <= 6  # five alternatives, and the token itself when it is not one
