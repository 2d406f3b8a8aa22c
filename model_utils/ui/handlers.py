"""What the Chat and Completion tabs do when a visitor acts: plain methods over the service,
so the fast test tier can call them without a server."""

from __future__ import annotations

import functools
from typing import Iterator

import gradio as gr

from ..service import (
    ChatRequest,
    CompletionRequest,
    PythiaError,
    PythiaService,
    Reply,
    TargetRequest,
    message_text,
)
from .common import CancelRegistry, gradio_progress, user_message
from .heatmap import alternatives_table, token_heatmap
from .wording import format_parameters, memory_words, metrics_markdown, model_note

TOKEN_VIEW_TOP = 5  # alternatives shown per token in the token views


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or ""


def sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy) -> dict:
    """The sampling sliders, in the order the page lists them, as service keyword arguments."""
    return dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=rep,
                no_repeat_ngram_size=ngram, max_new_tokens=max_new, greedy=greedy)


HIDDEN = (gr.update(visible=False), gr.update(visible=False))  # the token views, reset
EMPTY_REPLY = "…"  # a reply with no text still shows a bubble; the metrics line says why


def notice(exc: Exception) -> str:
    """An inline line that keeps an error readable after any toast is gone."""
    return f"⚠️ {user_message(exc)}"


def with_notice(outputs: int):
    """Wrap a one-shot handler so that a failure leaves its ``outputs`` as they were and puts the reason on
    the section's notice line (its last output), as Chat and Completion do: readable for good, no stray badge."""
    def wrap(fn):
        @functools.wraps(fn)  # Gradio reads the signature (gr.Request, gr.Progress) through __wrapped__
        def run(*args, **kwargs):
            try:
                return (*fn(*args, **kwargs), "")
            except Exception as exc:
                return (*(gr.update(),) * outputs, notice(exc))
        return run
    return wrap


def token_view(reply: Reply):
    """Heatmap + alternatives table of a finished reply, or hidden ones."""
    if not reply.token_scores:
        return HIDDEN
    return (gr.update(value=token_heatmap(reply.token_scores), visible=True),
            gr.update(value=alternatives_table(reply.token_scores), visible=True))


class Handlers:
    """The page's event handlers; ``cancels`` holds the Stop flags of running requests."""

    def __init__(self, service: PythiaService):
        self.service = service
        self.cancels = CancelRegistry()

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
    # The chat's outputs: (chatbot, metrics, heatmap, table, message box, notice, pending). `pending` says a
    # user message was accepted and waits for its reply; the notice line keeps an error readable for good.
    def add_user_message(self, message: str, history: list):
        """Accept the message into the conversation, or leave it in the box and say why (nothing else changes)."""
        try:
            self.service.parse(ChatRequest, message=message, history=history)
        except PythiaError as exc:
            return message, history, notice(exc), False
        return "", history + [{"role": "user", "content": message}], "", True

    def bot_reply(self, pending: bool, history: list, model: str, revision: str, temperature, top_k, top_p, rep,
                  ngram, max_new, greedy, show_probs: bool, request: gr.Request = None,
                  progress=gr.Progress()) -> Iterator[tuple]:
        unchanged = (gr.update(),) * 4
        if not pending or not history or history[-1]["role"] != "user":
            yield history, *unchanged, gr.update(), False
            return
        *previous, last = history
        with self.cancels.running(_session(request)) as cancel:
            reply = None
            try:
                chat = self.service.parse(ChatRequest, message=message_text(last["content"]), history=previous,
                                          model=model, revision=revision,
                                          logprobs=TOKEN_VIEW_TOP if show_probs else None,
                                          **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))
                for reply in self.service.chat(chat, progress=gradio_progress(progress, model, revision),
                                               cancel=cancel):
                    shown = previous + [last, {"role": "assistant", "content": reply.text or EMPTY_REPLY}]
                    if not reply.done:
                        yield shown, *unchanged, gr.update(), False
            except Exception as exc:  # the message goes back to the box, nothing is lost, the reason stays
                yield previous, "", *HIDDEN, message_text(last["content"]), notice(exc), False
                return
            if reply is not None:
                yield shown, metrics_markdown(reply, chat=True), *token_view(reply), gr.update(), "", False

    @staticmethod
    def retry(history: list):
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        return history, bool(history)

    @staticmethod
    def undo(history: list):
        """Take back the last exchange: its message returns to the box; views derived from it go."""
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        message = message_text(history[-1]["content"]) if history else ""
        return history[:-1], message, "", *HIDDEN, ""

    @staticmethod
    def clear():
        """An empty conversation and no views derived from the old one (what is typed stays)."""
        return [], gr.update(), "", *HIDDEN, "", False

    # -- completion ----------------------------------------------------------------------------
    def completion(self, prompt: str, model: str, revision: str, temperature, top_k, top_p, rep, ngram, max_new,
                   greedy, show_probs: bool, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        """Outputs: (continuation, metrics, heatmap, table, notice)."""
        unchanged = (gr.update(),) * 3
        with self.cancels.running(_session(request)) as cancel:
            reply = None
            try:
                completion = self.service.parse(
                    CompletionRequest, prompt=prompt, model=model, revision=revision,
                    logprobs=TOKEN_VIEW_TOP if show_probs else None,
                    **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))
                for reply in self.service.complete(completion, progress=gradio_progress(progress, model, revision),
                                                   cancel=cancel):
                    if not reply.done:
                        yield reply.text, *unchanged, ""
            except Exception as exc:
                yield "", "", *HIDDEN, notice(exc)
                return
            if reply is not None:
                yield reply.text, metrics_markdown(reply), *token_view(reply), ""

    def stop(self, request: gr.Request = None) -> None:
        self.cancels.cancel(_session(request))
