"""A CT2 generator and its tokenizer, loaded and ready to decode."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..core.catalog import CONTEXT_LENGTH, EOS_TOKEN, PythiaModel
from ..core.errors import ModelUnavailable
from .batching import BatchingConfig, BatchScheduler
from .devices import DeviceConfig
from .interface import Between, PromptScores, TokenChoices, checked_continuations

log = logging.getLogger(__package__)  # one logger per layer: "model_utils.engine"


LOGITS_BYTES = 512 * 2**20  # the most float32 log-probs one forward_batch call may return

# score_continuations (lm-eval's loglikelihood) scores groups of sequences of at most this many (padded) tokens...
GROUP_TOKENS = 1024
# ...and, while visitors are about, of at most this many, one group at a time (at least one sequence): a visitor
# who arrives meets at most one such group on the cores (BatchScheduler.start_scoring_group).
SHARED_GROUP_TOKENS = 128
# Which CT2 call scores a group. forward_batch returns every position's distribution: the output layer and its
# log-softmax run for every token (about a third of the work for Pythia-160m, measured). generate_batch with the
# sequences as prompts (include_prompt_in_result=False) reads each prompt at once up to the group's shortest one and
# the rest one decoding step per token, returning only the logits of those steps: the output layer runs for those
# positions only, but a decoding step costs about as much as reading STEP_COST_TOKENS more tokens (CPU, bench model,
# 2 vCPUs: 16 LAMBADA-shaped sequences scored in 0.69x forward_batch's CPU time, 4 in 0.86x, 2 in 1.30x, 1 in 1.77x).
# generate_batch is taken when steps x STEP_COST_TOKENS <= OUTPUT_SHARE x the group's tokens.
STEP_COST_TOKENS = 25
OUTPUT_SHARE = 0.35


def _groups(sequences: Sequence[Sequence[int]], vocab_size: int,
            budget: int = LOGITS_BYTES) -> Iterator[list[Sequence[int]]]:
    """Consecutive sequences whose padded batch of log-probs stays under ``budget`` bytes (one at least)."""
    group: list[Sequence[int]] = []
    for ids in sequences:
        longest = max([len(ids), *(len(s) for s in group)])
        if group and (len(group) + 1) * longest * vocab_size * 4 > budget:
            yield group
            group = []
        group.append(ids)
    if group:
        yield group


def _best(rows: np.ndarray, top: int) -> np.ndarray:
    """The ``top`` largest entries of each row, best first, without sorting the vocabulary."""
    if top == 1:
        return rows.argmax(axis=-1)[:, None]
    candidates = np.argpartition(-rows, top - 1, axis=-1)[:, :top]
    order = np.argsort(-np.take_along_axis(rows, candidates, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(candidates, order, axis=-1)


def _prompt_scores(log_probs: np.ndarray, ids: Sequence[int], top: int) -> PromptScores:
    """Position p's log-probs predict token p + 1; the last position's predict the next token."""
    best = _best(log_probs, top)
    positions = tuple(
        TokenChoices(float(log_probs[p, token]), tuple((int(i), float(log_probs[p, i])) for i in best[p]))
        for p, token in enumerate(ids[1:]))
    last = len(ids) - 1
    return PromptScores(positions, tuple((int(i), float(log_probs[last, i])) for i in best[last]))


def _to_numpy(view) -> np.ndarray:
    """A CT2 StorageView as float32 numpy, copied to the host when it lives on a GPU."""
    import ctranslate2

    if view.device != "cpu":
        view = view.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
    return np.asarray(view).astype(np.float32, copy=False)


def _sum_and_greedy(rows: np.ndarray, targets: np.ndarray, starts: np.ndarray,
                    logits: bool) -> list[tuple[float, bool]]:
    """``rows``: the distributions at every scored position (logits, or log-probs), ``targets``: the token at each,
    ``starts``: where each sequence's positions begin. Per sequence: the sum of the targets' log-probs and whether
    every target was its row's argmax."""
    picked = rows[np.arange(len(rows)), targets].astype(np.float64)
    if logits:  # the log-softmax of the picked entries only
        top = rows.max(axis=-1).astype(np.float64)
        picked -= top + np.log(np.exp(rows.astype(np.float64) - top[:, None]).sum(axis=-1))
    greedy = rows.argmax(axis=-1) == targets
    sums = np.add.reduceat(picked, starts) if len(rows) else np.zeros(0)
    hits = np.logical_and.reduceat(greedy, starts) if len(rows) else np.zeros(0, bool)
    return [(float(a), bool(b)) for a, b in zip(sums, hits, strict=True)]


