#!/usr/bin/env bash
# Podman's Docker-compatible API on a unix socket of its own, for the Podman tests. Idempotent.
#   ensure_podman.sh [start]   install podman + catatonit if missing (root on Debian), start
#                              `podman system service` detached (pid recorded), load the test images;
#                              the last line printed is the socket's URL (for DOCKER_HOST)
#   ensure_podman.sh stop      stop that service by its recorded pid
# Folder: $PNR_PODMAN_DIR (default /var/tmp/pnr-podman; the tests give each session its own): podman.sock,
# podman.pid, containers.conf, service.log.
set -euo pipefail
DIR=${PNR_PODMAN_DIR:-/var/tmp/pnr-podman}
SOCK="$DIR/podman.sock"
PIDFILE="$DIR/podman.pid"
CONF="$DIR/containers.conf"
IMAGES=${PNR_TEST_IMAGES:-pnr-test/busybox:1 pnr-test/busybox-health:1}
action=${1:-start}

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q podman "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

answers() { podman --remote --url "unix://$SOCK" version >/dev/null 2>&1; }

stop_service() {
  local pid
  if pid=$(running_pid); then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "podman service (pid $pid) stopped"
  fi
  rm -f "$PIDFILE" "$SOCK"
}

if [ "$action" = stop ]; then
  stop_service
  exit 0
fi
if [ "$action" != start ]; then
  echo "usage: $0 [start|stop]" >&2
  exit 2
fi

if ! command -v podman >/dev/null || ! command -v catatonit >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing podman and catatonit with apt-get ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman catatonit >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman catatonit >/dev/null; }
  else
    echo "podman (with catatonit for init: true) is not installed and this is not root on Debian:" \
      "install it with your package manager (e.g. sudo apt-get install podman catatonit)" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "this script starts rootful podman for the tests: run it as root" >&2
  exit 1
fi
mkdir -p "$DIR"

# Podman asks for nofile=1048576 and nproc=4194304 in every container; where the machine's hard limits are lower,
# runc cannot set them and every start fails ("error setting rlimits ... operation not permitted"). Podman also
# caps its own nproc at kernel.pid_max.
hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 4194304)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nproc" = unlimited ] && hard_nproc=4194304
nofile=$((hard_nofile < 1048576 ? hard_nofile : 1048576))
nproc=$((hard_nproc < pid_max ? hard_nproc : pid_max))
nproc=$((nproc < 4194304 ? nproc : 4194304))
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' "$nofile" "$nofile" "$nproc" "$nproc" >"$CONF.tmp"
if ! cmp -s "$CONF.tmp" "$CONF"; then
  mv "$CONF.tmp" "$CONF"
  stop_service  # a running service read the old file
else
  rm -f "$CONF.tmp"
fi

if ! running_pid >/dev/null || ! answers; then
  stop_service >/dev/null
  echo "starting podman system service on $SOCK (log: $DIR/service.log) ..."
  CONTAINERS_CONF="$CONF" setsid podman system service --time=0 "unix://$SOCK" \
    </dev/null >"$DIR/service.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do answers && break; sleep 0.1; done
  if ! answers; then
    echo "podman system service did not answer on $SOCK within 10 s; $DIR/service.log:" >&2
    tail -20 "$DIR/service.log" >&2
    stop_service >/dev/null
    exit 1
  fi
fi

for image in $IMAGES; do
  if ! podman image exists "$image"; then
    if ! docker image inspect "$image" >/dev/null 2>&1; then
      echo "the test image $image is not in Docker either: run scripts/setup.sh first" >&2
      exit 1
    fi
    echo "loading $image into podman ..."
    docker save "$image" | podman load -q >/dev/null
  fi
done
echo "unix://$SOCK"
