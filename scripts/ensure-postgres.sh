#!/usr/bin/env bash
# HAPI on PostgreSQL (`labinterp sandbox up --database postgres`) and the PostgreSQL queue's tests need Debian's
# PostgreSQL server binaries. Installs them when missing and we may (root with apt-get); otherwise says what to do.
# Only the binaries: labinterp.sandbox.postgres runs its own cluster (non-root user, 127.0.0.1, own port).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's postgresql for HAPI on PostgreSQL and the queue's tests (apt-get)..."
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
else
  echo "PostgreSQL is missing: install Debian's postgresql (sudo apt-get install postgresql) for the PostgreSQL tests" >&2
  exit 1
fi
