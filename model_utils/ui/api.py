"""The named API endpoints (also MCP tools with --mcp): stateless, every argument but the text
optional. Their names, arguments and result fields are a contract: programs already call them."""

from __future__ import annotations

import inspect
from typing import Iterator

import gradio as gr

from ..service import PythiaService, bounds
from .common import guarded, guarded_call
from .wording import column_metrics, model_note

ARG_HELP = {
    "message": "The new user message (text, at most 20,000 characters).",
    "history": 'Earlier turns: [{"role": "user" or "assistant", "content": text}, ...], oldest first.',
    "model": "A model name from /models, e.g. pythia-410m-deduped (default: the page's default model).",
    "revision": "main, or a training checkpoint the model has (/models lists them), e.g. step3000.",
    "prompt": "Text for the model to continue (at most 20,000 characters).",
    "logprobs": "1 to 10: the last output also lists each token's log-prob and that many alternatives.",
    "text": "The text to score (at most 20,000 characters).",
    "revisions": "The checkpoints to score, e.g. ['step1000', 'main'] (default: a log-spaced selection).",
    "pairs": "Up to 4 [model, revision] pairs, one column each.",
    "models": "Several model names (scaling curves); every row names its model. Wins over `model`.",
    "prefix_tokens": "Tokens of the text given to the model (1-512, default 32).",
    "continuation_tokens": "Tokens the model writes greedily and that are compared with the text (1-256, default 32).",
}


def _document(fn):
    """Give each endpoint argument a one-line description (Gradio reads 'Args:' from the docstring);
    the sampling arguments' text comes from their declared bounds, like the sliders'."""
    lines = []
    for name in inspect.signature(fn).parameters:
        if name in ARG_HELP:
            lines.append(f"    {name}: {ARG_HELP[name]}")
        else:
            b = bounds(name)
            lines.append(f"    {name}: {b.info} ({b.minimum}-{b.maximum}, default {b.default})"
                         if b.minimum is not None else f"    {name}: {b.info}")
    fn.__doc__ = f"{inspect.getdoc(fn)}\n\nArgs:\n" + "\n".join(lines)
    return fn


def _describe_arguments(fn) -> None:
    """Put each argument's line on the API page too. Gradio 6 gives MCP the docstring's 'Args:' but shows
    the page a generic type for gr.api endpoints: its Api components carry an empty description."""
    from gradio.context import get_blocks_context
    from gradio.utils import get_function_description

    _, described, _ = get_function_description(fn)
    block_fn = next(f for f in get_blocks_context().fns.values() if f.api_name == fn.__name__)
    for component, name in zip(block_fn.inputs, inspect.signature(fn).parameters, strict=True):
        component._api_info = {**component._api_info, "additional_description": described.get(name, "")}


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
                 "estimated_gib": round(s.weights_bytes / 2**30, 3), "conversations_at_once": s.conversations,
                 "random_weights": m.random_weights, "engine": "vllm" if s.remote else "ctranslate2",
                 "note": model_note(s)} for m, s in service.statuses()]

    def score(text: str, model: str | None = None, revision: str | None = None) -> dict:
        """Per-token log-probabilities of `text`, its log-likelihood, perplexity and bits per byte."""
        return guarded_call(service.score, text, model, revision).as_dict()

    def score_across(text: str, model: str | None = None, revisions: list[str] | None = None,
                     models: list[str] | None = None) -> list[dict]:
        """Score `text` at several training checkpoints, of one model or several: one row per (model, revision),
        failed ones say why."""
        return [p.as_dict() for p in guarded_call(service.score_across, text, model, revisions, models)]

    def memorization(text: str, model: str | None = None, models: list[str] | None = None,
                     revisions: list[str] | None = None, prefix_tokens: int = 32,
                     continuation_tokens: int = 32) -> list[dict]:
        """Memorization (Biderman et al. 2023): give the model the text's first `prefix_tokens` tokens, decode
        `continuation_tokens` greedily, compare with the text. One row per (model, revision): exact, matched_prefix,
        match_fraction, continuation, or the error."""
        return [r.as_dict() for r in guarded_call(service.memorization, text, model, models, revisions,
                                                  prefix_tokens, continuation_tokens)]

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
    for fn in (chat, complete, score, score_across, memorization, compare):
        gr.api(_document(fn), api_name=fn.__name__, **generating)
        _describe_arguments(fn)
    gr.api(models, api_name="models", queue=False)
