"""A service iterator run in its own thread, its items handed to the event loop: how a route waits for decoding
without blocking other requests, and notices a client that left."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import closing
from typing import Any, Callable, Iterator

from fastapi import Request

from ..service import PythiaError
from .errors import OpenAIError, from_service, unexpected

KEEP_ALIVE_S = 1.0  # a streamed request that waits (queued, or loading its model) sends a comment this often
DISCONNECT_CHECK_S = 0.25  # how often a whole (non-streamed) request looks whether its client is still there


class ClientGone(Exception):
    """The caller closed the connection before the answer was ready."""


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
