"""Imported at start-up by a test's ``python app.py`` whose PYTHONPATH names this folder (tests/test_load.py's soak):
anyio ends a worker thread once it has been idle for ANYIO_IDLE_S seconds instead of its own 10.

The soak counts the app's threads after the traffic: pool threads that are only idle must be gone first, and anyio
ends them only after its idle time. Waiting out 10 s, up to five times, was ~50 s of the test run doing nothing; the
app's own code and threads are the same either way."""

import os

from anyio._backends._asyncio import WorkerThread

WorkerThread.MAX_IDLE_TIME = float(os.environ["ANYIO_IDLE_S"])
