"""EleutherAI's published evaluation results for Pythia across training (model_utils/research_data/, with its
source and licence): the reference a Benchmarks curve is drawn beside."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CSV_PATH = Path(__file__).resolve().parent.parent / "research_data" / "pythia_published_evals.csv"
# the old harness called lambada's perplexity "ppl"; lm-eval 0.4 reports it as "perplexity"
METRIC_NAMES = {"ppl": "perplexity"}
# the published zero-shot checkpoints: every model EleutherAI evaluated has these
PUBLISHED_STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000, 3000, *range(13000, 143001, 10000))
PUBLISHED_TASKS = ("lambada_openai", "piqa", "arc_easy", "arc_challenge", "sciq", "winogrande", "wsc", "logiqa")


@dataclass(frozen=True)
class PublishedPoint:
    step: int
    value: float
    stderr: float | None


@lru_cache(maxsize=1)
def _table() -> dict[tuple[str, str, str, int], tuple[PublishedPoint, ...]]:
    table: dict[tuple[str, str, str, int], list[PublishedPoint]] = {}
    with open(CSV_PATH, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["model"], row["task"], METRIC_NAMES.get(row["metric"], row["metric"]), int(row["num_fewshot"]))
            stderr = float(row["stderr"]) if row["stderr"] not in ("", None) else None
            table.setdefault(key, []).append(PublishedPoint(int(row["step"]), float(row["value"]), stderr))
    return {k: tuple(sorted(v, key=lambda p: p.step)) for k, v in table.items()}


def published_curve(model: str, task: str, metric: str, num_fewshot: int) -> tuple[PublishedPoint, ...]:
    """EleutherAI's numbers for (model, task, metric, shots), by step; () where they published none."""
    return _table().get((model, task, metric, num_fewshot), ())
