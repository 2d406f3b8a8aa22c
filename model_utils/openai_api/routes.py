"""The OpenAI-compatible routes, on the app's own port, over the same PythiaService as the page.

``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` and vLLM's tokenizer routes (``/tokenizer_info``,
``/tokenize``, ``/detokenize``), also under a per-model base path ``/m/<NAME[@REVISION]>/...``: lm-eval's
remote tokenizer calls the tokenizer routes at its base URL without naming a model, so a base URL that names
one (``http://host/m/pythia-160m@step1000/v1/completions``) makes every call of an evaluation use that model.

Requests decode in the same batch scheduler as the page's visitors and share its queue (a full queue is a
429). One client (the API key, else its address) may have at most ``max_client_rows`` choices in flight.
A closed connection stops its request, queued or decoding, as Stop does on the page.

Each route is a method of :class:`OpenAIRoutes` (a test can call one directly); who is asking is a FastAPI
dependency (``Caller``), which also checks the key.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' annotations (the Caller dependency is
# local to openai_router) when the routes are built.
import asyncio
import hashlib
import hmac
import logging
import os
import threading
from contextlib import ExitStack
from typing import Annotated, AsyncIterator, Callable, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from ..service import (
    BatchChatRequest,
    BatchCompletionRequest,
    BatchUsage,
    PythiaError,
    PythiaService,
    TargetRequest,
    check_token_ids,
)
from . import responses
from .bodies import ChatBody, CompletionBody, DetokenizeBody, TokenizeBody
from .errors import OpenAIError, from_service
from .pump import ClientGone, Pump, next_item
from .translate import canonical, given, sampling, split_messages, tolerate

log = logging.getLogger(__package__)

CONTEXT = 2048  # every Pythia model's context, in tokens
# service argument -> the OpenAI field a refusal names
CHAT_PARAMS = {"message": "messages", "history": "messages", "system": "messages", "max_new_tokens": "max_tokens",
               "revision": "model"}
COMPLETION_PARAMS = {"revision": "model"}
EOS = "<|endoftext|>"  # Pythia's (and the demo model's) only special token; there is no BOS
EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def client_address(request: Request) -> str:
    """The caller's address. On a Hugging Face Space every request comes through the Space's proxy, which
    appends the real address to X-Forwarded-For: the last entry is the one a caller cannot forge."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and os.environ.get("SPACE_ID"):
        return forwarded.split(",")[-1].strip()
    return request.client.host if request.client else "unknown"


class Authenticator:
    """Who is asking, for the per-client limit (the key's holders, else the address); refuses a request without
    the server's key, or with another one, when the server has a key."""

    def __init__(self, api_key: str | None):
        self._key = api_key
        self._holder = None if api_key is None else "key:" + hashlib.sha256(api_key.encode()).hexdigest()[:12]

    def __call__(self, request: Request) -> str:
        if self._key is None:
            return "address:" + client_address(request)
        given_header = request.headers.get("authorization", "")
        token = given_header[7:].strip() if given_header.lower().startswith("bearer ") else ""
        if not token:
            raise OpenAIError(401, "This server needs an API key: send it as 'Authorization: Bearer <key>'.",
                              "authentication_error", None, "missing_api_key")
        if not hmac.compare_digest(token.encode(), self._key.encode()):
            raise OpenAIError(401, "The API key sent is not this server's key.", "authentication_error", None,
                              "invalid_api_key")
        return self._holder


