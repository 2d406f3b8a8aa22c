"""The Gradio app: chat and completion tabs, model picker, sampling controls, and the
stateless API endpoints /chat, /complete and /models."""

from __future__ import annotations

from typing import Iterator

import gradio as gr

from ..core.catalog import REVISIONS, format_parameters
from ..core.errors import PythiaError
from ..engine.prompts import message_text
from ..core.sampling import bounds
from .heatmap import alternatives_table, token_heatmap
from ..service.research import Researcher
from ..service.service import PythiaService, Reply
from .common import CancelRegistry, gradio_progress, guarded, guarded_call
from .research_tabs import api_endpoints, build_research_tabs

SLIDERS = ("temperature", "top_k", "top_p", "repetition_penalty", "no_repeat_ngram_size", "max_new_tokens")
STEPS = {"temperature": 0.05, "top_p": 0.01, "repetition_penalty": 0.01}
BASE_MODEL_NOTE = (
    "Pythia is a **base model**, not a chat assistant: it continues text. The chat tab writes your "
    "conversation as a `User: … / Bot: …` transcript and lets the model write the next `Bot:` line. "
    "For the most natural use, try the **Completion** tab.")


def model_choices(service: PythiaService) -> list[tuple[str, str]]:
    choices = []
    for row in service.models():
        label = f"{row['model']} · {format_parameters(row['parameters'])}"
        if row["random_weights"]:
            label += " · random weights (demo)"
        if not row["fits"]:
            label += " · too large for this machine"
        elif row["cached"]:
            label += " · on disk"
        choices.append((label, row["model"]))
    return choices


def status_markdown(service: PythiaService, model: str, revision: str) -> str:
    try:
        s = service.engine.status(model, revision)
    except PythiaError as exc:
        return f"⚠️ {exc}"
    text = f"**{s.name}** @ `{s.revision}` — {format_parameters(s.parameters)} parameters, ~{s.estimated_bytes / 2**30:.2f} GiB"
    text += f" with {service.engine.device.describe()}: {s.note}."
    if s.random_weights:
        text += " ⚠️ Random weights: this demo model writes gibberish; it exists to try the app offline."
    return text


