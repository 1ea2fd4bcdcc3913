#!/usr/bin/env bash
# Style and types, as CI keeps them: ruff format, ruff lint (rules in pyproject.toml), mypy strict on pnr/.
# Run after scripts/setup.sh (the venv has the pinned ruff and mypy). Exit status 1 on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "checking style: ruff format --check, ruff check, mypy --strict pnr ..."
.venv/bin/ruff format --check --quiet pnr tests flows bench scripts || { echo "ruff format would change the files above: run .venv/bin/ruff format" >&2; exit 1; }
.venv/bin/ruff check --quiet pnr tests flows bench scripts
.venv/bin/mypy pnr flows
echo "style and types ok"
