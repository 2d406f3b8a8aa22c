"""The OpenAI-compatible routes in process: every field, error and streaming shape, over the real demo model (CT2,
float32) through Starlette's test client -- the same routes, service and scheduler as the live server, no socket.

What needs a socket (a client that disconnects, 429 under load, the key on a live server) stays in
test_openai_api.py."""

from __future__ import annotations

import json
import logging

import pytest
from eos_checkpoint import EOS_ID
from fastapi import FastAPI
from float32_service import EOS_MODEL, RANDOM_MODEL
from starlette.testclient import TestClient

from model_utils.openai_api import add_openai_routes
from model_utils.store.demo_model import DEMO_MODEL

GREEDY = {"temperature": 0, "repetition_penalty": 1.0}
NON_ASCII = "Les cieux, 中文 et naïveté — “ok”"


@pytest.fixture(scope="module")
def service(float32_service):
    return float32_service


@pytest.fixture(scope="module")
def client(routes_client):
    return routes_client


@pytest.fixture(scope="module")
def keyed(service):
    app = FastAPI()
    add_openai_routes(app, service, api_key="sekrit")
    with TestClient(app) as test_client:
        yield test_client


def tokenize(client, text: str, model: str = DEMO_MODEL) -> list[int]:
    return client.post(f"/m/{model}/tokenize", json={"prompt": text}).json()["tokens"]


def events(response) -> list:
    """The `data:` payloads of a server-sent event stream, parsed; each must be one line."""
    out = []
    for line in response.text.split("\n"):
        if line.startswith("data: "):
            payload = line[len("data: "):]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
        else:
            assert line == "" or line.startswith(":"), f"a stray line in the stream: {line!r}"
    return out


def unbytes(token: str) -> bytes:
    """A completion token back to its bytes (vLLM's and OpenAI's convention for a fragment of a character)."""
    if token.startswith("bytes:"):
        return bytes(int(h, 16) for h in token[len("bytes:"):].split("\\x")[1:])
    return token.encode("utf-8")


