"""lm-eval's own `hf` backend (transformers, float32) on the shipped tasks: the reference the app is checked against.

It takes torch and about a minute, so its results are committed (tests/data/lm_eval_hf_reference.json) with a
fingerprint of what produced them: lm-eval's and transformers' versions, the checkpoints' weights and the task
files. tests/test_lm_eval.py checks that fingerprint against the current ones; when any changed, regenerate with

    python tests/lm_eval_reference.py

Two checkpoints: the demo model's `main`, and tests/eos_checkpoint.py's, whose greedy next token is always
<|endoftext|> (every scored request then ends with an end-of-text entry that lm-eval drops as the generated token).

And the Benchmarks engine's reference (tests/test_benchmarks_parity.py): the shipped kjv_lambada beside the test
tasks, at two of the demo model's checkpoints, with the Benchmarks engine's windows (``PARITY_ARGUMENTS``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from eos_checkpoint import EOS_LOGIT, write_eos_checkpoint  # noqa: E402

from model_utils.service.benchmarks import SHIPPED_TASKS_DIR  # noqa: E402
from model_utils.store.demo_model import DEMO_DIR  # noqa: E402

TASKS_DIR = ROOT / "tests" / "lm_eval_tasks"
TASKS = "kjv_mc,kjv_ppl,kjv_gen"
REFERENCE = ROOT / "tests" / "data" / "lm_eval_hf_reference.json"
CHECKPOINTS = ("demo", "eos")
PARITY_TASKS = ("kjv_lambada", "kjv_mc", "kjv_ppl", "kjv_gen")
PARITY_REVISIONS = ("step256", "main")
PARITY_LIMIT = 60  # kjv_lambada's first 60 documents (the test tasks have fewer)


def checkpoint_dir(name: str, scratch: Path) -> Path:
    return DEMO_DIR / "main" if name == "demo" else write_eos_checkpoint(scratch / "eos-pythia")


def _sha(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint() -> dict:
    """What the reference depends on."""
    return {"lm_eval": version("lm_eval"), "transformers": version("transformers"),
            "demo_weights": _sha(DEMO_DIR / "main" / "model.safetensors"),
            "parity_weights": _sha(*(DEMO_DIR / r / "model.safetensors" for r in PARITY_REVISIONS)),
            "shipped_tasks": _sha(*(p for p in SHIPPED_TASKS_DIR.iterdir() if p.is_file())),
            "eos_checkpoint": _sha(ROOT / "tests" / "eos_checkpoint.py") + f"@{EOS_LOGIT}",
            "tasks": _sha(*TASKS_DIR.iterdir())}


def run_lm_eval(arguments: list[str], output: Path, prefix: str = "") -> dict:
    """lm-eval's CLI from the repository root (task data files resolve against it), offline; returns per task the
    samples (sorted by document) and the aggregate results. ``prefix``: shell words before the command (the
    README's environment variable)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = f"{prefix} {' '.join(arguments)} --log_samples --output_path {output}"
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    samples = {}
    for task in TASKS.split(","):
        (path,) = output.rglob(f"samples_{task}_*.jsonl")
        rows = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda s: s["doc_id"])
        samples[task] = [{"arguments": row["arguments"], "filtered_resps": row["filtered_resps"]} for row in rows]
    (results,) = output.rglob("results_*.json")
    return {"samples": samples, "results": json.loads(results.read_text())["results"]}


def hf_arguments(pretrained: Path) -> list[str]:
    # lm-eval's API models score rolling windows of max_length - 2 tokens (one position for the prefix token, one
    # for the token they ask to be generated), its hf model windows of max_length: max_length=2046 makes both
    # score the same windows
    return [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
            f"pretrained={pretrained},dtype=float32,max_length=2046", "--tasks", TASKS, "--include_path",
            "tests/lm_eval_tasks", "--device", "cpu", "--batch_size", "1"]


def parity_results(revision: str, scratch: Path) -> dict:
    """lm-eval's hf model on the Benchmarks engine's terms: ServiceLM scores windows of max_length = 2047 tokens (a
    scored sequence holds its last continuation token too: benchmark_lm.py), so the hf model is given 2047."""
    tasks_dir = scratch / "parity-tasks"  # the CLI takes one include path: both folders' tasks, side by side
    tasks_dir.mkdir(exist_ok=True)
    for path in [*TASKS_DIR.iterdir(), *SHIPPED_TASKS_DIR.iterdir()]:
        if path.is_file():
            shutil.copy(path, tasks_dir / path.name)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    output = scratch / f"parity-{revision}"
    command = [sys.executable, "-m", "lm_eval", "run", "--model", "hf", "--model_args",
               f"pretrained={DEMO_DIR / revision},dtype=float32,max_length=2047", "--tasks", ",".join(PARITY_TASKS),
               "--include_path", str(tasks_dir), "--limit", str(PARITY_LIMIT), "--device", "cpu",
               "--batch_size", "4", "--output_path", str(output)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = output.rglob("results_*.json")
    return json.loads(path.read_text())["results"]


def compute() -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        runs = {name: run_lm_eval(hf_arguments(checkpoint_dir(name, scratch)), scratch / name)
                for name in CHECKPOINTS}
        parity = {revision: parity_results(revision, scratch) for revision in PARITY_REVISIONS}
    return {"fingerprint": fingerprint(), "command": "python tests/lm_eval_reference.py", "runs": runs,
            "parity": parity}


def load() -> dict:
    return json.loads(REFERENCE.read_text())


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE.relative_to(ROOT)}")
