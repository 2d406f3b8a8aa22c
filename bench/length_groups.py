"""Raw CTranslate2: what cutting a burst of varied-length prompts into more, narrower batches buys and costs.

    python bench/length_groups.py [--users 8 16] [--groups 1 2 3 4] [--waves 3] [--tokens 64] [--out PATH] [--smoke]

Issue 26 asks for a p95 first token with prompts of 24-40 tokens at most 1.3x the one with prompts of 32 tokens
each. CTranslate2's ``generate_batch`` reads a batch's prompts at once only up to the shortest one; every token a
prompt has beyond it is read in a decoding step of its own (the docstring of ``generate_batch``), and a step costs as
much as a generated token. So within one batch, the longest prompt's first token comes (longest - shortest) steps
after the shortest's. The only lever outside CTranslate2 is the layout: sorted by length and cut into more batches,
each spans fewer tokens, but more batches share the same cores.

This measures that trade with nothing but CT2 in the process: the rows of vllm_compare.py's two greedy token-id
workloads (the same prompts), sorted by length and cut into 1, 2, 3 or 4 batches that run side by side
(``inter_threads`` = the number of batches, one thread each; every batch starts at once), ``--waves`` waves after
a warm-up; for each layout the median wave's tokens/s and p95 first token (each row's first callback, from the
start), and the longest span (tokens between a batch's shortest and longest prompt). ``--smoke``: the tiny model,
one wave, users 4, 8 tokens (the tests run it). Writes bench/results/length_groups.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_model import bench_model_dir, results_path  # noqa: E402
from vllm_compare import GREEDY, WORKLOADS, _ct2_sampling, percentile, prompts_for, run_batches  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "length_groups.json"


def cut(rows: list[list[str]], groups: int) -> list[list[list[str]]]:
    """The rows sorted by length, cut into ``groups`` runs of (nearly) equal count."""
    ordered = sorted(rows, key=len)
    bounds = [round(i * len(ordered) / groups) for i in range(groups + 1)]
    return [ordered[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def wave(generator, batches: list[list[list[str]]], tokens: int) -> dict:
    options = dict(max_length=tokens, min_length=tokens, end_token=[], include_prompt_in_result=False,
                   **_ct2_sampling(GREEDY))
    ttfts, wall = run_batches(generator, batches, options)
    rows = sum(len(b) for b in batches)
    return {"tok_s": rows * tokens / wall, "ttft_p95_s": percentile(ttfts, 0.95)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--smoke", action="store_true", help="the tiny model, one wave, 4 users, 8 tokens")
    args = parser.parse_args()
    if args.smoke:
        args.users, args.waves, args.tokens = [4], 1, 8
    import ctranslate2
    from tokenizers import Tokenizer

    model_dir = bench_model_dir(args.smoke)
    out = results_path(args.out, RESULTS, args.smoke)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    generators = {}
    rows_out = []
    for users in args.users:
        for workload in (w for w in WORKLOADS if w.token_ids):
            rows = [[tokenizer.id_to_token(i) for i in ids] for ids in prompts_for(workload, users, tokenizer)]
            for groups in args.groups:
                batches = cut(rows, groups)
                if len(batches) not in generators:
                    generators[len(batches)] = ctranslate2.Generator(
                        str(model_dir), device="cpu", compute_type="int8", inter_threads=len(batches), intra_threads=1)
                generator = generators[len(batches)]
                waves = [wave(generator, batches, args.tokens) for _ in range(args.waves + 1)][1:]  # 1st: warm-up
                median = sorted(waves, key=lambda w: w["tok_s"])[len(waves) // 2]
                span = max(len(b[-1]) - len(b[0]) for b in batches)
                rows_out.append({"users": users, "workload": workload.name, "batches": len(batches),
                                 "longest_span": span, **median, "waves": waves})
                print(f"{users:>2} users | {workload.name:<20} | {len(batches)} batches (span <= {span:>2} tokens): "
                      f"{median['tok_s']:6.1f} tok/s, p95 first token {median['ttft_p95_s']:.3f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model_dir.name, "tokens": args.tokens, "rows": rows_out}, indent=1) + "\n")
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
