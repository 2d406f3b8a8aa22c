"""Streaming through the OpenAI route against the Gradio API and raw CTranslate2, at 1, 8 and 16 users, one run.

    python bench/openai_bench.py [--users 1 8 16] [--rounds 2] [--tokens 128] [--out PATH] [--smoke]

The model is bench_model.py's Pythia-160m-shaped random model (int8 on CPU). Each user streams one greedy reply
of ``--tokens`` tokens after a 32-token prompt, all users released at the same instant:
* ``openai``: `python app.py --model-dir ...` in a subprocess, users as light httpx clients streaming
  `POST /v1/completions` (server-sent events), one thread each;
* ``gradio``: the same server, users as gradio_client clients streaming `/complete`;
* ``raw CT2``: CTranslate2's own `generate_batch` on the same model in a fresh process, every user a row of one
  batch (what batching can at best achieve), with the first step timed by its callback.

Scaling is each mode's aggregate tokens/s at N users over its own at 1 user; the target is the OpenAI route's
8-user scaling at least 0.8 of raw CT2's batch-8 scaling. Time to first token is from the common release to the
first text. Rounds run every mode once each, in turn. Writes bench/results/openai_stream.json.
``--smoke``: bench_model.py's tiny-shaped model, users 1 and 2, one round, 8 tokens, results in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # model_utils
sys.path.insert(0, str(ROOT / "bench"))

from at_once import users_at_once  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "openai_stream.json"
PROMPT_TOKENS = 32
WORDS = ("the model reads a long document about rivers mountains cities and the history of science before it "
         "writes").split()


def prompt_ids(i: int, tokenizer) -> list[int]:
    """A different prompt of exactly PROMPT_TOKENS tokens for every user."""
    words = [WORDS[(i + k) % len(WORDS)] for k in range(64)]
    return tokenizer.encode(" ".join(words)).ids[:PROMPT_TOKENS]


def raw_ct2(model_dir: str, prompts: list[list[int]], tokens: int) -> dict:
    """One generate_batch of every prompt (in a fresh process: CT2's threads as the app would size them)."""
    import ctranslate2
    from tokenizers import Tokenizer

    from model_utils.engine.devices import usable_cpus

    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    generator = ctranslate2.Generator(model_dir, device="cpu", compute_type="int8", intra_threads=usable_cpus())
    batch = [[tokenizer.id_to_token(i) for i in p] for p in prompts]
    best = None
    for _ in range(2):
        first: list[float] = []
        start = time.perf_counter()

        def callback(step, first=first, start=start):
            if not first:
                first.append(time.perf_counter() - start)
            return False

        generator.generate_batch(batch, max_length=tokens, min_length=tokens, sampling_topk=1, end_token=[],
                                 include_prompt_in_result=False, callback=callback)
        wall = time.perf_counter() - start
        row = {"wall_s": wall, "aggregate_tok_s": len(prompts) * tokens / wall, "ttft_p50_s": first[0],
               "ttft_p95_s": first[0]}
        best = row if best is None or row["aggregate_tok_s"] > best["aggregate_tok_s"] else best
    del generator
    return best


def openai_user(url: str, ids: list[int], tokens: int, release: threading.Barrier, record: dict) -> None:
    import httpx

    from model_utils.core.sse import event_lines

    body = {"prompt": ids, "max_tokens": tokens, "temperature": 0, "stream": True, "stop": None}
    with httpx.Client(timeout=600) as http:
        release.wait()
        start = time.perf_counter()
        count, first = 0, None
        with http.stream("POST", url + "/v1/completions", json=body) as response:
            for line in event_lines(response.iter_text()):
                if not line.startswith("data: {"):
                    continue
                text = json.loads(line[6:])["choices"][0]["text"]
                if text and first is None:
                    first = time.perf_counter() - start
                count += 1
        record.update(ttft=first, total=time.perf_counter() - start, start=start)


def gradio_user(url: str, prompt: str, tokens: int, release: threading.Barrier, record: dict) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    release.wait()
    start = time.perf_counter()
    first = None
    job = client.submit(prompt=prompt, max_new_tokens=tokens, temperature=0, repetition_penalty=1.0,
                        api_name="/complete")
    for text in job:
        if text and first is None:
            first = time.perf_counter() - start
    record.update(ttft=first, total=time.perf_counter() - start, start=start)


def users_together(user, n: int, tokens: int, args_of) -> dict:
    records, wall = users_at_once(user, [(*args_of(i), tokens) for i in range(n)])
    ttfts = sorted(r["ttft"] for r in records)
    return {"wall_s": wall, "aggregate_tok_s": n * tokens / wall, "ttft_p50_s": statistics.median(ttfts),
            "ttft_p95_s": ttfts[max(0, round(0.95 * n) - 1)]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--out", type=Path,
                        help="default: bench/results/openai_stream.json (--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: a tiny model, users 1 and 2, one round, 8 tokens, results in a temporary folder")
    parser.add_argument("--raw", nargs=2, metavar=("MODEL_DIR", "USERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from bench_model import bench_model_dir, results_path
    from tokenizers import Tokenizer

    if args.raw:
        n = int(args.raw[1])
        tokenizer = Tokenizer.from_file(str(Path(args.raw[0]) / "tokenizer.json"))
        print(json.dumps(raw_ct2(args.raw[0], [prompt_ids(i, tokenizer) for i in range(n)], args.tokens)))
        return 0
    if args.smoke:
        args.users, args.rounds, args.tokens = [1, 2], 1, 8
    out = results_path(args.out, RESULTS, args.smoke)
    model_dir = bench_model_dir(args.smoke)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    import httpx

    sys.path.insert(0, str(ROOT / "tests"))
    from live_app import free_port

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([sys.executable, "app.py", "--model-dir", str(model_dir), "--port", str(port),
                               "--max-client-rows", str(max(args.users))], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    rows: dict[str, dict[int, list[dict]]] = {"openai": {}, "gradio": {}, "raw CT2": {}}
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.post(url + "/v1/completions", json={"prompt": "warm", "max_tokens": 2},
                              timeout=120).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the app did not start")
            time.sleep(0.5)
        for round_ in range(args.rounds):
            for n in args.users:
                prompts = [prompt_ids(i, tokenizer) for i in range(n)]
                texts = [tokenizer.decode(p) for p in prompts]
                rows["openai"].setdefault(n, []).append(
                    users_together(openai_user, n, args.tokens, lambda i, p=prompts: (url, p[i])))
                rows["gradio"].setdefault(n, []).append(
                    users_together(gradio_user, n, args.tokens, lambda i, t=texts: (url, t[i])))
                done = subprocess.run([sys.executable, __file__, "--raw", str(model_dir), str(n), "--tokens",
                                       str(args.tokens)], capture_output=True, text=True, cwd=ROOT, timeout=900)
                if done.returncode != 0:
                    raise SystemExit(f"raw CT2 failed:\n{done.stderr[-3000:]}")
                rows["raw CT2"].setdefault(n, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {round_ + 1}, {n} users:",
                      {mode: round(r[n][-1]["aggregate_tok_s"], 1) for mode, r in rows.items()}, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    shape = "tiny" if args.smoke else "Pythia-160m"
    summary = {"model": f"{model_dir.name} ({shape} shape, vocabulary 50304), int8, CPU", "tokens": args.tokens,
               "prompt_tokens": PROMPT_TOKENS, "rounds": args.rounds, "modes": {}}
    for mode, by_users in rows.items():
        summary["modes"][mode] = {
            str(n): {key: statistics.median(r[key] for r in runs)
                     for key in ("aggregate_tok_s", "ttft_p50_s", "ttft_p95_s", "wall_s")}
            for n, runs in by_users.items()}
    base = min(args.users)
    for table in summary["modes"].values():
        for row in table.values():
            row["scaling"] = row["aggregate_tok_s"] / table[str(base)]["aggregate_tok_s"]
    if 8 in args.users and base == 1:
        summary["openai_8_scaling_over_raw"] = (summary["modes"]["openai"]["8"]["scaling"]
                                                / summary["modes"]["raw CT2"]["8"]["scaling"])
    out.write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
