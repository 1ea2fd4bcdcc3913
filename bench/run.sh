#!/usr/bin/env bash
# The benchmark, one command: set up (venv, Docker engine, test images), the demo images, docker-compose
# 1.29.2 (Debian) and the plot/profiling extras, then run bench/run.py (arguments are passed on).
# Results: bench/results/*.json, bench/results/inprocess.md and inprocess.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_demo_images.sh
if ! command -v docker-compose >/dev/null; then
  [[ $EUID -eq 0 && -f /etc/debian_version ]] || { echo "bench: needs docker-compose 1.29.2 (Debian: apt-get install docker-compose)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
.venv/bin/python -c 'import matplotlib' 2>/dev/null ||
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,bench]"
export PREFECT_HOME="${PREFECT_HOME:-$(mktemp -d)}"
exec .venv/bin/python bench/run.py "$@"
