"""Does the token-probability view slow generation?

Generation is the same code path with the view on or off; the view adds one forward_batch
pass afterwards. This measures both, side by side, on the Pythia-160m-shaped bench model.
Usage: python bench/token_view_bench.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_model import bench_model_dir  # noqa: E402


def main() -> None:
    from model_utils.core.catalog import Catalog
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.generation import generate
    from model_utils.engine.loaded_model import load_ct2_model
    from model_utils.engine.scoring import token_probabilities
    from model_utils.store.local_dirs import describe_local_dir

    d = bench_model_dir()
    model = load_ct2_model(d, Catalog().add(describe_local_dir(d, name="bench")), "main", resolve_device("cpu", "int8"))
    params = SamplingParams(greedy=True, max_new_tokens=128, repetition_penalty=1.0)
    prompt = "the model reads a long document about rivers mountains cities and the history of science"
    rows = {"view off": [], "view on": []}
    try:
        for _ in range(3):
            for mode in rows:
                start = time.perf_counter()
                result = generate(model, prompt, params)
                generated = time.perf_counter() - start
                extra = 0.0
                if mode == "view on":
                    t = time.perf_counter()
                    token_probabilities(model, result.prompt.ids, result.token_ids, top=5)
                    extra = time.perf_counter() - t
                rows[mode].append({"tok_s": result.tokens_per_second, "generation_s": generated, "view_s": extra})
    finally:
        model.close()
    summary = {mode: {"tok_s": round(max(r["tok_s"] for r in rs), 1),
                      "generation_s": round(min(r["generation_s"] for r in rs), 3),
                      "view_s": round(min(r["view_s"] for r in rs), 3)} for mode, rs in rows.items()}
    print(json.dumps(summary, indent=2))
    (ROOT / "bench" / "results" / "token_view.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
