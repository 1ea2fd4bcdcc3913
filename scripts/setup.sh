#!/usr/bin/env bash
# Everything pnr needs on this machine, idempotent: a venv with pnr and its test tools, a running
# Docker engine, and the local test images. Prints one line per step.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pnr needs Python 3.11 or newer as \$PYTHON or python3" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv ..."
  "$PY" -m venv .venv
fi
stamp=.venv/.pnr-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing pnr and its dependencies into .venv ..."
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c 'import pnr, prefect, docker' 
  echo "$want" > "$stamp"
fi
bash scripts/ensure_docker.sh
bash scripts/build_test_images.sh
# docker-compose 1.29.2 (Debian's): the comparison baseline of the compose-parity tests and the benchmark
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing docker-compose with apt-get ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
  else
    echo "note: docker-compose is not installed; the compose-parity tests will skip (apt-get install docker-compose)"
  fi
fi
