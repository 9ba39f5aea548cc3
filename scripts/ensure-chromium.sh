#!/usr/bin/env bash
# The dashboard's browser test needs Debian's chromium (headless). Installs it when missing and we may
# (root with apt-get); otherwise says what to do. Used by `make test` and .ci/run, so the README's test
# command works on a fresh machine.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the dashboard's browser test (apt-get)..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "chromium is missing: install Debian's chromium (sudo apt-get install chromium) for the browser test" >&2
  exit 1
fi
