"""The Benchmarks engine's speed on a LAMBADA-shaped workload, side by side in one run, and chat latency while it runs.

    python bench/benchmarks_speed.py [--docs 5153] [--rounds 1] [--batch-size 16] [--users 8] [--chat-rounds 6]
    python bench/benchmarks_speed.py --smoke        # a tiny model, 40 documents, one round: seconds

Model: bench_model.py's Pythia-160m-shaped random model (vocabulary 50304). Workload: a local lm-eval task,
``lambada_bench``, with lambada_openai's YAML shape (predict the last word: loglikelihood, acc and perplexity), whose
``--docs`` documents (default 5,153, LAMBADA's test set) are about 80 tokens of King James text each, written beside
the model on first use. Each evaluation runs in a fresh process, one at a time, timed in three parts: lm-eval's task
registry (built once per process, excluded), loading the checkpoint, and ``simple_evaluate`` (per-checkpoint wall
time = load + evaluate):

(a) ``engine``: the Benchmarks engine in-process: the app's service (``PythiaService.benchmark``) over its
    ``ServiceLM``, at the app's own settings for this machine (int8 on CPU); its load converts the safetensors to
    CTranslate2 first, as the app does for every checkpoint it has not served before;
(b) ``hf``: lm-eval's ``hf`` backend in-process, torch float32, the same safetensors;
(c) ``http``: lm-eval ``local-completions`` through the app's own ``/v1/completions`` (``python app.py --model-dir``,
    int8, model already loaded: load is 0), lm-eval's remote tokenizer.

(e) ``ceiling``: CTranslate2 alone, the work the engine gives it and nothing else: each document's tokens (context
    and last word tokenized apart, as lm-eval does) scored with the engine's own call (``generate_batch`` with
    ``return_logits_vocab``, groups of ``GROUP_TOKENS`` alike in length, on as many CT2 workers as the app runs,
    at its threads and compute type), every group queued at once; no lm-eval, no Python per token. No evaluation
    on this machine can be faster than this.

(d) Chat latency: ``--users`` plain httpx clients stream ``/v1/chat/completions`` at once (distinct prompts, greedy,
    ``--chat-tokens`` tokens), ``--chat-rounds`` times, first with the app idle, then while the same app evaluates
    the task through its Gradio API (``/benchmark``, every document); the time to first token's p50/p95 over every
    request of each condition. Only rounds that ended before the evaluation did count as "evaluating".

Each evaluation's CPU seconds are recorded beside its wall time (for ``http``, lm-eval's process and the app's
together): on a machine shared with other work, wall times stretch, CPU seconds much less.

Writes bench/results/benchmarks_speed.json (``--smoke``: a temporary folder; ``--out`` to choose). The machine's
load average at the start and end is recorded: numbers from a shared machine say so.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
TASK = "lambada_bench"
LAMBADA_DOCS = 5153
DOC_TOKENS = 80
RESULTS = ROOT / "bench" / "results" / "benchmarks_speed.json"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
BOOTSTRAP_ITERS = 1000  # what the Benchmarks engine uses for perplexity's stderr: the same work on every side
TASK_YAML = """# lambada_openai's shape (lm-eval 0.4.13's lm_eval/tasks/lambada/lambada_openai.yaml), local documents
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: loglikelihood
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
should_decontaminate: true
doc_to_decontamination_query: "{{{{text}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


# -- the workload ---------------------------------------------------------------------------------------------
def write_task(folder: Path, docs: int, tokenizer_file: Path) -> dict:
    """``docs`` documents of about DOC_TOKENS tokens each (consecutive words of the demo's held-out King James
    verses, from a different starting word each), as a local lm-eval task in ``folder``; returns their shape."""
    from tokenizers import Tokenizer

    from model_utils.store.demo_model import DEMO_DIR

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    verses = [json.loads(line)["text"] for line in (DEMO_DIR / "tasks" / "kjv_lambada.jsonl").read_text().splitlines()]
    words = " ".join(verses).split(" ")
    # byte-level BPE never merges across words: a text's tokens are the sum of its words' (each with its space)
    cost = [len(tokenizer.encode(w if i == 0 else " " + w).ids) for i, w in enumerate(words)]
    rows, lengths = [], []
    for d in range(docs):
        start = (d * 3) % (len(words) - 400)
        end, tokens = start, 0
        while tokens < DOC_TOKENS:
            tokens += cost[end] if end > start else len(tokenizer.encode(words[end]).ids)
            end += 1
        text = " ".join(words[start:end])
        rows.append(json.dumps({"text": text}))
        lengths.append(len(tokenizer.encode(text).ids))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{TASK}.jsonl"
    data.write_text("\n".join(rows) + "\n")
    (folder / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, data=data))
    return {"documents": docs, "tokens_mean": statistics.mean(lengths), "tokens_max": max(lengths)}


