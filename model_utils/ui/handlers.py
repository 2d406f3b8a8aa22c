"""What the Chat and Completion tabs do when a visitor acts: plain methods over the service,
so the fast test tier can call them without a server."""

from __future__ import annotations

import functools
import html
import time
from typing import Iterator

import gradio as gr

from ..service import (
    ChatRequest,
    CompletionRequest,
    FinishReason,
    PythiaError,
    PythiaService,
    Reply,
    TargetRequest,
    message_text,
)
from .common import Refused, Runs, Stopped, gradio_progress, session_of, user_message
from .controls import ControlValues
from .heatmap import alternatives_table, token_heatmap
from .wording import (
    STILL_REPLYING,
    STOPPED_BEFORE_REPLY,
    STOPPED_BEFORE_START,
    format_parameters,
    memory_words,
    metrics_markdown,
    model_note,
)

TOKEN_VIEW_TOP = 5  # alternatives shown per token in the token views
TOKEN_HINT_CLASS = "token-hint"  # the heatmap's place holds this hint, not a heatmap
CHAT, COMPLETION = "chat", "completion"  # the sections whose requests Stop, Undo and Clear reach


NO_CHANGE = gr.update()
HIDDEN = (gr.update(visible=False), gr.update(visible=False))  # the token views, hidden (a later tick shows them)
CLEARED = (gr.update(value="", visible=False), gr.update(value=[], visible=False))  # the token views, emptied
# bot_reply's seven outputs left as they are: a handler that yields nothing would blank them (Gradio sends None)
REPLY_UNTOUCHED = (NO_CHANGE,) * 7
EMPTY_REPLY = "…"  # a reply with no text still shows a bubble; the metrics line says why


def notice_text(text: str) -> str:
    return f"⚠️ {text}"


def notice(exc: Exception) -> str:
    """An inline line that keeps an error readable after any toast is gone."""
    return notice_text(user_message(exc))


def with_notice(outputs: int, cleared: tuple | None = None):
    """Wrap a one-shot handler so that a failure puts the reason on the section's notice line (its last output),
    as Chat and Completion do: readable for good, no stray badge. Its ``outputs`` then show ``cleared`` (so no
    result of an earlier run stands beside the new error), or stay as they were. A handler that returns None
    (stopped before it started) changes nothing."""
    def wrap(fn):
        @functools.wraps(fn)  # Gradio reads the signature (gr.Request, gr.Progress) through __wrapped__
        def run(*args, **kwargs):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                return (*(cleared if cleared is not None else (gr.update(),) * outputs), notice(exc))
            return (gr.update(),) * (outputs + 1) if result is None else (*result, "")
        return run
    return wrap


def token_view(reply: Reply):
    """Heatmap + alternatives table of a finished reply, or empty hidden ones (nothing of an earlier reply may
    show when the box is ticked later)."""
    if not reply.token_scores:
        return CLEARED
    return (gr.update(value=token_heatmap(reply.token_scores), visible=True),
            gr.update(value=alternatives_table(reply.token_scores), visible=True))


def toggle_token_view(hint: str):
    """The "Show token probabilities" box, ticked or unticked after a reply: show or hide that reply's token
    views; a reply written while it was unticked has none (they are worked out with the reply), and ``hint``
    says so. Inputs: the box, the heatmap, and what was generated (the chat, or the continuation).
    Outputs: (heatmap, table)."""
    def toggle(show: bool, heatmap: str | None, generated):
        if not show or not generated:  # nothing generated yet: the box applies to what comes
            return HIDDEN
        if heatmap and TOKEN_HINT_CLASS not in heatmap:
            return gr.update(visible=True), gr.update(visible=True)
        return (gr.update(value=f'<p class="{TOKEN_HINT_CLASS}">ℹ️ {html.escape(hint)}</p>', visible=True),
                gr.update(visible=False))
    return toggle


