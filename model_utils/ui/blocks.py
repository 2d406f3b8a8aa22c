"""The page: model picker, sampling controls, the Chat and Completion tabs, the research tabs,
and the API endpoints. It talks to the service only (through Handlers and register_api)."""

from __future__ import annotations

import gradio as gr

from ..service import PythiaService
from . import chat_clicks
from .api import pad_short_calls, register_api
from .api_page import add_api_page_routes, page_head
from .benchmarks_tab import build_benchmarks_tab
from .controls import build_controls, with_controls
from .handlers import COMPLETION, Handlers, toggle_token_view
from .research_tabs import build_research_tabs
from .stopping import REPLY_EVENT, STOP_EVENT, queued_with_stop
from .wording import CHAT_TOKENS_HINT, CHAT_TOKENS_INFO, COMPLETION_TOKENS_HINT, COMPLETION_TOKENS_INFO

PAGE_CSS = """
/* Gradio rewrites this CSS for its own box (.contain): an @media rule then reaches only elements in
   that box, and an @container rule is dropped. A rule nested inside a plain rule reaches the page as
   written, so the rules for the page's edges, its footer and the charts are nested. */
/* phones: nothing may push the page sideways */
.gradio-container { overflow-x: hidden; }
.gradio-container > .main.app { @media (max-width: 640px) { padding-left: 12px; padding-right: 12px; } }
.token-heatmap, .token-heatmap span { overflow-wrap: anywhere; word-break: break-word; }
#model-picker input, #checkpoint input { text-overflow: ellipsis; padding-right: 2.2em; }
.notice p { color: var(--error-text-color, #b91c1c); font-weight: 600; }
#startup-notice { border: 1px solid var(--border-color-accent); border-radius: var(--radius-md); padding: 4px 12px;
                  background: var(--background-fill-secondary); }
.metrics p { font-size: var(--text-md); }
/* The chat's label and its buttons float over the top edge of the messages: start the scrolling
   messages below them, so they cover neither the first bubble nor the text scrolled under them. */
#chatbot .bubble-wrap { margin-top: 30px; height: calc(100% - 30px); padding-top: var(--spacing-md); }
/* Charts come drawn wide and narrow (charts.py): show the one that fits the space they have. */
.chart { container-type: inline-size; }
.chart .line-chart.narrow { display: none; }
.chart .line-chart.wide { @container (max-width: 560px) { display: none; } }
.chart .line-chart.narrow { @container (max-width: 560px) { display: block; } }
/* Tables: Gradio measures each column in an auto-layout table, then fixes the widths. Let that layout
   fill the width and wrap cells between words: no header breaks mid-word, no column is cut off,
   and the table scrolls sideways only when its words cannot fit. */
.table-wrap .header-table { min-width: 100%; max-width: 100%; }
.table-wrap .sizing-body td { padding: 0; }  /* measured as shown: the cell's inner box has the padding */
.table-wrap .sizing-body td, .table-wrap .header-cell span.text, .table-wrap .body-cell span.text {
  white-space: normal; word-break: normal; overflow-wrap: break-word; }
#memo-table .sizing-body td:last-child { overflow-wrap: anywhere; }  /* a model's run-on "word" must not widen it */
/* The footer holds only "Use via API" (app.py): Gradio hides it on phones, leaving a lone "·" */
footer .show-api { display: flex !important; }
footer > .divider:last-child { display: none; }
@media (max-width: 640px) {
  .tab-wrapper button, [role="tab"] { padding-left: 6px; padding-right: 6px; }
  /* the chat's box takes the whole width; Send and Stop share the row under it, at the same size */
  .row:has(#chat-input) { flex-wrap: wrap; }
  .row:has(#chat-input) > :has(#chat-input), #chat-input { flex: 1 1 100% !important; min-width: 100% !important; }
  #chat-send, #chat-stop { flex: 1 1 0 !important; min-width: 0 !important; }
  .table-wrap .header-table, .table-wrap .virtual-row { font-size: 12px; }
  .table-wrap .cell-wrap { padding: 4px; }
}
"""
BASE_MODEL_NOTE = (
    "Pythia is a **base model**, not a chat assistant: it continues text. The chat tab writes your "
    "conversation as a `User: … / Bot: …` transcript and lets the model write the next `Bot:` line. "
    "For the most natural use, try the **Completion** tab.")


