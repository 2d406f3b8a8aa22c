"""EleutherAI's lm-evaluation-harness sees a served model (local CTranslate2 or remote vLLM) as one of its own
``LM``s: the harness owns tasks, prompts, few-shot sampling and metrics; this class only scores and generates.

- ``loglikelihood``: lm-eval's own ``TemplateLM`` encodes (context, continuation) pairs; every batch of them is
  scored by the engine's ``score_continuations`` (the continuation's log-likelihood and whether each of its tokens
  was the likeliest one at its position, computed on those positions only; it gives the numbers of
  ``score_prompts``, the path ``/v1/completions`` takes for ``echo`` + ``logprobs``, tests/test_score_continuations.py).
- ``loglikelihood_rolling``: lm-eval's rolling windows (``get_rolling_token_windows``), scored the same way.
- ``generate_until``: greedy decoding through the model's batch scheduler (the rows of a batch are submitted
  together and share decoding batches with visitors), cut at the task's stop strings by lm-eval's own helper.

Windows: a scored sequence holds at most ``CONTEXT_LENGTH`` tokens *including* the last continuation token (the
engines return log-probs of tokens they were given), so ``max_length`` is ``CONTEXT_LENGTH - 1``; lm-eval's ``hf``
model with ``max_length=2047`` scores exactly the same windows (tests/test_benchmarks_parity.py).

Documents longer than the context: as lm-eval's ``hf`` model does, a (context, continuation) pair that does not fit
has its context cut from the left (and a generation's prompt keeps its last ``2048 - max_gen_toks`` tokens), so the
numbers equal the ``hf`` backend's; unlike ``hf`` (a log warning per request) this is counted and said in the
result's notes (:meth:`ServiceLM.notes`), with the task, the longest request and the limit. What cannot be done that
way is refused in words naming the task: a continuation longer than the context, more generated tokens than a
reply may have.

Generations a model cannot answer (a random or tiny checkpoint on a generation task) are scored as lm-eval scores
them (usually 0); the notes say how many answers were empty or ran to the task's token limit without reaching its
stop strings, with the first answer as an example, so a 0 reads as "the model wrote nothing usable", not as a bug.

Stop: ``cancel`` is checked before every batch; a set event raises :class:`EvaluationStopped` there, so the
evaluation ends at its next batch.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Sequence

from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from ..core.catalog import CONTEXT_LENGTH
from ..core.errors import InvalidParameter, PythiaError
from ..core.sampling import MAX_NEW_TOKENS, SamplingParams
from ..engine.generation import ReplyBuilder, stream
from ..engine.interface import ServedModel
from ..engine.prompts import PreparedPrompt
from .lm_eval_server import give_way

GENERATE_BATCH = 8  # generations submitted together to the batch scheduler
DEFAULT_MAX_GEN_TOKS = 256  # lm-eval's default when a task does not say


class EvaluationStopped(PythiaError):
    """The evaluation was stopped (Stop, a closed page) before this batch."""


Progress = Callable[[int, int], None]  # (requests done, requests in all) of the current lm-eval call


class ServiceLM(TemplateLM):
    """An lm-eval model over one loaded (model, revision)."""

    def __init__(self, model: ServedModel, cancel: threading.Event | None = None, progress: Progress | None = None,
                 task: str = "the task"):
        super().__init__()
        self.model = model
        self.cancel = cancel or threading.Event()
        self.progress = progress
        self.task = task  # named in refusals and notes
        self.scored = 0  # (context, continuation) pairs scored, rolling windows aside
        self.cut: list[int] = []  # the whole length, in tokens, of each pair whose context was cut to fit
        self.prompts_cut: list[int] = []  # the length of each generation prompt cut to fit
        self.answers = _Answers()

    # -- what TemplateLM needs --------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.model.eos_id

    @property
    def max_length(self) -> int:
        return CONTEXT_LENGTH - 1

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        give_way()  # lm-eval encodes every request's texts one by one, in Python: visitors first (lm_eval_server.py)
        return self.model.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.model.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def _check_stop(self) -> None:
        if self.cancel.is_set():
            raise EvaluationStopped("The evaluation was stopped.")

    def _report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        # lm-eval's tokenizing progress bar would print to the server's log for every task and checkpoint
        return super().loglikelihood(requests, disable_tqdm=True)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """Each (context, continuation) token pair: the continuation's log-likelihood and whether greedy decoding
        would have produced it. Longest first, so a batch holds sequences of similar length."""
        return self._score_pairs(requests, count=True)

    def _score_pairs(self, requests, count: bool) -> list[tuple[float, bool]]:
        sequences = []
        for _, context, continuation in requests:
            if not continuation:
                raise InvalidParameter(f"{self.task} asked to score an empty continuation.")
            if len(continuation) > self.max_length:
                raise InvalidParameter(
                    f"{self.task} has a continuation of {len(continuation):,} tokens to score; the model's context "
                    f"holds {CONTEXT_LENGTH:,} tokens, and a continuation must fit in it whole (lm-eval's hf model "
                    f"refuses it too).")
            whole = list(context) + list(continuation)
            if count:
                self.scored += 1
                if len(whole) > CONTEXT_LENGTH:
                    self.cut.append(len(whole))
            # as lm-eval's hf model: the context is cut from the left to fit
            sequences.append((whole[-(self.max_length + 1):], len(continuation)))
        # by context length, longest first: a batch holds alike lengths, and the engine's groups few decoding steps
        order = sorted(range(len(sequences)), key=lambda i: (-(len(sequences[i][0]) - sequences[i][1]),
                                                             -len(sequences[i][0])))
        self._check_stop()

        def between(done: int) -> None:  # after each of the engine's groups: progress shows, Stop acts there
            self._report(done, len(order))
            self._check_stop()

        # one call: the engine keeps its workers busy from the first group to the last (calls of 64 pairs each
        # ended on a group alone on its worker: 85.4 s against 69.5 s per 1,000-document checkpoint, BENCHMARKS.md)
        scores = self.model.score_continuations([sequences[i] for i in order], between=between)
        results: list[tuple[float, bool] | None] = [None] * len(sequences)
        for i, scored in zip(order, scores, strict=True):
            results[i] = scored
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """The log-likelihood of each whole text, in lm-eval's rolling windows of ``max_length`` tokens."""
        windows, owners = [], []
        for index, (text,) in enumerate(req.args for req in requests):
            for context, continuation in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(text), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, continuation))
                owners.append(index)
        totals = [0.0] * len(requests)
        for owner, (log_likelihood, _) in zip(owners, self._score_pairs(windows, count=False), strict=True):
            totals[owner] += log_likelihood
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, ended at the task's stop strings (and the end-of-text token)."""
        eos = self.model.tokenizer.decode([self.eot_token_id], skip_special_tokens=False)
        jobs = []
        for context, gen_kwargs in (req.args for req in requests):
            kwargs = normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_MAX_GEN_TOKS)
            if kwargs.get("do_sample"):
                raise InvalidParameter("The task samples its generations (do_sample); only greedy generation "
                                       "tasks can be evaluated here.")
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen = int(kwargs.pop("max_gen_toks"))
            if max_gen > MAX_NEW_TOKENS:
                raise InvalidParameter(
                    f"{self.task} asks for up to {max_gen:,} generated tokens per answer; this server generates at "
                    f"most {MAX_NEW_TOKENS:,} per reply (the model's context holds {CONTEXT_LENGTH:,} tokens).")
            ids = self.tok_encode(context)
            if len(ids) > CONTEXT_LENGTH - max_gen:
                self.prompts_cut.append(len(ids))
            ids = ids[-(CONTEXT_LENGTH - max_gen):]  # left-truncated, as lm-eval's hf model
            jobs.append((ids, max_gen, until))
        out: list[str] = []
        for start in range(0, len(jobs), GENERATE_BATCH):
            self._check_stop()
            out += self._generate_batch(jobs[start:start + GENERATE_BATCH])
            self._report(len(out), len(jobs))
        if out and self.answers.example is None:
            self.answers.example = out[0]  # the first request's answer: the example the notes quote
        return out

    def _generate_batch(self, jobs) -> list[str]:
        """Submit every row at once (they share decoding batches), collect each row's text."""
        texts: list[str | None] = [None] * len(jobs)
        errors: queue.Queue = queue.Queue()

        def run(i: int, ids: list[int], max_gen: int, until: list[str]) -> None:
            try:
                params = SamplingParams(greedy=True, repetition_penalty=1.0, no_repeat_ngram_size=0,
                                        max_new_tokens=max_gen)
                reply = ReplyBuilder()
                # the stop strings end decoding early; the text is cut by lm-eval's own rule below
                for chunk in stream(self.model, PreparedPrompt(tuple(ids)), params, stop=until, cancel=self.cancel):
                    reply.add(chunk)
                texts[i] = postprocess_generated_text(self.tok_decode(reply.token_ids), until, None)
                ran_out = reply.last is not None and reply.last.finish_reason == "length"
                self.answers.add(texts[i], ran_out, max_gen, until)
            except BaseException as exc:  # handed to the caller's thread
                errors.put(exc)

        threads = [threading.Thread(target=run, args=(i, *job), daemon=True) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not errors.empty():
            raise errors.get()
        self._check_stop()  # a stopped decoding returns early: its text is not a result
        return texts  # type: ignore[return-value]

    # -- what the result says besides its numbers ----------------------------------------------------------
    def notes(self) -> list[str]:
        """Readable caveats of this evaluation: requests cut to fit the context, answers that say nothing."""
        out = []
        if self.cut:
            out.append(
                f"{self.task}: {len(self.cut):,} of {self.scored:,} scored requests were longer than the model's "
                f"{CONTEXT_LENGTH:,}-token context (the longest {max(self.cut):,} tokens); as lm-eval's hf model does, "
                f"their contexts were cut from the left to fit, so those documents were scored on less context "
                f"than the task wrote.")
        if self.prompts_cut:
            out.append(
                f"{self.task}: {len(self.prompts_cut):,} of {self.answers.total:,} generation prompts were longer "
                f"than the model's context leaves room for (the longest {max(self.prompts_cut):,} tokens); as "
                f"lm-eval's hf model does, they were cut from the left.")
        out += self.answers.notes(self.task)
        return out


class _Answers:
    """What the generations of one evaluation looked like: how many were empty, how many never ended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.empty = 0
        self.ran_out = 0
        self.limit = 0
        self.until: list[str] = []
        self.example: str | None = None

    def add(self, text: str, ran_out: bool, limit: int, until: list[str]) -> None:
        with self._lock:
            self.total += 1
            self.empty += not text.strip()
            self.ran_out += ran_out
            self.limit, self.until = limit, until

    def notes(self, task: str) -> list[str]:
        if not self.total or not (self.empty or self.ran_out):
            return []
        parts = []
        if self.empty:
            parts.append(f"{self.empty:,} of {self.total:,} answers were empty (the model ended or hit a stop "
                         f"string at once)")
        if self.ran_out:
            stops = ", ".join(repr(u) for u in self.until[:4])
            parts.append(f"{self.ran_out:,} of {self.total:,} ran to the task's {self.limit:,}-token limit without "
                         f"reaching its stop strings ({stops})")
        example = (self.example or "").strip()
        shown = f"{example[:80]!r}{'…' if len(example) > 80 else ''}" if example else "nothing"
        words = "; ".join(parts)
        return [f"{task}: {words}. lm-eval scored the answers as written (the first: {shown}); a model this small "
                f"or this early in training may write nothing usable, which scores 0."]
