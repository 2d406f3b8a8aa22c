"""lm-eval through the app against lm-eval's own hf model, side by side on one CPU, the same checkpoint and tasks.

    python bench/lm_eval_bench.py [--rounds 3] [--batch-size 8] [--smoke]

The checkpoint is bench_model.py's Pythia-160m-shaped random model (vocabulary 50304, so every score computes a
full-size softmax). The app serves it as `python app.py --model-dir ...` at its default compute type (int8 on CPU);
lm-eval reaches it with `local-completions` and the remote tokenizer. The reference is lm-eval's `hf` model running
the same safetensors in float32 in lm-eval's own process. Tasks: the three that the tests ship
(tests/lm_eval_tasks: multiple choice, rolling perplexity, greedy generation).

Each evaluation runs in a fresh process and is timed from just before `simple_evaluate` to its end (the models are
loaded first: the app serves many evaluations with one load, hf loads from a warm page cache in about a second).
Rounds alternate app and hf so both see the same machine. Writes bench/results/lm_eval.json.
``--smoke``: bench_model.py's tiny-shaped model, one round, the generation task only, results in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = ROOT / "tests" / "lm_eval_tasks"
TASKS = ["kjv_mc", "kjv_ppl", "kjv_gen"]
RESULTS = ROOT / "bench" / "results" / "lm_eval.json"
sys.path.insert(0, str(ROOT))  # model_utils: lm-eval's TaskManager with its index kept on disk
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def worker(kind: str, target: str, batch_size: int, tasks_to_run: list[str]) -> None:
    """One evaluation in this process; prints {"seconds", "results"} as its last line."""
    from lm_eval import evaluator

    from model_utils.service.task_index import task_manager  # lm-eval's TaskManager, its index kept on disk

    if kind == "hf":
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=target, dtype="float32", device="cpu", batch_size=batch_size, max_length=2046)
    else:
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        model = target.split("/m/")[1].split("/")[0]  # the address names the model (the remote tokenizer's too)
        lm = LocalCompletionsAPI(base_url=target, model=model, tokenizer_backend="remote", batch_size=batch_size)
    tasks = task_manager([str(TASKS_DIR)])
    from model_utils.service.lm_eval_server import lm_eval_for_a_server

    lm_eval_for_a_server()  # as the app runs lm-eval: every way is timed alike
    start = time.perf_counter()
    out = evaluator.simple_evaluate(model=lm, tasks=tasks_to_run, task_manager=tasks, log_samples=False,
                                    bootstrap_iters=0)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "results": out["results"]}))


def run_worker(kind: str, target: str, batch_size: int, tasks_to_run: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--worker", kind, target, "--batch-size", str(batch_size),
                           "--tasks", *tasks_to_run],
                          cwd=ROOT, env={**os.environ, **OFFLINE}, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{kind} evaluation failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--out", type=Path, help="default: bench/results/lm_eval.json (--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: a tiny model, one round, kjv_gen only, results in a temporary folder")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.batch_size, args.tasks)
        return 0

    sys.path.insert(0, str(ROOT / "bench"))
    import httpx
    from bench_model import CACHE, bench_hf_dir, results_path, smoke_dir

    if args.smoke:
        args.rounds, args.tasks = 1, ["kjv_gen"]
    out = results_path(args.out, RESULTS, args.smoke)
    checkpoint = bench_hf_dir(args.smoke)  # built beside its CT2 conversion on first use
    port = free_port()
    cache = (smoke_dir() if args.smoke else CACHE) / "lm-eval-app-cache"
    app = subprocess.Popen([sys.executable, "app.py", "--model-dir", str(checkpoint), "--port", str(port),
                            "--cache-dir", str(cache), "--max-client-rows", str(max(8, args.batch_size))],
                           cwd=ROOT, env={**os.environ, **OFFLINE}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                # the first request converts and loads the model: the evaluations below find it loaded
                ready = httpx.post(url + "/v1/completions", json={"prompt": "warm up", "max_tokens": 1}, timeout=300)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if app.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start: {app.stderr.read().decode()[-2000:]}")
            time.sleep(0.5)
        rows = {"app": [], "hf": []}
        for round_ in range(args.rounds):
            for kind in (("app", "hf") if round_ % 2 == 0 else ("hf", "app")):
                target = f"{url}/m/{checkpoint.name}/v1/completions" if kind == "app" else str(checkpoint)
                result = run_worker(kind, target, args.batch_size, args.tasks)
                rows[kind].append(result)
                print(f"round {round_ + 1}: {kind} {result['seconds']:.1f} s", flush=True)
    finally:
        app.terminate()
        app.wait(timeout=30)
    median = {kind: statistics.median(r["seconds"] for r in runs) for kind, runs in rows.items()}
    summary = {
        "checkpoint": f"{checkpoint.name} ({'tiny' if args.smoke else 'Pythia-160m'} shape, vocabulary 50304, random "
                      "weights)",
        "tasks": args.tasks, "batch_size": args.batch_size, "rounds": args.rounds,
        "app": {"compute_type": "default (int8 on CPU)", "seconds": [r["seconds"] for r in rows["app"]]},
        "hf": {"dtype": "float32", "seconds": [r["seconds"] for r in rows["hf"]]},
        "median_seconds": median, "ratio_app_over_hf": median["app"] / median["hf"],
        "metrics": {kind: runs[-1]["results"] for kind, runs in rows.items()},
    }
    out.write_text(json.dumps(summary, indent=1))
    print(f"median app {median['app']:.1f} s, hf {median['hf']:.1f} s, ratio {summary['ratio_app_over_hf']:.2f}")
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
