"""The index of lm-eval's own tasks kept on disk (model_utils/service/task_index.py) gives the TaskManager that lm-eval
builds itself, and a damaged cache file costs a rebuild, never a wrong index."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from model_utils.service.benchmarks import SHIPPED_TASKS_DIR
from model_utils.service.task_index import _stamp, task_manager

pytestmark = pytest.mark.slow  # lm-eval builds its index twice here: ~10 s of CPU each


def _described(manager) -> dict:
    return {"tasks": manager.all_tasks, "subtasks": manager.all_subtasks, "groups": manager.all_groups,
            "tags": manager.all_tags,
            "entries": {n: (e.kind, e.yaml_path, e.cfg, e.tags) for n, e in manager.task_index.items()}}


def test_the_cached_index_is_lm_evals_own_and_a_damaged_file_is_rebuilt(tmp_path, caplog):
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    local = [str(SHIPPED_TASKS_DIR)]
    built = _described(TaskManager(include_path=local))
    assert "kjv_lambada" in built["subtasks"] and "lambada_openai" in built["subtasks"]

    # A cache file cut short, as a full disk or a crash mid-write would leave it: built again (as when there is no
    # file: the same path) and written whole. Two builds in this test instead of three: each costs ~10 s of CPU.
    cached = tmp_path / f"lm-eval-tasks-{_stamp(Path(lm_eval.tasks.__file__).parent)}.json"
    cached.write_text('[{"name": "arc_easy", "kind": "TA')
    with caplog.at_level(logging.WARNING, logger="model_utils.service"):
        rebuilt = task_manager(local, tmp_path)
    assert _described(rebuilt) == built
    assert "could not be read" in caplog.text and "building it again" in caplog.text
    assert list(tmp_path.glob("lm-eval-tasks-*.json")) == [cached] and not list(tmp_path.glob("*.part"))

    written = cached.stat().st_ino
    again = task_manager(local, tmp_path)  # read back from the file just written
    assert _described(again) == built
    assert cached.stat().st_ino == written, "read, not built and written again"
    assert again.load(["kjv_lambada"])["tasks"]["kjv_lambada"].config.dataset_path == "json"  # a task loads
