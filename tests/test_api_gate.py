"""While API clients hold every row they may together (--max-api-rows), a completion request is answered 429 with
Retry-After from its path alone (model_utils/api_gate.py): its body is never parsed; other routes pass."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI, Request

from model_utils import api_gate
from model_utils.api_gate import ApiShareGate
from model_utils.service.client_limits import ClientLimits


def app_with(limits: ClientLimits):
    app, reached = FastAPI(), []

    @app.post("/v1/completions")
    @app.post("/m/{model}/v1/chat/completions")
    @app.post("/tokenize")
    async def route(request: Request):
        reached.append(request.url.path)
        return {"ok": True}

    app.add_middleware(ApiShareGate, limits=limits)
    return app, reached


def post(app, path: str) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=b'{"prompt": "x", "n": 8}')
    return asyncio.run(go())


def test_a_completion_is_refused_unread_while_the_api_rows_are_taken(monkeypatch):
    monkeypatch.setattr(api_gate, "REFUSAL_PAUSE_S", 0)
    limits = ClientLimits(max_rows=8, max_api_rows=8)
    app, reached = app_with(limits)
    assert post(app, "/v1/completions").status_code == 200  # rows free: the route answers
    with limits.hold("address:127.0.0.2", 8):
        for path in ("/v1/completions", "/m/demo-pythia-kjv/v1/chat/completions"):
            r = post(app, path)
            assert r.status_code == 429 and r.headers["retry-after"] == "2"
            assert r.json()["error"]["code"] == "server_busy" and "busy with other API requests" in r.text
        assert post(app, "/tokenize").status_code == 200, "only the routes that hold rows are gated"
    assert post(app, "/v1/completions").status_code == 200, "rows given back: answered again"
    assert reached == ["/v1/completions", "/tokenize", "/v1/completions"]


def test_no_api_row_limit_gates_nothing():
    app, reached = app_with(ClientLimits(max_rows=8, max_api_rows=None))
    assert post(app, "/v1/completions").status_code == 200
