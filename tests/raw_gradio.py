"""Call a Gradio endpoint with hand-built payloads over raw HTTP, as an attacker would,
skipping gradio_client's own checks."""

from __future__ import annotations

import json
import uuid

import httpx

from model_utils.core.sse import event_lines


def fn_index(url: str, api_name: str) -> int:
    config = httpx.get(f"{url}/config", timeout=10).json()
    for dep in config["dependencies"]:
        if dep.get("api_name") == api_name:
            return dep["id"]
    raise KeyError(api_name)


def raw_call(url: str, api_name: str, body_json: str, timeout: float = 30) -> dict:
    """Join the queue with ``body_json`` as the "data" array (raw JSON text, so NaN and
    Infinity can be sent) and return the final message of the event."""
    session = uuid.uuid4().hex
    body = ('{"data": %s, "fn_index": %d, "session_hash": "%s", "event_data": null, "trigger_id": null}'
            % (body_json, fn_index(url, api_name), session))
    join = httpx.post(f"{url}/gradio_api/queue/join", content=body,
                      headers={"Content-Type": "application/json"}, timeout=10)
    if join.status_code != 200:
        return {"msg": "http_error", "status": join.status_code, "text": join.text}
    with httpx.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session},
                      timeout=timeout) as events:
        for line in event_lines(events.iter_text()):
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("msg") in ("process_completed", "queue_full", "unexpected_error"):
                return message
    raise AssertionError("the event never completed")
