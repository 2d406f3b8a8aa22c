"""Does the token-probability view slow generation?

Generation is the same code path with the view on or off; the view adds one forward_batch
pass afterwards. This measures both, side by side, on the Pythia-160m-shaped bench model.

    python bench/token_view_bench.py [--out PATH] [--smoke]

``--smoke``: bench_model.py's tiny-shaped model, one round of 8 tokens, results in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_model import bench_model_dir, results_path  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "token_view.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="default: bench/results/token_view.json (--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, one round of 8 tokens")
    args = parser.parse_args()
    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.loaded_model import load_ct2_model
    from model_utils.engine.prompts import prepare_completion
    from model_utils.service.choices import BatchJob, decode_choice
    from model_utils.store.local_dirs import describe_local_dir

    d = bench_model_dir(args.smoke)
    model = load_ct2_model(d, Catalog().add(describe_local_dir(d, name="bench")), "main", resolve_device("cpu", "int8"))
    params = SamplingParams(greedy=True, max_new_tokens=8 if args.smoke else 128, repetition_penalty=1.0)
    prompt = "the model reads a long document about rivers mountains cities and the history of science"
    rows = {"view off": [], "view on": []}
    try:
        for _ in range(1 if args.smoke else 3):
            for mode in rows:
                # the page's path: one choice, its text as it grows, its tokens' log-probs (the view) at the end
                job = BatchJob(1, params.max_new_tokens, params, logprobs=5 if mode == "view on" else None, live=True)
                start = time.perf_counter()
                *_, last = decode_choice(model, 0, prepare_completion(model.tokenizer, prompt, params.max_new_tokens),
                                         job, threading.Event())
                total = time.perf_counter() - start
                generated = last.timing.elapsed  # when the last token came; the view's forward pass follows it
                rows[mode].append({"tok_s": last.timing.tokens_per_second, "generation_s": generated,
                                   "view_s": total - generated if mode == "view on" else 0.0})
    finally:
        model.close()
    summary = {mode: {"tok_s": round(max(r["tok_s"] for r in rs), 1),
                      "generation_s": round(min(r["generation_s"] for r in rs), 3),
                      "view_s": round(min(r["view_s"] for r in rs), 3)} for mode, rs in rows.items()}
    print(json.dumps(summary, indent=2))
    out = results_path(args.out, RESULTS, args.smoke)
    out.write_text(json.dumps(summary, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
