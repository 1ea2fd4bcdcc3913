#!/usr/bin/env bash
# The pnr demo, one command: set up (venv, Docker engine, test images), build the demo images (cached),
# bring config/dev_stack.json up in readiness order (redis -> api -> web), then show the page and the state.
# Exits non-zero when the bring-up fails. Tear down with: .venv/bin/pnr down config/dev_stack.json
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=config/dev_stack.json
URL=http://127.0.0.1:18080/
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

export PREFECT_SERVER_ANALYTICS_ENABLED=${PREFECT_SERVER_ANALYTICS_ENABLED:-false} DO_NOT_TRACK=${DO_NOT_TRACK:-1}

step "setup: venv, Docker engine, test images"
bash scripts/setup.sh
step "demo images (built locally without a registry; cached)"
bash scripts/build_demo_images.sh

step ".venv/bin/pnr up $CONFIG"
if ! .venv/bin/pnr up "$CONFIG"; then
  echo "demo: the bring-up failed (see above); state: .venv/bin/pnr status $CONFIG" >&2
  exit 1
fi

step "curl -s $URL   (web -> api -> redis)"
fetch() {  # curl if the machine has it, else the venv's Python
  if command -v curl >/dev/null; then curl -s --max-time 5 "$1"
  else .venv/bin/python -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; fi
}
body=$(fetch "$URL") || { echo "demo: $URL did not answer" >&2; exit 1; }
echo "$body"
case "$body" in *greeting*) ;; *) echo "demo: the page has no greeting from redis" >&2; exit 1;; esac

step ".venv/bin/pnr status $CONFIG"
.venv/bin/pnr status "$CONFIG"

echo
echo "The stack is up: redis (127.0.0.1:16379), api (http://127.0.0.1:18000/health), web ($URL)."
echo "Look at it:"
show() { printf '  %-58s # %s\n' "$1" "$2"; }
show "curl -s $URL" "hits goes up on every call"
show ".venv/bin/pnr status $CONFIG" "chunks, containers, truth values"
show ".venv/bin/pnr plan $CONFIG" "the signal graph: who waits on what"
show ".venv/bin/pnr signal get $CONFIG api_ready" "one truth value"
show "cat runtime/dev_stack.pnr.json" "the runtime JSON mirror (folder runtime/)"
show "docker ps --filter label=io.pnr.domain=dev_stack" "the containers pnr labelled"
ui=$(.venv/bin/pnr server status 2>/dev/null | awk '$1 == "UI" {print $2; exit}') || true
show "${ui:-the address pnr server status shows}" "the Prefect UI: this bring-up, its chunks and probes"
show ".venv/bin/pnr server stop" "stops pnr's Prefect server (the next pnr up starts it again)"
echo "Tear it down:"
show ".venv/bin/pnr down $CONFIG" "removes the containers and the network"