@dataclass
class LoadedModel:
    """One model in memory. Call :meth:`close` to free it (the cache does)."""

    info: PythiaModel
    revision: str
    device: DeviceConfig
    path: Path
    generator: Any  # ctranslate2.Generator
    tokenizer: Any  # tokenizers.Tokenizer
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    eos_id: int = field(init=False)
    scheduler: BatchScheduler = field(init=False)
    _pool: ThreadPoolExecutor | None = field(init=False, default=None)
    _pool_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self):
        self.eos_id = self.tokenizer.token_to_id(EOS_TOKEN)
        self.scheduler = BatchScheduler(self.generator, self.eos_id, self.batching)

    def _scorers(self) -> ThreadPoolExecutor:
        """The threads that score side by side (one per base lane), made on first use, shut down by close()."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.batching.workers, thread_name_prefix="score")
            return self._pool

    @property
    def label(self) -> str:
        """E.g. ``pythia-160m @ step3000``."""
        return self.info.name if self.revision == "main" else f"{self.info.name} @ {self.revision}"

    @property
    def served_by(self) -> str:
        """Where the tokens come from, for reply metrics: e.g. ``CPU int8``."""
        return self.device.describe()

    def tokens(self, ids) -> list[str]:
        """Token strings for ids: CT2's Generator takes strings, not ids."""
        return [self.tokenizer.id_to_token(i) for i in ids]

    # -- ServedModel (engine/interface.py): what generation and scoring call, for every engine --
    def steps(self, prompt_ids: Sequence[int], params, cancel=None):
        """Generated steps (``token_id``, ``log_prob``) through the batch scheduler; close to stop."""
        return self.scheduler.steps(self.tokens(prompt_ids), params, cancel=cancel)

    def give_way(self) -> None:
        self.scheduler.give_way()

    def score(self, sequences: Sequence[Sequence[int]]) -> list[list[float]]:
        """For each sequence, the log-prob of each token after the first given those before it."""
        # score_batch truncates at 1024 tokens unless told otherwise.
        results = self.generator.score_batch([self.tokens(s) for s in sequences], max_input_length=CONTEXT_LENGTH)
        return [[float(lp) for lp in r.log_probs] for r in results]

    def score_prompts(self, sequences: Sequence[Sequence[int]], top: int) -> list[PromptScores]:
        """Each sequence's log-probs at every position, from ``forward_batch`` (CT2 computes the log-softmax).

        One ``forward_batch`` runs on one CT2 worker (one core on CPU): several sequences are shared among the base
        lanes' workers, every ``workers``-th sequence to each (a caller that sorted them by length, as lm-eval does,
        gives each part alike lengths), and scored side by side. The full distributions are materialized (positions
        x vocabulary floats), so each part goes through in groups of at most its share of LOGITS_BYTES; a
        full-context Pythia sequence alone is ~400 MB."""
        parts = min(self.batching.workers, len(sequences))
        if parts <= 1:
            return self._score_part(sequences, top, LOGITS_BYTES)
        scored = list(self._scorers().map(
            lambda i: self._score_part(sequences[i::parts], top, LOGITS_BYTES // parts), range(parts)))
        results: list[PromptScores] = [None] * len(sequences)  # type: ignore[list-item]
        for i, part in enumerate(scored):
            results[i::parts] = part
        return results

    def _score_part(self, sequences: Sequence[Sequence[int]], top: int, budget: int) -> list[PromptScores]:
        import ctranslate2

        top = max(1, top)
        results: list[PromptScores] = []
        for group in _groups(sequences, self.info.vocab_size, budget):
            log_probs = self.generator.forward_batch([list(map(int, s)) for s in group], return_log_probs=True)
            if log_probs.device != "cpu":
                log_probs = log_probs.to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
            array = np.asarray(log_probs)
            for row, ids in zip(array, group, strict=True):
                results.append(_prompt_scores(row[:len(ids)].astype(np.float32, copy=False), ids, top))
        return results

    def score_continuations(self, pairs: Sequence[tuple[Sequence[int], int]],
                            between: Between | None = None) -> list[tuple[float, bool]]:
        """lm-eval's loglikelihood: per (sequence, n), the sum of its last ``n`` tokens' log-probs and whether each
        was the likeliest at its position, computed with numpy on those positions only (see GROUP_TOKENS and
        STEP_COST_TOKENS for the groups and the CT2 call that scores each).

        Groups of sequences alike in context length run on the base lanes' workers side by side; visitors come
        first: before each group the scheduler waits for their first tokens (bounded), and while they are about
        the groups are short and go one at a time (``BatchScheduler.start_scoring_group``). ``between`` is called
        after each group ends (see the interface): a Stop it raises lets the groups already running end."""
        checked = checked_continuations(pairs)
        results: list[tuple[float, bool]] = [(0.0, True)] * len(checked)
        order = sorted((i for i, (_, n) in enumerate(checked) if n), key=lambda i: (
            -(len(checked[i][0]) - checked[i][1]), -len(checked[i][0])))  # by context length, longest first
        parts = max(1, self.batching.workers)
        running: set[Future] = set()
        scored_so_far = len(checked) - len(order)  # the pairs with nothing to score

        def collect(done) -> None:
            nonlocal scored_so_far
            for future in done:
                indices, scores = future.result()
                for i, scored in zip(indices, scores, strict=True):
                    results[i] = scored
                scored_so_far += len(indices)

        try:
            at = 0
            while at < len(order):
                if running and (len(running) >= parts or self.scheduler.visitors_about()):
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    collect(done)
                    if between is not None:
                        between(scored_so_far)
                    continue
                shared = self.scheduler.start_scoring_group()
                group = self._next_group(checked, order, at, SHARED_GROUP_TOKENS if shared else GROUP_TOKENS,
                                         LOGITS_BYTES // parts)
                at += len(group)
                running.add(self._scorers().submit(self._score_group, [checked[i] for i in group], group))
        finally:
            done, _ = wait(running)
        collect(done)
        if between is not None:
            between(scored_so_far)
        return results

    def _next_group(self, pairs: list[tuple[list[int], int]], order: list[int], at: int, tokens: int,
                    budget: int) -> list[int]:
        """The indices of ``order[at:]`` that the next group scores: padded tokens within ``tokens`` and returned
        floats within ``budget`` bytes, one sequence at least."""
        group: list[int] = []
        longest = 0
        for i in order[at:]:
            longer = max(longest, len(pairs[i][0]))
            if group and ((len(group) + 1) * longer > tokens
                          or (len(group) + 1) * longer * self.info.vocab_size * 4 > budget):
                break
            group.append(i)
            longest = longer
        return group

    def _score_group(self, group: list[tuple[list[int], int]], indices: list[int]):
        """One CT2 call for the group: generate_batch when its decoding steps cost less than the output layer over
        every position would (STEP_COST_TOKENS), forward_batch otherwise. Returns (indices, results)."""
        shortest = min(len(ids) - n for ids, n in group)  # context
        steps = max(len(ids) for ids, _ in group) - shortest
        tokens = len(group) * max(len(ids) for ids, _ in group)
        # CT2 reads a one-token prompt as a start token, not as a prompt to step through: then forward_batch
        generate = shortest >= 2 and steps * STEP_COST_TOKENS <= OUTPUT_SHARE * tokens
        return indices, (self._score_generated(group) if generate else self._score_forward(group))

    def _score_forward(self, group: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """forward_batch's log-probs at every position; only the continuations' positions are read."""
        log_probs = _to_numpy(self.generator.forward_batch([ids for ids, _ in group], return_log_probs=True))
        rows = np.concatenate([np.repeat(r, n) for r, (_, n) in enumerate(group)])
        positions = np.concatenate([np.arange(len(ids) - n - 1, len(ids) - 1) for ids, n in group])
        targets = np.concatenate([ids[len(ids) - n:] for ids, n in group])
        starts = np.cumsum([0] + [n for _, n in group[:-1]])
        return _sum_and_greedy(log_probs[rows, positions], targets, starts, logits=False)

    def _score_generated(self, group: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """generate_batch over each sequence less its last token: the logits of the steps past the group's shortest
        prompt come back, the last ``n`` of each row being its continuation's positions. A prompt as short as the
        shortest context is added when needed, so that every continuation position is a step; no end token, so an
        end-of-text token inside a sequence is read like any other."""
        prompts = [ids[:-1] for ids, _ in group]
        shortest = min(len(ids) - n for ids, n in group)
        if min(len(p) for p in prompts) > shortest:
            prompts.append(next(ids for ids, n in group if len(ids) - n == shortest)[:shortest])
        scored = self.generator.generate_batch(
            [self.tokens(p) for p in prompts], max_length=1, include_prompt_in_result=False,
            return_logits_vocab=True, end_token=[], beam_size=1)
        if any(len(result.logits[0]) < n for result, (_, n) in zip(scored, group, strict=False)):  # never seen
            log.warning("generate_batch returned fewer steps than asked; scoring with forward_batch")
            return self._score_forward(group)
        # logits: per hypothesis (one), per step, the vocabulary's logits
        rows = np.concatenate([np.stack([_to_numpy(v).reshape(-1) for v in result.logits[0][-n:]])
                               for result, (_, n) in zip(scored, group, strict=False)])  # no added prompt
        targets = np.concatenate([ids[len(ids) - n:] for ids, n in group])
        starts = np.cumsum([0] + [n for _, n in group[:-1]])
        return _sum_and_greedy(rows, targets, starts, logits=True)

    def close(self) -> None:
        """Free the weights now instead of at interpreter exit.

        CT2 can abort the process when a Generator is still alive at exit, so
        every owner tears its generators down explicitly.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)  # scoring in flight ends first
        generator, self.generator = self.generator, None
        if generator is not None:
            self.scheduler.close()  # waits for running batches; releases its reference
            generator.unload_model()
            del generator  # the last reference: the Generator is destroyed here, deterministically


def load_ct2_model(path: Path, info: PythiaModel, revision: str, device: DeviceConfig,
                   batching: BatchingConfig = BatchingConfig()) -> LoadedModel:
    """Load a converted CT2 model directory (model.bin, vocabulary, tokenizer.json)."""
    import ctranslate2
    from tokenizers import Tokenizer

    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise ModelUnavailable(f"{info.name}: the converted model has no tokenizer.json.")
    try:
        generator = ctranslate2.Generator(
            str(path), device=device.device, compute_type=device.compute_type,
            intra_threads=device.intra_threads, inter_threads=batching.max_lanes,
        )
    except (RuntimeError, ValueError) as exc:
        # CT2's message names server paths: log it, tell the user what failed.
        log.error("loading %s from %s failed: %s", info.name, path, exc, exc_info=exc)
        raise ModelUnavailable(f"{info.name} could not be loaded on {device.describe()}: its files are "
                               "damaged or incomplete. Try again; the operator has the details in the log.") from exc
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    return LoadedModel(info, revision, device, path, generator, tokenizer, batching)
