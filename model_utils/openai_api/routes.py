"""The OpenAI-compatible routes, on the app's own port, over the same PythiaService as the page.

``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` and vLLM's tokenizer routes (``/tokenizer_info``,
``/tokenize``, ``/detokenize``), also under a per-model base path ``/m/<NAME[@REVISION]>/...``: lm-eval's
remote tokenizer calls the tokenizer routes at its base URL without naming a model, so a base URL that names
one (``http://host/m/pythia-160m@step1000/v1/completions``) makes every call of an evaluation use that model.

Requests decode in the same batch scheduler as the page's visitors and share its queue (a full queue is a
429). One client (the API key, else its address) may have at most ``max_client_rows`` choices in flight.
A closed connection stops its request, queued or decoding, as Stop does on the page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import threading
import time
from contextlib import closing
from typing import Any, AsyncIterator, Callable, Iterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from ..service import (
    BatchChatRequest,
    BatchCompletionRequest,
    BatchUsage,
    PythiaError,
    PythiaService,
    TargetRequest,
    message_text,
)
from . import responses
from .bodies import ChatBody, CompletionBody, DetokenizeBody, TokenizeBody
from .errors import OpenAIError, from_service, unexpected
from .tolerance import STREAM_OPTIONS_NEUTRAL, check_extra

log = logging.getLogger(__package__)

CONTEXT = 2048  # every Pythia model's context, in tokens
KEEP_ALIVE_S = 1.0  # a streamed request that waits (queued, or loading its model) sends a comment this often
DISCONNECT_CHECK_S = 0.25  # how often a whole (non-streamed) request looks whether its client is still there
# service argument -> the OpenAI field a refusal names
CHAT_PARAMS = {"message": "messages", "history": "messages", "system": "messages", "max_new_tokens": "max_tokens",
               "revision": "model"}
COMPLETION_PARAMS = {"revision": "model"}
EOS = "<|endoftext|>"  # Pythia's (and the demo model's) only special token; there is no BOS


class ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


def openai_router(service: PythiaService, *, api_key: str | None = None) -> APIRouter:
    """The routes, at ``/`` and under ``/m/{model}``."""
    router = APIRouter()

    def caller(request: Request) -> str:
        """Who is asking, for the per-client limit; refuses a missing or wrong key when the server has one."""
        if api_key is not None:
            given = request.headers.get("authorization", "")
            token = given[7:].strip() if given.lower().startswith("bearer ") else ""
            if not token:
                raise OpenAIError(401, "This server needs an API key: send it as 'Authorization: Bearer <key>'.",
                                  "authentication_error", None, "missing_api_key")
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                raise OpenAIError(401, "The API key sent is not this server's key.", "authentication_error", None,
                                  "invalid_api_key")
            return "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]
        return "address:" + client_address(request)

    def target(body_model: str | None, path_model: str | None) -> tuple[str, str | None]:
        if path_model and body_model and _canonical(body_model) != _canonical(path_model):
            raise OpenAIError(400, f"This address serves {path_model}, but the request names {body_model}. Leave "
                                   "model out, or use the address of the model you want.", param="model",
                              code="model_mismatch")
        name, _, revision = (path_model or body_model or service.default_model).partition("@")
        return name, revision or None

    def parse(request_type, params: dict[str, str], **raw):
        try:
            return service.parse(request_type, **raw)
        except PythiaError as exc:
            error = from_service(exc)
            error.param = params.get(error.param, error.param)
            raise error from None

    # -- models ------------------------------------------------------------------------------------------
    async def list_models(request: Request, model_path: str | None = None) -> dict:
        caller(request)
        if model_path is not None:  # a model's own address serves that model alone, under the name it was given
            name, revision = target(None, model_path)
            chosen = parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)
            return {"object": "list", "data": [model_entry(chosen.model, model_path)]}
        models = sorted(service.catalog.models(), key=lambda m: m.name != service.default_model)
        return {"object": "list", "data": [model_entry(m, m.name) for m in models]}

    def model_entry(model, shown: str) -> dict:
        return {"id": shown, "object": "model", "created": 0,
                "owned_by": "EleutherAI" if model.repo_id else "this server's operator",
                "root": model.repo_id or model.name, "parent": None, "max_model_len": CONTEXT,
                "revisions": list(model.revisions), "default": model.name == service.default_model}

    # -- completions ---------------------------------------------------------------------------------------
    async def completions(request: Request, body: CompletionBody, model_path: str | None = None):
        client = caller(request)
        tolerate(body)
        name, revision = target(body.model, model_path)
        parsed = parse(BatchCompletionRequest, COMPLETION_PARAMS, model=name, revision=revision, prompt=body.prompt,
                       max_tokens=_given(body.max_tokens, 16), echo=_given(body.echo, False),
                       logprobs=body.logprobs, n=_given(body.n, 1), stop=body.stop, **_sampling(body))
        meta = responses.Meta("completion", _label(parsed))
        return await answer(request, body, client, parsed.rows, meta, parsed.logprobs is not None,
                            lambda cancel: service.batch_completion(parsed, cancel=cancel))

    async def chat(request: Request, body: ChatBody, model_path: str | None = None):
        client = caller(request)
        tolerate(body)
        name, revision = target(body.model, model_path)
        system, history, message = split_messages(body.messages)
        if body.top_logprobs not in (None, 0) and not body.logprobs:
            raise OpenAIError(400, "top_logprobs needs logprobs set to true.", param="top_logprobs")
        max_tokens = _given(body.max_completion_tokens, body.max_tokens)  # the newer name wins, as in OpenAI
        parsed = parse(BatchChatRequest, CHAT_PARAMS, model=name, revision=revision, system=system,
                       history=history, message=message, n=_given(body.n, 1), stop=body.stop,
                       logprobs=_given(body.top_logprobs, 0) if body.logprobs else None,
                       **({"max_new_tokens": max_tokens} if max_tokens is not None else {}), **_sampling(body))
        meta = responses.Meta("chat", _label(parsed))
        return await answer(request, body, client, parsed.rows, meta, parsed.logprobs is not None,
                            lambda cancel: service.batch_chat(parsed, cancel=cancel))

    async def answer(request: Request, body, client: str, rows: int, meta: responses.Meta, logprobs: bool,
                     run: Callable[[threading.Event], Iterator]):
        """Hold the client's rows, run the service in a thread, and answer whole or as server-sent events."""
        hold = service.client_limits.hold(client, rows)
        try:
            hold.__enter__()
        except PythiaError as exc:
            raise from_service(exc) from None
        cancel = threading.Event()
        pump = Pump(lambda: run(cancel), cancel)
        streaming = False  # once a stream is handed over, it releases the rows itself when it ends
        try:
            # the first item comes before any header is sent: a refusal (a prompt too long, a model that cannot
            # be fetched, a full queue) is still a proper HTTP error, streamed or not
            first = await next_item(request, pump, keep_alive=False)
            if body.stream:
                include_usage = bool(body.stream_options and body.stream_options.include_usage)
                streaming = True
                return StreamingResponse(events(pump, first, hold, meta, logprobs, include_usage),
                                         media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
            assembler = responses.Assembler(meta, logprobs)
            item = first
            while item is not None:
                assembler.add(item)
                item = await next_item(request, pump, keep_alive=False)
            # a whole answer can be megabytes of log-probs: encoded off the event loop
            encoded = await asyncio.to_thread(responses.encode, assembler.body())
            return Response(encoded, media_type="application/json")
        except ClientGone:
            log.info("an API client closed its connection; its request was stopped")
            return Response(status_code=499)
        finally:
            if not streaming:
                pump.close()
                hold.__exit__(None, None, None)

    async def events(pump, first, hold, meta, logprobs, include_usage) -> AsyncIterator[str]:
        started: set[int] = set()
        try:
            item = first
            while item is not None:
                if item == "keep-alive":
                    yield ": waiting\n\n"  # a comment: detects a closed connection while nothing is ready
                elif isinstance(item, BatchUsage):
                    if include_usage:
                        yield responses.sse(responses.usage_event(meta, item))
                else:
                    yield responses.sse(responses.stream_event(meta, item, logprobs, item.index not in started,
                                                               include_usage))
                    started.add(item.index)
                try:
                    item = await next_item(None, pump, keep_alive=True)
                except OpenAIError as exc:
                    yield responses.sse({"error": {"message": exc.message, "type": exc.type, "param": exc.param,
                                                   "code": exc.code}})
                    break
            yield responses.sse("[DONE]")
        finally:
            pump.close()  # a closed connection ends here too: the request stops at its next step
            hold.__exit__(None, None, None)

    # -- tokenizer (vLLM's routes, as lm-eval's remote tokenizer calls them) -------------------------------
    async def tokenizer_info(request: Request, model_path: str | None = None) -> dict:
        caller(request)
        name, revision = target(None, model_path)
        parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)  # an unknown model is a 404
        return {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS, "pad_token": None,
                "unk_token": None, "add_bos_token": False, "model_max_length": CONTEXT, "chat_template": None}

    async def tokenizer_of(body_model: str | None, model_path: str | None):
        name, revision = target(body_model, model_path)
        chosen = parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)
        try:
            return await asyncio.to_thread(service.tokenizer, chosen)  # may fetch and load the model first
        except PythiaError as exc:
            raise from_service(exc) from None

    async def tokenize(request: Request, body: TokenizeBody, model_path: str | None = None) -> dict:
        caller(request)
        tokenizer = await tokenizer_of(body.model, model_path)
        # bounded (the body's declaration) and off the event loop: other requests keep moving meanwhile
        tokens = await asyncio.to_thread(
            lambda: tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens).ids)
        return {"count": len(tokens), "max_model_len": CONTEXT, "tokens": tokens, "token_strs": None}

    async def detokenize(request: Request, body: DetokenizeBody, model_path: str | None = None) -> dict:
        caller(request)
        tokenizer = await tokenizer_of(body.model, model_path)
        size = tokenizer.get_vocab_size()
        wrong = next((t for t in body.tokens if not 0 <= t < size), None)
        if wrong is not None:
            raise OpenAIError(400, f"tokens holds {wrong}, which is not a token of this model's vocabulary "
                                   f"(0 to {size - 1}).", param="tokens")
        text = await asyncio.to_thread(tokenizer.decode, body.tokens, skip_special_tokens=False)
        return {"prompt": text}

    async def not_found(request: Request, rest: str = "", model_path: str | None = None):
        """Any other path under /v1 or a model's address: OpenAI's error shape, not the page's."""
        known = {route.path for route in router.routes if getattr(route, "methods", None) and
                 request.method not in route.methods and route.path_regex.match(request.url.path)}
        if known:
            raise OpenAIError(405, f"{request.method} is not allowed on {request.url.path}.", code="method_not_allowed")
        raise OpenAIError(404, f"There is no route {request.url.path} on this server: see /v1/models, "
                               "/v1/completions and /v1/chat/completions.", code="not_found")

    for prefix in ("", "/m/{model_path}"):
        router.add_api_route(f"{prefix}/v1/models", list_models, methods=["GET"])
        router.add_api_route(f"{prefix}/v1/completions", completions, methods=["POST"])
        router.add_api_route(f"{prefix}/v1/chat/completions", chat, methods=["POST"])
        router.add_api_route(f"{prefix}/tokenizer_info", tokenizer_info, methods=["GET"])
        router.add_api_route(f"{prefix}/tokenize", tokenize, methods=["POST"])
        router.add_api_route(f"{prefix}/detokenize", detokenize, methods=["POST"])
    every = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    for prefix in ("", "/m/{model_path}"):  # after the routes above: only what none of them took
        router.add_api_route(prefix + "/v1/{rest:path}", not_found, methods=every, include_in_schema=False)
        for path in ("/tokenizer_info", "/tokenize", "/detokenize"):
            router.add_api_route(prefix + path, not_found, methods=every, include_in_schema=False)
    router.add_api_route("/m/{model_path}/{rest:path}", not_found, methods=every, include_in_schema=False)
    return router


