"""Summarise a native crash of the test process: its last stderr lines and the crashing thread.

tests/run.sh calls this only when pytest died from a signal. It prints what faulthandler said
about the crashing thread (not the dozens of idle ones) and, when gdb and a core dump are
there, the native backtrace of the thread that received the signal.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def faulthandler_summary(lines: list[str]) -> list[str]:
    try:
        fatal = next(i for i, line in enumerate(lines) if line.startswith("Fatal Python error"))
    except StopIteration:
        return ["(no faulthandler report on stderr)"] + lines[-15:]
    out = ["--- stderr just before the crash ---", *lines[max(0, fatal - 15):fatal], lines[fatal]]
    current = next((i for i in range(fatal, len(lines)) if lines[i].startswith("Current thread")), None)
    if current is None:
        out.append("(faulthandler marked no Python thread as current: the signal came from a native thread)")
    else:
        end = next((i for i in range(current + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
        out += ["--- the crashing Python thread ---", *lines[current:end]]
    tops = [lines[i + 1].strip() for i in range(fatal, len(lines) - 1) if lines[i].startswith("Thread 0x")]
    out.append(f"--- {len(tops)} other Python threads; their innermost frames: ---")
    out += sorted(set(tops))
    return out


def native_backtrace() -> list[str]:
    cores = sorted(Path(".").glob("core*"), key=lambda p: p.stat().st_mtime)
    cores = [c for c in cores if c.is_file() and (c.name == "core" or c.name[5:].isdigit())]
    if not cores or not shutil.which("gdb"):
        return ["(no core dump or no gdb: no native backtrace)"]
    try:
        done = subprocess.run(["gdb", "-batch", "-nx", "-ex", "bt 25", sys.executable, str(cores[-1])],
                              capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return ["(gdb took too long)"]
    frames = list(dict.fromkeys(line[:220] for line in done.stdout.splitlines() if line.startswith("#")))
    return ["--- native backtrace of the crashing thread (gdb) ---", *(frames or done.stdout.splitlines()[-25:])]


def main() -> None:
    lines = Path(sys.argv[1]).read_text(errors="replace").splitlines()
    print("\n========== native crash report (tests/crash_report.py) ==========")
    print("\n".join(faulthandler_summary(lines) + native_backtrace()))


if __name__ == "__main__":
    main()
