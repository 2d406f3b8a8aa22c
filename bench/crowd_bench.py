"""A browser visitor's first token and page load while API clients flood the OpenAI route, one run.

    python bench/crowd_bench.py [--tries 10] [--addresses 16] [--control] [--smoke]

`python app.py` in a subprocess serves tests/'s slow random Pythia (12 layers, hidden 512; ~90 tokens/s alone on a
2-vCPU machine) with default settings. A real Chromium visitor (Playwright) loads the page and chats: the first
token is timed from the click on Send to the reply's first text on screen (then Stop), the page load from the
request to the chat box. Three conditions, in turn:

* idle: nothing else runs;
* one address: one API client (127.0.0.2) streaming n=8, max_tokens=512 completions in a loop (its 8-row cap);
* N addresses: N such clients, each on its own loopback address (127.0.0.2 ...), each within its own cap.

The clients send their next request as soon as the last one ends or is refused (no Retry-After). ``--control``
adds a run of the N-address flood with ``--max-api-rows 0`` (no cap on API clients together): what the
mechanism prevents. ``--smoke``: one try of each, 2 addresses, short replies, a tiny model (2 layers, hidden
64): a check that the script runs (tests/test_bench_smoke.py). Writes bench/results/crowd.json (``--out``; a
smoke writes only where --out says) and prints each condition's p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "crowd.json"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 3), "p95": round(percentile(values, 0.95), 3),
            "n": len(values), "all": [round(v, 3) for v in values]}


def measure(browser, url: str, tries: int) -> dict:
    from crowd import visitor_times

    times = visitor_times(browser, url, tries)
    return {"first_token_s": summary(times.first_tokens), "page_load_s": summary(times.page_loads)}


def line(name: str, condition: str, measured: dict) -> str:
    first, load = measured["first_token_s"], measured["page_load_s"]
    api = f" · API {measured['api']}" if "api" in measured else ""
    return (f"{name:>15} · {condition:>13}: first token p50 {first['p50']:.2f} s p95 {first['p95']:.2f} s · "
            f"page load p50 {load['p50']:.2f} s p95 {load['p95']:.2f} s{api}")


def run_server(checkpoint: Path, cache: Path, *flags: str):
    from app_process import AppProcess

    server = AppProcess("--model-dir", str(checkpoint), "--cache-dir", str(cache), "--device", "cpu", *flags)
    import httpx

    warm = httpx.post(server.url + "/v1/completions", json={"prompt": "warm up", "max_tokens": 2}, timeout=300)
    assert warm.status_code == 200, warm.text  # converted and loaded
    return server


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tries", type=int, default=10, help="first tokens and page loads per condition")
    parser.add_argument("--addresses", type=int, default=16, help="API clients, one loopback address each")
    parser.add_argument("--max-tokens", type=int, default=512, help="max_tokens of each API request")
    parser.add_argument("--control", action="store_true", help="also run the flood with --max-api-rows 0")
    parser.add_argument("--smoke", action="store_true", help="one try each, 2 addresses, short replies, a tiny model")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {RESULTS.relative_to(ROOT)}; "
                                                             "a smoke writes one only when given)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.tries, args.addresses, args.max_tokens = 1, 2, 32

    import numpy as np
    from chromium import launched_chromium
    from crowd import ApiFlood

    from model_utils.store.tiny_model import TinyShape, write_tiny_checkpoint

    results: dict = {"tries": args.tries, "addresses": args.addresses, "max_tokens": args.max_tokens, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp, launched_chromium() as browser:
        # a smoke checks that the script runs, not the timings: the tiny model converts and decodes in moments
        shape = TinyShape() if args.smoke else TinyShape(num_layers=12, hidden_size=512, num_heads=8, seed=1)
        checkpoint = write_tiny_checkpoint(Path(tmp) / "slow-random-pythia", shape, dtype=np.float16)
        cache = Path(tmp) / "cache"
        settings = [("default", ())] + ([("max-api-rows 0", ("--max-api-rows", "0"))] if args.control else [])
        for name, flags in settings:
            server = run_server(checkpoint, cache, *flags)
            try:
                run = {}
                conditions = [("idle", 0), ("one address", 1), (f"{args.addresses} addresses", args.addresses)]
                if name != "default":
                    conditions = conditions[-1:]
                for condition, addresses in conditions:
                    started = time.monotonic()
                    if addresses == 0:
                        run[condition] = measure(browser, server.url, args.tries)
                    else:
                        with ApiFlood(server.url, addresses, max_tokens=args.max_tokens) as flood:
                            run[condition] = measure(browser, server.url, args.tries)
                        counts = flood.counts
                        run[condition]["api"] = {"admitted": counts.admitted, "refused": counts.refused,
                                                 "other": counts.other, "tokens": counts.tokens}
                    run[condition]["seconds"] = round(time.monotonic() - started, 1)
                    print(line(name, condition, run[condition]), flush=True)
                results["runs"][name] = run
            finally:
                server.terminate(timeout=30)
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