# -- helpers --------------------------------------------------------------------------------------------
def client_address(request: Request) -> str:
    """The caller's address. On a Hugging Face Space every request comes through the Space's proxy, which
    appends the real address to X-Forwarded-For: the last entry is the one a caller cannot forge."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and os.environ.get("SPACE_ID"):
        return forwarded.split(",")[-1].strip()
    return request.client.host if request.client else "unknown"


def split_messages(messages: Any) -> tuple[str, list[dict], Any]:
    """OpenAI messages -> (system text, earlier user/assistant turns, the last user message)."""
    if not isinstance(messages, list) or not messages:
        raise OpenAIError(400, "messages must be a non-empty list of {role, content} objects.", param="messages")
    system, turns = [], []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise OpenAIError(400, f"messages[{i}] must have role system, user or assistant.", param="messages")
        try:
            text = message_text(message.get("content", ""))
        except PythiaError as exc:
            raise OpenAIError(400, f"messages[{i}]: {exc}", param="messages") from None
        if role in ("system", "developer"):
            system.append(text)
        else:
            turns.append({"role": role, "content": text})
    if not turns or turns[-1]["role"] != "user":
        raise OpenAIError(400, "The last message must be the user's: the model writes the assistant's next turn.",
                          param="messages")
    return "\n".join(system), turns[:-1], turns[-1]["content"]


def tolerate(body) -> None:
    """Fields this server does not use: accepted when neutral (logged once), refused when they would matter."""
    check_extra(body.model_extra)
    if body.stream_options is not None:
        if not body.stream:
            raise OpenAIError(400, "stream_options can only be given when stream is true.", param="stream_options")
        check_extra(body.stream_options.model_extra, STREAM_OPTIONS_NEUTRAL, "stream_options.")


def _canonical(name: str) -> str:
    model, _, revision = name.partition("@")
    return f"{model.removeprefix('EleutherAI/')}@{revision or 'main'}"


def _given(value: Any, default: Any) -> Any:
    """OpenAI's null means the default."""
    return default if value is None else value


