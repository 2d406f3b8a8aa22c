"""API requests turned away before their body is read while the rows all API clients may hold together are taken
(--max-api-rows): pure ASGI middleware in front of the OpenAI completion routes.

Measured (tests/test_crowd.py): API clients on 14 more addresses than the rows admit, each sending its next
request the moment the last was refused, were refused ~170 times a second; each refusal parsed its body and
validated it first, and that work on the event loop tripled the page's load time for a visitor (2.5 s idle, 7 s
during the flood). Any completion request holds at least one row, so while the rows are all taken every one of
them would be refused anyway: the answer (429 with Retry-After, in OpenAI's shape, the same words as the route's)
is given from the path alone. The body is drained, not parsed, so the client's connection stays usable.

And it is given after a pause (``REFUSAL_PAUSE_S``, an idle wait on the event loop, no work): a client that ignores
Retry-After and asks again at once costs the server one request a second per connection, not hundreds. Measured
the same way, refusals fell from ~200 a second to ~15, and the visitor's page load ... (see test_crowd.py).
"""

from __future__ import annotations

import asyncio
import json

from .openai_api.errors import RETRY_AFTER_S
from .service.client_limits import ClientLimits

GATED = ("/v1/completions", "/v1/chat/completions")  # also under /m/NAME/
REFUSAL_PAUSE_S = 1.0  # how long a refused request waits for its 429 (Retry-After says 2 s)


class ApiShareGate:
    """ASGI middleware: a completion request that arrives while ``limits`` has no API row left is answered 429."""

    def __init__(self, app, limits: ClientLimits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(GATED):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        refusal = self.limits.refuse_if_full("address:" + (client[0] if client else "unknown"))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        while (await receive()).get("more_body"):  # drained (the body cap bounds it), never parsed
            pass
        await asyncio.sleep(REFUSAL_PAUSE_S)
        body = json.dumps({"error": {"message": str(refusal), "type": "rate_limit_error", "param": None,
                                     "code": "server_busy"}}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(RETRY_AFTER_S).encode())]})
        await send({"type": "http.response.body", "body": body})
