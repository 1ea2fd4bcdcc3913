#!/usr/bin/env bash
# The command-line benchmark, one command: set up (venv, Docker engine, test images), the demo images and
# docker-compose 1.29.2 (Debian), then run bench/cli.py (arguments are passed on).
#   bench/cli.sh --quick                  # chain6, outside6 + demo, warm server, 2 repetitions, 1 min at rest
#   bench/cli.sh                          # everything: < 30 min
#   bench/cli.sh --postgres auto          # + scale on a PostgreSQL-backed server (scripts/ensure_postgres.sh)
#   bench/cli.sh --stacks --no-concurrency --scale 500 --scale-repeats 3 --postgres auto
#                                         # the 500-chunk target: 3 rounds, ABBA order (~40 min)
# Results: bench/results/cli-<stamp>.json, cli-latest.json, cli-latest.md (bench/cli_report.py --docs puts the
# section into docs/benchmark.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build_demo_images.sh
if ! command -v docker-compose >/dev/null; then
  [[ $EUID -eq 0 && -f /etc/debian_version ]] ||
    { echo "bench: needs docker-compose 1.29.2 (Debian: apt-get install docker-compose)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi
exec .venv/bin/python bench/cli.py "$@"
