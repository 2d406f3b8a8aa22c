"""The chat's clicks as the page sends them to its handlers (model_utils/ui/chat_clicks.py does the same in the
browser): Send moves the message into the chat and numbers the click; the handlers answer with updates for one
turn. For the fast tier, which calls the handlers without a browser."""

from __future__ import annotations

import itertools

_numbers = itertools.count(1)


def click() -> dict:
    """A numbered click, as the page numbers them (every click a higher number)."""
    return {"seq": next(_numbers)}


def send(h, text: str, history: list, request=None):
    """Send as the page does: the message moves into the chat (if not blank); returns (the chat as the page shows
    it now, the handler's outputs: update, notice, pending, metrics)."""
    moved = history + [{"role": "user", "content": text}] if text.strip() else list(history)
    return moved, h.send({**click(), "text": text if text.strip() else ""}, moved, request)


def apply(update, chat: list, box: str) -> tuple[list, str]:
    """The page's UPDATE (chat_clicks.py) for a test that follows a turn: the reply at its place, or the message
    back into the box (beside what is typed)."""
    if not isinstance(update, dict) or "turn" not in update:  # gr.update(): nothing
        return chat, box
    n = update["at"]
    chat = list(chat)
    has_reply = n < len(chat) and chat[n]["role"] == "assistant"
    if update.get("takeback"):
        del chat[n - 1:n + 1 if has_reply else n]
        back = update["message"]
        return chat, back if not box.strip() or box == back else back + "\n" + box
    if "reply" in update:
        bot = {"role": "assistant", "content": update["reply"]}
        if has_reply:
            chat[n] = bot
        else:
            chat.insert(n, bot)
    return chat, box
