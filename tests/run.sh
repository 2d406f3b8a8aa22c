#!/usr/bin/env bash
# One command for a fresh machine: install what the tests need, then run them.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  # Browser tests use Debian's chromium; Playwright never downloads a browser here.
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
python -m pip install -q -r requirements-dev.txt

# Lint first: a lint error fails the run, as a failing test does (rules in pyproject.toml).
python -m ruff check .

# A native crash of the test process (CI has seen rare aborts inside native code) must say where
# it happened: keep stderr and a core dump, and print a short crash report last, where a log cut
# to its tail still shows it. Passing and failing runs behave exactly as plain pytest.
stderr_copy=$(mktemp)
rm -f core core.[0-9]*
ulimit -c unlimited 2>/dev/null || true
set +e
python -m pytest "$@" 2> >(tee "$stderr_copy" >&2)
rc=$?
set -e
wait  # for tee to flush
if [ "$rc" -ge 128 ]; then
  python tests/crash_report.py "$stderr_copy" || true
fi
rm -f "$stderr_copy" core core.[0-9]*
exit "$rc"
