"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the service's words.

Every refusal the service writes (a PythiaError) keeps its message; only the HTTP status, OpenAI's ``type``
and a short ``code`` are added here. Anything else is logged with its traceback and answered with a plain
500 that names no path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from ..service import ClientBusy, PythiaError, ServerBusy

log = logging.getLogger(__package__)

RETRY_AFTER_S = 2  # what a busy answer asks a client to wait (a decoding step is tens of milliseconds)


@dataclass
class OpenAIError(Exception):
    """A refusal with everything OpenAI's error object carries."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if self.status == 429 else None
        if self.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def from_service(exc: PythiaError) -> OpenAIError:
    """The service's refusal, as the OpenAI routes answer it."""
    from ..service import ModelTooLarge, ModelUnavailable, UnknownModel

    message, param = str(exc), exc.param
    if isinstance(exc, ClientBusy):
        return OpenAIError(429, message, "rate_limit_error", None, "client_limit")
    if isinstance(exc, ServerBusy):
        return OpenAIError(429, message, "rate_limit_error", None, "server_busy")
    if isinstance(exc, UnknownModel):
        return OpenAIError(404, message, "invalid_request_error", "model", "model_not_found")
    if isinstance(exc, ModelTooLarge):
        return OpenAIError(400, message, "invalid_request_error", "model", "model_too_large")
    if isinstance(exc, ModelUnavailable):
        return OpenAIError(503, message, "server_error", None, "model_unavailable")
    return OpenAIError(400, message, "invalid_request_error", param, "invalid_value")


def _validation_error(exc: RequestValidationError) -> OpenAIError:
    """A body that is not JSON, is not an object, or has a field this server does not know."""
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = loc[0] if loc else None
    if first.get("type") == "extra_forbidden":
        return OpenAIError(400, f"Unknown field {field!r}: this server does not take it.", param=field,
                           code="unknown_field")
    if first.get("type") == "json_invalid":
        return OpenAIError(400, "The request body is not valid JSON.", code="invalid_json")
    if field is None:
        return OpenAIError(400, "The request body must be a JSON object.", code="invalid_body")
    if first.get("type") == "missing":
        return OpenAIError(400, f"{field} is required.", param=field, code="missing_field")
    return OpenAIError(400, f"{field}: {first.get('msg', 'invalid value')}.", param=field, code="invalid_type")


def install(app) -> None:
    """Answer the OpenAI routes' failures in OpenAI's shape (other paths keep Gradio's own answers)."""

    async def openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc).response()

    app.add_exception_handler(OpenAIError, openai_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def unexpected(exc: BaseException) -> OpenAIError:
    log.error("an OpenAI route failed", exc_info=exc)
    return OpenAIError(500, "The server failed to answer this request; it has been logged. Try again.",
                       "server_error", None, "internal_error")
