"""Every script under bench/ and tools/ runs to its end: each one's ``--smoke`` mode (a tiny model or the demo, one
round, a few tokens, a temporary folder) in a subprocess, as a person would start it. A renamed API, a moved file or
a changed endpoint breaks a test here instead of the next person who runs the script by hand.

Each smoke's output is checked for what the script is for (its rows, its pictures, its checkpoints), and no smoke
may touch what is committed: bench/results/, docs/screenshot.png, the shipped demo model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(str(p.relative_to(ROOT)) for d in ("bench", "tools") for p in (ROOT / d).glob("*.py"))
COMMITTED = ("bench/results", "docs", "model_utils/store/data/demo")


def _written(out: str) -> Path:
    """The file a script says it wrote (``wrote PATH``): outside the repository, where the test asked."""
    paths = [Path(p) for p in re.findall(r"^wrote (\S+)", out, re.M)]
    assert paths, f"the script did not say what it wrote:\n{out[-1500:]}"
    assert not any(p.resolve().is_relative_to(ROOT) for p in paths), paths
    return paths[-1]


def _json_written(out: str):
    return json.loads(_written(out).read_text())


def check_vllm_compare(out: str, tmp: Path) -> None:
    result = _json_written(out)
    rows = result["rows"]
    ways = {r["way"] for r in rows}
    assert ways == {"raw CT2", "app /v1", "app page", "app gradio_client"}, ways  # vLLM: not in a smoke
    workloads = {(r["way"], r["workload"]) for r in rows}
    assert {("app /v1", w) for w in ("text, sampled", "ids, greedy, equal", "ids, greedy, varied")} <= workloads
    assert ("app page", "text, sampled") in workloads
    for row in rows:
        assert row["errors"] == 0, row
        assert {r["users"] for r in rows if r["way"] == row["way"]} == {1, 2}
        assert row["tok_s"] > 0 and row["ttft_p95_s"] is not None, row
    # tokens come from the replies' usage: 8 per user and wave when greedy (no end-of-text in these 8 tokens)
    assert all(w["tokens"] == 8 * r["users"] for r in rows if r["way"] == "app /v1" and "greedy" in r["workload"]
               for w in r["waves"])
    assert "ratios" in out and "| 2 |" in out


def check_length_groups(out: str, tmp: Path) -> None:
    rows = _json_written(out)["rows"]
    assert {(r["workload"], r["batches"]) for r in rows} == {(w, b) for w in ("ids, greedy, equal",
                                                                          "ids, greedy, varied") for b in (1, 2, 3, 4)}
    assert all(r["tok_s"] > 0 and r["ttft_p95_s"] > 0 for r in rows)
    spans = {(r["workload"], r["batches"]): r["longest_span"] for r in rows}
    assert all(spans["ids, greedy, equal", b] == 0 for b in (1, 2, 3, 4))  # one length: nothing read step by step
    # sorted by length, more batches span fewer tokens each (4 users' prompts: 24, 29, 34 and 39 tokens)
    assert [spans["ids, greedy, varied", b] for b in (1, 2, 3, 4)] == [15, 5, 5, 0]


def check_openai_bench(out: str, tmp: Path) -> None:
    modes = _json_written(out)["modes"]
    assert set(modes) == {"openai", "gradio", "raw CT2"}
    assert all(set(table) == {"1", "2"} and all(r["aggregate_tok_s"] > 0 for r in table.values())
               for table in modes.values())


def check_lm_eval_bench(out: str, tmp: Path) -> None:
    result = _json_written(out)
    assert result["tasks"] == ["kjv_gen"] and set(result["metrics"]) == {"app", "hf"}
    assert all("kjv_gen" in metrics for metrics in result["metrics"].values())


def check_benchmarks_speed(out: str, tmp: Path) -> None:
    """(a) the engine, (b) hf, (c) local-completions each evaluated the LAMBADA-shaped task once, and chat users
    were timed with the app idle and while it evaluated."""
    result = _json_written(out)
    assert result["workload"]["documents"] == 40 and 70 <= result["workload"]["tokens_mean"] <= 90
    assert set(result["runs"]) == {"engine", "hf", "http", "ceiling"}
    for way, (row,) in result["runs"].items():
        assert row["per_checkpoint_s"] > 0, way
        assert way == "ceiling" or set(row["metrics"]) >= {"acc", "perplexity"}, way
    (ceiling,) = result["runs"]["ceiling"]  # CT2 alone read every document's tokens
    assert ceiling["tokens"] >= 40 * 70 and ceiling["groups"] >= 1
    assert result["runs"]["engine"][0]["compute_type"] == "int8" and result["runs"]["hf"][0]["dtype"] == "float32"
    assert all(rows[0]["evaluate_cpu_s"] > 0 for rows in result["runs"].values())
    assert set(result["ratios"]) == {"hf_over_engine", "http_over_engine", "ceiling_over_engine"}
    idle, evaluating = result["chat"]["idle"], result["chat"]["evaluating"]
    assert idle["requests"] == 16 and idle["ttft_p95_s"] > 0  # 8 users, 2 rounds
    assert evaluating["requests"] == 8 * evaluating["rounds"]


def check_serving_bench(out: str, tmp: Path) -> None:
    result = _json_written(out)
    (rows,) = result["concurrency"].values()
    assert [r["users"] for r in rows] == [1, 2] and all(r["errors"] == 0 and r["correct"] == r["users"] for r in rows)
    assert {"raw CT2 generate_tokens", "engine stream", "app via gradio_client", "transformers"} <= set(
        result["single_stream"])
    assert result["isa_threads"][0]["tokens"] == 8


def check_convert_bench(out: str, tmp: Path) -> None:
    rows = _json_written(out)
    assert [r["converter"] for r in rows] == ["ours (numpy, mmap)", "ctranslate2 (torch)"]  # official_converter.py
    assert rows[0]["model_bin_mib"] == rows[1]["model_bin_mib"] > 0


def check_crowd_bench(out: str, tmp: Path) -> None:
    run = _json_written(out)["runs"]["default"]
    assert list(run) == ["idle", "one address", "2 addresses"]
    for condition in run.values():
        assert condition["first_token_s"]["n"] == 1 and condition["page_load_s"]["n"] == 1, condition
    assert run["2 addresses"]["api"]["admitted"] >= 1 and run["2 addresses"]["api"]["other"] == 0


def check_gpu_check(out: str, tmp: Path) -> None:
    report = _json_written(out)
    assert all(stage["ok"] for stage in report.values()), report
    assert report["int8_float16_generation"]["stream_equals_generate"]


def check_rows(what: str) -> Callable[[str, Path], None]:
    def check(out: str, tmp: Path) -> None:
        assert what in json.dumps(_json_written(out))
    return check


def check_printed(pattern: str) -> Callable[[str, Path], None]:
    def check(out: str, tmp: Path) -> None:
        assert re.search(pattern, out), out[-1500:]
    return check


def check_train_demo(out: str, tmp: Path) -> None:
    """The toy checkpoints have the shipped model's layout, and the app's converter takes them."""
    from model_utils.store.converter import convert_checkpoint

    trained = tmp / "demo"
    assert {"main", "step0", "step1", "TRAINING.json", "heldout.txt", "words.txt"} <= {p.name for p in
                                                                                         trained.iterdir()}
    assert json.loads((trained / "TRAINING.json").read_text())["training"]["steps"] == 4
    assert (convert_checkpoint(trained / "main", tmp / "ct2", precision="float32") / "model.bin").is_file()


def check_screenshots(out: str, tmp: Path) -> None:
    shot = tmp / "shots" / "desktop-light-chat.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@dataclass(frozen=True)
class Smoke:
    argv: Callable[[Path], list[str]]
    check: Callable[[str, Path], None]


def out(name: str) -> Callable[[Path], list[str]]:
    """``--smoke --out TMP/name``: the results kept for the check (a smoke's own temporary folder goes at exit)."""
    return lambda tmp: ["--smoke", "--out", str(tmp / name)]


SMOKES = {
    "bench/bench_model.py": Smoke(lambda t: ["--smoke"], check_printed(r"bench-smoke-ct2 \(vocabulary 50304")),
    "bench/benchmarks_speed.py": Smoke(out("benchmarks_speed.json"), check_benchmarks_speed),
    "bench/convert_bench.py": Smoke(out("convert.json"), check_convert_bench),
    "bench/crowd_bench.py": Smoke(out("crowd.json"), check_crowd_bench),
    "bench/gpu_check.py": Smoke(lambda t: ["--smoke", str(t / "gpu_check.json")], check_gpu_check),
    "bench/length_groups.py": Smoke(out("length_groups.json"), check_length_groups),
    "bench/lm_eval_bench.py": Smoke(out("lm_eval.json"), check_lm_eval_bench),
    "bench/openai_bench.py": Smoke(out("openai_stream.json"), check_openai_bench),
    "bench/scheduler_bench.py": Smoke(out("scheduler.json"), check_rows("scheduler, 2 concurrent")),
    "bench/serving_bench.py": Smoke(out("serving.json"), check_serving_bench),
    "bench/sweep_bench.py": Smoke(lambda t: ["--smoke"], check_printed(r"sweep of 2: \d+ ms")),
    "bench/token_view_bench.py": Smoke(out("token_view.json"), check_rows("view on")),
    "bench/vllm_compare.py": Smoke(out("vllm_compare.json"), check_vllm_compare),
    "tools/make_kjv_lambada.py": Smoke(lambda t: ["--smoke", str(t / "kjv.jsonl")], check_printed(r"^\d+ documents")),
    "tools/demo_report.py": Smoke(lambda t: ["--smoke"], check_printed(r"\| main \| 3,000 \| [\d.]+ \|")),
    "tools/screenshots.py": Smoke(lambda t: ["--smoke", str(t / "shots")], check_screenshots),
    "tools/train_demo.py": Smoke(lambda t: ["--smoke", str(t / "demo")], check_train_demo),
}
# Modules the scripts import or run, not scripts of their own: their smoke is their callers'.
HELPERS = {
    "bench/at_once.py": "openai_bench.py and serving_bench.py release their users with it",
    "bench/plotting.py": "serving_bench.py and vllm_compare.py draw (or say how to draw) with it",
    "bench/official_converter.py": "convert_bench.py --smoke runs it as a script, as a person does",
}


def test_every_script_has_a_smoke_run_or_is_a_helper_of_one():
    assert sorted({*SMOKES, *HELPERS}) == SCRIPTS, "a new script under bench/ or tools/ needs a --smoke and a row here"
    for script in SMOKES:
        assert "--smoke" in (ROOT / script).read_text(), script


def _committed_state() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", *COMMITTED], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("script", sorted(SMOKES))
def test_the_smoke_run_ends_well_and_touches_nothing_committed(script, tmp_path):
    before = _committed_state()
    # The benchmarks' model cache points at the test's folder: a smoke that built the real 160m model would
    # show up as minutes here, not as a quietly warm cache.
    env = {**os.environ, "PYTHIA_BENCH_CACHE": str(tmp_path / "bench-cache"), "HF_HUB_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1"}
    smoke = SMOKES[script]
    done = subprocess.run([sys.executable, script, *smoke.argv(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=540)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    smoke.check(done.stdout, tmp_path)
    assert not (tmp_path / "bench-cache").exists()
    assert _committed_state() == before