class OpenAIRoutes:
    """The routes' handlers over one service. ``model_path`` is the ``/m/<NAME[@REVISION]>`` part of the address."""

    def __init__(self, service: PythiaService):
        self.service = service

    # -- shared steps --------------------------------------------------------------------------------------
    def target(self, body_model: str | None, path_model: str | None) -> tuple[str, str | None]:
        if path_model and body_model and canonical(body_model) != canonical(path_model):
            raise OpenAIError(400, f"This address serves {path_model}, but the request names {body_model}. Leave "
                                   "model out, or use the address of the model you want.", param="model",
                              code="model_mismatch")
        name, _, revision = (path_model or body_model or self.service.default_model).partition("@")
        return name, revision or None

    def parse(self, request_type, params: dict[str, str], **raw):
        try:
            return self.service.parse(request_type, **raw)
        except PythiaError as exc:
            error = from_service(exc)
            error.param = params.get(error.param, error.param)
            raise error from None

    # -- models --------------------------------------------------------------------------------------------
    async def list_models(self, model_path: str | None = None) -> dict:
        if model_path is not None:  # a model's own address serves that model alone, under the name it was given
            name, revision = self.target(None, model_path)
            chosen = self.parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)
            return {"object": "list", "data": [self._model_entry(chosen.model, model_path)]}
        default = self.service.default_model
        models = sorted(self.service.catalog.models(), key=lambda m: m.name != default)
        return {"object": "list", "data": [self._model_entry(m, m.name) for m in models]}

    def _model_entry(self, model, shown: str) -> dict:
        return {"id": shown, "object": "model", "created": 0,
                "owned_by": "EleutherAI" if model.repo_id else "this server's operator",
                "root": model.repo_id or model.name, "parent": None, "max_model_len": CONTEXT,
                "revisions": list(model.revisions), "default": model.name == self.service.default_model}

    # -- completions ---------------------------------------------------------------------------------------
    async def completions(self, request: Request, body: CompletionBody, client: str, model_path: str | None = None):
        tolerate(body)
        name, revision = self.target(body.model, model_path)
        parsed = self.parse(BatchCompletionRequest, COMPLETION_PARAMS, model=name, revision=revision,
                            prompt=body.prompt, max_tokens=given(body.max_tokens, 16), echo=given(body.echo, False),
                            logprobs=body.logprobs, n=given(body.n, 1), stop=body.stop, **sampling(body))
        meta = responses.Meta("completion", _label(parsed))
        return await self.answer(request, body, client, parsed.rows, meta, parsed.logprobs is not None,
                                 lambda cancel: self.service.batch_completion(parsed, cancel=cancel))

    async def chat(self, request: Request, body: ChatBody, client: str, model_path: str | None = None):
        tolerate(body)
        name, revision = self.target(body.model, model_path)
        system, history, message = split_messages(body.messages)
        if body.top_logprobs not in (None, 0) and not body.logprobs:
            raise OpenAIError(400, "top_logprobs needs logprobs set to true.", param="top_logprobs")
        max_tokens = given(body.max_completion_tokens, body.max_tokens)  # the newer name wins, as in OpenAI
        parsed = self.parse(BatchChatRequest, CHAT_PARAMS, model=name, revision=revision, system=system,
                            history=history, message=message, n=given(body.n, 1), stop=body.stop,
                            logprobs=given(body.top_logprobs, 0) if body.logprobs else None,
                            **({"max_new_tokens": max_tokens} if max_tokens is not None else {}), **sampling(body))
        meta = responses.Meta("chat", _label(parsed))
        return await self.answer(request, body, client, parsed.rows, meta, parsed.logprobs is not None,
                                 lambda cancel: self.service.batch_chat(parsed, cancel=cancel))

    async def answer(self, request: Request, body, client: str, rows: int, meta: responses.Meta, logprobs: bool,
                     run: Callable[[threading.Event], Iterator]):
        """Hold the client's rows, run the service in a thread, and answer whole or as server-sent events."""
        with ExitStack() as held:
            try:
                held.enter_context(self.service.client_limits.hold(client, rows))
            except PythiaError as exc:
                raise from_service(exc) from None
            cancel = threading.Event()
            pump = Pump(lambda: run(cancel), cancel)
            held.callback(pump.close)  # stops the request at its next step, whatever ends this
            try:
                # the first item comes before any header is sent: a refusal (a prompt too long, a model that cannot
                # be fetched, a full queue) is still a proper HTTP error, streamed or not
                first = await next_item(request, pump, keep_alive=False)
                if body.stream:
                    include_usage = bool(body.stream_options and body.stream_options.include_usage)
                    # the stream now owns the rows and the pump: released when it ends or its client leaves
                    return StreamingResponse(_events(pump, first, held.pop_all(), meta, logprobs, include_usage),
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

    # -- tokenizer (vLLM's routes, as lm-eval's remote tokenizer calls them) -------------------------------
    async def tokenizer_info(self, model_path: str | None = None) -> dict:
        name, revision = self.target(None, model_path)
        self.parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)  # an unknown model is a 404
        return {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "bos_token": EOS, "pad_token": None,
                "unk_token": None, "add_bos_token": False, "model_max_length": CONTEXT, "chat_template": None}

    async def _tokenizer(self, body_model: str | None, model_path: str | None):
        name, revision = self.target(body_model, model_path)
        chosen = self.parse(TargetRequest, COMPLETION_PARAMS, model=name, revision=revision)
        try:
            return await asyncio.to_thread(self.service.tokenizer, chosen)  # may fetch and load the model first
        except PythiaError as exc:
            raise from_service(exc) from None

    async def tokenize(self, body: TokenizeBody, model_path: str | None = None) -> dict:
        tokenizer = await self._tokenizer(body.model, model_path)
        # bounded (the body's declaration) and off the event loop: other requests keep moving meanwhile
        tokens = await asyncio.to_thread(
            lambda: tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens).ids)
        return {"count": len(tokens), "max_model_len": CONTEXT, "tokens": tokens, "token_strs": None}

    async def detokenize(self, body: DetokenizeBody, model_path: str | None = None) -> dict:
        tokenizer = await self._tokenizer(body.model, model_path)
        try:
            check_token_ids(tokenizer, body.tokens, "tokens")
        except PythiaError as exc:
            raise from_service(exc.naming("tokens")) from None
        text = await asyncio.to_thread(tokenizer.decode, body.tokens, skip_special_tokens=False)
        return {"prompt": text}


