"""The Benchmarks engine against lm-eval's own transformers model: the same task definitions, the same checkpoints
of the demo model, float32 on both sides. Every metric within 1e-4 relative, accuracies and exact matches equal.

Tasks: the shipped kjv_lambada (loglikelihood, LAMBADA's shape) and the tests' kjv_mc (multiple choice), kjv_ppl
(rolling perplexity; its third document spans two windows) and kjv_gen (greedy generate_until). lm-eval's results are
committed (tests/lm_eval_reference.py says how they were made and regenerates them; test_lm_eval.py fails when what
made them changed).
"""

from __future__ import annotations

import os
from pathlib import Path

import lm_eval_reference as reference
import pytest

from model_utils.core.catalog import Catalog
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.service import BenchmarkRequest, PythiaService
from model_utils.store.demo_model import DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore

pytestmark = pytest.mark.slow  # the engine on four tasks at two checkpoints

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = ROOT / "tests" / "lm_eval_tasks"
TASKS = reference.PARITY_TASKS
REVISIONS = reference.PARITY_REVISIONS
LIMIT = reference.PARITY_LIMIT


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """lm-eval's hf results (committed: tests/lm_eval_reference.py; test_lm_eval.py checks they are current) and
    the Benchmarks engine's on the same checkpoints, tasks and documents."""
    out = tmp_path_factory.mktemp("parity")
    catalog = Catalog()
    catalog.add(demo_model())
    engine = Engine(resolve_device("cpu", "float32", 2), catalog=catalog,
                    store=ModelStore(out / "models", precision="float32"), memory_budget_bytes=2**30)
    service = PythiaService(engine, catalog, DEMO_MODEL, results_dir=out, tasks_dir=TASKS_DIR)
    cwd = os.getcwd()
    os.chdir(ROOT)  # the test tasks' data_files are relative to the repository root (kjv_lambada's are not)
    try:
        request = service.parse(BenchmarkRequest, model=DEMO_MODEL, revisions=list(REVISIONS), tasks=list(TASKS),
                                limit=LIMIT)
        last = list(service.benchmark(request))[-1]
    finally:
        os.chdir(cwd)
        engine.close()
    return reference.load()["parity"], last


def test_every_metric_matches_lm_evals_hf_model(both):
    reference, last = both
    assert [u.status for u in last.units] == ["ok"] * len(REVISIONS) * len(TASKS), [u.error for u in last.units]
    compared = 0
    for unit in last.units:
        theirs = reference[unit.revision][unit.task]
        for metric in unit.metrics:
            expected = theirs[f"{metric.name},none"]
            if metric.name in ("acc", "exact_match"):
                assert metric.value == expected, (unit.revision, unit.task, metric.name)
            else:
                assert metric.value == pytest.approx(expected, rel=1e-4), (unit.revision, unit.task, metric.name)
            compared += 1
    assert compared >= len(REVISIONS) * 7  # lambada 2, mc 1, ppl 3, gen 1


def test_the_shipped_task_learns(both):
    _, last = both
    acc = {u.revision: dict((m.name, m.value) for m in u.metrics)["acc"] for u in last.units if u.task == "kjv_lambada"}
    assert acc["main"] > acc["step256"]
