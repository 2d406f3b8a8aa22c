"""What every Gradio handler shares: turning failures into readable messages, progress
bars, and the requests a visitor's Stop, Undo and Clear act on."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
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


def session_of(request: Any) -> str:
    """The visitor's page session ("" outside a page, e.g. in tests)."""
    return (getattr(request, "session_hash", None) if request is not None else None) or ""


def declared_slider(request: Any, name: str, *, step: float = 1, label: str | None = None, **kwargs: Any) -> gr.Slider:
    """A slider for one declared argument: its range, default and help are the declaration's."""
    b = field_bounds(request.model_fields[name])
    return gr.Slider(b.minimum, b.maximum, value=b.default, step=step,
                     label=label or name.replace("_", " ").capitalize(), info=b.info, **kwargs)


def gradio_progress(progress: gr.Progress, model: str = "", revision: str = "main") -> Callable[[Any], None]:
    """Forward progress reports (download, conversion, load, sweeps) to Gradio's bar, in words."""
    def callback(p) -> None:
        progress(p.fraction, desc=progress_text(p, model, revision))
    return callback


@dataclass(eq=False)
class Run:
    """One request a section of a visitor's page accepted: from the click that queued it to its end."""

    ticket: str
    seq: int = 0  # the page's number for the click that asked for it (0: a click without one)
    message: str = ""  # the chat message it answers, and where its reply goes in the chat
    at: int = 0
    accepted_at: float = field(default_factory=time.monotonic)  # when the click reached the server
    stop: threading.Event = field(default_factory=threading.Event)  # the request's cancel flag
    discarded: bool = False  # Undo / Clear: nothing more of it may reach the page
    started: bool = False  # its handler runs (it may still wait for a decoding lane)
    ended: threading.Event = field(default_factory=threading.Event)


class Stopped(Enum):
    """What a Stop found."""

    NOTHING = "nothing"  # no request of that section was accepted (or it already ended)
    RUNNING = "running"  # its handler runs: it ends at its next token and says so
    WAITING = "waiting"  # it had not started: dropped, it never will


class Refused(Enum):
    """Why a click was not accepted."""

    BUSY = "busy"  # a request of the section is being written
    STOPPED = "stopped"  # a Stop clicked after it reached the server first: it never starts
    DISCARDED = "discarded"  # an Undo or Clear clicked after it (or a newer request) reached the server first


@dataclass
class _Barrier:
    """The newest Stop and Undo/Clear clicks of a section that reached the server: the page numbers its clicks,
    and a click that arrives after a newer one that cancels it must not undo what that one did."""

    stop: int = 0
    discard: int = 0


