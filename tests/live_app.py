"""Start the real app (the same build() and server as `python app.py`) on a free loopback port, in-process."""

from __future__ import annotations

import socket
from contextlib import contextmanager

from model_utils.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(settings: Settings, **injected):
    """Yield (url, engine) of the app serving ``settings``; stopped and unloaded afterwards. ``injected``: what
    app.build lets a caller choose (the engine's model loader, e.g. tests/ct2_hooks.py's)."""
    import app

    with app.running(settings, **injected) as (url, engine):
        yield url, engine
