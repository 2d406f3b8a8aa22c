"""The remote engine's configuration and its readable answers to an unhappy server, in-process.

The server here is a few lines of http.server that answer with a chosen HTTP status: vLLM itself cannot be
made to answer 429/401 on demand (tests/test_remote_engine.py runs the real one)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from model_utils.core.catalog import Catalog
from model_utils.core.errors import InvalidParameter, InvalidRevision, ServerBusy, UnknownModel
from model_utils.core.sampling import SamplingParams
from model_utils.engine.remote import RemoteEngine, RemoteSpec
from model_utils.engine.vllm_client import RemoteProblem
from model_utils.service.requests import CompareRequest, CompletionRequest, ParseContext
from model_utils.settings import parse_settings
from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.store.hub import Hub


def test_flag_repeats_and_environment_lists_are_comma_separated():
    flags = parse_settings(["--remote-model", "pythia-12b=http://gpu:8000/v1",
                            "--remote-model", "pythia-6.9b-deduped@step3000=https://h/v1"], {})
    assert flags.remote_model == (RemoteSpec("pythia-12b", "main", "http://gpu:8000/v1"),
                                  RemoteSpec("pythia-6.9b-deduped", "step3000", "https://h/v1"))
    env = parse_settings([], {"PYTHIA_REMOTE_MODELS": "pythia-12b=http://a/v1, pythia-1b@step1=http://b/v1",
                              "PYTHIA_REMOTE_API_KEY": "k-123"})
    assert [s.name for s in env.remote_model] == ["pythia-12b", "pythia-1b"] and env.remote_api_key == "k-123"
    assert "k-123" not in repr(env)  # settings get logged; the key does not
    both = parse_settings(["--remote-model", "pythia-1b=http://c/v1"], {"PYTHIA_REMOTE_MODELS": "pythia-12b=http://a/v1"})
    assert [s.name for s in both.remote_model] == ["pythia-1b"]  # the flag replaces the list
    assert parse_settings([], {}).remote_model == ()


@pytest.mark.parametrize("flags, env", [(["--remote-model", "pythia-12b"], {}),
                                        (["--remote-model", "pythia-12b=ftp://x"], {}),
                                        ([], {"PYTHIA_REMOTE_MODELS": "pythia-12b=localhost:8000"})],
                         ids=["flag-without-url", "flag-with-ftp-url", "env-url-without-scheme"])
def test_malformed_remote_models_exit_with_the_syntax(flags, env, capsys):
    with pytest.raises(SystemExit):
        parse_settings(flags, env)
    assert "NAME[@REVISION]=URL" in capsys.readouterr().err


@pytest.mark.parametrize("spec, error", [(RemoteSpec("pythia-99b", "main", "http://x/v1"), UnknownModel),
                                         (RemoteSpec("pythia-12b", "step7", "http://x/v1"), InvalidRevision)],
                         ids=["unknown-model", "bad-revision"])
def test_names_and_revisions_are_checked_against_the_catalog(spec, error):
    with pytest.raises(error):
        RemoteEngine.build([spec], Catalog(), api_key=None, timeout_s=5, tokenizer_loader=Hub().tokenizer_file)


class Canned(BaseHTTPRequestHandler):
    """Answers /v1/models with two ids and every completion with the status the test chose."""

    status = 200
    body: dict = {}
    seen_auth: list = []

    def do_GET(self):
        self.seen_auth.append(self.headers.get("Authorization"))
        self._send(200, {"data": [{"id": "other"}, {"id": "EleutherAI/demo-pythia-kjv"}]})

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(self.status, self.body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    catalog = Catalog()
    model = catalog.add(demo_model())
    engine = RemoteEngine.build([RemoteSpec(DEMO_MODEL, "main", f"http://127.0.0.1:{server.server_port}/v1")],
                                catalog, api_key="sekrit", timeout_s=5, tokenizer_loader=Hub().tokenizer_file)
    Canned.seen_auth = []
    yield engine, model
    engine.close()
    server.shutdown()
    server.server_close()


def _generate(engine, model):
    with engine.open(model, "main") as served:
        return list(served.steps([5, 6], SamplingParams(max_new_tokens=4)))


@pytest.mark.parametrize("status, body, error, words", [
    (503, {"error": {"message": "overloaded"}}, ServerBusy, "busy"),
    (429, {}, ServerBusy, "busy"),
    (401, {"error": {"message": "bad key"}}, RemoteProblem, "PYTHIA_REMOTE_API_KEY"),
    (400, {"error": {"message": "This model's maximum context length is 512 tokens."}}, InvalidParameter,
     "maximum context length is 512"),
    (500, {"error": {"message": "CUDA out of memory at /srv/x.py"}}, RemoteProblem, "failed to answer"),
], ids=["503-overloaded", "429-too-many", "401-bad-key", "400-context-too-long", "500-server-error"])
def test_server_answers_become_readable_errors(canned, status, body, error, words):
    engine, model = canned
    Canned.status, Canned.body = status, body
    with pytest.raises(error) as info:
        _generate(engine, model)
    assert words in str(info.value) and "127.0.0.1" not in str(info.value) and "/srv" not in str(info.value)
    assert Canned.seen_auth == ["Bearer sekrit"]  # the key goes to the server, and only there


def test_the_served_id_that_names_the_model_is_chosen(canned):
    engine, model = canned
    assert engine.endpoint(model, "main").model_id() == "EleutherAI/demo-pythia-kjv"


def test_a_remote_model_refuses_what_vllm_cannot_do_when_the_request_is_parsed(canned):
    """Refused before its tokenizer is fetched or the server is asked anything."""
    engine, model = canned
    catalog = Catalog()
    catalog.add(model)
    context = ParseContext(catalog, DEMO_MODEL, engine.capabilities)
    Canned.seen_auth = []
    with pytest.raises(InvalidParameter, match="remote vLLM engine, which has no no_repeat_ngram_size"):
        CompletionRequest.parse(context, prompt="x", no_repeat_ngram_size=3)
    with pytest.raises(InvalidParameter, match="no_repeat_ngram_size"):
        CompareRequest.parse(context, prompt="x", pairs=[[DEMO_MODEL, "main"]], no_repeat_ngram_size=2)
    assert CompletionRequest.parse(context, prompt="x").sampling.no_repeat_ngram_size == 0
    assert Canned.seen_auth == [] and not engine._models  # nothing was asked, no tokenizer was loaded


def test_status_reports_a_server_that_is_not_there_and_keeps_the_app_up():
    catalog = Catalog()
    model = catalog.add(demo_model())
    # A port the OS gave this test, bound and never listened on: connections to it are refused.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    engine = RemoteEngine.build([RemoteSpec(DEMO_MODEL, "main", url)], catalog, api_key=None,
                                timeout_s=2, tokenizer_loader=Hub().tokenizer_file)
    try:
        endpoint = engine.endpoint(model, "main")
        assert engine.status(model).remote_problem is None  # not asked yet: "connecting"
        endpoint.probe()
        status = engine.status(model)
        assert status.remote and not status.loaded and "not answering" in status.remote_problem
    finally:
        engine.close()
        closed.close()
