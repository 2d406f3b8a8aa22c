"""HTTP to one vLLM server's OpenAI-compatible API (``/v1/models``, ``/v1/completions``).

Prompts go out as token ids and tokens come back as ids (``return_tokens_as_token_ids``), so the
app tokenizes and detokenizes exactly as for its local models and the server's text never matters.
Every call has a bounded time (connect, and each read of the stream). Failures become errors a
visitor can read: no URL, no key, no stack trace; the operator's log gets the details.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from typing import Any, Iterator

import httpx

from ..core.errors import InvalidParameter, ModelUnavailable, ServerBusy
from ..core.sse import event_lines

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"

CONNECT_TIMEOUT_S = 5.0  # a server that does not accept a connection in 5 s is down for our visitors
BUSY_STATUSES = (429, 503)  # vLLM's (or its proxy's) "overloaded": the app's own "busy" message


class RemoteProblem(ModelUnavailable):
    """The remote engine did not answer, or answered with an error."""


class VLLMClient:
    """One server; ``name`` is the catalog model it serves, for messages."""

    def __init__(self, base_url: str, name: str, *, api_key: str | None = None, timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.name = name
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # read: the longest silence allowed between two pieces of a streamed reply
        timeout = httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s))
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def model_ids(self) -> list[str]:
        """The ids the server serves (what a request's ``model`` field must say)."""
        with self._call("listing its models"):
            response = self._http.get("/models")
            self._raise_for(response)
            return [m["id"] for m in response.json().get("data", [])]

    def complete(self, body: dict[str, Any]) -> dict:
        """One non-streamed completion (scoring: prompt log-probs)."""
        with self._call("scoring"):
            response = self._http.post("/completions", json=body)
            self._raise_for(response)
            return response.json()

    def stream(self, body: dict[str, Any]) -> Iterator[dict]:
        """The events of a streamed completion. Closing this iterator closes the HTTP stream, and
        vLLM aborts a request whose client went away: Stop and closed tabs free the server too."""
        with self._call("generating"):
            with self._http.stream("POST", "/completions", json={**body, "stream": True}) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                for line in event_lines(response.iter_text()):
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:  # vLLM reports mid-stream failures as an event
                        self._refused(event["error"])
                    yield event

    # -- errors --------------------------------------------------------------------------------
    @contextmanager
    def _call(self, doing: str):
        try:
            yield
        except httpx.TimeoutException as exc:
            log.warning("remote engine %s for %s: timed out while %s (%s)", self.base_url, self.name, doing,
                        type(exc).__name__)
            raise RemoteProblem(f"The remote engine serving {self.name} did not answer in time. Try again in a "
                                "minute, or choose another model.") from None
        except (httpx.TransportError, json.JSONDecodeError, KeyError, TypeError) as exc:
            log.warning("remote engine %s for %s: failed while %s: %r", self.base_url, self.name, doing, exc)
            raise RemoteProblem(f"The remote engine serving {self.name} is not answering right now. Try again "
                                "in a minute, or choose another model.") from None

    def _raise_for(self, response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        if response.status_code in BUSY_STATUSES:
            raise ServerBusy(f"The remote engine serving {self.name} is busy; try again in a moment.")
        if response.status_code in (401, 403):
            log.warning("remote engine %s refused our key (HTTP %s)", self.base_url, response.status_code)
            raise RemoteProblem(f"The remote engine serving {self.name} refused this app's credentials; "
                                "the operator must check PYTHIA_REMOTE_API_KEY.")
        try:
            payload = response.json()
            error = payload.get("error") or payload
        except (json.JSONDecodeError, AttributeError):
            error = {"message": response.text}
        self._refused(error, response.status_code)

    def _refused(self, error: Any, status: int | None = None) -> None:
        message = error.get("message", "") if isinstance(error, dict) else str(error)
        log.warning("remote engine %s for %s refused a request (HTTP %s): %s", self.base_url, self.name,
                    status, message)
        if status is not None and 400 <= status < 500 and status != 404:
            # the server's own words about the request (e.g. a context limit), cut short
            raise InvalidParameter(f"The remote engine serving {self.name} refused the request: "
                                   f"{_short(message)}")
        raise RemoteProblem(f"The remote engine serving {self.name} failed to answer (HTTP {status or 'error'}). "
                            "Try again in a minute, or choose another model.")


def _short(message: str, limit: int = 200) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[:limit - 1] + "…"
