"""Stop buttons that reach a request wherever it is: decoding, waiting for a decoding lane, or still waiting in
Gradio's queue behind other visitors.

A click is accepted at once, outside the queue, into ``Runs`` (so Stop finds it from that moment), and the
queued handler then runs under that ticket. Stop ends a running request at its next token (it keeps what it
wrote and says "stopped by you"); a request that had not started is dropped: Gradio's own cancel takes its
event out of the queue, and its handler, should it start anyway, does nothing. Gradio's cancel is kept for
that case only: on a running event it would close the handler mid-reply, losing its last words and metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr

from .common import Runs, Stopped, session_of
from .wording import STILL_WORKING, STOPPED_BEFORE_START


def accept_into(runs: Runs, section: str, refusal: str = STILL_WORKING) -> Callable:
    """A quick handler: a ticket for a new request of ``section`` and an empty notice, or no ticket and a
    notice while one of its requests still runs."""
    def accept(request: gr.Request):
        ticket = runs.accept(session_of(request), section)
        return (gr.update(), f"⚠️ {refusal}") if ticket is None else (ticket, "")
    return accept


# Stop handlers run through the queue, in a group of their own without a limit (so at once): only a queued
# event's changed State triggers that State's change listeners, which is how a Stop cancels a waiting event.
STOP_EVENT = dict(queue=True, concurrency_limit=None, concurrency_id="stop", show_progress="hidden",
                  api_visibility="private")


def dropper(runs: Runs, section: str, stopped_line: str = STOPPED_BEFORE_START) -> Callable:
    """A quick Stop handler: outputs (status line, dropped ticket); both change only when the request had not
    started, and the changed ticket is what cancels its queued event."""
    def stop(request: gr.Request):
        outcome, dropped = runs.stop(session_of(request), section)
        return (stopped_line, dropped) if outcome is Stopped.WAITING else (gr.update(), gr.update())
    return stop


def cancel_when_dropped(dropped: gr.State, events: Sequence[Any]) -> None:
    """Take ``events`` out of Gradio's queue when ``dropped`` changes (a Stop found their request waiting)."""
    dropped.change(None, None, None, cancels=list(events), queue=False, api_visibility="private")


def queued_with_stop(runs: Runs, section: str, triggers: Sequence[Any], fn: Callable, inputs: list, outputs: list,
                     *, notice, stopped_line, stop_buttons: Sequence[gr.Button], **queued: Any):
    """Wire ``triggers`` -> accept (at once) -> ``fn(ticket, *inputs)`` (queued, with ``queued`` settings), and
    each of ``stop_buttons`` -> Stop. ``notice`` gets the refusal of a click while a request runs (and is cleared
    on a new one); ``stopped_line`` says when a Stop dropped a request before it started. Returns the queued
    event, for its ``.then``."""
    ticket, dropped = gr.State(""), gr.State("")
    event = gr.on(triggers, accept_into(runs, section), None, [ticket, notice], queue=False,
                  api_visibility="private").then(fn, [ticket, *inputs], outputs, **queued)
    for button in stop_buttons:
        button.click(dropper(runs, section), None, [stopped_line, dropped], **STOP_EVENT)
    cancel_when_dropped(dropped, [event])
    return event
