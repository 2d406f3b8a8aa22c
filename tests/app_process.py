"""`python app.py` in a subprocess, as a user runs it, with its memory and threads readable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from live_app import free_port

ROOT = Path(__file__).resolve().parent.parent


class AppProcess:
    """``python app.py --port PORT *flags``; ``port``: a free one unless given; ``env``: the environment (this
    process's unless given)."""

    def __init__(self, *flags: str, port: int | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
        # The terminal goes to a file, not a pipe: a pipe nobody reads fills at 64 KiB and then blocks the
        # app at its next print, which is a hang of the test, not of the app.
        self._terminal = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(self.port), *flags], cwd=ROOT,
                                     env=env, stdout=self._terminal, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the app exited: {self.output()[-2000:]}")
            try:
                if httpx.get(self.url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.kill()
        raise AssertionError("the app did not start")

    def output(self) -> str:
        """What the app has printed so far (stdout and stderr, interleaved as a terminal shows them)."""
        self._terminal.seek(0)
        return self._terminal.read()

    def _status(self, field: str) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(text.split(f"{field}:")[1].split()[0])

    def rss_mib(self) -> float:
        return self._status("VmRSS") / 1024

    def threads(self) -> int:
        return self._status("Threads")

    def terminate(self, timeout: float = 10) -> int:
        """SIGTERM, as a Space stops its container; the exit status. An app still running after ``timeout``
        fails the test with what it printed, and is killed."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            printed = self.output()[-3000:]
            raise AssertionError(f"the app did not stop within {timeout} s of SIGTERM: {printed}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
