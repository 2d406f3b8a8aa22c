"""EleutherAI's lm-evaluation-harness evaluating the app through its OpenAI-compatible routes, checked against the
harness's own transformers backend on the same checkpoint.

Three small tasks ship in tests/lm_eval_tasks/ (offline: `dataset_path: json`): a multiple-choice task
(loglikelihood), a rolling-perplexity task whose third document spans two context windows
(loglikelihood_rolling) and a greedy generation task (generate_until). The app serves the demo model's `main` in
float32 and lm-eval's `local-completions` model reaches it with the remote tokenizer backend (no tokenizer download),
four prompts per request; the `hf` backend loads the demo's own safetensors in float32.

Windows: lm-eval's API models score rolling windows of max_length - 2 tokens (one position for the prefix token,
one for the token they ask to be generated), its hf model windows of max_length; so hf gets max_length=2046 and both
score the same windows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from model_utils.settings import Settings
from model_utils.store.demo_model import DEMO_DIR, DEMO_MODEL

from live_app import running_app

pytestmark = pytest.mark.slow  # a live server and two lm-eval runs (about a minute)

TASKS_DIR = Path(__file__).parent / "lm_eval_tasks"
TASKS = "kjv_mc,kjv_ppl,kjv_gen"


def lm_eval(model: str, model_args: str, output: Path, *extra: str) -> dict:
    """Run the lm-eval CLI offline; return {task: [per-sample filtered responses]} and its aggregate results."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "lm_eval", "run", "--model", model, "--model_args", model_args, "--tasks", TASKS,
               "--include_path", str(TASKS_DIR), "--log_samples", "--output_path", str(output), *extra]
    done = subprocess.run(command, cwd=TASKS_DIR, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    samples = {}
    for task in TASKS.split(","):
        (path,) = output.rglob(f"samples_{task}_*.jsonl")
        rows = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
        samples[task] = [row["filtered_resps"] for row in rows]
    (results,) = output.rglob("results_*.json")
    return {"samples": samples, "results": json.loads(results.read_text())["results"]}


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-eval")
    reference = lm_eval("hf", f"pretrained={DEMO_DIR / 'main'},dtype=float32,max_length=2046", out / "hf",
                        "--device", "cpu", "--batch_size", "1")
    settings = Settings(demo=True, compute_type="float32", device="cpu", cache_dir=str(out / "cache"))
    with running_app(settings) as (url, _):
        app = lm_eval("local-completions", f"model={DEMO_MODEL},base_url={url}/v1/completions,"
                      "tokenizer_backend=remote,tokenized_requests=True", out / "app", "--batch_size", "4")
    return reference, app


def test_loglikelihoods_agree_with_transformers(both):
    reference, app = both
    for task in ("kjv_mc", "kjv_ppl"):
        ours, theirs = app["samples"][task], reference["samples"][task]
        assert len(ours) == len(theirs) > 0
        for doc, (mine, ref) in enumerate(zip(ours, theirs, strict=True)):
            for (ll, *greedy), (ll_ref, *greedy_ref) in zip(map(_pair, mine), map(_pair, ref), strict=True):
                # A document longer than one window is a sum over thousands of tokens (the hf side sums in
                # float32): it is held to the same 1e-4, per scored token.
                tolerance = 1e-4 * max(1, abs(float(ll_ref)) / 10) if task == "kjv_ppl" and doc == 2 else 1e-4
                assert float(ll) == pytest.approx(float(ll_ref), abs=tolerance), (task, doc)
                assert greedy == greedy_ref, (task, doc)  # is_greedy: every continuation token was the top one


def _pair(response) -> list:
    """A multiple-choice response is [loglikelihood, is_greedy]; a rolling one is the loglikelihood alone."""
    return response if isinstance(response, list) else [response]


def test_the_same_accuracy_and_the_same_greedy_generations(both):
    reference, app = both
    assert app["results"]["kjv_mc"]["acc,none"] == reference["results"]["kjv_mc"]["acc,none"]
    assert app["samples"]["kjv_gen"] == reference["samples"]["kjv_gen"]
    assert app["results"]["kjv_ppl"]["word_perplexity,none"] == pytest.approx(
        reference["results"]["kjv_ppl"]["word_perplexity,none"], rel=1e-5)
