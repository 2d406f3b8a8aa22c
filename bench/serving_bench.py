"""Serving benchmark: single stream and concurrent users, batching vs one at a time.

All in one run on one machine, with a Pythia-160m-shaped random model (bench_model.py):
* single stream, greedy, 32-token prompt, 128 new tokens: raw CT2 generate_tokens, the
  engine's own stream, the live app through gradio_client, transformers (torch fp32 and
  dynamic int8) — tokens/s and time to first token;
* 1, 4, 8, 16, 32 simulated users (one gradio_client.Client each) against the live app
  (python app.py in a subprocess), batching vs --max-batch-size 1: aggregate and per-user
  tokens/s, p50/p95 TTFT, errors, server peak RSS, and whether every reply equals the
  non-streamed greedy reply;
* CT2_FORCE_CPU_ISA and thread settings for raw CT2.

Usage: python bench/serving_bench.py [--users 1 4 8 16 32] [--out bench/results/serving.json] [--smoke]
Writes JSON and a PNG plot next to it (the plot needs bench/requirements.txt); BENCHMARKS.md quotes them.
``--smoke``: bench_model.py's tiny-shaped model, 8 new tokens, users 1 and 2, the batching server only, one ISA
run, results in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
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

from at_once import users_at_once  # noqa: E402
from bench_model import bench_hf_dir, bench_model_dir, results_path  # noqa: E402
from plotting import pyplot  # noqa: E402

NEW_TOKENS = 128
PROMPT_TOKENS = 32
WORDS = ("the model reads a long document about rivers mountains cities and the history of "
         "science before it writes").split()


def prompt_text(i: int, tokenizer) -> str:
    """A prompt of exactly PROMPT_TOKENS tokens, different for every user."""
    words = [WORDS[(i + k) % len(WORDS)] for k in range(64)]
    ids = tokenizer.encode(" ".join(words)).ids[:PROMPT_TOKENS]
    return tokenizer.decode(ids)


def raw_ct2(model_dir: Path, prompt_ids, threads: int, runs: int = 3) -> dict:
    import ctranslate2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    gen = ctranslate2.Generator(str(model_dir), device="cpu", compute_type="int8", intra_threads=threads)
    tokens = [tok.id_to_token(i) for i in prompt_ids]
    best = None
    for _ in range(runs):
        start = time.perf_counter()
        first, n = None, 0
        for _step in gen.generate_tokens(tokens, max_length=NEW_TOKENS, sampling_topk=1, end_token=[]):
            n += 1
            first = first or time.perf_counter() - start
        total = time.perf_counter() - start
        row = {"tok_s": round((n - 1) / (total - first), 1), "ttft_ms": round(first * 1000, 1), "tokens": n}
        best = row if best is None or row["tok_s"] > best["tok_s"] else best
    gen.unload_model()
    del gen
    return best


def engine_stream(model_dir: Path, prompt: str, threads: int) -> dict:
    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.engine import Engine
    from model_utils.engine.generation import generate
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir

    catalog = Catalog()
    catalog.add(describe_local_dir(model_dir, name="bench"))
    engine = Engine(resolve_device("cpu", "int8", threads), catalog=catalog, store=ModelStore(model_dir.parent))
    params = SamplingParams(greedy=True, max_new_tokens=NEW_TOKENS, repetition_penalty=1.0)
    try:
        with engine.open("bench") as model:
            runs = [generate(model, prompt, params) for _ in range(3)]
    finally:
        engine.close()
    best = max(runs, key=lambda r: r.tokens_per_second)
    return {"tok_s": round(best.tokens_per_second, 1), "ttft_ms": round(best.time_to_first_token * 1000, 1),
            "tokens": best.num_tokens}


def transformers_ref(hf_dir: Path, prompt_ids) -> dict:
    import torch
    from transformers import GPTNeoXForCausalLM

    torch.set_num_threads(os.cpu_count())
    out = {}
    model = GPTNeoXForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    variants = {"fp32": model}
    try:
        variants["dynamic int8"] = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    except Exception as exc:  # report, keep going
        out["dynamic int8"] = {"error": str(exc)[:200]}
    ids = torch.tensor([list(prompt_ids)])
    for name, m in variants.items():
        best = None
        for _ in range(2):
            with torch.inference_mode():
                start = time.perf_counter()
                o = m(ids, use_cache=True)
                past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
                first = time.perf_counter() - start
                for _ in range(NEW_TOKENS - 1):
                    o = m(nxt, past_key_values=past, use_cache=True)
                    past, nxt = o.past_key_values, o.logits[:, -1].argmax(-1, keepdim=True)
                total = time.perf_counter() - start
            row = {"tok_s": round((NEW_TOKENS - 1) / (total - first), 1), "ttft_ms": round(first * 1000, 1)}
            best = row if best is None or row["tok_s"] > best["tok_s"] else best
        out[name] = best
    return out


def free_port() -> int:
    """A loopback port the OS has just given out (nothing listens on it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """python app.py --model-dir ... in a subprocess (the real server, its own memory)."""

    def __init__(self, model_dir: Path, port: int, extra: list[str]):
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "app.py", "--model-dir", str(model_dir), "--port", str(port),
                                      "--device", "cpu", "--compute-type", "int8", *extra], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        for _ in range(300):
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("server did not start")

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def one_user(client, prompt: str, barrier, record: dict):
    barrier.wait()
    start = time.perf_counter()
    first = None
    try:
        job = client.submit(prompt=prompt, max_new_tokens=NEW_TOKENS, top_k=1, repetition_penalty=1.0,
                            api_name="/complete")
        text = ""
        for text in job:
            if first is None and text:
                first = time.perf_counter() - start
        record.update(text=job.outputs()[-1] if job.outputs() else text, ttft=first,
                      total=time.perf_counter() - start, start=start)
    except Exception as exc:
        record.update(error=f"{type(exc).__name__}: {exc}"[:200])


