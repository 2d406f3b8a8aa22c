"""The documents of the kjv_lambada task (built by tools/make_kjv_lambada.py), read from next to this file: lm-eval
resolves a task's ``data_files`` against the working directory, a ``custom_dataset`` function against nothing."""

import json
from pathlib import Path

DOCUMENTS = Path(__file__).with_suffix(".jsonl")


def load(**kwargs):
    import datasets

    rows = [json.loads(line) for line in DOCUMENTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
