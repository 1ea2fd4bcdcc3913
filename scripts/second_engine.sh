#!/usr/bin/env bash
# A second, real Docker engine on this machine, for tests of domains that span several engines.
#
#   scripts/second_engine.sh start    start it (if not running), wait until it answers, copy the test images
#   scripts/second_engine.sh stop     stop it by its pid file and delete its bridge (its data stays for a restart)
#   scripts/second_engine.sh purge    stop it and delete its data root too (the next start is a fresh engine)
#   scripts/second_engine.sh status   exit 0 if it answers
#
# It listens on unix://$PNR_ENGINE2_DIR/docker.sock and tcp://127.0.0.2:2375 (loopback only), keeps its own
# data root, exec root and pid file under $PNR_ENGINE2_DIR (default /tmp/pnr-engine2), and its containers use
# its own bridge pnrb0 (10.213.0.1/24) and address pool (10.214.0.0/16): nothing overlaps the first engine.
# Never `--bridge=none`: a daemon started that way deletes the first engine's docker0 (see ENVIRONMENT.md).
# `--iptables=false --ip-masq=false`: it leaves the first engine's firewall rules alone; published ports are
# served by docker-proxy on 127.0.0.2 (a config gives the engine `"address": "127.0.0.2"` or lets pnr derive it).
set -euo pipefail

DIR=${PNR_ENGINE2_DIR:-/tmp/pnr-engine2}
BRIDGE=${PNR_ENGINE2_BRIDGE:-pnrb0}
BRIDGE_CIDR=${PNR_ENGINE2_BRIDGE_CIDR:-10.213.0.1/24}
POOL=${PNR_ENGINE2_POOL:-10.214.0.0/16}
TCP=${PNR_ENGINE2_TCP:-127.0.0.2:2375}
IMAGES=${PNR_ENGINE2_IMAGES:-pnr-test/busybox:1}
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/docker.pid"

engine2() { docker -H "unix://$SOCK" "$@"; }
answers() { [ -S "$SOCK" ] && engine2 version --format '{{.Server.Version}}' >/dev/null 2>&1; }
running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q dockerd "/proc/$pid/cmdline" 2>/dev/null; then
    echo "$pid"
  fi
}

start() {
  if [ "$(id -u)" != 0 ]; then
    echo "a second Docker engine needs root (dockerd, a bridge)" >&2
    exit 1
  fi
  command -v dockerd >/dev/null || { echo "dockerd is not installed (scripts/ensure_docker.sh)" >&2; exit 1; }
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
    echo "the first Docker engine does not answer (scripts/ensure_docker.sh): it provides the test images" >&2
    exit 1
  }
  mkdir -p "$DIR/data" "$DIR/exec"
  # Seen here: a second dockerd restarted on an existing data root deletes the *first* engine's docker0 while
  # it clears its stale default network (the first engine's default-bridge containers then cannot start).
  # Remember docker0's address and put the device back if that happens.
  local docker0_addr
  docker0_addr=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' | head -1)
  if [ -z "$(running_pid)" ]; then
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
      ip link add "$BRIDGE" type bridge
      ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    rm -f "$SOCK" "$PIDFILE"
    # its own session: it outlives the shell that started it; the pid file is how it is stopped
    setsid dockerd \
      --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
      -H "unix://$SOCK" -H "tcp://$TCP" \
      --bridge="$BRIDGE" --iptables=false --ip-masq=false \
      --default-address-pool "base=$POOL,size=24" \
      </dev/null >"$DIR/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 1 120); do
    answers && break
    sleep 0.25
  done
  if ! answers; then
    echo "the second engine did not answer within 30s; $DIR/dockerd.log:" >&2
    tail -20 "$DIR/dockerd.log" >&2 || true
    exit 1
  fi
  if [ -n "$docker0_addr" ] && ! ip link show docker0 >/dev/null 2>&1; then
    echo "note: starting the second engine removed the first engine's docker0; restored it ($docker0_addr)" >&2
    ip link add docker0 type bridge
    ip addr add "$docker0_addr" dev docker0
    ip link set docker0 up
  fi
  for image in $IMAGES; do
    local want have
    want=$(docker image inspect --format '{{.Id}}' "$image")
    have=$(engine2 image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
      docker save "$image" | engine2 load -q >/dev/null
    fi
  done
  echo "second engine up: unix://$SOCK tcp://$TCP (pid $(cat "$PIDFILE"))"
}

stop() {
  local pid
  pid=$(running_pid)
  if [ -n "$pid" ]; then
    kill "$pid"
    for _ in $(seq 1 80); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      sleep 0.5
    fi
  fi
  rm -f "$PIDFILE"
  # mounts a killed daemon may leave behind
  { grep -o " $DIR/[^ ]*" /proc/mounts 2>/dev/null || true; } | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link set "$BRIDGE" down || true
    ip link delete "$BRIDGE" type bridge || true
  fi
  echo "second engine stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  purge) stop; rm -rf "$DIR" ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|purge|status" >&2; exit 2 ;;
esac