def _sampling(body) -> dict:
    top_k = _given(body.top_k, 0)
    return {"temperature": _given(body.temperature, 1.0), "top_p": _given(body.top_p, 1.0),
            "top_k": 0 if top_k == -1 else top_k, "repetition_penalty": _given(body.repetition_penalty, 1.0)}


def _label(parsed) -> str:
    return parsed.model.name if parsed.revision == "main" else f"{parsed.model.name}@{parsed.revision}"


WAITING = object()  # nothing ready yet


class Pump:
    """Runs a service iterator in its own thread and hands its items to the event loop.

    The thread owns the iterator from start to close (a generator must not be closed from another thread);
    ``close`` sets ``cancel``, which stops the service at its next step and so ends the thread."""

    def __init__(self, make: Callable[[], Iterator], cancel: threading.Event):
        self.cancel = cancel
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._getter: asyncio.Future | None = None
        self._checked_at = time.monotonic()  # when the client's connection was last looked at
        threading.Thread(target=self._run, args=(make,), name="openai-request", daemon=True).start()

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop is gone (the server is stopping)
            pass

    def _run(self, make: Callable[[], Iterator]) -> None:
        try:
            with closing(make()) as items:
                for item in items:
                    self._put("item", item)
                    if self.cancel.is_set():
                        break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who answers it
            self._put("error", exc)
        finally:
            self._put("end", None)

    async def next(self, timeout: float) -> Any:
        """The next item, None at the end, or WAITING when nothing came within ``timeout`` seconds (the pending
        read carries over to the next call, so nothing is lost)."""
        if self._getter is None:
            self._getter = asyncio.ensure_future(self._queue.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            return WAITING
        kind, value = self._getter.result()
        self._getter = None
        if kind == "error":
            raise value
        return None if kind == "end" else value

    def close(self) -> None:
        self.cancel.set()
        if self._getter is not None:
            self._getter.cancel()

    def check_due(self) -> bool:
        """Whether DISCONNECT_CHECK_S passed since the connection was last looked at (and now it is)."""
        now = time.monotonic()
        if now - self._checked_at < DISCONNECT_CHECK_S:
            return False
        self._checked_at = now
        return True


async def next_item(request: Request | None, pump: Pump, *, keep_alive: bool) -> Any:
    """The next item (None at the end); a refusal becomes an OpenAIError. While it waits, a whole answer
    watches the connection and stops its request when the client leaves; a stream gets "keep-alive" now and
    then (writing it is how a stream notices a closed connection)."""
    try:
        while True:
            item = await pump.next(KEEP_ALIVE_S if keep_alive else DISCONNECT_CHECK_S)
            # looked at every DISCONNECT_CHECK_S whether items flow or not: a whole answer whose tokens come
            # faster than that must still notice a client that left
            if request is not None and pump.check_due() and await request.is_disconnected():
                pump.close()
                raise ClientGone()
            if item is not WAITING:
                return item
            if keep_alive:
                return "keep-alive"
    except (ClientGone, OpenAIError):
        raise
    except PythiaError as exc:
        raise from_service(exc) from None
    except Exception as exc:
        raise unexpected(exc) from None