def concurrency(server: Server, prompts: list[str], expected: list[str], n: int) -> dict:
    from gradio_client import Client

    clients = [Client(server.url, verbose=False) for _ in range(n)]
    records, wall = users_at_once(one_user, [(clients[i], prompts[i]) for i in range(n)])
    ok = [r for r in records if "error" not in r]
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    correct = sum(1 for i, r in enumerate(records) if r.get("text") == expected[i])
    per_user = [NEW_TOKENS / (r["total"] - r["ttft"]) for r in ok if r["ttft"] and r["total"] > r["ttft"]]
    return {"users": n, "errors": n - len(ok), "correct": correct, "wall_s": round(wall, 2),
            "aggregate_tok_s": round(NEW_TOKENS * len(ok) / wall, 1),
            "per_user_tok_s": round(statistics.median(per_user), 1) if per_user else 0,
            "ttft_p50_s": round(statistics.median(ttfts), 3) if ttfts else None,
            "ttft_p95_s": round(ttfts[max(0, int(round(0.95 * len(ttfts))) - 1)], 3) if ttfts else None,
            "error_samples": [r["error"] for r in records if "error" in r][:3]}


def isa_and_threads(model_dir: Path, prompt_ids, isas=(None, "AVX2", "AVX512"), thread_counts=(1, 2)) -> list[dict]:
    """Raw CT2 single stream in fresh processes: the ISA and thread count are fixed at start-up."""
    rows = []
    for isa in isas:
        for threads in thread_counts:
            env = {**os.environ}
            env.pop("CT2_FORCE_CPU_ISA", None)
            if isa:
                env["CT2_FORCE_CPU_ISA"] = isa
            code = ("import sys, json; sys.path.insert(0, %r); import serving_bench; "
                    "from pathlib import Path; serving_bench.NEW_TOKENS = %d;"
                    "print(json.dumps(serving_bench.raw_ct2(Path(%r), %r, %d)))") % (
                str(ROOT / "bench"), NEW_TOKENS, str(model_dir), list(prompt_ids), threads)
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
            row = (json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0
                   else {"error": out.stderr[-300:]})
            rows.append({"isa": isa or "default", "threads": threads, **row})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def expected_replies(model_dir: Path, prompts: list[str]) -> list[str]:
    """Each prompt's greedy reply without streaming (generate loops over the stream; batched)."""
    from concurrent.futures import ThreadPoolExecutor

    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.batching import BatchingConfig
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.engine import Engine
    from model_utils.engine.generation import generate
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir

    catalog = Catalog()
    catalog.add(describe_local_dir(model_dir, name="bench"))
    engine = Engine(resolve_device("cpu", "int8"), catalog=catalog, store=ModelStore(model_dir.parent),
                    batching=BatchingConfig(max_batch_size=1))
    params = SamplingParams(greedy=True, max_new_tokens=NEW_TOKENS, repetition_penalty=1.0)
    try:
        with engine.open("bench") as model:
            with ThreadPoolExecutor(1) as pool:
                return list(pool.map(lambda p: generate(model, p, params).text, prompts))
    finally:
        engine.close()