# Gradio keeps, for each session (every page load, every gradio_client), its own copy of the page's component
# configuration: ~0.3 MiB for this page's 215 blocks, measured with tracemalloc. Its default keeps 10,000 sessions,
# about 3 GB on a public Space; the least recently used go first, so this many visitors in a row is the bound.
SESSIONS_KEPT = 1000
# Gradio's queue looks for work every millisecond while it has none or no free worker (its default on Linux), which
# keeps the server's event loop at ~7% of a core with nobody here (measured idle: 6.6% of a core; 1.8% at 10 ms).
# Every 5 ms instead: a queued request may start up to 5 ms later, beside first tokens of 0.1-0.3 s.
QUEUE_POLL_S = 0.005


def mount_page(app, demo: gr.Blocks, *, mcp: bool = False):
    """Serve the page, the Gradio API (and with ``mcp`` its MCP server) from ``app`` at "/": the page's CSS and
    the security settings (no monitoring dashboard, 1 MB uploads, SESSIONS_KEPT sessions) and the queue's polling
    (QUEUE_POLL_S) in one place."""
    demo.state_session_capacity = SESSIONS_KEPT  # read by the mount (Gradio's launch() takes it as an argument)
    add_api_page_routes(app)  # before the mount: matched first
    mounted = gr.mount_gradio_app(app, demo, path="/", css=PAGE_CSS, head=page_head(mcp), max_file_size="1mb",
                                  enable_monitoring=False, footer_links=["api"], mcp_server=mcp or None)
    demo._queue.sleep_when_free = QUEUE_POLL_S  # Gradio's own attribute (pinned; tests/test_startup.py checks it)
    return mounted


def end_page_streams(app, demo: gr.Blocks) -> None:
    """End the page's long-lived streams, so that a stopping server need not wait for every open tab: Gradio's
    own Blocks.close stops the queue (its event streams then end), and the mounted app's stop event ends the
    heartbeats (Blocks.close reaches that one only for a page it launched itself). Call on the server's loop."""
    from starlette.routing import Mount

    demo.close()
    for route in app.routes:
        if isinstance(route, Mount) and hasattr(route.app, "stop_event"):
            route.app.stop_event.set()