# -- one evaluation, in a fresh process ------------------------------------------------------------------------
def _metrics(task_results: dict) -> dict:
    return {k.split(",")[0]: v for k, v in task_results.items() if "," in k and isinstance(v, float)}


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process ``pid`` has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(kind: str, target: str, tasks_dir: str, batch_size: int, server_pid: str | None = None) -> dict:
    """Evaluate TASK once: (a) engine, (b) hf or (c) http; the registry, the load and the evaluation timed apart."""
    from lm_eval import evaluator

    from model_utils.service.task_index import task_manager  # lm-eval's TaskManager, its index kept on disk

    if kind == "ceiling":
        return ceiling(Path(target), Path(tasks_dir))
    if kind == "engine":
        import tempfile

        from model_utils.core.catalog import Catalog
        from model_utils.engine.configure import resolve
        from model_utils.engine.engine import Engine
        from model_utils.service import BenchmarkRequest, PythiaService
        from model_utils.settings import Settings
        from model_utils.store.disk import ModelStore
        from model_utils.store.local_dirs import describe_local_dir

        scratch = Path(tempfile.mkdtemp(prefix="bench-engine-"))  # its conversion and results store, removed
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        resolved = resolve(Settings(device="cpu"))  # what `python app.py` would run with on this machine
        catalog = Catalog()
        model = catalog.add(describe_local_dir(Path(target)))
        engine = Engine(resolved.device, catalog=catalog, store=ModelStore(scratch / "models"),
                        memory_budget_bytes=resolved.memory_budget_bytes, batching=resolved.batching)
        service = PythiaService(engine, catalog, model.name, results_dir=scratch, tasks_dir=tasks_dir)
        start = time.perf_counter()
        service.benchmarks.tasks.manager()
        registry = time.perf_counter() - start
        start = time.perf_counter()
        with engine.open(model, "main"):  # converted and loaded as for any checkpoint; kept for the job below
            pass
        load = time.perf_counter() - start
        request = service.parse(BenchmarkRequest, model=model.name, revisions=["main"], tasks=[TASK], limit=None)
        start, cpu = time.perf_counter(), time.process_time()
        last = list(service.benchmark(request))[-1]
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        (unit,) = last.units
        if unit.status != "ok":
            raise SystemExit(f"the engine's evaluation {unit.status}: {unit.error}")
        engine.close()
        return {"registry_s": registry, "load_s": load, "evaluate_s": seconds, "evaluate_cpu_s": cpu,
                "compute_type": resolved.device.compute_type, "threads": resolved.device.intra_threads,
                "metrics": {m.name: m.value for m in unit.metrics}}
    start = time.perf_counter()
    tasks = task_manager([tasks_dir])
    registry = time.perf_counter() - start
    start = time.perf_counter()
    if kind == "hf":
        import torch
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=target, dtype="float32", device="cpu", batch_size=batch_size)
        extra = {"dtype": "float32", "torch_threads": torch.get_num_threads()}
    else:
        from lm_eval.models.openai_completions import LocalCompletionsAPI

        model = target.split("/m/")[1].split("/")[0]
        lm = LocalCompletionsAPI(base_url=target, model=model, tokenizer_backend="remote", batch_size=batch_size)
        extra = {"compute_type": "the app's default (int8 on CPU)"}
    load = time.perf_counter() - start
    server = server_cpu(int(server_pid)) if server_pid else 0.0
    from model_utils.service.lm_eval_server import lm_eval_for_a_server

    lm_eval_for_a_server()  # as the app runs lm-eval: every way is timed alike
    start, cpu = time.perf_counter(), time.process_time()
    out = evaluator.simple_evaluate(model=lm, tasks=[TASK], task_manager=tasks, log_samples=False,
                                    bootstrap_iters=BOOTSTRAP_ITERS)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if server_pid:  # the scoring is the app's: its CPU time counts too
        extra["server_cpu_s"] = server_cpu(int(server_pid)) - server
        cpu += extra["server_cpu_s"]
    return {"registry_s": registry, "load_s": load, "evaluate_s": seconds, "evaluate_cpu_s": cpu, **extra,
            "metrics": _metrics(out["results"][TASK])}


