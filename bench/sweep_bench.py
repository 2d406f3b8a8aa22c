"""How much a sweep costs: one text over 9 checkpoints, against 9 times one checkpoint.

    python bench/sweep_bench.py [--smoke]

The offline demo model's nine checkpoints, converted first (conversions are excluded, as the target says),
scored and tested for memorization through the service, as the app does. Both sides run in this one
process, side by side; the ratio is written to BENCHMARKS.md by hand from what this prints.
Target: sweep time <= 1.2 x 9 x one checkpoint. ``--smoke``: two checkpoints, one round (it writes nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds: two checkpoints, one round")
    args = parser.parse_args()
    from model_utils.core.catalog import Catalog
    from model_utils.engine.devices import resolve_device
    from model_utils.engine.engine import Engine
    from model_utils.service import MemorizationRequest, PythiaService, ScoreAcrossRequest
    from model_utils.store.demo_model import DEMO_MODEL, HELD_OUT_TEXT, demo_model
    from model_utils.store.disk import ModelStore

    text = HELD_OUT_TEXT.read_text()
    revisions = list(demo_model().revisions)
    if args.smoke:
        revisions = [revisions[0], revisions[-1]]
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog()
        catalog.add(demo_model())
        # a budget for one model at a time: every checkpoint is loaded in the sweep, as on a small Space
        engine = Engine(resolve_device("cpu", "int8"), catalog=catalog, store=ModelStore(Path(tmp)),
                        memory_budget_bytes=160 * 2**20)
        service = PythiaService(engine, catalog, DEMO_MODEL)
        for r in revisions:  # conversions excluded
            engine.store.ensure(catalog.get(DEMO_MODEL), r)

        def one(revision):
            start = time.perf_counter()
            service.score_across(service.parse(ScoreAcrossRequest, text=text, model=DEMO_MODEL, revisions=[revision]))
            service.memorization(service.parse(MemorizationRequest, text=text, model=DEMO_MODEL, revisions=[revision]))
            return time.perf_counter() - start

        def sweep():
            start = time.perf_counter()
            service.score_across(service.parse(ScoreAcrossRequest, text=text, model=DEMO_MODEL, revisions=revisions))
            service.memorization(service.parse(MemorizationRequest, text=text, model=DEMO_MODEL, revisions=revisions))
            return time.perf_counter() - start

        singles, sweeps = [], []
        for _ in range(1 if args.smoke else 3):  # interleaved, median of three
            singles.append(statistics.median(one(r) for r in revisions))
            sweeps.append(sweep())
        engine.close()
    single, whole = statistics.median(singles), statistics.median(sweeps)
    print(f"one checkpoint: {single * 1000:.0f} ms; sweep of {len(revisions)}: {whole * 1000:.0f} ms; "
          f"sweep / ({len(revisions)} x one) = {whole / (len(revisions) * single):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