def build_demo(service: PythiaService, concurrency: int = 16) -> gr.Blocks:
    """Assemble the page and the API endpoints; ``concurrency`` requests may decode at once."""
    researcher = Researcher(service.engine, service.default_model)
    cancels = CancelRegistry()

    # ---- API endpoints (stateless; every argument but message/prompt is optional) -------
    def chat(message: str, history: list[dict] | None = None, model: str | None = None,
             revision: str | None = None, temperature: float | None = None, top_k: int | None = None,
             top_p: float | None = None, repetition_penalty: float | None = None,
             max_new_tokens: int | None = None) -> Iterator[str]:
        """Reply to `message` after the chat `history` ([{"role": "user"|"assistant", "content": str}])."""
        for reply in guarded(lambda: service.chat(
                message, history, model, revision, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)):
            yield reply.text

    def complete(prompt: str, model: str | None = None, revision: str | None = None,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float | None = None, max_new_tokens: int | None = None,
                 logprobs: int | None = None) -> Iterator[str | dict]:
        """Continue `prompt` (the natural way to use a base language model). With `logprobs` = k (1-10),
        the last output is {"text", "tokens": [{"token", "logprob", "top": [[token, prob], ...]}]}."""
        reply = None
        for reply in guarded(lambda: service.complete(
                prompt, model, revision, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)):
            if reply.finish_reason is None or not logprobs:
                yield reply.text
        if logprobs and reply is not None:
            tokens = guarded_call(service.token_probabilities, model, revision, reply, logprobs)
            yield {"text": reply.text, "tokens": [{"token": t.text, "token_id": t.token_id, "logprob": t.log_prob,
                                                   "top": [list(a) for a in t.alternatives]} for t in tokens]}

    def models() -> list[dict]:
        """Every model with whether it is cached on disk, loaded in memory, and fits this machine."""
        return service.models()

    # ---- UI handlers ------------------------------------------------------------------
    def sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy) -> dict:
        return dict(temperature=temperature, top_k=top_k, top_p=top_p, repetition_penalty=rep,
                    no_repeat_ngram_size=ngram, max_new_tokens=max_new, greedy=greedy)

    def add_user_message(message: str, history: list):
        if not message.strip():
            raise gr.Error("Type a message first.", print_exception=False)
        return "", history + [{"role": "user", "content": message}]

    def token_view(model: str, revision: str, reply: Reply, show: bool):
        """Heatmap + alternatives table for a finished reply, or hidden ones.

        One forward pass after generation: decoding speed is the same with the view on or off.
        """
        if not show or not reply.token_ids:
            return gr.update(visible=False), gr.update(visible=False)
        tokens = guarded_call(service.token_probabilities, model, revision, reply)
        return gr.update(value=token_heatmap(tokens), visible=True), \
            gr.update(value=alternatives_table(tokens), visible=True)

    def bot_reply(history: list, model: str, revision: str, temperature, top_k, top_p, rep, ngram, max_new,
                  greedy, show_probs: bool, request: gr.Request, progress=gr.Progress()):
        if not history or history[-1]["role"] != "user":
            yield history, gr.update(), gr.update(), gr.update()
            return
        *previous, last = history
        cancel = cancels.start(request.session_hash or "")
        reply = None
        for reply in guarded(lambda: service.chat(
                message_text(last["content"]), previous, model, revision, progress=gradio_progress(progress),
                cancel=cancel, **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))):
            yield previous + [last, {"role": "assistant", "content": reply.text}], gr.update(), gr.update(), \
                gr.update()
        if reply is not None:
            yield (previous + [last, {"role": "assistant", "content": reply.text}], _metrics(reply),
                   *token_view(model, revision, reply, show_probs))

    def retry(history: list):
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        return history

    def undo(history: list):
        while history and history[-1]["role"] == "assistant":
            history = history[:-1]
        message = message_text(history[-1]["content"]) if history else ""
        return history[:-1], message

    def completion(prompt: str, model: str, revision: str, temperature, top_k, top_p, rep, ngram, max_new,
                   greedy, show_probs: bool, request: gr.Request, progress=gr.Progress()):
        cancel = cancels.start(request.session_hash or "")
        reply = None
        for reply in guarded(lambda: service.complete(
                prompt, model, revision, progress=gradio_progress(progress), cancel=cancel,
                **sampling_kwargs(temperature, top_k, top_p, rep, ngram, max_new, greedy))):
            yield reply.text, gr.update(), gr.update(), gr.update()
        if reply is not None:
            yield reply.text, _metrics(reply), *token_view(model, revision, reply, show_probs)

    def stop(request: gr.Request):
        cancels.cancel(request.session_hash or "")

    def pick_model(model: str, revision: str):
        local = service.engine.catalog.get(model).local_path is not None
        revisions = ["main"] if local else list(REVISIONS)
        revision = revision if revision in revisions else "main"
        return gr.update(choices=revisions, value=revision, interactive=not local), \
            status_markdown(service, model, revision)

    # ---- layout -------------------------------------------------------------------------
    with gr.Blocks(title="Pythia × CTranslate2") as demo:
        gr.Markdown("# Pythia × CTranslate2\nEvery EleutherAI Pythia model, at every training checkpoint, "
                    "running fast on CPU or GPU through CTranslate2.")
        with gr.Row():
            model = gr.Dropdown(model_choices(service), value=service.default_model, label="Model", scale=3,
                                elem_id="model-picker",
                                info="Size and variant (-deduped: trained on the deduplicated Pile)")
            revision = gr.Dropdown(list(REVISIONS), value="main", label="Checkpoint", scale=1, elem_id="checkpoint",
                                   info="Training step (main = step143000)")
        status = gr.Markdown(status_markdown(service, service.default_model, "main"), elem_id="model-status")
        with gr.Accordion("Sampling", open=False):
            with gr.Row():
                sliders = []
                for name in SLIDERS:
                    b = bounds(name)
                    sliders.append(gr.Slider(b.minimum, b.maximum, value=b.default, step=STEPS.get(name, 1),
                                             label=name.replace("_", " ").capitalize(), info=b.info,
                                             elem_id=name.replace("_", "-")))
                greedy = gr.Checkbox(value=bounds("greedy").default, label="Greedy", info=bounds("greedy").info,
                             elem_id="greedy")
        controls = [*sliders, greedy]
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                gr.Markdown(BASE_MODEL_NOTE)
                chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot")
                with gr.Row():
                    message = gr.Textbox(placeholder="Type a message and press Enter", show_label=False,
                                         scale=5, elem_id="chat-input", max_lines=6)
                    send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                    stop_chat = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
                with gr.Row():
                    retry_btn = gr.Button("Retry", size="sm", elem_id="chat-retry")
                    undo_btn = gr.Button("Undo", size="sm", elem_id="chat-undo")
                    clear_btn = gr.Button("Clear", size="sm", elem_id="chat-clear")
                chat_metrics = gr.Markdown(elem_id="chat-metrics", elem_classes="metrics")
                chat_show_probs = gr.Checkbox(False, label="Show token probabilities", elem_id="chat-show-probs",
                                              info="Colour the last reply's tokens (as generated, up to the stop "
                                                   "string) by probability, with the alternatives considered.")
                chat_heatmap = gr.HTML(visible=False, elem_id="chat-heatmap")
                chat_table = gr.Dataframe(headers=["#", "token", "probability", "top alternatives"],
                                          visible=False, interactive=False, elem_id="chat-alternatives")
            with gr.Tab("Completion", id="completion"):
                prompt = gr.Textbox(label="Prompt", lines=4, elem_id="completion-prompt",
                                    value="The Pythia models were trained to")
                with gr.Row():
                    generate_btn = gr.Button("Generate", variant="primary", elem_id="completion-generate")
                    stop_completion = gr.Button("Stop", variant="stop", elem_id="completion-stop")
                show_probs = gr.Checkbox(False, label="Show token probabilities", elem_id="show-probs",
                                         info="Colour each generated token by its probability and list the "
                                              "alternatives the model considered.")
                output = gr.Textbox(label="Continuation", lines=8, elem_id="completion-output", interactive=False)
                completion_metrics = gr.Markdown(elem_id="completion-metrics", elem_classes="metrics")
                probs_view = gr.HTML(visible=False, elem_id="completion-heatmap")
                probs_table = gr.Dataframe(headers=["#", "token", "probability", "top alternatives"],
                                           visible=False, interactive=False, elem_id="completion-alternatives")
            build_research_tabs(researcher, model, revision, controls, concurrency)

        common = dict(concurrency_limit=concurrency, concurrency_id="generate",
                      api_visibility="private")
        bot_inputs = [chatbot, model, revision, *controls, chat_show_probs]
        bot_outputs = [chatbot, chat_metrics, chat_heatmap, chat_table]
        refresh = dict(fn=lambda m, r: status_markdown(service, m, r), inputs=[model, revision], outputs=status,
                       queue=False, api_visibility="private")
        for trigger in (message.submit, send.click):
            trigger(add_user_message, [message, chatbot], [message, chatbot],
                    queue=False, api_visibility="private") \
                .success(bot_reply, bot_inputs, bot_outputs, **common).then(**refresh)
        retry_btn.click(retry, chatbot, chatbot, queue=False, api_visibility="private") \
            .then(bot_reply, bot_inputs, bot_outputs, **common).then(**refresh)
        undo_btn.click(undo, chatbot, [chatbot, message], queue=False, api_visibility="private")
        clear_btn.click(lambda: ([], ""), None, [chatbot, chat_metrics], queue=False, api_visibility="private")
        stop_chat.click(stop, None, None, queue=False, api_visibility="private")
        generate_btn.click(completion, [prompt, model, revision, *controls, show_probs],
                           [output, completion_metrics, probs_view, probs_table], **common).then(**refresh)
        stop_completion.click(stop, None, None, queue=False, api_visibility="private")
        model.change(pick_model, [model, revision], [revision, status], queue=False, api_visibility="private")
        revision.change(**refresh)

        gr.api(chat, api_name="chat", concurrency_limit=concurrency, concurrency_id="generate")
        gr.api(complete, api_name="complete", concurrency_limit=concurrency, concurrency_id="generate")
        gr.api(models, api_name="models", queue=False)
        api_endpoints(researcher, concurrency)
    return demo


def _metrics(reply: Reply) -> str:
    line = reply.metrics()
    return f"<small>{line}</small>" + (f"\n\n<small>ℹ️ {reply.notice}</small>" if reply.notice else "")
