#!/usr/bin/env bash
# The whole test suite: sets everything up (venv, Docker engine, test images), then unit + integration tests.
# Extra arguments go to pytest (e.g. scripts/test.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/check.sh
export PNR_REQUIRE_DOCKER=1     # a missing engine is a failure, never a skip
export PNR_REQUIRE_POSTGRES=1   # the same for the PostgreSQL the tests set up (scripts/ensure_postgres.sh)
exec .venv/bin/python -m pytest "$@"