# -- the end-of-text token keeps its entry (lm-eval drops the last entry as the generated token) -------------------
def test_a_scored_prompt_whose_next_token_is_eos_keeps_every_entry(client):
    prompt = [EOS_ID, *tokenize(client, "And God said, Let there be light", EOS_MODEL)]
    body = {"model": EOS_MODEL, "prompt": prompt, "echo": True, "max_tokens": 1, "logprobs": 1, **GREEDY}
    choice = client.post("/v1/completions", json=body).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert len(logprobs["token_logprobs"]) == len(prompt) + 1  # every prompt token, and the one generated: EOS
    assert logprobs["tokens"][-1] == "<|endoftext|>" and choice["finish_reason"] == "stop"
    assert logprobs["token_logprobs"][-1] == max(logprobs["top_logprobs"][-1].values())  # it was the greedy one
    assert choice["text"] == "And God said, Let there be light"  # its text is empty
    # the same numbers as scoring the prompt with the end-of-text token appended
    appended = client.post("/v1/completions", json={**body, "prompt": [*prompt, EOS_ID], "max_tokens": 0}).json()
    assert appended["choices"][0]["logprobs"]["token_logprobs"] == logprobs["token_logprobs"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_decoded_choice_that_ends_with_eos_has_its_entry_whole_and_streamed(client, stream):
    body = {"model": EOS_MODEL, "prompt": "And God", "max_tokens": 5, "logprobs": 0, "temperature": 0.5,
            "stream": stream}
    response = client.post("/v1/completions", json=body)
    if stream:
        chunks = [e for e in events(response) if e != "[DONE]"]
        (choice,) = [c for e in chunks for c in e["choices"] if c["logprobs"]]
    else:
        choice = response.json()["choices"][0]
    assert choice["logprobs"]["tokens"] == ["<|endoftext|>"] and choice["finish_reason"] == "stop"
    assert choice["text"] == ""
    chat = client.post("/v1/chat/completions", json={"model": EOS_MODEL, "logprobs": True, "max_tokens": 5,
                                                     "messages": [{"role": "user", "content": "Hi"}]}).json()
    assert [t["token"] for t in chat["choices"][0]["logprobs"]["content"]] == ["<|endoftext|>"]
    assert chat["usage"]["completion_tokens"] == 1  # counted, as vLLM counts it


# -- tokens and bytes as OpenAI writes them ------------------------------------------------------------------------
def test_completion_tokens_and_chat_bytes_spell_non_ascii_text(client):
    ids = tokenize(client, NON_ASCII)
    scored = client.post("/v1/completions", json={"prompt": [EOS_ID, *ids], "echo": True, "max_tokens": 0,
                                                  "logprobs": 0}).json()["choices"][0]
    tokens = scored["logprobs"]["tokens"]
    assert any(t.startswith("bytes:") for t in tokens), "the text has characters split across tokens"
    assert b"".join(map(unbytes, tokens[1:])).decode("utf-8") == NON_ASCII == scored["text"]
    offsets = scored["logprobs"]["text_offset"]
    assert offsets == sorted(offsets) and all(NON_ASCII.startswith(t, o) for t, o in zip(tokens[1:], offsets[1:],
                                                                                       strict=True)
                                              if not t.startswith("bytes:"))
    chat = client.post("/v1/chat/completions", json={
        "model": RANDOM_MODEL, "messages": [{"role": "user", "content": NON_ASCII}], "max_tokens": 40,
        "logprobs": True, "top_logprobs": 2, "temperature": 0, "repetition_penalty": 1.3}).json()["choices"][0]
    content = [t for t in chat["logprobs"]["content"] if t["token"] != "<|endoftext|>"]
    raw = bytes(b for t in content for b in t["bytes"])
    assert raw.decode("utf-8", errors="replace").lstrip() == chat["message"]["content"]
    assert any(t["token"].startswith("bytes:") for t in content), "the reply has characters split across tokens"
    assert any(len(t["bytes"]) == 1 and t["bytes"][0] >= 0x80 for t in content)  # a fragment is its one byte
    for entry in chat["logprobs"]["content"]:
        assert bytes(entry["bytes"]) == unbytes(entry["token"])
        assert all(bytes(a["bytes"]) == unbytes(a["token"]) for a in entry["top_logprobs"])


def test_top_logprobs_hold_the_chosen_token_and_zero_alternatives_mean_it_alone(client):
    body = {"prompt": "And the LORD spake unto Moses", "max_tokens": 6, "temperature": 1.0}
    for n in (0, 2):
        choice = client.post("/v1/completions", json={**body, "logprobs": n}).json()["choices"][0]
        logprobs = choice["logprobs"]
        for token, logprob, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"],
                                       strict=True):
            assert top[token] == logprob  # the chosen token is always there, as in vLLM
            assert n <= len(top) <= n + 1


def test_an_impossible_token_is_a_finite_number_in_valid_json(client, service):
    # the end-of-text model gives other tokens log-probs near -50: fine; a real -inf is written as vLLM writes it
    from model_utils.openai_api.responses import FLOOR, encode, sse

    assert json.loads(encode({"x": [max(float("-inf"), FLOOR)]})) == {"x": [-9999.0]}
    with pytest.raises(ValueError):
        sse({"x": float("-inf")})  # never written as -Infinity


def test_line_separators_in_a_token_do_not_split_a_streamed_event():
    from model_utils.openai_api.responses import sse

    event = sse({"text": "a\u2028b\u2029c\x85d"})
    assert event.count("\n") == 2 and len(event[:-2].splitlines()) == 1
    assert json.loads(event[len("data: "):])["text"] == "a\u2028b\u2029c\x85d"