class Handlers:
    """The page's event handlers; ``runs`` holds the requests that Stop, Undo and Clear act on."""

    def __init__(self, service: PythiaService):
        self.service = service
        self.runs = Runs()

    # -- pickers and status --------------------------------------------------------------------
    def model_choices(self) -> list[tuple[str, str]]:
        choices = []
        for model, status in self.service.statuses():
            label = f"{model.name} · {format_parameters(model.num_parameters)}"
            if model.random_weights:
                label += " · random weights (demo)"
            if status.remote:
                label += " · remote vLLM"
            elif not status.fits:
                label += " · too large for this machine"
            elif status.cached:
                label += " · on disk"
            choices.append((label, model.name))
        return choices

    def status_markdown(self, model: str, revision: str) -> str:
        try:
            s = self.service.status(self.service.parse(TargetRequest, model=model, revision=revision))
        except PythiaError as exc:
            return f"⚠️ {exc}"
        memory = memory_words(s, self.service.device_label, self.service.capacity)
        text = f"**{s.name}** @ `{s.revision}` — {memory}: {model_note(s)}."
        if s.description:
            text += f" ℹ️ {s.description}"
        if s.random_weights:
            text += " ⚠️ Random weights: this model writes gibberish; it exists to try the app offline."
        return text

    def revisions(self, model: str) -> list[str]:
        try:
            return list(self.service.model(model).revisions)
        except PythiaError:
            return ["main"]

    def example_text(self, model: str, fallback: str) -> str:
        try:
            return self.service.model(model).example_text or fallback
        except PythiaError:
            return fallback

    def default_curve(self, model: str) -> list[str]:
        try:
            return list(self.service.default_curve(model))
        except PythiaError:
            return ["main"]

    def compare_defaults(self, model: str) -> list[str]:
        """Three checkpoints that show training: the end, and two earlier ones the model has."""
        revisions = self.revisions(model)
        wanted = [r for r in ("step1000", "step16000", "main") if r in revisions]
        if len(wanted) == 3:
            return wanted
        early = [r for r in revisions if r != "main"]  # oldest first: the columns read left to right in time
        picks = ([early[0], early[len(early) // 2]] if early else []) + ["main"]
        return (["main"] * 3 + picks)[-3:]

    def pick_model(self, model: str, revision: str):
        revisions = self.revisions(model)
        revision = revision if revision in revisions else "main"
        return (gr.update(choices=revisions, value=revision, interactive=len(revisions) > 1),
                self.status_markdown(model, revision))

    # -- chat ----------------------------------------------------------------------------------
    # The page owns the conversation and the box (chat_clicks.py): each click changes them in the browser and
    # sends its number ("seq"); these handlers decide (accept, refuse, stop) and write replies, and reach the
    # chat only through updates for one turn (the chat_update component): {"turn", "at", "message"} and either
    # "reply" (the reply's text so far, at index ``at``) or "takeback" (the message at ``at - 1`` goes back to
    # the box). `pending` holds the ticket of a message that was accepted and waits for its reply ("" when none).
    def send(self, click: dict | None, history: list, request: gr.Request = None):
        """Send: accept the message the page moved into the chat, or take it back and say why (the chat is not
        changed otherwise). Outputs: (chat_update, notice, pending, metrics)."""
        session = session_of(request)
        seq, text = _click_seq(click), (click or {}).get("text") or ""
        history = list(history or [])
        at = _index_of_message(history, text) + 1  # where its reply goes; 0: not in the chat (an empty box)
        previous = history[:at - 1] if at else history
        takeback = {"turn": seq, "at": at, "message": text, "takeback": True}
        try:
            self.service.parse(ChatRequest, message=text, history=previous)
        except PythiaError as exc:
            return (takeback if at else NO_CHANGE), notice(exc), NO_CHANGE, NO_CHANGE
        ticket, refused = self.runs.accept_click(session, CHAT, seq, text, at)
        if refused is Refused.BUSY:
            return takeback, notice_text(STILL_REPLYING), NO_CHANGE, NO_CHANGE
        if refused is Refused.STOPPED:  # a Stop clicked after it got here first: as if it stopped it waiting
            return {**takeback, "metrics": STOPPED_BEFORE_REPLY}, "", NO_CHANGE, NO_CHANGE
        if refused is Refused.DISCARDED:  # an Undo or Clear clicked after it got here first: it took it back
            return NO_CHANGE, NO_CHANGE, NO_CHANGE, NO_CHANGE
        return NO_CHANGE, "", ticket, NO_CHANGE

    def bot_reply(self, pending: str, history: list, model: str, revision: str, controls: ControlValues,
                  show_probs: bool, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        """Write the reply of the accepted message. Outputs: (chatbot, chat_update, metrics, heatmap, table, notice,
        pending); the chatbot is never changed here (the page owns it), it shows the reply's place in the queue
        and the model's download and load.

        The last update (the reply's end, its metrics, or the message taken back) is sent after the run ended:
        once the page shows it, a Send is accepted (sent while the generator still held the run, a visitor's quick
        next message was refused as "still being written")."""
        unchanged = (NO_CHANGE,) * 5
        last = REPLY_UNTOUCHED
        with self.runs.running(session_of(request), CHAT, pending) as run:
            history = list(history or [])
            if run is not None and _message_at(history, run.at - 1, run.message):
                # (else: stopped, undone or cleared before it started: the page already says so)
                previous, text = history[:run.at - 1], run.message
                turn = {"turn": run.seq, "at": run.at, "message": text}
                reply, first_at = None, None
                try:
                    chat = self.service.parse(ChatRequest, message=text, history=previous, model=model,
                                              revision=revision, logprobs=TOKEN_VIEW_TOP if show_probs else None,
                                              **controls.kwargs())
                    for reply in self.service.chat(chat, progress=gradio_progress(progress, model, revision),
                                                   cancel=run.stop):
                        if run.discarded:  # Undo or Clear took the turn back: nothing more of it may show
                            break
                        if not reply.done:
                            first_at = first_at or time.monotonic()
                            yield NO_CHANGE, {**turn, "reply": reply.text or EMPTY_REPLY}, *unchanged
                except Exception as exc:  # the message goes back to the box, nothing is lost, the reason stays
                    last = (NO_CHANGE, {**turn, "takeback": True}, "", *CLEARED, notice(exc), "")
                else:
                    last = self._reply_end(turn, reply, first_at, run.accepted_at)
                if run.discarded:
                    last = REPLY_UNTOUCHED
        yield last

    @staticmethod
    def _reply_end(turn: dict, reply: Reply | None, first_at: float | None, accepted_at: float) -> tuple:
        """bot_reply's last update for a reply that ran to its end or was stopped."""
        if reply is None:
            return REPLY_UNTOUCHED
        if reply.finish_reason == FinishReason.CANCELLED and not reply.num_tokens:
            stopped = {**turn, "takeback": True, "metrics": STOPPED_BEFORE_REPLY}
            return NO_CHANGE, stopped, NO_CHANGE, *CLEARED, "", ""
        since_click = (first_at or time.monotonic()) - accepted_at
        end = {**turn, "reply": reply.text or EMPTY_REPLY,
               "metrics": metrics_markdown(reply, chat=True, since_click=since_click)}
        return NO_CHANGE, end, NO_CHANGE, *token_view(reply), "", ""

    def stop_chat(self, click: dict | None, request: gr.Request = None):
        """Stop: a reply being written ends at its next token and keeps its text; a message still waiting for
        its turn never gets a reply and goes back to the box. Outputs: (chat_update, metrics)."""
        stopped, run = self.runs.stop_click(session_of(request), CHAT, _click_seq(click))
        if stopped is not Stopped.WAITING or run is None:
            return NO_CHANGE, NO_CHANGE
        return {"turn": run.seq, "at": run.at, "message": run.message, "takeback": True,
                "metrics": STOPPED_BEFORE_REPLY}, NO_CHANGE

    def retry(self, click: dict | None, history: list, request: gr.Request = None):
        """Write the last reply again (the page took it out of the chat): outputs (notice, pending)."""
        history = list(history or [])
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        if not history or history[-1]["role"] != "user":
            return "", NO_CHANGE
        text = message_text(history[-1]["content"])
        ticket, refused = self.runs.accept_click(session_of(request), CHAT, _click_seq(click), text, len(history))
        if refused is Refused.BUSY:
            return notice_text(STILL_REPLYING), NO_CHANGE
        return "", ticket or NO_CHANGE

    def undo(self, click: dict | None, request: gr.Request = None):
        """Undo (the page already took the last exchange back, its message into the box): stop and drop its
        reply, waiting or being written, and the views derived from it. Outputs: (metrics, heatmap, table,
        notice)."""
        self.runs.discard_click(session_of(request), CHAT, _click_seq(click))
        return "", *CLEARED, ""

    def clear(self, click: dict | None, request: gr.Request = None):
        """Clear (the page already emptied the chat; what is typed stays): as Undo."""
        return self.undo(click, request)

    # -- completion ----------------------------------------------------------------------------
    def completion(self, ticket: str, prompt: str, model: str, revision: str, controls: ControlValues,
                   show_probs: bool, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        """Outputs: (continuation, metrics, heatmap, table, notice)."""
        unchanged = (NO_CHANGE,) * 3
        with self.runs.running(session_of(request), COMPLETION, ticket) as run:
            if run is None:  # stopped before it started: the page already says so
                yield (NO_CHANGE,) * 5
                return
            reply, first_at = None, None
            try:
                completion = self.service.parse(
                    CompletionRequest, prompt=prompt, model=model, revision=revision,
                    logprobs=TOKEN_VIEW_TOP if show_probs else None,
                    **controls.kwargs())
                for reply in self.service.complete(completion, progress=gradio_progress(progress, model, revision),
                                                   cancel=run.stop):
                    if not reply.done:
                        first_at = first_at or time.monotonic()
                        yield reply.text, *unchanged, ""
            except Exception as exc:
                yield "", "", *CLEARED, notice(exc)
                return
            if reply is not None:
                if reply.finish_reason == FinishReason.CANCELLED and not reply.num_tokens:  # as Stop says when
                    yield NO_CHANGE, STOPPED_BEFORE_START, NO_CHANGE, NO_CHANGE, ""  # it finds it still queued
                    return
                since_click = (first_at or time.monotonic()) - run.accepted_at
                yield reply.text, metrics_markdown(reply, since_click=since_click), *token_view(reply), ""

    def forget(self, request: gr.Request = None) -> None:
        """The visitor's page closed: stop and forget its requests."""
        self.runs.forget(session_of(request))


def _click_seq(click: dict | None) -> int:
    """The page's number for a click (chat_clicks.py); 0 for a caller that does not number them."""
    try:
        return max(int((click or {}).get("seq") or 0), 0)
    except (TypeError, ValueError):
        return 0


def _message_at(history: list, index: int, text: str) -> bool:
    """Whether the chat's message at ``index`` is the visitor's ``text``."""
    if not 0 <= index < len(history) or history[index].get("role") != "user":
        return False
    try:
        return message_text(history[index]["content"]) == text
    except PythiaError:
        return False


def _index_of_message(history: list, text: str) -> int:
    """Index of the last visitor message with ``text`` in the chat (the one Send just moved there), or -1."""
    if not text:
        return -1
    return next((i for i in range(len(history) - 1, -1, -1) if _message_at(history, i, text)), -1)
