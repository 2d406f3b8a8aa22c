"""Build the demo model's LAMBADA-style task data (model_utils/store/data/demo/tasks/kjv_lambada.jsonl).

Every verse of the chapters the demo model never trained on (every 40th, as tools/train_demo.py holds them out),
with the verse before it as context, becomes one document: {"text": "<previous verse> <verse without its final
punctuation>"}; the task asks for the last word given the rest, as lambada_openai does. Run with the corpus
listing that tools/train_demo.py fetches (``python tools/make_kjv_lambada.py [kjv.txt]``; without an argument it
fetches it from Debian's packages).

    python tools/make_kjv_lambada.py --smoke OUT.jsonl   # seconds, offline: a made-up listing of 40 chapters
"""

from __future__ import annotations

import json
import re
import sys
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
DEMO = ROOT / "model_utils" / "store" / "data" / "demo"
OUT = DEMO / "tasks" / "kjv_lambada.jsonl"
HELD_OUT_EVERY = 40  # as tools/train_demo.py
LAST_WORD = re.compile(r"^(.*\S) ([A-Za-z]+)[.,;:?!)]*$")


def held_out_chapters(listing: str) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for line in listing.splitlines():
        m = re.match(r"^(\S+?\d+):\d+ (.*)$", line)
        if m:
            groups.setdefault(m.group(1), []).append(m.group(2).strip())
    chapters = list(groups.values())
    return [c for i, c in enumerate(chapters) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]


def documents(listing: str) -> list[dict]:
    docs = []
    for verses in held_out_chapters(listing):
        for before, verse in pairwise(verses):
            m = LAST_WORD.match(verse)
            if m and len(m.group(1).split()) >= 4:
                docs.append({"text": f"{before} {m.group(1)} {m.group(2)}"})
    return docs


def smoke_listing() -> str:
    """40 chapters of three verses in the listing's format (the 40th is held out), from the shipped held-out text."""
    sentences = [s.strip() + "." for s in (DEMO / "heldout.txt").read_text().split(".") if s.strip()]
    return "\n".join(f"Ge{c}:{v} {sentences[(c + v) % len(sentences)]}" for c in range(1, 41) for v in (1, 2, 3))


def main() -> None:
    global OUT
    if sys.argv[1:2] == ["--smoke"]:
        OUT = Path(sys.argv[2])  # never the shipped file
        listing = smoke_listing()
    elif len(sys.argv) > 1:
        listing = Path(sys.argv[1]).read_text()
    else:
        from train_demo import fetch_corpus  # needs apt-get and the network

        listing = fetch_corpus(ROOT / "tools" / ".work")
    docs = documents(listing)
    OUT.write_text("".join(json.dumps(d) + "\n" for d in docs))
    print(f"{len(docs)} documents -> {OUT}")


if __name__ == "__main__":
    main()
