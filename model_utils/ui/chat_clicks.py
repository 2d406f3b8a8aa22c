"""The chat's conversation and message box belong to the page: every click changes them in the browser at once,
and the server's answers are applied to what the page shows *then*, never to what it showed when it asked.

Why: under load a click's answer can take a second. When Send's handler put the message into the chat on the
server, an Undo clicked before that answer came saw the chat without the message: it took back the *previous*
turn, and the late answers then emptied the box and lost the message (issue 25: Send then Undo emptied the chat,
put the first message back, and lost the second). Now:

* Send moves the message from the box into the chat in the browser, at the click; Undo, Clear and Retry change
  the chat at their click too. Whatever is clicked next sees what the visitor sees.
* Each click is numbered (``seq``) and the server is told the number: a Send that reaches a busy server after
  the Stop, Undo or Clear clicked after it is not started (``Runs.accept_click``), and a Stop, Undo or Clear
  that arrives late does not reach a request clicked after it.
* The server never sends the chat or the box whole. It sends *updates* for one turn (the ``chat_update``
  component, applied by UPDATE below): a reply's text for the place after its message, or "take this message
  back" (refused, stopped before it started, or failed). The page applies one only when that turn was not undone
  or cleared since (``dead``) and its message is still where it was; a message taken back goes to the box
  *beside* what is typed there, never over it.

Nothing typed is lost in any order of clicks: a message is always in the chat or in the box.
"""

from __future__ import annotations

# The page's state and helpers, created by the first click. ``seq`` numbers the chat's clicks; ``dead`` is the
# number of the last Undo or Clear: updates of turns clicked before it no longer apply.
_BOOT = """
const P = (window.pythiaChat ??= {
  seq: 0, dead: 0,
  text(m) { const c = m && m.content; if (typeof c === "string") return c;
            if (Array.isArray(c)) return c.map((p) => (typeof p === "string" ? p : (p && p.text) || "")).join("");
            return (c && c.text) || ""; },
  msg(role, text) { return {role, content: [{type: "text", text}], metadata: null, options: null}; },
  merge(back, box) { box = box || ""; if (!box.trim() || box === back) return back; return back + "\\n" + box; },
});
"""


def _js(args: str, body: str) -> str:
    return f"({args}) => {{ {_BOOT} {body} }}"


# Send: the message goes from the box to the chat now; the server is told its text and number. The metrics line
# was the last reply's: it is emptied, so that what stands there while the new reply is written is never read as
# the new reply's (and the line that comes is this reply's).
SEND = _js("text, chat, metrics", """
  P.seq += 1; chat = chat || [];
  if (!(text || "").trim()) return [text, chat, {seq: P.seq, text: ""}, metrics];
  return ["", [...chat, P.msg("user", text)], {seq: P.seq, text}, ""];
""")

# Undo: the last exchange leaves the chat now, its message goes to the box (beside anything typed there).
UNDO = _js("chat, box", """
  P.seq += 1; P.dead = P.seq; chat = [...(chat || [])];
  while (chat.length && chat[chat.length - 1].role === "assistant") chat.pop();
  if (chat.length && chat[chat.length - 1].role === "user") box = P.merge(P.text(chat.pop()), box);
  return [chat, box, {seq: P.seq}];
""")

# Clear: an empty conversation now; what is typed stays.
CLEAR = _js("", """
  P.seq += 1; P.dead = P.seq;
  return [[], {seq: P.seq}];
""")

# Retry: the last reply leaves the chat now, and its metrics line (the server writes it again, or says why not).
RETRY = _js("chat, metrics", """
  P.seq += 1; chat = [...(chat || [])];
  const kept = chat.slice(); while (kept.length && kept[kept.length - 1].role === "assistant") kept.pop();
  return [kept.length ? kept : chat, {seq: P.seq}, kept.length ? "" : metrics];
""")

# Stop: only numbered; the server says whether a waiting message comes back (an update) or a reply ends.
STOP = _js("", """
  P.seq += 1;
  return [{seq: P.seq}];
""")

# An update from the server for one turn (see the module's docstring).
UPDATE = _js("u, chat, box, metrics", """
  chat = chat || [];
  if (!u || !(u.turn > P.dead)) return [chat, box, metrics];
  const n = u.at;
  const mine = n >= 1 && chat[n - 1] && chat[n - 1].role === "user" && P.text(chat[n - 1]) === u.message;
  if (!mine) return [chat, box, metrics];
  chat = [...chat];
  if (u.metrics != null) metrics = u.metrics;
  const hasReply = chat[n] && chat[n].role === "assistant";
  if (u.takeback) {
    chat.splice(n - 1, hasReply ? 2 : 1);
    return [chat, P.merge(u.message, box), metrics];
  }
  if (u.reply != null) {
    const bot = P.msg("assistant", u.reply);
    if (hasReply) chat[n] = bot; else chat.splice(n, 0, bot);
  }
  return [chat, box, metrics];
""")
