"""A cap on every request body, for every route (the page's Gradio routes and the OpenAI routes alike), enforced
before the body is read: pure ASGI middleware around the whole app.

A request that declares a larger ``Content-Length`` is answered 413 at once, without reading a byte of it. One
without a length (chunked) or that sends more than it declared is counted as it streams in: at the first chunk
past the cap the 413 goes out and the route is told the client left (``http.disconnect``), so whatever it was
doing with the body ends, and nothing it sends afterwards reaches the client. Either way the server never holds
more than the cap (plus one chunk) of a body in memory, and a 250 MB body costs the event loop nothing.

The OpenAI routes answer in OpenAI's error shape (``{"error": {...}}``), everything else in FastAPI's
(``{"detail": ...}``). Each oversized request is logged once with its size and client, summarised when many come.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable

from .core.refusal_log import RefusalLog

log = logging.getLogger(__package__)  # "model_utils"

MIB = 2**20
DEFAULT_MAX_BODY_MB = 8.0  # --max-body-mb: 64 prompts of 2,048 token ids, or of 20,000 characters, fit easily
# The OpenAI routes (openai_api/routes.py), at "/" and under "/m/NAME/": they answer errors in OpenAI's shape
OPENAI_PATHS = ("/v1/", "/tokenize", "/detokenize", "/tokenizer_info", "/m/")

Scope = dict[str, Any]
Message = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def too_large_words(limit: int) -> str:
    return (f"The request body is larger than this server accepts ({_size(limit)}). Send less at once: fewer or "
            "shorter prompts.")


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n:,} bytes"


class BodySizeLimit:
    """ASGI middleware: request bodies of at most ``max_bytes`` reach ``app``; larger ones are answered 413."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.refusals = RefusalLog(log, "request body too large")

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            self._log(scope, f"{declared:,} bytes declared")
            await self._refuse(scope, send)
            return
        state = {"received": 0, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["refused"] = True
                    self._log(scope, f"more than {state['received']:,} bytes sent"
                              + (f" ({declared:,} declared)" if declared is not None else ""))
                    if not state["started"]:  # the route has not answered yet: the 413 is the answer
                        state["started"] = True
                        await self._refuse(scope, send)
                    return {"type": "http.disconnect"}  # the route stops reading and ends as for a client gone
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # the 413 went out (or the answer had begun): nothing more of the route's answer
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["refused"]:
                raise  # a failure of its own; after a refusal, the route's complaint about the cut body is moot

    def _log(self, scope: Scope, what: str) -> None:
        client = scope.get("client")
        self.refusals.refused(client[0] if client else "unknown", "%s %s: %s, limit %s", scope.get("method", ""),
                              scope.get("path", ""), what, _size(self.max_bytes))

    async def _refuse(self, scope: Scope, send) -> None:
        words = too_large_words(self.max_bytes)
        if scope.get("path", "").startswith(OPENAI_PATHS):
            body = {"error": {"message": words, "type": "invalid_request_error", "param": None,
                              "code": "request_too_large"}}
        else:
            body = {"detail": words}
        payload = json.dumps(body).encode()
        # Connection: close, so the client stops sending what is left of the body instead of the server reading it
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
