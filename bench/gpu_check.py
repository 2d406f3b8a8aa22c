"""CUDA path check, run by hand on a GPU machine (never by the test suite).

Checks: device auto-selection picks CUDA with int8_float16; int8_float16 generation
streams the same text as the non-streamed call; int8_float16 agrees with float32;
the memory guard reads free VRAM and refuses what cannot fit.

    python bench/gpu_check.py OUT.json            # on a machine with a CUDA GPU
    python bench/gpu_check.py --smoke [OUT.json]  # anywhere: every stage on the CPU, a tiny model

Writes every stage's result to OUT.json (``--smoke``: a temporary folder unless given) and exits 1 when a stage
failed. ``--smoke`` runs the same stages with the CPU's precisions (int8 for int8_float16, no CUDA comparison) on a
2-layer model: what can break without a GPU (the app's APIs this script calls) breaks there too.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

report: dict = {}


def stage(name):
    def wrap(fn):
        start = time.perf_counter()
        try:
            report[name] = {"ok": True, **(fn() or {})}
        except Exception as exc:  # report every stage, whatever fails
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                            "trace": traceback.format_exc()[-1500:]}
        report[name]["seconds"] = round(time.perf_counter() - start, 2)
        print(name, json.dumps(report[name])[:600], flush=True)
        return fn
    return wrap


def main(out: Path, smoke: bool = False) -> int:
    import ctranslate2

    from model_utils.core.catalog import Catalog
    from model_utils.core.errors import ModelTooLarge
    from model_utils.core.sampling import SamplingParams
    from model_utils.engine.devices import available_memory, resolve_device, supported_compute_types
    from model_utils.engine.engine import Engine
    from model_utils.engine.generation import generate, stream
    from model_utils.store.converter import convert_checkpoint
    from model_utils.store.disk import ModelStore
    from model_utils.store.local_dirs import describe_local_dir
    from model_utils.store.tiny_model import TinyShape, write_tiny_checkpoint

    work = Path(tempfile.mkdtemp())
    state = {}

    @stage("device")
    def _():
        cfg = resolve_device("cpu" if smoke else "auto")
        state["cfg"] = cfg
        return {"ct2": ctranslate2.__version__, "cuda_devices": ctranslate2.get_cuda_device_count(),
                "supported": sorted(supported_compute_types(cfg.device)), "auto": [cfg.device, cfg.compute_type],
                "free_memory_gib": round(available_memory(cfg.device) / 2**30, 2)}

    @stage("build")
    def _():
        # HF's initializer scale (0.02): random weights at 0.3 overflow fp16 activations in 12 layers.
        shape = (TinyShape(num_layers=2, hidden_size=64, num_heads=2, seed=5, weight_std=0.02) if smoke else
                 TinyShape(num_layers=12, hidden_size=768, num_heads=12, seed=5, weight_std=0.02))
        hf = write_tiny_checkpoint(work / "hf", shape)
        state["ct2"] = convert_checkpoint(hf, work / "ct2", precision="float16")
        return {}

    @stage("int8_float16_generation")
    def _():
        catalog = Catalog()
        catalog.add(describe_local_dir(state["ct2"], name="gpu-check"))
        engine = Engine(state["cfg"], catalog=catalog, store=ModelStore(work / "store"))
        state["engine"] = engine
        params = SamplingParams(greedy=True, max_new_tokens=16 if smoke else 256, repetition_penalty=1.0)
        with engine.open("gpu-check") as model:
            whole = generate(model, "Once upon a time", params)
            streamed = "".join(c.text for c in stream(model, "Once upon a time", params))
            runs = [generate(model, "Once upon a time", params) for _ in range(3)]
            return {"device": model.generator.device, "compute_type": model.generator.compute_type,
                    "stream_equals_generate": streamed == whole.text, "tokens": whole.num_tokens,
                    "tok_per_s_best": round(max(r.tokens_per_second for r in runs), 1),
                    "ttft_ms_best": round(min(r.time_to_first_token for r in runs) * 1000, 2),
                    "memory_budget_gib": round(engine.memory_budget_bytes / 2**30, 2)}

    @stage("int8_float16_vs_float32")
    def _():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(state["ct2"] / "tokenizer.json"))
        text = (Path(__file__).resolve().parent.parent / "model_utils/store/data/tiny_corpus.txt").read_text()[:1500]
        tokens = [tok.id_to_token(i) for i in tok.encode(text).ids][:300]
        logits = {}
        runs = [("cuda", "float32"), ("cuda", "int8_float16"), ("cpu", "float32"), ("cpu", "int8")]
        if smoke:  # no GPU: the CPU pair stands in for the CUDA pair
            runs[:2] = runs[2:]
        for device, ct in runs:
            g = ctranslate2.Generator(str(state["ct2"]), device=device, compute_type=ct)
            out = g.forward_batch([tokens]).to(ctranslate2.DataType.float32).to_device(ctranslate2.Device.cpu)
            logits[(device, ct)] = np.asarray(out)[0]
            g.unload_model()
            del g

        def agree(a, b):
            return round(float((logits[a].argmax(-1) == logits[b].argmax(-1)).mean()), 3)

        return {"cuda_int8_float16_vs_float32": agree(runs[0], runs[1]),
                "cpu_int8_vs_float32": agree(runs[2], runs[3]),
                "cuda_float32_vs_cpu_float32_max_abs": float(np.abs(logits[runs[0]] - logits[runs[2]]).max()),
                "finite": bool(all(np.isfinite(v).all() for v in logits.values()))}

    @stage("memory_guard_vram")
    def _():
        engine = state["engine"]
        catalog = engine.catalog
        statuses = {n: engine.status(catalog.get(n)).fits for n in ("pythia-1.4b", "pythia-6.9b", "pythia-12b")}
        small = Engine(state["cfg"], catalog=catalog, store=engine.store, memory_budget_bytes=2**30)
        try:
            with small.open("pythia-1.4b"):
                refused = False
        except ModelTooLarge as exc:
            refused = str(exc)
        return {"fits_on_this_gpu": statuses, "refused_with_1gib_budget": refused,
                "estimate_12b_gib": round(catalog.get("pythia-12b").estimate_bytes("int8_float16") / 2**30, 1)}

    if "engine" in state:
        state["engine"].close()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print("wrote", out)
    failed = [name for name, stage_report in report.items() if not stage_report["ok"]]
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", help="where the JSON report goes (required without --smoke)")
    parser.add_argument("--smoke", action="store_true", help="every stage on the CPU with a tiny model")
    args = parser.parse_args()
    if args.out is None and not args.smoke:
        parser.error("give the report's path (OUT.json)")
    if args.out is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_model import smoke_dir

        args.out = smoke_dir() / "gpu_check.json"
    sys.exit(main(args.out, args.smoke))