# -- what real clients send ----------------------------------------------------------------------------------------
NEUTRAL = {"presence_penalty": 0, "frequency_penalty": 0.0, "logit_bias": {}, "user": "me", "service_tier": "auto",
           "best_of": 1, "do_sample": False, "ignore_eos": False, "some_task_argument": [1, 2]}


@pytest.mark.parametrize("route, body", [
    ("/v1/completions", {"prompt": "And God", "max_tokens": 3}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}),
])
def test_neutral_and_unknown_fields_are_accepted_and_logged_once(client, caplog, route, body):
    from model_utils.openai_api import tolerance

    tolerance.FIELDS = tolerance.FieldLog()
    with caplog.at_level(logging.INFO, logger="model_utils.openai_api"):
        for _ in range(2):
            response = client.post(route, json={**body, **NEUTRAL, **GREEDY, "stream": True,
                                                "stream_options": {"include_usage": True,
                                                                   "continuous_usage_stats": False}})
            assert response.status_code == 200, response.text
    logged = [r.getMessage() for r in caplog.records]
    for name in ("presence_penalty", "logit_bias", "some_task_argument", "stream_options.continuous_usage_stats"):
        assert sum(name in line for line in logged) == 1, (name, logged)


@pytest.mark.parametrize("field, value", [("presence_penalty", 0.5), ("logit_bias", {"5": 100}), ("best_of", 3),
                                          ("ignore_eos", True), ("response_format", {"type": "json_object"})])
def test_a_field_that_would_change_the_answer_is_refused_by_name(client, field, value):
    response = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1, field: value})
    assert response.status_code == 400 and response.json()["error"]["param"] == field