def ceiling(ct2_dir: Path, tasks_dir: Path) -> dict:
    """(e): the task's documents scored by CTranslate2 alone, as the engine calls it (see the module's docstring)."""
    import ctranslate2
    from tokenizers import Tokenizer

    from model_utils.engine.configure import resolve
    from model_utils.engine.loaded_model import GROUP_TOKENS
    from model_utils.settings import Settings

    resolved = resolve(Settings(device="cpu"))  # what `python app.py` would run with on this machine
    tokenizer = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    vocabulary = json.loads((ct2_dir / "vocabulary.json").read_text())
    prompts = []
    for line in (tasks_dir / f"{TASK}.jsonl").read_text().splitlines():
        context, word = json.loads(line)["text"].rsplit(" ", 1)
        ids = tokenizer.encode(context).ids + tokenizer.encode(" " + word).ids
        prompts.append([vocabulary[i] for i in ids[:-1]])  # the last token is only read, never scored after
    prompts.sort(key=len, reverse=True)
    groups, group = [], []
    for prompt in prompts:  # longest first: a group's first prompt is its longest
        if group and (len(group) + 1) * len(group[0]) > GROUP_TOKENS:
            groups.append(group)
            group = []
        group.append(prompt)
    groups.append(group)
    start = time.perf_counter()
    generator = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type=resolved.device.compute_type,
                                      intra_threads=resolved.device.intra_threads,
                                      inter_threads=resolved.batching.workers)
    load = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    pending = [generator.generate_batch(g, max_length=1, include_prompt_in_result=False, return_logits_vocab=True,
                                        asynchronous=True) for g in groups]
    scored = sum(bool(r.result().logits[0]) for rows in pending for r in rows)  # every result fetched
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert scored == len(prompts), "each document's last position scored"
    return {"load_s": load, "evaluate_s": seconds, "evaluate_cpu_s": cpu, "groups": len(groups),
            "tokens": sum(len(p) + 1 for p in prompts), "compute_type": resolved.device.compute_type,
            "threads": resolved.device.intra_threads, "workers": resolved.batching.workers, "metrics": {}}


def run_worker(kind: str, target: str, tasks_dir: Path, batch_size: int, server_pid: int | None = None) -> dict:
    extra = ["--server-pid", str(server_pid)] if server_pid else []
    done = subprocess.run([sys.executable, __file__, "--worker", kind, target, str(tasks_dir),
                           "--batch-size", str(batch_size), *extra], cwd=ROOT, env={**os.environ, **OFFLINE},
                          capture_output=True, text=True, timeout=7200)
    if done.returncode != 0:
        raise SystemExit(f"{kind} evaluation failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["per_checkpoint_s"] = row["load_s"] + row["evaluate_s"]
    return row


# -- chat users ------------------------------------------------------------------------------------------------
def chat_user(url: str, prompt: str, tokens: int, release: threading.Barrier, record: dict) -> None:
    import httpx

    from model_utils.core.sse import event_lines

    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens, "temperature": 0,
            "stream": True}
    with httpx.Client(timeout=600) as http:
        release.wait()
        start = time.perf_counter()
        first = None
        with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            for line in event_lines(response.iter_text()):
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content") and first is None:
                    first = time.perf_counter() - start
        record.update(ttft=first, total=time.perf_counter() - start)