class Runs:
    """The requests each section of each visitor's page accepted and that have not ended: what Stop, Undo and
    Clear act on, from the moment the click is accepted (before Gradio's queue, so a request still queued
    there is reached too: its handler, when its turn comes, finds it dropped and changes nothing).

    One entry per (session, section) at most, removed when its request ends or is dropped and when the page
    closes, so the registry holds O(visitors with a request) entries however many come and go.
    """

    DISCARD_WAIT_S = 5.0  # Undo/Clear wait this long at most for a running reply to end (it ends at its next token)

    def __init__(self):
        self._runs: dict[tuple[str, str], Run] = {}
        self._barriers: dict[tuple[str, str], _Barrier] = {}  # for pages that number their clicks; until unload
        self._lock = threading.Lock()

    def accept_click(self, session: str, section: str, seq: int, message: str = "", at: int = 0
                     ) -> tuple[str | None, Refused | None]:
        """A ticket for click number ``seq`` of the page, or why not: one of the section's requests is being
        written, or a Stop, Undo or Clear clicked after it already reached the server (clicks can reach it out of
        order when it is busy), or so did a newer request."""
        with self._lock:
            barrier = self._barriers.get((session, section))
            if seq and barrier is not None and barrier.discard >= seq:
                return None, Refused.DISCARDED
            if seq and barrier is not None and barrier.stop >= seq:
                return None, Refused.STOPPED
            current = self._runs.get((session, section))
            if current is not None and current.started:
                return None, Refused.BUSY
            if current is not None and current.seq > seq:
                return None, Refused.DISCARDED
            run = Run(f"{session}:{seq}", seq=seq, message=message, at=at)
            self._runs[(session, section)] = run
            return run.ticket, None

    def stop_click(self, session: str, section: str, seq: int) -> tuple[Stopped, Run | None]:
        """Stop as :meth:`stop`, for click number ``seq``: a request asked for by a newer click is not reached,
        and one asked for by an older click that reaches the server later never starts. Also returns the run."""
        with self._lock:
            barrier = self._barriers.setdefault((session, section), _Barrier())
            barrier.stop = max(barrier.stop, seq)
            run = self._runs.get((session, section))
            if run is None or run.seq > seq:
                return Stopped.NOTHING, None
            run.stop.set()
            if run.started:
                return Stopped.RUNNING, run
            del self._runs[(session, section)]
            return Stopped.WAITING, run

    def discard_click(self, session: str, section: str, seq: int) -> None:
        """Undo or Clear as :meth:`discard`, for click number ``seq``: a request asked for by a newer click is not
        reached, and one asked for by an older click that reaches the server later never starts."""
        with self._lock:
            barrier = self._barriers.setdefault((session, section), _Barrier())
            barrier.discard = max(barrier.discard, seq)
            run = self._runs.get((session, section))
            if run is None or run.seq > seq:
                return
            del self._runs[(session, section)]
            run.discarded = True
            run.stop.set()
            started = run.started
        if started:
            run.ended.wait(self.DISCARD_WAIT_S)

    def accept(self, session: str, section: str) -> str | None:
        """A ticket for a new request of ``section``, or None while one of its requests runs. A request
        accepted but not started is replaced (its handler, should Gradio still start it, does nothing)."""
        with self._lock:
            current = self._runs.get((session, section))
            if current is not None and current.started:
                return None
            ticket = uuid.uuid4().hex
            self._runs[(session, section)] = Run(ticket)
            return ticket

    def busy(self, session: str, section: str) -> bool:
        with self._lock:
            current = self._runs.get((session, section))
            return current is not None and current.started

    @contextmanager
    def running(self, session: str, section: str, ticket: str | None) -> Iterator[Run | None]:
        """The run of ``ticket`` while its handler runs, or None when it was stopped, undone or replaced
        before it started (the handler then leaves the page as it is)."""
        with self._lock:
            run = self._runs.get((session, section))
            if run is None or not ticket or run.ticket != ticket or run.started:
                run = None
            else:
                run.started = True
        try:
            yield run
        finally:
            if run is not None:
                with self._lock:
                    if self._runs.get((session, section)) is run:
                        del self._runs[(session, section)]
                run.ended.set()

    def stop(self, session: str, section: str) -> Stopped:
        """Stop the section's request: a running one at its next token, a waiting one for good."""
        with self._lock:
            run = self._runs.get((session, section))
            if run is None:
                return Stopped.NOTHING
            run.stop.set()
            if run.started:
                return Stopped.RUNNING
            del self._runs[(session, section)]
            return Stopped.WAITING

    def discard(self, session: str, section: str) -> None:
        """Stop the section's request and keep all of it off the page: returns once a running one has ended, so
        nothing it yielded can arrive after what Undo or Clear show; one that had not started never will."""
        with self._lock:
            run = self._runs.pop((session, section), None)
            if run is None:
                return
            run.discarded = True
            run.stop.set()
            started = run.started
        if started:
            run.ended.wait(self.DISCARD_WAIT_S)

    def forget(self, session: str) -> None:
        """The page closed: stop and drop its requests."""
        with self._lock:
            gone = [key for key in self._runs if key[0] == session]
            for key in gone:
                self._runs.pop(key).stop.set()
            for key in [key for key in self._barriers if key[0] == session]:
                del self._barriers[key]

    def __len__(self) -> int:
        """Entries held: runs, and the click numbers of pages still open."""
        with self._lock:
            return len(self._runs) + len(self._barriers)
