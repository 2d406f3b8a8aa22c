"""Measure the shipped demo model through the app's own API and print the README's tables.

    python tools/demo_report.py [--smoke]

Starts the app with --demo in-process (float32, the precision the training script evaluated in),
then, with gradio_client: /score_across on the held-out passage at every demo checkpoint, compared
with TRAINING.json's torch evaluation; and /compare of two held-out prompts, greedy, at step0, an
early step and main. ``--smoke``: two checkpoints and one prompt (seconds; it writes nothing either way).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = ("And it came to pass, when the king heard", "Then said Jesus unto his disciples,")
COLUMNS = ("step0", "step256", "main")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds: two checkpoints, one prompt")
    args = parser.parse_args()
    from gradio_client import Client

    import app
    from model_utils.settings import Settings
    from model_utils.store.demo_model import DEMO_DIR, DEMO_MODEL, HELD_OUT_TEXT, demo_model

    training = {c["revision"]: c["held_out_perplexity"] for c in
                json.loads((DEMO_DIR / "TRAINING.json").read_text())["checkpoints"]}
    with tempfile.TemporaryDirectory() as cache:
        settings = Settings(demo=True, device="cpu", compute_type="float32", cache_dir=cache)
        with app.running(settings) as (url, _):
            client = Client(url, verbose=False)
            rows = client.predict(text=HELD_OUT_TEXT.read_text(), model=DEMO_MODEL,
                                  revisions=["step0", "main"] if args.smoke else list(demo_model().revisions),
                                  api_name="/score_across")
            print("| checkpoint | step | held-out perplexity (app, /score_across) | torch (training script) | "
                  "difference |\n|---|---|---|---|---|")
            for r in rows:
                ref = training[r["revision"]]
                print(f"| {r['revision']} | {r['step']:,} | {r['perplexity']:.2f} | {ref:.2f} | "
                      f"{(r['perplexity'] / ref - 1) * 100:+.3f}% |")
            by_revision = {r["revision"]: r["perplexity"] for r in rows}
            first, last = by_revision["step0"], by_revision["main"]
            print(f"\nstep0 / main: {first / last:.0f}x\n")
            print("| prompt | " + " | ".join(COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS))
            for prompt in PROMPTS[:1] if args.smoke else PROMPTS:
                columns = client.predict(prompt=prompt, pairs=[[DEMO_MODEL, c] for c in COLUMNS], greedy=True,
                                         max_new_tokens=24, repetition_penalty=1.0, api_name="/compare")
                cells = [c["text"].replace("\n", " ").replace("|", "\\|").strip() for c in columns]
                print(f"| {prompt} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
