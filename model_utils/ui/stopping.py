"""Stop buttons that reach a request wherever it is: decoding, waiting for a decoding lane, or still waiting in
Gradio's queue behind other visitors.

A click is accepted at once, outside the queue, into ``Runs`` (so Stop finds it from that moment), and the
queued handler then runs under that ticket. Stop ends a running request at its next token (it keeps what it
wrote and says "stopped by you"); a request that had not started is dropped, and its handler, when its turn in
the queue comes, finds it so and changes nothing.

Gradio's own ``cancels`` is not used: in gradio 6.31 a cancelled event leaves a lasting "Error" badge on its
outputs, and one cancelled as it starts sends empty values to them (blanking a message just put back in the
box). Closing a running handler would also lose its last words and metrics.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gradio as gr

from .common import Runs, Stopped, session_of
from .wording import STILL_WORKING, STOPPED_BEFORE_START

# Stop, Undo and Clear run through the queue, in a group of their own without a limit (so at once): their
# outputs then travel on the same stream as the handler's, after anything it sent before it ended.
STOP_EVENT = dict(queue=True, concurrency_limit=None, concurrency_id="stop", show_progress="hidden",
                  api_visibility="private")
# A click while an earlier request still waits in the queue (stopped, so it will do nothing) is not ignored.
REPLY_EVENT = dict(trigger_mode="multiple")


def accept_into(runs: Runs, section: str, refusal: str = STILL_WORKING) -> Callable:
    """A quick handler: a ticket for a new request of ``section`` and an empty notice, or no ticket and a
    notice while one of its requests still runs."""
    def accept(request: gr.Request):
        ticket = runs.accept(session_of(request), section)
        return (gr.update(), f"⚠️ {refusal}") if ticket is None else (ticket, "")
    return accept


def stopper(runs: Runs, section: str, stopped_line: str = STOPPED_BEFORE_START) -> Callable:
    """A Stop handler: says so on the status line when the request had not started (a running one says so
    itself when it ends)."""
    def stop(request: gr.Request):
        return stopped_line if runs.stop(session_of(request), section) is Stopped.WAITING else gr.update()
    return stop


def queued_with_stop(runs: Runs, section: str, triggers: Sequence[Any], fn: Callable, inputs: list, outputs: list,
                     *, notice, stopped_line, stop_buttons: Sequence[gr.Button], **queued: Any):
    """Wire ``triggers`` -> accept (at once) -> ``fn(ticket, *inputs)`` (queued, with ``queued`` settings), and
    each of ``stop_buttons`` -> Stop. ``notice`` gets the refusal of a click while a request runs (and is cleared
    on a new one); ``stopped_line`` says when a Stop dropped a request before it started. Returns the queued
    event, for its ``.then``."""
    ticket = gr.State("")
    event = gr.on(triggers, accept_into(runs, section), None, [ticket, notice], queue=False,
                  api_visibility="private").then(fn, [ticket, *inputs], outputs, **REPLY_EVENT, **queued)
    for button in stop_buttons:
        button.click(stopper(runs, section), None, stopped_line, **STOP_EVENT)
    return event
