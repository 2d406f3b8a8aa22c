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
exec python -m pytest "$@"
