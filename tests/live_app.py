"""Start the real app (same build() as app.py) on a free loopback port, in-process."""

from __future__ import annotations

import socket
from contextlib import contextmanager

from model_utils.settings import Settings
from model_utils.ui.blocks import LAUNCH_OPTIONS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(settings: Settings):
    import app

    engine, demo = app.build(settings)
    port = free_port()
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                            mcp_server=settings.mcp or None, **LAUNCH_OPTIONS)
    try:
        yield url.rstrip("/"), engine
    finally:
        demo.close()
        engine.close()
