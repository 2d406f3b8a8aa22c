"""The Benchmarks engine against lm-eval's own transformers model: the same task definitions, the same checkpoints
of the demo model, float32 on both sides. Every metric within 1e-4 relative, accuracies and exact matches equal.

Tasks: the shipped kjv_lambada (loglikelihood, LAMBADA's shape) and the tests' kjv_mc (multiple choice), kjv_ppl
(rolling perplexity; its third document spans two windows) and kjv_gen (greedy generate_until). ServiceLM scores
windows of max_length = 2047 tokens (a scored sequence holds its last continuation token too: benchmark_lm.py), so
the hf model is given max_length=2047 and both score the same windows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_utils.core.catalog import Catalog
from model_utils.engine.devices import resolve_device
from model_utils.engine.engine import Engine
from model_utils.service import BenchmarkRequest, PythiaService
from model_utils.service.benchmarks import SHIPPED_TASKS_DIR
from model_utils.store.demo_model import DEMO_DIR, DEMO_MODEL, demo_model
from model_utils.store.disk import ModelStore

pytestmark = pytest.mark.slow  # lm-eval's hf model in a subprocess, twice (about a minute)

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = ROOT / "tests" / "lm_eval_tasks"
TASKS = ("kjv_lambada", "kjv_mc", "kjv_ppl", "kjv_gen")
REVISIONS = ("step256", "main")
LIMIT = 60  # kjv_lambada's first 60 documents (the test tasks have fewer)


def hf_results(revision: str, output: Path, tasks_dir: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
               f"pretrained={DEMO_DIR / revision},dtype=float32,max_length=2047", "--tasks", ",".join(TASKS),
               "--include_path", str(tasks_dir), "--limit", str(LIMIT), "--device", "cpu",
               "--batch_size", "4", "--output_path", str(output)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = output.rglob("results_*.json")
    return json.loads(path.read_text())["results"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("parity")
    tasks_dir = out / "tasks"  # the CLI takes one include path: both folders' tasks, side by side
    tasks_dir.mkdir()
    for path in [*TASKS_DIR.iterdir(), *SHIPPED_TASKS_DIR.iterdir()]:
        if path.is_file():
            shutil.copy(path, tasks_dir / path.name)
    reference = {r: hf_results(r, out / r, tasks_dir) for r in REVISIONS}
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
    return reference, last


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
