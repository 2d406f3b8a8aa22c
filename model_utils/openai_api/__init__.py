"""OpenAI-compatible routes on the app's own port (a Space exposes one): /v1/models, /v1/completions,
/v1/chat/completions and vLLM's tokenizer routes, over the same PythiaService as the page.

Imports only the service layer, like the UI (a test checks it).
"""

from fastapi import FastAPI

from ..service import PythiaService
from .errors import install as _install_errors
from .routes import openai_router


def add_openai_routes(app: FastAPI, service: PythiaService, *, api_key: str | None = None) -> None:
    """Serve the routes from ``app`` (before Gradio is mounted at "/", so they are matched first)."""
    _install_errors(app)
    app.include_router(openai_router(service, api_key=api_key))


__all__ = ["add_openai_routes"]
