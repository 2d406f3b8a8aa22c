"""Converter benchmark: this project's torch-free converter vs CTranslate2's own, side by side.

Generates Pythia-160m- and Pythia-1.4b-shaped random float16 checkpoints (cached in
~/.cache/pythia-bench, never committed), converts each with both converters in fresh
subprocesses, and reports wall time and peak RSS (ru_maxrss of the child).

Usage: python bench/convert_bench.py [--shapes 160m 1.4b] [--out bench/results/convert.json] [--smoke]

``--smoke``: one tiny shape (2 layers, 64 wide, Pythia's vocabulary), both converters (official_converter.py run
as a script, as above), in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))

from bench_model import SMOKE_SHAPE, VOCAB, results_path, smoke_dir  # noqa: E402

from model_utils.core.catalog import Catalog  # noqa: E402
from model_utils.store.tiny_model import TinyShape, copy_tiny_tokenizer, gpt_neox_config  # noqa: E402

CACHE = Path(os.environ.get("PYTHIA_BENCH_CACHE", Path.home() / ".cache" / "pythia-bench"))
SMOKE = "smoke"  # the --smoke shape's name
# Peak RSS is the child's VmHWM, printed by the child itself at exit: ru_maxrss would
# also count the parent's memory inherited at fork, before exec.
PEAK = ("import atexit, re, sys;"
        "atexit.register(lambda: print('VmHWM', re.search(r'VmHWM:\\s+(\\d+)', "
        "open('/proc/self/status').read()).group(1), file=sys.stderr));")
OURS = PEAK + ("sys.path.insert(0, {root!r}); from pathlib import Path;"
               "from model_utils.store.converter import convert_checkpoint;"
               "convert_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]))")
OFFICIAL = PEAK + ("import runpy; sys.argv = [sys.argv[0]] + sys.argv[1:];"
                   "runpy.run_path({script!r}, run_name='__main__')")


def make_checkpoint(size: str, cache: Path = CACHE) -> Path:
    """A random float16 safetensors checkpoint with the exact shape of pythia-<size> (or the smoke shape)."""
    from safetensors.numpy import save_file

    target = cache / f"random-pythia-{size}"
    if (target / "model.safetensors").is_file():
        return target
    if size == SMOKE:
        shape, vocab = SMOKE_SHAPE, VOCAB
    else:
        info = Catalog().get(f"pythia-{size}")
        shape, vocab = TinyShape(info.num_layers, info.hidden_size, info.num_heads, weight_std=0.02), info.vocab_size
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copy_tiny_tokenizer(tmp)
    (tmp / "config.json").write_text(json.dumps(gpt_neox_config(shape, vocab)))
    rng = np.random.default_rng(0)
    d, v = shape.hidden_size, vocab

    def w(*dims):
        return (rng.standard_normal(dims, dtype=np.float32) * 0.02).astype(np.float16)

    state = {"gpt_neox.embed_in.weight": w(v, d), "embed_out.weight": w(v, d),
             "gpt_neox.final_layer_norm.weight": np.ones(d, np.float16),
             "gpt_neox.final_layer_norm.bias": np.zeros(d, np.float16)}
    for i in range(shape.num_layers):
        p = f"gpt_neox.layers.{i}"
        for norm in ("input_layernorm", "post_attention_layernorm"):
            state[f"{p}.{norm}.weight"] = np.ones(d, np.float16)
            state[f"{p}.{norm}.bias"] = np.zeros(d, np.float16)
        for name, (out_dim, in_dim) in {"attention.query_key_value": (3 * d, d), "attention.dense": (d, d),
                                        "mlp.dense_h_to_4h": (4 * d, d), "mlp.dense_4h_to_h": (d, 4 * d)}.items():
            state[f"{p}.{name}.weight"] = w(out_dim, in_dim)
            state[f"{p}.{name}.bias"] = np.zeros(out_dim, np.float16)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    del state
    tmp.rename(target)
    return target


def run(cmd: list[str]) -> dict:
    """Run a conversion in a fresh process; return wall seconds and its peak RSS."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    peak_kib = int(proc.stderr.rsplit("VmHWM", 1)[1].split()[0])
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", nargs="+", default=["160m", "1.4b"])
    parser.add_argument("--out", type=Path, help="default: bench/results/convert.json (--smoke: a temporary folder)")
    parser.add_argument("--smoke", action="store_true", help="seconds: one tiny shape, in a temporary folder")
    args = parser.parse_args()
    cache = smoke_dir() if args.smoke else CACHE
    shapes = [SMOKE] if args.smoke else args.shapes
    results = []
    for size in shapes:
        src = make_checkpoint(size, cache)
        for name, cmd in [
            ("ours (numpy, mmap)", [sys.executable, "-c", OURS.format(root=str(ROOT))]),
            ("ctranslate2 (torch)", [sys.executable, "-c",
                                     OFFICIAL.format(script=str(ROOT / "bench" / "official_converter.py"))]),
        ]:
            out = cache / f"out-{size}"
            shutil.rmtree(out, ignore_errors=True)
            extra = [str(src), str(out)] + (["float16"] if "torch" in name else [])
            row = {"shape": size, "converter": name, **run(cmd + extra),
                   "model_bin_mib": round((out / "model.bin").stat().st_size / 2**20, 1)}
            print(json.dumps(row), flush=True)
            results.append(row)
            shutil.rmtree(out, ignore_errors=True)
    out = results_path(args.out, ROOT / "bench" / "results" / "convert.json", args.smoke)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print("wrote", out)


if __name__ == "__main__":
    main()
