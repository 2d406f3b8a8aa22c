"""What the page says about models, replies and runs: every sentence the visitor reads, in one place."""

from __future__ import annotations

from ..service import CompareColumn, Reply


def format_parameters(n: int) -> str:
    """162322944 -> '162M', 1414647808 -> '1.4B', 98304 -> '98K'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 and unit == "B" else f"{value:.0f}{unit}"
    return str(n)


def gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


def memory_words(status, device: str) -> str:
    """E.g. '162M parameters · ~0.2 GiB in memory on CPU int8 · room for 40 full-length (2048-token)
    conversations at once'."""
    if status.remote:
        return f"{format_parameters(status.parameters)} parameters · served by a {status.served_by}"
    room = (f"room for {status.conversations:,} full-length (2048-token) conversation"
            f"{'s' if status.conversations != 1 else ''} at once" if status.fits else "")
    return " · ".join(x for x in (f"{format_parameters(status.parameters)} parameters",
                                   f"~{gib(status.weights_bytes)} in memory on {device}", room) if x)


def model_note(status) -> str:
    """One phrase: can this model run here, and is it ready?"""
    if status.remote:
        if status.remote_problem:
            return "⚠️ not answering right now; the app keeps asking, and chat with other models works meanwhile"
        return "answering" if status.loaded else "connecting"
    if not status.fits:
        return f"needs ~{status.estimated_bytes / 2**30:.1f} GiB: more than this machine can give it"
    if status.loaded:
        return "loaded"
    if status.cached:
        return "on disk"
    return "converted from its folder on first use" if status.local else "downloads on first use"


STILL_REPLYING = "The last reply is still being written: wait for it, or press Stop."
STILL_WORKING = "The last request is still running: wait for it, or press Stop."
STOPPED_BEFORE_REPLY = "Stopped by you before the reply started; your message is back in the box."
STOPPED_BEFORE_START = "Stopped by you before it started."
CHAT_TOKENS_INFO = ("Colour each reply's tokens (as generated, up to the stop string) by probability, with the "
                    "alternatives considered. Tick it before sending: they are worked out with the reply.")
CHAT_TOKENS_HINT = ("The last reply was written without token probabilities: the next one will be coloured "
                    "(Retry writes the last one again).")
COMPLETION_TOKENS_INFO = ("Colour each generated token by its probability and list the alternatives the model "
                          "considered. Tick it before generating: they are worked out with the text.")
COMPLETION_TOKENS_HINT = ("This text was generated without token probabilities: the next Generate will colour "
                          "its tokens.")


def plural(n: int, word: str) -> str:
    """'1 token', '2 tokens', '1,024 tokens'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def finish_words(reason: str | None, chat: bool) -> str:
    if reason == "stop":
        return "ended at the end of the Bot's line" if chat else "the model ended the text"
    if reason == "length":
        return "reached the new-token limit"
    if reason == "cancelled":
        return "stopped by you"
    return ""


def metrics_line(reply: Reply, chat: bool = False) -> str:
    """E.g. '9 tokens · first after 21 ms · 304 tokens/s · ended at the end of the Bot's line ·
    pythia-160m step3000 · CPU int8'."""
    parts = [plural(reply.num_tokens, "token")]
    if reply.time_to_first_token is not None:
        parts.append(f"first after {reply.time_to_first_token * 1000:.0f} ms")
    if reply.num_tokens > 1 and reply.tokens_per_second > 0:  # 0: too short to time
        parts.append(f"{reply.tokens_per_second:.0f} tokens/s")
    parts.append(finish_words(reply.finish_reason, chat))
    parts.append(reply.model if reply.revision in ("", "main") else f"{reply.model} {reply.revision}")
    parts.append(reply.served_by)
    return " · ".join(p for p in parts if p)


def empty_reply_note(reply: Reply, chat: bool) -> str | None:
    """Why a finished reply has no text, so an empty bubble never goes unexplained."""
    if reply.text.strip() or reply.finish_reason != "stop":
        return None
    first = "ended the Bot's line" if chat else "wrote the end-of-text token"
    return (f"The model {first} before writing anything. Base models do that; try Retry, a higher "
            "temperature, or a prompt that invites a longer answer.")


def metrics_markdown(reply: Reply, chat: bool = False) -> str:
    notes = [n for n in (empty_reply_note(reply, chat), reply.notice) if n]
    return metrics_line(reply, chat) + "".join(f"\n\nℹ️ {n}" for n in notes)


def column_metrics(column: CompareColumn) -> str:
    """Under a Compare column, once it finished."""
    if not column.done or column.error is not None:
        return ""
    speed = f" · {column.tokens_per_second:.0f} tokens/s" if column.num_tokens > 1 and column.tokens_per_second > 0 \
        else ""  # 0: too short to time
    served = f" · {column.served_by}" if column.served_by else ""
    return f"{plural(column.num_tokens, 'token')}{speed} · {finish_words(column.finish_reason, chat=False)}{served}"


STAGE_WORDS = {"downloading": "Downloading", "converting": "Converting", "loading": "Loading"}


def progress_text(p, model: str = "", revision: str = "main") -> str:
    """'Downloading pythia-70m step3000 — 42%'; sweeps say which checkpoint of how many."""
    percent = f" — {p.fraction:.0%}" if p.fraction is not None else ""
    if p.stage in STAGE_WORDS:
        what = " ".join(x for x in (model, revision if revision not in (None, "", "main") else "") if x)
        return f"{STAGE_WORDS[p.stage]} {what or 'the model'}{percent}"
    if p.stage.startswith("scoring "):
        return f"Scoring {p.stage.removeprefix('scoring ')} ({int(p.done) + 1} of {int(p.total)} {p.unit})"
    return f"{p.stage.capitalize()}{percent}"


def default_fallback_notice(wanted: str, reason: str, usable: list[str]) -> str:
    """Above the page when the server could not fetch its usual default model at start and opened on the demo
    model instead: why, and which models can be used now (those on this server). For visitors: it names no flag
    or command (the server's log tells the operator)."""
    names = ", ".join(f"**{name}**" for name in usable)
    return (f"ℹ️ **The demo model is selected instead of {wanted}**, the model this page usually opens with. "
            f"{reason} Models on this server can be used now: {names}. The others download from the Hub on "
            "first use, and cannot while it is out of reach.")