def test_many_stop_strings_as_lm_eval_sends_them(client):
    free = client.post("/v1/completions", json={"prompt": "And God said", "max_tokens": 40, **GREEDY}).json()
    word = free["choices"][0]["text"].split()[3]  # a word the reply will write
    stops = [f"never{i}" for i in range(16)] + [word]  # the one that matters comes 17th
    body = {"prompt": "And God said", "max_tokens": 40, "stop": stops, **GREEDY}
    choice = client.post("/v1/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "stop" and word not in choice["text"]
    assert free["choices"][0]["text"].startswith(choice["text"])
    too_many = client.post("/v1/completions", json={**body, "stop": ["x"] * 33})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "stop"


def test_stream_options_need_stream_and_usage_chunks_say_null(client):
    body = {"prompt": "And God", "max_tokens": 4, **GREEDY, "stream_options": {"include_usage": True}}
    refused = client.post("/v1/completions", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream_options"
    chunks = [e for e in events(client.post("/v1/completions", json={**body, "stream": True})) if e != "[DONE]"]
    assert all("usage" in c for c in chunks) and all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] >= 1 and chunks[-1]["choices"] == []
    plain = [e for e in events(client.post("/v1/completions", json={**body, "stream": True, "stream_options": None}))
             if e != "[DONE]"]
    assert all("usage" not in c for c in plain)


def test_chat_prefers_max_completion_tokens(client):
    body = {"messages": [{"role": "user", "content": "Who made the heaven?"}], "temperature": 1.0}
    both = client.post("/v1/chat/completions", json={**body, "max_tokens": 20, "max_completion_tokens": 1}).json()
    assert both["usage"]["completion_tokens"] == 1


# -- models, routes, errors ------------------------------------------------------------------------------------------
def test_a_models_address_lists_that_model(client):
    everything = [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert everything[0] == DEMO_MODEL and EOS_MODEL in everything
    one = client.get(f"/m/{DEMO_MODEL}@step1000/v1/models").json()["data"]
    assert [m["id"] for m in one] == [f"{DEMO_MODEL}@step1000"]
    missing = client.get("/m/gpt2/v1/models")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("method, path, status", [("GET", "/v1/nothing", 404), ("POST", "/v1/embeddings", 404),
                                                  ("GET", "/v1/completions", 405), ("DELETE", "/v1/models", 405),
                                                  ("GET", f"/m/{DEMO_MODEL}/v1/chat/completions", 405),
                                                  ("GET", "/tokenize", 405)])
def test_wrong_paths_and_methods_answer_in_openais_shape(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status and response.json()["error"]["message"]


def test_tokenize_and_detokenize_are_bounded(client):
    too_long = client.post("/tokenize", json={"prompt": "x" * 200_001})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "prompt"
    too_many = client.post("/detokenize", json={"tokens": [5] * 131_073})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "tokens"
    ids = tokenize(client, NON_ASCII)
    assert client.post("/detokenize", json={"tokens": ids}).json()["prompt"] == NON_ASCII


def test_a_missing_key_and_a_wrong_key_get_different_words(keyed):
    body = {"prompt": "x", "max_tokens": 1}
    missing = keyed.post("/v1/completions", json=body).json()["error"]
    wrong = keyed.post("/v1/completions", json=body, headers={"Authorization": "Bearer nope"}).json()["error"]
    assert missing["code"] == "missing_api_key" and wrong["code"] == "invalid_api_key"
    assert missing["message"] != wrong["message"]
    assert keyed.post("/v1/completions", json=body, headers={"Authorization": "Bearer sekrit"}).status_code == 200


@pytest.mark.parametrize("body, param", [
    ({"prompt": [[5, 6, 99999]]}, "prompt"),
    ({"prompt": list(range(5, 2060))}, "prompt"),
    ({"prompt": "x", "n": 17}, "n"),
    ({"prompt": "x", "max_tokens": 1025}, "max_tokens"),
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "logprobs": 11}, "logprobs"),
    ({"prompt": "x", "temperature": "hot"}, "temperature"),
    ({"prompt": "x", "top_p": 0}, "top_p"),
    ({"prompt": {"text": "x"}}, "prompt"),
    ({"max_tokens": 3}, "prompt"),
    ({"prompt": "x", "stream": "yes"}, "stream"),
], ids=["token-outside-vocabulary", "past-the-context", "n", "max_tokens", "max_tokens-0-without-echo", "logprobs",
        "wrong-type", "top_p-0", "prompt-object", "no-prompt", "stream-not-bool"])
def test_bad_completion_requests_name_the_field(client, body, param):
    response = client.post("/v1/completions", json={"model": DEMO_MODEL, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_nan_and_broken_json_are_refused_in_words(client):
    headers = {"content-type": "application/json"}
    nan = client.post("/v1/completions", content='{"prompt": "x", "temperature": NaN}', headers=headers)
    assert nan.status_code == 400 and nan.json()["error"]["param"] == "temperature"
    broken = client.post("/v1/completions", content='{"prompt": ', headers=headers)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
    chat = client.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]})
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages"


def test_a_stopped_request_reads_abort_not_a_word_openai_lacks():
    from model_utils.openai_api.responses import REASONS
    from model_utils.service import FinishReason

    assert REASONS[FinishReason.CANCELLED] == "abort"
    assert set(REASONS.values()) <= {"stop", "length", "abort"}


def test_the_openai_client_with_its_defaults_and_the_neutral_fields(client):
    from openai import OpenAI

    openai = OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    neutral = dict(presence_penalty=0, frequency_penalty=0, logit_bias={}, user="a-researcher")
    completion = openai.completions.create(model=DEMO_MODEL, prompt="And God said", max_tokens=8, **neutral)
    assert completion.choices[0].text and completion.usage.completion_tokens <= 8
    chat = openai.chat.completions.create(model=DEMO_MODEL, messages=[{"role": "user", "content": "Hello"}],
                                          max_completion_tokens=8, service_tier="auto", seed=3, **neutral)
    assert chat.choices[0].message.role == "assistant"
    streamed = list(openai.chat.completions.create(model=DEMO_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=4, stream=True,
                                                   stream_options={"include_usage": True}, **neutral))
    assert streamed[-1].usage.completion_tokens >= 1 and all(c.usage is None for c in streamed[:-1])
