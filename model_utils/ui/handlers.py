"""What the Chat and Completion tabs do when a visitor acts: plain methods over the service,
so the fast test tier can call them without a server."""

from __future__ import annotations

import functools
import html
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
from .common import Runs, Stopped, gradio_progress, session_of, user_message
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


def sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy) -> dict:
    """The sampling sliders, in the order the page lists them, as service keyword arguments."""
    return dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=rep,
                no_repeat_ngram_size=ngram, max_new_tokens=max_new, greedy=greedy)


NO_CHANGE = gr.update()
HIDDEN = (gr.update(visible=False), gr.update(visible=False))  # the token views, hidden (a later tick shows them)
CLEARED = (gr.update(value="", visible=False), gr.update(value=[], visible=False))  # the token views, emptied
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
        text = f"**{s.name}** @ `{s.revision}` — {memory_words(s, self.service.device_label)}: {model_note(s)}."
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
    # The chat's outputs: (chatbot, metrics, heatmap, table, message box, notice, pending). `pending` holds the
    # ticket of a message that was accepted and waits for its reply ("" when none); the notice line keeps an
    # error readable for good.
    def add_user_message(self, message: str, history: list, request: gr.Request = None):
        """Accept the message into the conversation, or leave it in the box and say why (nothing else changes)."""
        session = session_of(request)
        if self.runs.busy(session, CHAT):
            return message, history, notice_text(STILL_REPLYING), gr.update()
        try:
            self.service.parse(ChatRequest, message=message, history=history)
        except PythiaError as exc:
            return message, history, notice(exc), gr.update()
        ticket = self.runs.accept(session, CHAT)
        if ticket is None:  # a reply started meanwhile (another tab of the same page)
            return message, history, notice_text(STILL_REPLYING), gr.update()
        return "", history + [{"role": "user", "content": message}], "", ticket

    def bot_reply(self, pending: str, history: list, model: str, revision: str, temperature, top_k, top_p, rep,
                  ngram, max_new, greedy, show_probs: bool, request: gr.Request = None,
                  progress=gr.Progress()) -> Iterator[tuple]:
        unchanged = (NO_CHANGE,) * 4
        with self.runs.running(session_of(request), CHAT, pending) as run:
            if run is None or not history or history[-1]["role"] != "user":
                # stopped, undone or cleared before it started: the page already says so. (A handler that
                # yields nothing would blank its outputs: Gradio sends None for each.)
                yield (NO_CHANGE,) * 7
                return
            *previous, last = history
            text = message_text(last["content"])
            reply = None
            try:
                chat = self.service.parse(ChatRequest, message=text, history=previous, model=model, revision=revision,
                                          logprobs=TOKEN_VIEW_TOP if show_probs else None,
                                          **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))
                for reply in self.service.chat(chat, progress=gradio_progress(progress, model, revision),
                                               cancel=run.stop):
                    if run.discarded:  # Undo or Clear took the turn back: nothing more of it may show
                        yield (NO_CHANGE,) * 7
                        return
                    shown = previous + [last, {"role": "assistant", "content": reply.text or EMPTY_REPLY}]
                    if not reply.done:
                        yield shown, *unchanged, gr.update(), gr.update()
            except Exception as exc:  # the message goes back to the box, nothing is lost, the reason stays
                yield (NO_CHANGE,) * 7 if run.discarded else (previous, "", *CLEARED, text, notice(exc), "")
                return
            if run.discarded or reply is None:
                yield (NO_CHANGE,) * 7
                return
            if reply.finish_reason == FinishReason.CANCELLED and not reply.num_tokens:
                yield previous, STOPPED_BEFORE_REPLY, *CLEARED, text, "", ""
                return
            yield shown, metrics_markdown(reply, chat=True), *token_view(reply), gr.update(), "", ""

    def stop_chat(self, history: list, request: gr.Request = None):
        """Stop: a reply being written ends at its next token and keeps its text; a message still waiting for
        its turn never gets a reply and goes back to the box. Outputs: the chat's."""
        if self.runs.stop(session_of(request), CHAT) is not Stopped.WAITING:
            return (NO_CHANGE,) * 7
        history, text = _take_back_message(history)
        return history, STOPPED_BEFORE_REPLY, *CLEARED, text, "", ""

    def retry(self, history: list, request: gr.Request = None):
        """Write the last reply again: outputs (chatbot, notice, pending)."""
        session = session_of(request)
        if self.runs.busy(session, CHAT):
            return gr.update(), notice_text(STILL_REPLYING), gr.update()
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        ticket = self.runs.accept(session, CHAT) if history else None
        return history, "", ticket or ""

    def undo(self, history: list, request: gr.Request = None):
        """Take back the last exchange, even one still waiting or being written (it stops): its message returns
        to the box; views derived from it go. Outputs: (chatbot, box, metrics, heatmap, table, notice, pending)."""
        self.runs.discard(session_of(request), CHAT)
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        history, text = _take_back_message(history)
        return history, text, "", *CLEARED, "", ""

    def clear(self, request: gr.Request = None):
        """An empty conversation (a reply waiting or being written stops) and no views derived from the old one;
        what is typed stays. Outputs: as Undo's."""
        self.runs.discard(session_of(request), CHAT)
        return [], NO_CHANGE, "", *CLEARED, "", ""

    # -- completion ----------------------------------------------------------------------------
    def completion(self, ticket: str, prompt: str, model: str, revision: str, temperature, top_k, top_p, rep, ngram,
                   max_new, greedy, show_probs: bool, request: gr.Request = None,
                   progress=gr.Progress()) -> Iterator[tuple]:
        """Outputs: (continuation, metrics, heatmap, table, notice)."""
        unchanged = (NO_CHANGE,) * 3
        with self.runs.running(session_of(request), COMPLETION, ticket) as run:
            if run is None:  # stopped before it started: the page already says so
                yield (NO_CHANGE,) * 5
                return
            reply = None
            try:
                completion = self.service.parse(
                    CompletionRequest, prompt=prompt, model=model, revision=revision,
                    logprobs=TOKEN_VIEW_TOP if show_probs else None,
                    **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))
                for reply in self.service.complete(completion, progress=gradio_progress(progress, model, revision),
                                                   cancel=run.stop):
                    if not reply.done:
                        yield reply.text, *unchanged, ""
            except Exception as exc:
                yield "", "", *CLEARED, notice(exc)
                return
            if reply is not None:
                if reply.finish_reason == FinishReason.CANCELLED and not reply.num_tokens:  # as Stop says when
                    yield NO_CHANGE, STOPPED_BEFORE_START, NO_CHANGE, NO_CHANGE, ""  # it finds it still queued
                    return
                yield reply.text, metrics_markdown(reply), *token_view(reply), ""

    def forget(self, request: gr.Request = None) -> None:
        """The visitor's page closed: stop and forget its requests."""
        self.runs.forget(session_of(request))


def _take_back_message(history: list) -> tuple[list, str]:
    """The chat without its last user message (if it ends with one), and that message's text."""
    if history and history[-1]["role"] == "user":
        return history[:-1], message_text(history[-1]["content"])
    return history, gr.update()
