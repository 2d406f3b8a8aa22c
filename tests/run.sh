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
# Two parts: most tests on two workers (pytest-xdist; a test file stays on one worker, so its app and browser start
# once), then the tests that judge a time against a bound (marked `alone`), with nothing beside them. The workers
# take the files in the order conftest.py gives them (FILE_ORDER: the longest first; xdist's default reorders them by
# how many tests each holds, which started the soak's file, 2 tests and 150 s, 8 minutes into a run).
# Three workers were measured no faster (486 s against 502 s): 1.8-2.0 of the two cores are busy all along.
# Exit status 5 means that a part had no test to run (e.g. `-m "not slow"` leaves the second part empty).
set +e
PYTHIA_TESTS_PART=parallel python -m pytest -n 2 --dist loadfile --no-loadscope-reorder "$@" 2> >(tee "$stderr_copy" >&2)
rc_parallel=$?
PYTHIA_TESTS_PART=alone python -m pytest "$@" 2> >(tee -a "$stderr_copy" >&2)
rc_alone=$?
set -e
wait  # for tee to flush
if [ "$rc_parallel" -eq 5 ] && [ "$rc_alone" -eq 5 ]; then rc=5
elif [ "$rc_parallel" -ne 0 ] && [ "$rc_parallel" -ne 5 ]; then rc=$rc_parallel
elif [ "$rc_alone" -ne 5 ]; then rc=$rc_alone
else rc=0
fi
if [ "$rc" -ge 128 ] || grep -q "^Fatal Python error" "$stderr_copy"; then  # a worker that died says so there
  python tests/crash_report.py "$stderr_copy" || true
fi
rm -f "$stderr_copy" core core.[0-9]*
exit "$rc"