def plot(results: dict, path: Path) -> None:
    plt = pyplot(str(path))
    if plt is None:
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rows in results["concurrency"].items():
        users = [r["users"] for r in rows]
        a.plot(users, [r["aggregate_tok_s"] for r in rows], marker="o", label=name)
        b.plot(users, [r["ttft_p95_s"] for r in rows], marker="o", label=name)
    a.set(title="Aggregate throughput", xlabel="concurrent users", ylabel="tokens / s")
    b.set(title="p95 time to first token", xlabel="concurrent users", ylabel="seconds", yscale="log")
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Pythia-160m-shaped model, CT2 int8, 2 vCPU, 128 new tokens per user")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", nargs="+", type=int, default=[1, 4, 8, 16, 32])
    parser.add_argument("--out", type=Path, help="default: bench/results/serving.json (--smoke: a temporary folder)")
    parser.add_argument("--skip-isa", action="store_true")
    parser.add_argument("--batch-flags", default="", help="extra app flags for the batching run")
    parser.add_argument("--only-batching", action="store_true", help="skip the one-at-a-time and reference runs")
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, 8 tokens, users 1 and 2, "
                        "the batching server only, one ISA run, results in a temporary folder")
    args = parser.parse_args()
    global NEW_TOKENS
    if args.smoke:
        NEW_TOKENS, args.users = 8, [1, 2]
    from tokenizers import Tokenizer

    model_dir = bench_model_dir(args.smoke)
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    prompts = [prompt_text(i, tok) for i in range(max(args.users))]
    prompt_ids = tok.encode(prompts[0]).ids
    threads = os.cpu_count()
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "single_stream": {}, "concurrency": {}}
    results["single_stream"]["raw CT2 generate_tokens"] = raw_ct2(model_dir, prompt_ids, threads)
    print(json.dumps(results["single_stream"]), flush=True)
    results["single_stream"]["engine stream"] = engine_stream(model_dir, prompts[0], threads)
    print(json.dumps(results["single_stream"]), flush=True)
    expected = expected_replies(model_dir, prompts)
    configs = [("batching (max batch 16)" + (f" {args.batch_flags}" if args.batch_flags else ""),
                args.batch_flags.split())]
    if not (args.only_batching or args.smoke):
        # What a plain Gradio LLM demo does: one request decoding at a time, on all cores.
        configs.append(("one at a time", ["--max-batch-size", "1", "--workers", "1"]))
    for name, extra in configs:
        server = Server(model_dir, free_port(), extra)
        try:
            from gradio_client import Client

            c = Client(server.url, verbose=False)
            c.predict(prompt=prompts[0], max_new_tokens=4, api_name="/complete")  # load the model
            if name.startswith("batching"):
                single = []
                for _ in range(3):
                    r = {}
                    one_user(c, prompts[0], threading.Barrier(1), r)
                    single.append({"tok_s": round(NEW_TOKENS / (r["total"] - r["ttft"]), 1),
                                   "ttft_ms": round(r["ttft"] * 1000, 1), "correct": r["text"] == expected[0]})
                results["single_stream"]["app via gradio_client"] = max(single, key=lambda x: x["tok_s"])
                print(json.dumps(results["single_stream"]), flush=True)
            rows = []
            for n in args.users:
                rows.append(concurrency(server, prompts, expected, n))
                print(name, json.dumps(rows[-1]), flush=True)
            results["concurrency"][name] = rows
            results.setdefault("server_peak_rss_mib", {})[name] = round(server.peak_rss_mib(), 1)
        finally:
            server.stop()
    if not args.only_batching:
        results["single_stream"]["transformers"] = transformers_ref(bench_hf_dir(args.smoke), prompt_ids)
    print(json.dumps(results["single_stream"]), flush=True)
    if args.smoke:
        results["isa_threads"] = isa_and_threads(model_dir, prompt_ids, isas=(None,), thread_counts=(1,))
    elif not args.skip_isa:
        results["isa_threads"] = isa_and_threads(model_dir, prompt_ids)
    out = results_path(args.out, ROOT / "bench" / "results" / "serving.json", args.smoke)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("wrote", out)
    plot(results, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
