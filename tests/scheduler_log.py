"""The batch scheduler's queue, as its log tells it: at DEBUG it says how many requests wait for a lane after
each change (model_utils/engine/batching.py). Tests observe the queue there, not through test-only counters."""

from __future__ import annotations

import logging
import re

import pytest

QUEUE = re.compile(r": (\d+) wait for this model")


@pytest.fixture
def queue_log(caplog):
    """caplog, recording the engine's DEBUG lines (where the scheduler reports its queue)."""
    caplog.set_level(logging.DEBUG, logger="model_utils.engine")
    return caplog


def waiting(caplog) -> int:
    """How many requests wait for a lane, as the scheduler last logged it (0 before anything queued)."""
    counts = [int(m.group(1)) for r in caplog.records if (m := QUEUE.search(r.getMessage()))]
    return counts[-1] if counts else 0
