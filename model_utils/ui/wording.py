"""What the page says about models, replies and runs: every sentence the visitor reads, in one place."""

from __future__ import annotations

from ..service import CompareColumn, Reply

FINISH_WORDS = {
    "stop": "ended where the text ended",
    "length": "reached the token limit",
    "cancelled": "stopped",
}


def format_parameters(n: int) -> str:
    """162322944 -> '162M', 1414647808 -> '1.4B', 98304 -> '98K'."""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{unit}" if value < 10 and unit == "B" else f"{value:.0f}{unit}"
    return str(n)


def model_note(status) -> str:
    """One phrase: can this model run here, and is it ready?"""
    if not status.fits:
        return f"needs ~{status.estimated_bytes / 2**30:.1f} GiB: more than this machine can give it"
    if status.loaded:
        return "loaded"
    if status.cached:
        return "on disk"
    return "converted from its folder on first use" if status.local else "downloads on first use"


def metrics_line(reply: Reply) -> str:
    """One short line for under a finished reply."""
    ttft = f"{reply.time_to_first_token * 1000:.0f} ms" if reply.time_to_first_token is not None else "–"
    where = reply.model if reply.revision in ("", "main") else f"{reply.model} @ {reply.revision}"
    return (f"{reply.num_tokens} tokens · first token {ttft} · {reply.tokens_per_second:.1f} tok/s · "
            f"{reply.device} · {where} · {reply.finish_reason}")


def metrics_markdown(reply: Reply) -> str:
    line = f"<small>{metrics_line(reply)}</small>"
    return line + (f"\n\n<small>ℹ️ {reply.notice}</small>" if reply.notice else "")


def column_metrics(column: CompareColumn) -> str:
    """Under a Compare column, once it finished."""
    if not column.done or column.error is not None:
        return ""
    return f"{column.num_tokens} tokens · {column.tokens_per_second:.1f} tok/s · {column.finish_reason}"