async def _events(pump: Pump, first, held: ExitStack, meta: responses.Meta, logprobs: bool,
                  include_usage: bool) -> AsyncIterator[str]:
    started: set[int] = set()
    with held:  # a closed connection ends here too: the request stops at its next step, its rows are released
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


def _label(parsed) -> str:
    return parsed.model.name if parsed.revision == "main" else f"{parsed.model.name}@{parsed.revision}"


def openai_router(service: PythiaService, *, api_key: str | None = None) -> APIRouter:
    """The routes, at ``/`` and under ``/m/{model_path}``, every one behind the caller check."""
    routes = OpenAIRoutes(service)
    authenticator = Authenticator(api_key)

    def caller(request: Request) -> str:
        return authenticator(request)

    Caller = Annotated[str, Depends(caller)]  # noqa: N806 - a type, named as one

    async def list_models(client: Caller, model_path: str | None = None):
        return await routes.list_models(model_path)

    async def completions(request: Request, body: CompletionBody, client: Caller, model_path: str | None = None):
        return await routes.completions(request, body, client, model_path)

    async def chat(request: Request, body: ChatBody, client: Caller, model_path: str | None = None):
        return await routes.chat(request, body, client, model_path)

    async def tokenizer_info(client: Caller, model_path: str | None = None):
        return await routes.tokenizer_info(model_path)

    async def tokenize(body: TokenizeBody, client: Caller, model_path: str | None = None):
        return await routes.tokenize(body, model_path)

    async def detokenize(body: DetokenizeBody, client: Caller, model_path: str | None = None):
        return await routes.detokenize(body, model_path)

    router = APIRouter()
    table = [("/v1/models", list_models, "GET"), ("/v1/completions", completions, "POST"),
             ("/v1/chat/completions", chat, "POST"), ("/tokenizer_info", tokenizer_info, "GET"),
             ("/tokenize", tokenize, "POST"), ("/detokenize", detokenize, "POST")]
    for prefix in ("", "/m/{model_path}"):
        for path, handler, method in table:
            router.add_api_route(prefix + path, handler, methods=[method])
    served = list(router.routes)

    async def not_found(request: Request):
        """Any other path under /v1 or a model's address: OpenAI's error shape, not the page's."""
        if any(route.path_regex.match(request.url.path) for route in served):
            raise OpenAIError(405, f"{request.method} is not allowed on {request.url.path}.",
                              code="method_not_allowed")
        raise OpenAIError(404, f"There is no route {request.url.path} on this server: see /v1/models, "
                               "/v1/completions and /v1/chat/completions.", code="not_found")

    for prefix in ("", "/m/{model_path}"):  # after the routes above: only what none of them took
        for path in ("/v1/{rest:path}", *(path for path, _, _ in table if not path.startswith("/v1"))):
            router.add_api_route(prefix + path, not_found, methods=EVERY_METHOD, include_in_schema=False)
    router.add_api_route("/m/{model_path}/{rest:path}", not_found, methods=EVERY_METHOD, include_in_schema=False)
    return router
