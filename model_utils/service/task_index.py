"""lm-eval's TaskManager, with the index of lm-eval's own tasks kept on disk.

Building a TaskManager reads every task YAML lm-eval ships (~15,000 files, about 10 s of CPU on a 2-core machine)
to index them by name. That index depends only on the installed lm-eval, so it is written once to the user's cache
(as JSON, not pickle: a cache file must not be able to run code) and read back in under a second; the local task
folders are indexed afresh every time, as TaskManager does, and override lm-eval's tasks of the same name as they do
there. A missing, stale, damaged or unwritable cache file only means the index is built as TaskManager builds it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import defaultdict
from importlib.metadata import distribution
from itertools import chain
from pathlib import Path
from typing import Any

log = logging.getLogger(__package__)

CACHE_ENV = "XDG_CACHE_HOME"


def cache_folder() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache") / "pythia-ct2"


def _stamp(defaults: Path) -> str:
    """What the index depends on: lm-eval's version, where its tasks are installed and when they were written."""
    dist = distribution("lm_eval")
    record = next((f for f in dist.files or () if f.name == "RECORD"), None)
    parts = [dist.version, str(defaults)]
    parts += [str(Path(dist.locate_file(record)).stat().st_mtime_ns)] if record else []
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _encode(index: dict[str, Any]) -> list[dict]:
    return [{"name": e.name, "kind": e.kind.name, "yaml_path": None if e.yaml_path is None else str(e.yaml_path),
             "cfg": e.cfg, "tags": sorted(e.tags)} for e in index.values()]


def _decode(rows: list[dict]) -> dict[str, Any]:
    from lm_eval.tasks._index import Entry, Kind

    return {r["name"]: Entry(r["name"], Kind[r["kind"]], None if r["yaml_path"] is None else Path(r["yaml_path"]),
                             r["cfg"], set(r["tags"])) for r in rows}


def default_index(folder: Path | None = None) -> dict[str, Any]:
    """lm-eval's own tasks by name, as ``TaskIndex.build`` gives them: from the cache file, or built and written."""
    import lm_eval.tasks
    from lm_eval.tasks._index import TaskIndex

    defaults = Path(lm_eval.tasks.__file__).parent
    path = (folder or cache_folder()) / f"lm-eval-tasks-{_stamp(defaults)}.json"
    try:
        return _decode(json.loads(path.read_text()))
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the cached index of lm-eval's tasks (%s) could not be read (%s); building it again", path, exc)
    index = TaskIndex.build([defaults])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".part", delete=False) as out:
            json.dump(_encode(index), out)
        os.replace(out.name, path)  # whole or not at all: another process may be reading it
    except OSError as exc:
        log.info("the index of lm-eval's tasks could not be kept in %s (%s); it is built at each start", path, exc)
    return index


def task_manager(include_paths: list[str], folder: Path | None = None):
    """A TaskManager over lm-eval's tasks and ``include_paths``, equal to ``TaskManager(include_path=...)``."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._index import Kind

    manager = TaskManager(include_path=include_paths or None, include_defaults=False)
    index = {**default_index(folder), **manager.task_index}  # later paths override earlier, as TaskManager merges
    # TaskManager.__init__'s own bookkeeping over the merged index (lm-eval is pinned; a test compares the two)
    buckets = defaultdict(list)
    for name, entry in index.items():
        buckets[entry.kind].append(name)
    manager._index = index
    manager._all_tasks = sorted(index)
    manager._all_subtasks = sorted(chain.from_iterable(buckets[k] for k in (Kind.TASK, Kind.PY_TASK)))
    manager._all_groups = sorted(buckets[Kind.GROUP])
    manager._all_tags = sorted(buckets[Kind.TAG])
    return manager