def chat_rounds(url: str, users: int, tokens: int, rounds: int, still_evaluating=None) -> dict:
    """``rounds`` times ``users`` chats at once; the first-token times of every request (of the rounds that ended
    while ``still_evaluating()`` held, when given)."""
    from at_once import users_at_once

    ttfts, counted, walls = [], 0, []
    for r in range(rounds):
        prompts = [f"Visitor {i} asks, in round {r}: what happened on day {i + 3 * r} of the journey?"
                   for i in range(users)]
        records, wall = users_at_once(chat_user, [(url, p, tokens) for p in prompts])
        if still_evaluating is not None and not still_evaluating():
            break
        missing = [rec for rec in records if rec.get("ttft") is None]
        if missing:
            raise SystemExit(f"{len(missing)} chat users got no text")
        ttfts += [rec["ttft"] for rec in records]
        walls.append(wall)
        counted += 1
    ttfts.sort()
    return {"rounds": counted, "requests": len(ttfts), "users": users, "tokens": tokens,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": ttfts[max(0, round(0.95 * len(ttfts)) - 1)] if ttfts else None,
            "ttft_max_s": ttfts[-1] if ttfts else None, "round_wall_s": walls}


# -- the app ---------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """``python app.py --model-dir MODEL --tasks-dir TASKS`` on a free port, its log read line by line."""

    def __init__(self, model_dir: Path, tasks_dir: Path, cache: Path, rows: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--model-dir", str(model_dir), "--port", str(self.port), "--cache-dir",
             str(cache), "--tasks-dir", str(tasks_dir), "--max-client-rows", str(rows), "--log-level", "info"],
            cwd=ROOT, env={**os.environ, **OFFLINE}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for_line(self, pattern: str, after: int, timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: any(re.search(pattern, line) for line in self.lines[after:])
                                         or self.process.poll() is not None, timeout):
                raise SystemExit(f"the app never logged {pattern!r}:\n{''.join(self.lines[-20:])}")
        if self.process.poll() is not None:
            raise SystemExit(f"the app ended:\n{''.join(self.lines[-30:])}")

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + 600
        while True:
            try:  # the first request loads the model: the measurements below find it loaded
                ready = httpx.post(self.url + "/v1/completions", json={"prompt": "warm up", "max_tokens": 1},
                                   timeout=600)
                if ready.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the app did not start:\n" + "".join(self.lines[-30:]))
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def chat_with_and_without_evaluation(app: App, model: str, args) -> dict:
    from gradio_client import Client

    idle = chat_rounds(app.url, args.users, args.chat_tokens, args.chat_rounds)
    client = Client(app.url + "/", verbose=False)
    # lm-eval's task registry and the task's dataset, built once by a one-document evaluation
    client.predict(model=model, revisions=["main"], tasks=[TASK], limit=1, num_fewshot=0, api_name="/benchmark")
    mark = len(app.lines)
    job = client.submit(model=model, revisions=["main"], tasks=[TASK], limit=None, num_fewshot=0,
                        api_name="/benchmark")
    app.wait_for_line(rf"benchmark {re.escape(model)} main {TASK}: evaluating \(all documents", mark, 600)
    started = time.perf_counter()
    evaluating = chat_rounds(app.url, args.users, args.chat_tokens, args.chat_rounds, still_evaluating=lambda: not (
        job.done() or any(re.search(rf"benchmark {re.escape(model)} main {TASK}: \{{", line)
                          for line in app.lines[mark:])))
    finished = job.done()  # an unfinished evaluation ends with the app, stopped next
    evaluating["evaluation_finished_first"] = finished
    evaluating["measured_for_s"] = time.perf_counter() - started
    return {"idle": idle, "evaluating": evaluating}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=LAMBADA_DOCS, help="documents of the task (LAMBADA has 5,153)")
    parser.add_argument("--rounds", type=int, default=1, help="evaluations per way (a, b, c), in turn")
    parser.add_argument("--batch-size", type=int, default=16, help="lm-eval's batch size for hf and local-completions")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--chat-tokens", type=int, default=16)
    parser.add_argument("--chat-rounds", type=int, default=6)
    parser.add_argument("--skip", nargs="*", default=[], choices=["engine", "hf", "http", "chat", "ceiling"],
                        help="leave parts out")
    parser.add_argument("--out", type=Path, help="default: bench/results/benchmarks_speed.json (--smoke: a "
                                                 "temporary folder)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: the tiny-shaped model, 40 documents, one round of each, 2 chat rounds")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "TARGET", "TASKS"), help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.batch_size, args.server_pid)))
        return 0

    from bench_model import CACHE, bench_hf_dir, bench_model_dir, results_path, smoke_dir

    if args.smoke:
        args.docs, args.rounds, args.chat_rounds, args.chat_tokens = 40, 1, 2, 4
    out = results_path(args.out, RESULTS, args.smoke)
    load_start = os.getloadavg()
    ct2, hf = bench_model_dir(args.smoke), bench_hf_dir(args.smoke)
    scratch = (smoke_dir() if args.smoke else CACHE) / "benchmarks-speed"
    tasks_dir = scratch / f"tasks-{args.docs}"
    workload = write_task(tasks_dir, args.docs, ct2 / "tokenizer.json")
    print(f"{TASK}: {workload['documents']:,} documents of {workload['tokens_mean']:.1f} tokens on average",
          flush=True)
    ways = {}
    for kind in ("engine", "hf"):
        if kind not in args.skip:
            ways[kind] = []
    if "ceiling" not in args.skip:
        row = run_worker("ceiling", str(ct2), tasks_dir, args.batch_size)
        ways["ceiling"] = [row]
        print(f"ceiling: CT2 alone scored {row['tokens']:,} tokens in {row['evaluate_s']:.1f} s "
              f"({row['tokens'] / row['evaluate_s']:,.0f} tokens/s)", flush=True)
    app = None
    try:
        for round_ in range(args.rounds):
            for kind in (("engine", "hf") if round_ % 2 == 0 else ("hf", "engine")):
                if kind in ways:
                    row = run_worker(kind, str(hf), tasks_dir, args.batch_size)  # the same safetensors
                    ways[kind].append(row)
                    print(f"round {round_ + 1}: {kind} load {row['load_s']:.1f} s + evaluate {row['evaluate_s']:.1f} s",
                          flush=True)
        chat = None
        if "http" not in args.skip or "chat" not in args.skip:
            app_cache = scratch / "app-cache"
            shutil.rmtree(app_cache, ignore_errors=True)  # no stored result: the evaluation in (d) really runs
            app = App(ct2, tasks_dir, app_cache, max(8, args.batch_size))
            app.wait_ready()
            if "http" not in args.skip:
                ways["http"] = []
                for round_ in range(args.rounds):
                    row = run_worker("http", f"{app.url}/m/{ct2.name}/v1/completions", tasks_dir, args.batch_size,
                                     app.process.pid)
                    ways["http"].append(row)
                    print(f"round {round_ + 1}: http evaluate {row['evaluate_s']:.1f} s", flush=True)
            if "chat" not in args.skip:
                chat = chat_with_and_without_evaluation(app, ct2.name, args)
                for condition, row in chat.items():
                    print(f"chat, {condition}: first token p50 {row['ttft_p50_s']} s, p95 {row['ttft_p95_s']} s "
                          f"over {row['requests']} requests", flush=True)
    finally:
        if app is not None:
            app.stop()
    median = {k: statistics.median(r["per_checkpoint_s"] for r in rows) for k, rows in ways.items() if rows}
    cpu = {k: statistics.median(r["evaluate_cpu_s"] for r in rows) for k, rows in ways.items() if rows}
    summary = {
        "checkpoint": f"{ct2.name} ({'tiny' if args.smoke else 'Pythia-160m'} shape, vocabulary 50304, random weights)",
        "workload": {"task": TASK, **workload, "shape": "lambada_openai's YAML (loglikelihood of the last word; acc, "
                                                        "perplexity)"},
        "cpus": len(os.sched_getaffinity(0)), "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "batch_size": args.batch_size, "rounds": args.rounds,
        "ways": {"engine": "(a) the Benchmarks engine in-process (PythiaService.benchmark over ServiceLM)",
                 "hf": "(b) lm-eval's hf backend in-process, torch float32",
                 "http": "(c) lm-eval local-completions through the app's /v1/completions",
                 "ceiling": "(e) CTranslate2 alone: the engine's scoring calls on the same tokens, nothing else"},
        "runs": ways, "median_per_checkpoint_s": median,
        "ratios": {f"{k}_over_engine": median[k] / median["engine"] for k in median if "engine" in median
                   and k != "engine"},
        "median_evaluate_cpu_s": cpu,
        "projected_lambada_s": {k: v * LAMBADA_DOCS / args.docs for k, v in median.items()},
        "chat": chat,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    for kind, seconds in median.items():
        print(f"{kind}: {seconds:.1f} s per checkpoint ({args.docs:,} documents; evaluating: {cpu[kind]:.0f} CPU s)")
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
