#!/usr/bin/env bash
# Make sure a Docker engine answers. If none does and this is root on Debian/Ubuntu, install docker.io
# and start dockerd in the background; anywhere else, say what to do and fail.
set -euo pipefail
engine_ok() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if command -v docker >/dev/null && engine_ok; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  echo "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine or unset DOCKER_HOST" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing the Docker engine (docker.io) with apt-get ..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  else
    echo "no Docker engine answers and this is not root on Debian: start Docker (Docker Desktop, systemctl start docker) or set DOCKER_HOST" >&2
    exit 1
  fi
fi
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers; start it (e.g. sudo systemctl start docker) or set DOCKER_HOST" >&2
  exit 1
fi
echo "starting dockerd in the background (log: /var/log/pnr-dockerd.log) ..."
nohup dockerd >/var/log/pnr-dockerd.log 2>&1 &
for _ in $(seq 1 120); do
  if engine_ok; then echo "Docker engine is up"; exit 0; fi
  sleep 0.5
done
echo "dockerd did not come up within 60s; see /var/log/pnr-dockerd.log:" >&2
tail -20 /var/log/pnr-dockerd.log >&2
exit 1
