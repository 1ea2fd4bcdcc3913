#!/usr/bin/env bash
# Regenerate every Prefect UI screenshot the docs show (README "Monitoring", docs/prefect.md): docs/img/
# ui-flow-run.png, ui-bring-up.png and ui-timeline.png (the timeline artifact with its Gantt chart). It
# starts a throw-away Prefect server (temporary PREFECT_HOME, free port), deploys the example_chain
# deployments from prefect.yaml, runs the bring-up through a process worker, and photographs the flow-run
# pages in headless Chromium. Tears the example down and stops the server afterwards.
#
#   scripts/screenshot_ui.sh [OUT_DIR]        # default docs/img
#
# Needs: the venv (scripts/setup.sh), a Docker engine with pnr-test/busybox:1, chromium (installed here with
# apt-get when run as root on Debian), and free host ports 38701-38703 (config/example_chain.json).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-docs/img}
PY=.venv/bin/python
PREFECT=.venv/bin/prefect
PNR=.venv/bin/pnr
CONFIG=config/example_chain.json

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "needs chromium (Debian: apt-get install chromium) - not root or not Debian, so not installing it" >&2
    exit 1
  fi
fi
[ -x "$PY" ] || { echo "no venv: run scripts/setup.sh first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pnr-screenshot.XXXXXX)
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PREFECT_HOME="$WORK/prefect-home" PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_API_URL="http://127.0.0.1:$PORT/api" PNR_RUNTIME_DIR="$WORK/runtime"
SERVER_PID=""

cleanup() {
  "$PNR" down "$CONFIG" >/dev/null 2>&1 || true
  if [ -n "$SERVER_PID" ]; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "prefect server on 127.0.0.1:$PORT (PREFECT_HOME=$PREFECT_HOME)"
# the UI's browser code calls PREFECT_UI_API_URL (default :4200), so point it at this port
PREFECT_UI_API_URL="$PREFECT_API_URL" setsid env -u PREFECT_API_URL "$PREFECT" server start --host 127.0.0.1 --port "$PORT" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 360); do
  curl -sf "$PREFECT_API_URL/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.5
done
curl -sf "$PREFECT_API_URL/health" >/dev/null || { echo "server did not come up" >&2; tail -30 "$WORK/server.log" >&2; exit 1; }

"$PREFECT" work-pool create pnr --type process >/dev/null
"$PREFECT" --no-prompt deploy --name example-chain >/dev/null
RUN_OUT=$("$PREFECT" deployment run pnr-up/example-chain)
RUN_ID=$(printf '%s\n' "$RUN_OUT" | sed -n 's/.*UUID: \([0-9a-f-]\{36\}\).*/\1/p' | head -1)
echo "bring-up flow run $RUN_ID; running it with a process worker"
"$PREFECT" worker start --pool pnr --run-once >"$WORK/worker.log" 2>&1 || { tail -40 "$WORK/worker.log" >&2; exit 1; }

read -r SUB_ID ART_ID STATE < <($PY - "$RUN_ID" <<'EOF'
import sys, httpx, os
api, run = os.environ["PREFECT_API_URL"], sys.argv[1]
state = httpx.get(f"{api}/flow_runs/{run}").json()["state"]["type"]
subs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"operator": "and_", "any_": [run]}}}).json()
arts = httpx.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": ["pnr-example-chain-timeline"]}}}).json()
print(subs[0]["id"] if subs else "-", arts[0]["id"] if arts else "-", state)
EOF
)
[ "$STATE" = COMPLETED ] || { echo "the bring-up ended $STATE" >&2; tail -40 "$WORK/worker.log" >&2; exit 1; }

shoot() {  # URL FILE: the SPA needs a few seconds of (virtual) time to fetch and draw the run graph
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$WORK/chromium" --window-size=1400,1000 \
    --virtual-time-budget=15000 --screenshot="$2" "$1" >"$WORK/chromium.log" 2>&1
  [ -s "$2" ] || { echo "chromium wrote no $2" >&2; tail -20 "$WORK/chromium.log" >&2; exit 1; }
  echo "saved $2"
}
mkdir -p "$OUT"
UI="http://127.0.0.1:$PORT"
shoot "$UI/runs/flow-run/$SUB_ID" "$OUT/ui-flow-run.png"          # the CPUX subflow: one task per chunk
shoot "$UI/runs/flow-run/$RUN_ID" "$OUT/ui-bring-up.png"           # the deployment's flow run
[ "$ART_ID" = - ] || shoot "$UI/artifacts/artifact/$ART_ID" "$OUT/ui-timeline.png"   # readiness timeline artifact
