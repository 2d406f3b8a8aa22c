"""The named API endpoints (also MCP tools with --mcp): stateless, every argument but the text
optional. Their names, arguments and result fields are a contract: programs already call them."""

from __future__ import annotations

from typing import Iterator

import gradio as gr

from ..service import PythiaService
from .common import guarded, guarded_call
from .wording import column_metrics, model_note


def register_api(service: PythiaService, concurrency: int) -> None:
    """Declare the endpoints (call inside the Blocks context)."""

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
        for reply in guarded(lambda: service.complete(
                prompt, model, revision, logprobs=logprobs, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens)):
            if reply.token_scores is None:
                yield reply.text
            else:
                yield {"text": reply.text, "tokens": [
                    {"token": t.text, "token_id": t.token_id, "logprob": t.log_prob,
                     "top": [list(a) for a in t.alternatives]} for t in reply.token_scores]}

    def models() -> list[dict]:
        """Every model with whether it is cached on disk, loaded in memory, and fits this machine."""
        return [{"model": m.name, "parameters": m.num_parameters, "revisions": list(m.revisions),
                 "cached": s.cached, "loaded": s.loaded, "fits": s.fits,
                 "estimated_gib": round(s.estimated_bytes / 2**30, 2), "random_weights": m.random_weights,
                 "note": model_note(s)} for m, s in service.statuses()]

    def score(text: str, model: str | None = None, revision: str | None = None) -> dict:
        """Per-token log-probabilities of `text`, its log-likelihood, perplexity and bits per byte."""
        return guarded_call(service.score, text, model, revision).as_dict()

    def score_across(text: str, model: str | None = None, revisions: list[str] | None = None) -> list[dict]:
        """Score `text` at several training checkpoints: one row per revision (failed ones say why)."""
        return [p.as_dict() for p in guarded_call(service.score_across, text, model, revisions)]

    def compare(prompt: str, pairs: list, temperature: float | None = None, top_k: int | None = None,
                top_p: float | None = None, repetition_penalty: float | None = None,
                max_new_tokens: int | None = None, greedy: bool | None = None) -> Iterator[list[dict]]:
        """Stream `prompt` through each [model, revision] pair; yields one {model, revision, text} per pair."""
        for columns in guarded(lambda: service.compare(
                prompt, pairs, temperature=temperature, top_k=top_k, top_p=top_p,
                repetition_penalty=repetition_penalty, max_new_tokens=max_new_tokens, greedy=greedy)):
            yield [{"model": c.model, "revision": c.revision, "text": c.text, "error": c.error,
                    "metrics": column_metrics(c), "done": c.done} for c in columns]

    generating = dict(concurrency_limit=concurrency, concurrency_id="generate")
    gr.api(chat, api_name="chat", **generating)
    gr.api(complete, api_name="complete", **generating)
    gr.api(models, api_name="models", queue=False)
    gr.api(score, api_name="score", **generating)
    gr.api(score_across, api_name="score_across", **generating)
    gr.api(compare, api_name="compare", **generating)
