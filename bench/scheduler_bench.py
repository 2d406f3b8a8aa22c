"""The batching scheduler without Gradio: N concurrent requests in-process vs raw CT2 batches.

Separates the scheduler's own cost from Gradio's and the simulated clients' (which share
the same 2 vCPUs in serving_bench.py).

    python bench/scheduler_bench.py [--out PATH] [--smoke]

``--smoke``: bench_model.py's tiny-shaped model, 2 concurrent requests of 8 tokens, results in a temporary folder.
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

NEW_TOKENS = 128
RESULTS = ROOT / "bench" / "results" / "scheduler.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="default: bench/results/scheduler.json (--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="seconds: a tiny model, 2 requests of 8 tokens")
    args = parser.parse_args()
    new_tokens, concurrent = (8, 2) if args.smoke else (NEW_TOKENS, 16)
    import ctranslate2

    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.batching import BatchingConfig
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.generation import generate
    from model_utils.engine.loaded_model import load_ct2_model
    from model_utils.store.local_dirs import describe_local_dir

    d = bench_model_dir(args.smoke)
    info = Catalog().add(describe_local_dir(d, name="bench"))
    params = SamplingParams(greedy=True, max_new_tokens=new_tokens, repetition_penalty=1.0)
    prompts = [f"the model reads document {i} about rivers and mountains" for i in range(16)]
    rows = []
    # A wide window: all requests of a burst join one batch, isolating decoding cost.
    model = load_ct2_model(d, info, "main", resolve_device("cpu", "int8", 2),
                           BatchingConfig(max_batch_size=16, window_s=0.5, quiet_s=0.2, workers=1))
    try:
        for n in (1, concurrent):
            barrier = threading.Barrier(n)

            def run(i, barrier=barrier):
                barrier.wait()
                generate(model, prompts[i], params)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - start - 0.2  # minus the quiet period the batch waited for
            rows.append({"what": f"scheduler, {n} concurrent", "tok_s": round(n * new_tokens / wall, 1),
                         "batch_sizes": dict(model.scheduler.stats.sizes)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        model.close()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(d / "tokenizer.json"))
    gen = ctranslate2.Generator(str(d), device="cpu", compute_type="int8", intra_threads=2)
    for n in (1, concurrent):
        batch = [[tok.id_to_token(i) for i in tok.encode(p).ids] for p in prompts[:n]]
        start = time.perf_counter()
        gen.generate_batch(batch, max_length=new_tokens, sampling_topk=1, end_token=[])
        rows.append({"what": f"raw CT2 generate_batch, {n} rows",
                     "tok_s": round(n * new_tokens / (time.perf_counter() - start), 1)})
        print(json.dumps(rows[-1]), flush=True)
    gen.unload_model()
    del gen
    out = results_path(args.out, RESULTS, args.smoke)
    out.write_text(json.dumps(rows, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
