"""What the page's "Use via API" panel asks of the server, answered truthfully and without an error in the
browser's console.

Gradio's API panel fetches ``/monitoring/summary`` (per-endpoint timings) and ``/gradio_api/mcp/schema`` (to
learn whether MCP is on). This app keeps no monitoring (the dashboard is off), so it answers the summary
itself: no timings. Without ``--mcp`` there is no schema: a 404 is what tells the panel MCP is off, so the
panel is told so in the page instead of over the network (the same answer, minus the console error), and
its MCP tab names this app's switch rather than Gradio's ``.launch(mcp_server=True)``.
"""

from __future__ import annotations

from typing import Any

MONITORING_SUMMARY = "/monitoring/summary"
MCP_SCHEMA = "/gradio_api/mcp/schema"

# Gradio's sentence on the MCP tab while MCP is off (gradio 6.31: "To enable this, launch this Gradio app with
# .launch(mcp_server=True) or set the GRADIO_MCP_SERVER env variable to "True"."), piece by piece, in this
# app's words. Only text is replaced in place: the panel's own elements stay as Gradio made them.
_MCP_OFF_SCRIPT = """<script>
(() => {
  const schema = %(schema)s;
  const realFetch = window.fetch;
  window.fetch = function (input, init) {
    const url = new URL(typeof input === "string" ? input : (input && input.url) || String(input), location.href);
    if (url.pathname.endsWith(schema)) return Promise.resolve(new Response("MCP is off", {status: 404}));
    return realFetch.apply(this, arguments);
  };
  const words = new Map([
    ["This Gradio app can also serve as an MCP server", "This app can also offer /chat, /complete and /models as MCP "
      + "tools, at /gradio_api/mcp/. To turn that on, start it with "],
    [".launch(mcp_server=True)", "python app.py --mcp"],
    [" or set the ", " or set the "],
    ["GRADIO_MCP_SERVER", "PYTHIA_MCP"],
    [" env variable to ", " environment variable to "],
    ['"True"', "1"],
  ]);
  const rewrite = (box) => {
    for (const node of box.childNodes) {
      const text = node.textContent;
      for (const [theirs, ours] of words) {
        if (text.trim().startsWith(theirs.trim())) { node.textContent = ours; break; }
      }
    }
  };
  new MutationObserver(() => {
    if (!document.querySelector(".api-docs")) return;  // the API panel is closed
    for (const code of document.querySelectorAll("code")) {
      if (code.textContent === ".launch(mcp_server=True)") rewrite(code.parentElement);
    }
  }).observe(document.documentElement, {subtree: true, childList: true});
})();
</script>"""


# A single-choice picker (a model, a checkpoint of 154) shows its value in its text box: typing there appended to
# it ("main1430"), so the list filtered to nothing. Focusing it selects that text, so what is typed replaces it
# and filters the list; the value stays until an option is picked. The selection waits a tick for the picker's own
# focus handling, and Chromium runs typed keys before timers: keys typed at once after the click (a fast typist on a
# busy machine; seen in a test run) came first and appended again. So the first key after focusing selects the text
# itself, before it is typed.
PICKER_SCRIPT = """<script>
(() => {
  const picker = (box) => box.matches && box.matches("input[role=combobox]") && !box.closest(".token")
      && !box.closest("[class*=multiselect]");
  const fresh = new WeakSet();  // pickers focused whose text is not yet selected
  document.addEventListener("focusin", (event) => {
    const box = event.target;
    if (!picker(box)) return;
    fresh.add(box);
    setTimeout(() => { if (fresh.delete(box)) box.select(); }, 0);  // after the picker's own focus handling
  });
  document.addEventListener("keydown", (event) => {
    const box = event.target;
    if (fresh.delete(box) && event.key.length === 1) box.select();  // a character: it replaces the text
  }, true);
  document.addEventListener("focusout", (event) => fresh.delete(event.target));
})();
</script>"""


def page_head(mcp: bool) -> str:
    """Extra <head> content for the page: the pickers' script and, with MCP off, the script above."""
    if mcp:
        return PICKER_SCRIPT
    import json

    return PICKER_SCRIPT + _MCP_OFF_SCRIPT % {"schema": json.dumps(MCP_SCHEMA)}


def add_api_page_routes(app: Any) -> None:
    """Answer the API panel's monitoring request on ``app`` (a FastAPI app, before the page is mounted)."""
    from fastapi.responses import JSONResponse

    @app.get(MONITORING_SUMMARY, include_in_schema=False)
    def monitoring_summary() -> JSONResponse:
        return JSONResponse({"functions": {}})  # the dashboard is off: no timings are kept
