"""min_tokens (vLLM's name; CTranslate2's min_length), on every surface: the page's controls, the Gradio API, the OpenAI
routes and the remote engine's request. It was added by writing its declaration (core/sampling.py's CONTROLS and its
SamplingParams field) and its engine use, and nothing else: the test at the end holds the code to that.

The checkpoint is tests/eos_checkpoint.py's, whose likeliest next token is always <|endoftext|>: greedy, it writes
nothing at all unless a minimum length holds the end of the text back."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from float32_service import EOS_MODEL

from model_utils.core.sampling import CONTROLS, SamplingParams
from model_utils.engine.interface import Capabilities
from model_utils.engine.remote import CAPABILITIES
from model_utils.service import CompletionRequest, InvalidParameter
from model_utils.store.demo_model import DEMO_MODEL
from model_utils.ui.api import ENDPOINTS, api_function
from model_utils.ui.blocks import build_demo
from model_utils.ui.controls import NAMES, ControlValues
from model_utils.ui.handlers import COMPLETION, Handlers

ROOT = Path(__file__).resolve().parent.parent
GREEDY = {"temperature": 0, "repetition_penalty": 1.0}


@pytest.fixture(scope="module")
def service(float32_service):
    return float32_service


@pytest.fixture(scope="module")
def client(routes_client):
    return routes_client


@pytest.mark.parametrize("minimum", [0, 3, 6])
def test_the_openai_routes_hold_the_end_of_text_back_until_min_tokens(client, minimum):
    body = {"model": EOS_MODEL, "prompt": "And God said", "max_tokens": 10, "logprobs": 0, "min_tokens": minimum,
            **GREEDY}
    choice = client.post("/v1/completions", json=body).json()["choices"][0]
    # exactly the minimum, then the end of the text (counted, with its entry, as vLLM does)
    assert len(choice["logprobs"]["tokens"]) == minimum + 1 and choice["logprobs"]["tokens"][-1] == "<|endoftext|>"
    assert choice["finish_reason"] == "stop" and bool(choice["text"]) == (minimum > 0)
    messages = [{"role": "user", "content": "Hi"}]
    chat = client.post("/v1/chat/completions", json={"model": EOS_MODEL, "messages": messages, "max_tokens": 10,
                                                     "min_tokens": minimum, **GREEDY}).json()
    assert chat["usage"]["completion_tokens"] == minimum + 1


def test_a_stop_string_ends_a_choice_only_after_min_tokens(client):
    # the demo model's greedy continuation of "And God said" is " unto them, What is the man that is"
    body = {"model": DEMO_MODEL, "prompt": "And God said", "max_tokens": 10, "stop": [" them"], **GREEDY}
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == " unto"
    # as in vLLM: the stop string is looked for once more than min_tokens tokens are written
    held = client.post("/v1/completions", json={**body, "min_tokens": 2}).json()["choices"][0]
    assert held["text"] == " unto them, What is the man that is" and held["finish_reason"] == "length"


@pytest.mark.parametrize("route, body", [
    ("/v1/completions", {"prompt": "x", "max_tokens": 4, "min_tokens": 5}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "min_tokens": 5}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 4, "min_tokens": -1}),
    ("/v1/completions", {"prompt": "x", "max_tokens": 4, "min_tokens": 1.5}),
])
def test_a_minimum_above_the_maximum_or_out_of_range_is_refused_by_name(client, route, body):
    response = client.post(route, json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "min_tokens", response.text
    assert "min_tokens" in response.json()["error"]["message"]


def test_the_page_passes_min_tokens_to_the_reply(service):
    h = Handlers(service)
    visitor = SimpleNamespace(session_hash="visitor")
    for minimum, expected in ((0, ""), (3, " unto them,")):
        ticket = h.runs.accept(visitor.session_hash, COMPLETION)
        controls = ControlValues.defaults(greedy=True, repetition_penalty=1.0, max_new_tokens=10, min_tokens=minimum)
        *_, last = h.completion(ticket, "And God said", EOS_MODEL, "main", controls, False, visitor,
                                progress=lambda *a, **k: None)
        assert last[0] == expected, last
    ticket = h.runs.accept(visitor.session_hash, COMPLETION)
    too_many = ControlValues.defaults(max_new_tokens=4, min_tokens=5)
    *_, last = h.completion(ticket, "And God said", EOS_MODEL, "main", too_many, False, visitor,
                            progress=lambda *a, **k: None)
    assert "min_tokens is 5, more than the 4 tokens asked for" in last[-1], "the notice says why"


def test_the_page_has_a_slider_for_every_declared_control(service):
    demo = build_demo(service)
    sliders = {c.label: c for c in demo.blocks.values() if isinstance(c, (gr.Slider, gr.Checkbox))}
    for control in CONTROLS:
        component = sliders[control.label]
        assert component.elem_id == control.name.replace("_", "-")
        assert isinstance(component, gr.Checkbox if control.step is None else gr.Slider)
    assert (sliders["Min tokens"].minimum, sliders["Min tokens"].maximum, sliders["Min tokens"].value) == (0, 1024, 0)


def test_the_gradio_api_takes_min_tokens(service):
    (endpoint,) = [e for e in ENDPOINTS if e.name == "complete"]
    fn = api_function(service, endpoint, lambda r: (reply.text for reply in service.complete(r)))
    *_, text = fn(prompt="And God said", model=EOS_MODEL, greedy=True, repetition_penalty=1.0, min_tokens=3)
    assert text == " unto them,"
    *_, text = fn(prompt="And God said", model=EOS_MODEL, greedy=True, repetition_penalty=1.0)
    assert text == ""
    for name in ("chat", "complete", "compare"):
        (endpoint,) = [e for e in ENDPOINTS if e.name == name]
        assert [a for a in endpoint.arguments if a in NAMES] == list(NAMES), "every control, in the declared order"


def test_the_remote_engine_sends_min_tokens_and_refuses_what_it_cannot_do(service):
    assert SamplingParams(min_tokens=4).vllm_options()["min_tokens"] == 4  # vLLM's own field
    assert "min_tokens" not in CAPABILITIES.unsupported
    cannot = Capabilities("test engine", unsupported=("min_tokens",))
    with pytest.raises(InvalidParameter, match="test engine, which has no min_tokens; leave it at 0"):
        cannot.check(service.model(DEMO_MODEL), SamplingParams(min_tokens=2))
    cannot.check(service.model(DEMO_MODEL), SamplingParams())  # the default is no minimum: nothing to refuse
    with pytest.raises(InvalidParameter, match="min_tokens is 9, more than the 8 tokens asked for"):
        service.parse(CompletionRequest, prompt="x", max_new_tokens=8, min_tokens=9)


def test_a_control_is_named_only_by_its_declaration_and_its_engine_use():
    """`git grep min_tokens` outside the tests and the docs: the declaration (core/sampling.py) and the engine's
    use of it (CT2's min_length there, stop strings in engine/generation.py) -- no surface names it."""
    found = subprocess.run(["git", "grep", "-l", "min_tokens", "--", ".", ":!tests", ":!*.md"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.split()
    assert set(found) <= {"model_utils/core/sampling.py", "model_utils/engine/generation.py"}, found


def test_the_readme_table_of_controls_is_the_declarations():
    from model_utils.ui.controls import readme_table

    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- controls table: generated -->\n")[1].split("\n<!-- end of controls table -->")[0]
    assert shown == readme_table(), "paste the output of `python -m model_utils.ui.controls` into the README"
