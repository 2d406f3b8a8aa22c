"""Every route refuses a body past --max-body-mb before reading it (model_utils/body_limit.py): a declared length
at once, a streamed body at the first chunk past the cap; 413 in OpenAI's shape on the OpenAI routes."""

from __future__ import annotations

import asyncio
import logging

import httpx
from fastapi import FastAPI, Request

from model_utils.body_limit import BodySizeLimit

LIMIT = 1000


def app_reading_bodies():
    """A FastAPI app whose routes read their whole body; ``seen`` records what each route received."""
    app, seen = FastAPI(), []

    @app.post("/v1/completions")
    @app.post("/gradio_api/queue/join")
    async def read(request: Request):
        body = await request.body()
        seen.append(len(body))
        return {"bytes": len(body)}

    app.add_middleware(BodySizeLimit, max_bytes=LIMIT)
    return app, seen


def post(app, path: str, content, headers=None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(path, content=content, headers=headers)
    return asyncio.run(go())


def chunks(n: int, size: int = 400):
    async def stream():
        for _ in range(n):
            yield b"x" * size
    return stream()


def test_a_body_within_the_cap_reaches_the_route_whole():
    app, seen = app_reading_bodies()
    assert post(app, "/v1/completions", b"x" * LIMIT).json() == {"bytes": LIMIT}
    assert post(app, "/gradio_api/queue/join", chunks(2)).json() == {"bytes": 800}
    assert seen == [LIMIT, 800]


def test_a_declared_length_past_the_cap_is_refused_unread_in_openais_shape(caplog):
    caplog.set_level(logging.INFO, logger="model_utils")
    app, seen = app_reading_bodies()
    r = post(app, "/v1/completions", b"x" * (LIMIT + 1))
    assert r.status_code == 413 and seen == [], "the route never ran"
    error = r.json()["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert "larger than this server accepts (1,000 bytes)" in error["message"]
    logged = [rec.getMessage() for rec in caplog.records if "request body too large" in rec.getMessage()]
    assert len(logged) == 1 and "1,001 bytes declared" in logged[0] and "203.0.113.7" in logged[0]
    assert "POST /v1/completions" in logged[0]


def test_a_streamed_body_is_cut_at_the_cap_and_the_route_never_gets_it():
    app, seen = app_reading_bodies()
    r = post(app, "/gradio_api/queue/join", chunks(100))  # no length declared: 40,000 bytes
    assert r.status_code == 413 and seen == []
    assert r.json() == {"detail": "The request body is larger than this server accepts (1,000 bytes). Send less at "
                                  "once: fewer or shorter prompts."}


def test_a_body_longer_than_it_declared_is_counted_not_trusted():
    app, seen = app_reading_bodies()

    async def lying():  # declares 10 bytes, sends 4,000
        for _ in range(10):
            yield b"y" * 400
    r = post(app, "/v1/completions", lying(), headers={"content-length": "10"})
    assert r.status_code == 413 and seen == []
