#!/usr/bin/env bash
# Style and types, as CI keeps them: ruff format, ruff lint (rules in pyproject.toml), mypy strict on pnr/, flows/
# and the unit tests' fake engine (it must satisfy the engine Protocol), as seen on Linux, macOS and Windows (an
# import that exists on one OS only cannot slip in).
# Run after scripts/setup.sh (the venv has the pinned ruff and mypy). Exit status 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "checking style: ruff format --check, ruff check, mypy --strict pnr flows (linux, darwin, win32) ..."
.venv/bin/ruff format --check --quiet pnr tests flows bench scripts || { echo "ruff format would change the files above: run .venv/bin/ruff format" >&2; exit 1; }
.venv/bin/ruff check --quiet pnr tests flows bench scripts
for platform in linux darwin win32; do
  .venv/bin/mypy --platform "$platform" pnr flows tests/unit/fakes.py | sed "s/^Success:/$platform: success:/"
done
echo "style and types ok"
