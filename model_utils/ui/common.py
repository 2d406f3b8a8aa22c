"""What every Gradio handler shares: turning failures into readable messages, progress
bars, and per-session Stop flags."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import gradio as gr

from ..service import PythiaError, field_bounds
from .wording import progress_text

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.ui"
T = TypeVar("T")


def user_message(exc: Exception) -> str:
    """A readable message for the visitor; never a stack trace or a server path."""
    if isinstance(exc, PythiaError):
        return str(exc)
    log.error("unexpected error", exc_info=exc)
    return "Something went wrong on the server. Please try again."


def user_error(exc: Exception) -> gr.Error:
    """The same message as an error for API callers. The page shows errors on its notice lines instead;
    should one ever reach a toast, it stays until closed and reads as plain text (no Markdown backticks)."""
    return gr.Error(user_message(exc).replace("`", ""), print_exception=False, duration=None)


def guarded_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; any failure becomes a gr.Error the visitor can read."""
    try:
        return fn(*args, **kwargs)
    except gr.Error:
        raise
    except Exception as exc:
        raise user_error(exc) from None


def guarded(make_items: Callable[[], Iterator[T]]) -> Iterator[T]:
    """Iterate a stream, turning failures at creation or mid-stream into a gr.Error."""
    try:
        yield from make_items()
    except gr.Error:
        raise
    except Exception as exc:
        raise user_error(exc) from None


def declared_slider(request: Any, name: str, *, step: float = 1, **kwargs: Any) -> gr.Slider:
    """A slider for one declared argument: its range, default and help are the declaration's."""
    b = field_bounds(request.model_fields[name])
    return gr.Slider(b.minimum, b.maximum, value=b.default, step=step, label=name.replace("_", " ").capitalize(),
                     info=b.info, **kwargs)


def gradio_progress(progress: gr.Progress, model: str = "", revision: str = "main") -> Callable[[Any], None]:
    """Forward progress reports (download, conversion, load, sweeps) to Gradio's bar, in words."""
    def callback(p) -> None:
        progress(p.fraction, desc=progress_text(p, model, revision))
    return callback


class CancelRegistry:
    """Per-session Stop flags: a Stop button reaches a running generation at its next token.

    A flag exists only while its session's request runs, so the registry holds O(running requests)
    entries however many visitors come and go.
    """

    def __init__(self):
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    @contextmanager
    def running(self, session: str) -> Iterator[threading.Event]:
        """The Stop flag of ``session`` for the duration of one request."""
        event = threading.Event()
        with self._lock:
            self._events[session] = event
        try:
            yield event
        finally:
            with self._lock:
                if self._events.get(session) is event:
                    del self._events[session]

    def cancel(self, session: str) -> None:
        with self._lock:
            event = self._events.get(session)
        if event is not None:
            event.set()

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)
