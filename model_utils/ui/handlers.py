"""What the Chat and Completion tabs do when a visitor acts: plain methods over the service,
so the fast test tier can call them without a server."""

from __future__ import annotations

from typing import Iterator

import gradio as gr

from ..service import PythiaError, PythiaService, Reply, message_text
from .common import CancelRegistry, gradio_progress, guarded
from .heatmap import alternatives_table, token_heatmap
from .wording import format_parameters, metrics_markdown, model_note

TOKEN_VIEW_TOP = 5  # alternatives shown per token in the token views


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or ""


def sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy) -> dict:
    """The sampling sliders, in the order the page lists them, as service keyword arguments."""
    return dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=rep,
                no_repeat_ngram_size=ngram, max_new_tokens=max_new, greedy=greedy)


def token_view(reply: Reply):
    """Heatmap + alternatives table of a finished reply, or hidden ones."""
    if not reply.token_scores:
        return gr.update(visible=False), gr.update(visible=False)
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
            if not status.fits:
                label += " · too large for this machine"
            elif status.cached:
                label += " · on disk"
            choices.append((label, model.name))
        return choices

    def status_markdown(self, model: str, revision: str) -> str:
        try:
            s = self.service.status(model, revision)
        except PythiaError as exc:
            return f"⚠️ {exc}"
        text = (f"**{s.name}** @ `{s.revision}` — {format_parameters(s.parameters)} parameters, "
                f"~{s.estimated_bytes / 2**30:.2f} GiB with {self.service.device_label}: {model_note(s)}.")
        if s.random_weights:
            text += " ⚠️ Random weights: this demo model writes gibberish; it exists to try the app offline."
        return text

    def revisions(self, model: str) -> list[str]:
        try:
            return list(self.service.model(model).revisions)
        except PythiaError:
            return ["main"]

    def default_curve(self, model: str) -> list[str]:
        try:
            return list(self.service.default_curve(model))
        except PythiaError:
            return ["main"]

    def compare_defaults(self, model: str) -> list[str]:
        """Three checkpoints that show training: the end, and two earlier ones the model has."""
        revisions = self.revisions(model)
        wanted = [r for r in ("main", "step1000", "step16000") if r in revisions]
        if len(wanted) == 3:
            return wanted
        early = [r for r in revisions if r != "main"]
        picks = ["main"] + ([early[0], early[len(early) // 2]] if early else [])
        return (picks + ["main"] * 3)[:3]

    def pick_model(self, model: str, revision: str):
        revisions = self.revisions(model)
        revision = revision if revision in revisions else "main"
        return (gr.update(choices=revisions, value=revision, interactive=len(revisions) > 1),
                self.status_markdown(model, revision))

    # -- chat ----------------------------------------------------------------------------------
    @staticmethod
    def add_user_message(message: str, history: list):
        if not message.strip():
            raise gr.Error("Type a message first.", print_exception=False)
        return "", history + [{"role": "user", "content": message}]

    def bot_reply(self, history: list, model: str, revision: str, temperature, top_k, top_p, rep, ngram, max_new,
                  greedy, show_probs: bool, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        if not history or history[-1]["role"] != "user":
            yield history, gr.update(), gr.update(), gr.update()
            return
        *previous, last = history
        with self.cancels.running(_session(request)) as cancel:
            reply = None
            for reply in guarded(lambda: self.service.chat(
                    message_text(last["content"]), previous, model, revision, progress=gradio_progress(progress),
                    cancel=cancel, logprobs=TOKEN_VIEW_TOP if show_probs else None,
                    **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))):
                shown = previous + [last, {"role": "assistant", "content": reply.text}]
                if not reply.done:
                    yield shown, gr.update(), gr.update(), gr.update()
            if reply is not None:
                yield (shown, metrics_markdown(reply), *token_view(reply))

    @staticmethod
    def retry(history: list):
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        return history

    @staticmethod
    def undo(history: list):
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        message = message_text(history[-1]["content"]) if history else ""
        return history[:-1], message

    # -- completion ----------------------------------------------------------------------------
    def completion(self, prompt: str, model: str, revision: str, temperature, top_k, top_p, rep, ngram, max_new,
                   greedy, show_probs: bool, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        with self.cancels.running(_session(request)) as cancel:
            reply = None
            for reply in guarded(lambda: self.service.complete(
                    prompt, model, revision, progress=gradio_progress(progress), cancel=cancel,
                    logprobs=TOKEN_VIEW_TOP if show_probs else None,
                    **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))):
                if not reply.done:
                    yield reply.text, gr.update(), gr.update(), gr.update()
            if reply is not None:
                yield reply.text, metrics_markdown(reply), *token_view(reply)

    def stop(self, request: gr.Request = None) -> None:
        self.cancels.cancel(_session(request))