def build_demo(service: PythiaService, concurrency: int = 16, notice: str | None = None) -> gr.Blocks:
    """Assemble the page and the API endpoints; ``concurrency`` requests may decode at once; ``notice``: a
    sentence for every visitor above the model picker (why the default model is not the usual one)."""
    h = Handlers(service)
    default = service.default_model

    # ---- layout -------------------------------------------------------------------------
    with gr.Blocks(title="Pythia × CTranslate2") as demo:
        gr.Markdown("# Pythia × CTranslate2\nEvery EleutherAI Pythia model, at every training checkpoint, "
                    "running fast on CPU or GPU through CTranslate2.")
        if notice:
            gr.Markdown(notice, elem_id="startup-notice")
        with gr.Row():
            model = gr.Dropdown(h.model_choices(), value=default, label="Model", scale=3, min_width=280,
                                elem_id="model-picker",
                                info="Size and variant (-deduped: trained on the deduplicated Pile)")
            revision = gr.Dropdown(h.revisions(default), value="main", label="Checkpoint", scale=1, min_width=160,
                                   elem_id="checkpoint",
                                   info="Training step (main = the last one)")
        status = gr.Markdown(h.status_markdown(default, "main"), elem_id="model-status")
        with gr.Accordion("Sampling", open=False):
            controls = build_controls()
        with gr.Tabs(overflow_behavior="wrap"):  # a narrow embed shows every tab, on two lines
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
                chat_notice = gr.Markdown(elem_id="chat-notice", elem_classes="notice")
                chat_metrics = gr.Markdown(elem_id="chat-metrics", elem_classes="metrics")
                pending = gr.State("")  # the ticket of a message that was accepted and waits for its reply
                # The page's clicks and the server's updates for one turn (chat_clicks.py): never shown
                clicks = {name: gr.JSON(visible=False, elem_id=f"chat-{name}-click")
                          for name in ("send", "stop", "undo", "clear", "retry")}
                chat_update = gr.JSON(visible=False, elem_id="chat-update")
                chat_show_probs = gr.Checkbox(False, label="Show token probabilities", elem_id="chat-show-probs",
                                              info=CHAT_TOKENS_INFO)
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
                                         info=COMPLETION_TOKENS_INFO)
                completion_notice = gr.Markdown(elem_id="completion-notice", elem_classes="notice")
                output = gr.Textbox(label="Continuation", lines=8, elem_id="completion-output", interactive=False)
                completion_metrics = gr.Markdown(elem_id="completion-metrics", elem_classes="metrics")
                probs_view = gr.HTML(visible=False, elem_id="completion-heatmap")
                probs_table = gr.Dataframe(headers=["#", "token", "probability", "top alternatives"],
                                           visible=False, interactive=False, elem_id="completion-alternatives")
            build_research_tabs(service, h, model, revision, controls, concurrency)
            build_benchmarks_tab(service, h, concurrency)

        common = dict(concurrency_limit=concurrency, concurrency_id="generate",
                      api_visibility="private")
        bot_inputs = [pending, chatbot, model, revision, *controls, chat_show_probs]
        bot_outputs = [chatbot, chat_update, chat_metrics, chat_heatmap, chat_table, chat_notice, pending]
        refresh = dict(fn=h.status_markdown, inputs=[model, revision], outputs=status,
                       queue=False, api_visibility="private")
        quick = dict(queue=False, api_visibility="private")
        browser = dict(fn=None, queue=False, api_visibility="private")  # runs in the page only
        # Every chat click changes the chat and the box in the page at once (chat_clicks.py); the server then
        # decides. Send and Retry are accepted at once (Stop can reach the message from then on); the reply waits
        # in the queue with everyone else's. The server's words about the chat come as updates for one turn.
        sent = (gr.on([message.submit, send.click], inputs=[message, chatbot, chat_metrics],
                      outputs=[message, chatbot, clicks["send"], chat_metrics], js=chat_clicks.SEND, **browser)
                .then(h.send, [clicks["send"], chatbot], [chat_update, chat_notice, pending, chat_metrics], **quick))
        retried = (retry_btn.click(inputs=[chatbot, chat_metrics], outputs=[chatbot, clicks["retry"], chat_metrics],
                                   js=chat_clicks.RETRY, **browser)
                   .then(h.retry, [clicks["retry"], chatbot], [chat_notice, pending], **quick))
        for accepted in (sent, retried):
            accepted.then(with_controls(h.bot_reply), bot_inputs, bot_outputs, **REPLY_EVENT, **common).then(**refresh)
        chat_update.change(inputs=[chat_update, chatbot, message, chat_metrics],
                           outputs=[chatbot, message, chat_metrics],
                           js=chat_clicks.UPDATE, **browser)
        # Stop, Undo and Clear (and the chat's own trash icon) reach the reply wherever it is: being written (it
        # ends at its next token; Undo and Clear keep nothing of it), or still queued (it never starts).
        stop_chat.click(outputs=clicks["stop"], js=chat_clicks.STOP, **browser).then(
            h.stop_chat, clicks["stop"], [chat_update, chat_metrics], **STOP_EVENT)
        taken_back = [chat_metrics, chat_heatmap, chat_table, chat_notice]
        undo_btn.click(inputs=[chatbot, message], outputs=[chatbot, message, clicks["undo"]], js=chat_clicks.UNDO,
                       **browser).then(h.undo, clicks["undo"], taken_back, **STOP_EVENT)
        for cleared in (clear_btn.click, chatbot.clear):
            cleared(outputs=[chatbot, clicks["clear"]], js=chat_clicks.CLEAR, **browser).then(
                h.clear, clicks["clear"], taken_back, **STOP_EVENT)
        queued_with_stop(h.runs, COMPLETION, [generate_btn.click], with_controls(h.completion),
                         [prompt, model, revision, *controls, show_probs],
                         [output, completion_metrics, probs_view, probs_table, completion_notice],
                         notice=completion_notice, stopped_line=completion_metrics, stop_buttons=[stop_completion],
                         **common).then(**refresh)
        chat_show_probs.input(toggle_token_view(CHAT_TOKENS_HINT), [chat_show_probs, chat_heatmap, chatbot],
                              [chat_heatmap, chat_table], **quick)
        show_probs.input(toggle_token_view(COMPLETION_TOKENS_HINT), [show_probs, probs_view, output],
                         [probs_view, probs_table], **quick)
        model.change(h.pick_model, [model, revision], [revision, status], queue=False, api_visibility="private")
        revision.change(**refresh)
        # a notice is about the last attempt: once another model or checkpoint is picked it no longer applies
        gr.on([model.change, revision.change], lambda: ("", ""), None, [chat_notice, completion_notice], **quick)
        demo.unload(h.forget)

        register_api(service, concurrency)
    pad_short_calls(demo)
    return demo
