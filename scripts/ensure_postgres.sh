#!/usr/bin/env bash
# A PostgreSQL cluster of pnr's own for the Prefect server (`pnr server start --database-url ...`).
#
#   scripts/ensure_postgres.sh [start]   make sure it runs; the last line of stdout is its asyncpg URL
#   scripts/ensure_postgres.sh stop      stop it (by its postmaster.pid)
#
# Idempotent. Installs Debian's `postgresql` package when no PostgreSQL is found (root on Debian only), runs
# initdb once in $PNR_PG_DIR/data (default /var/tmp/pnr-pg) as the `postgres` OS user (as yourself when not
# root), starts it on 127.0.0.1:$PNR_PG_PORT (default 55432) and creates the role and database `prefect` with
# the pg_trgm extension. The role's password is generated once and kept in $PNR_PG_DIR/password (mode 600).
# Progress and errors go to stderr. $PNR_PG_BINDIR picks a PostgreSQL installation (its bin/ folder).
set -euo pipefail

PG_DIR=${PNR_PG_DIR:-/var/tmp/pnr-pg}
PG_PORT=${PNR_PG_PORT:-55432}
DATA=$PG_DIR/data
SOCK=$PG_DIR/run
LOG=$PG_DIR/postgres.log
PWFILE=$PG_DIR/password
MIN_VERSION=14.9 # Prefect's minimum
ACTION=${1:-start}

say() { echo "ensure_postgres: $*" >&2; }
die() {
  say "$*"
  exit 1
}

# The pid of the cluster's postmaster, if it runs (a stale postmaster.pid, or one whose pid now belongs to
# another program, does not count).
running_pid() {
  local pid
  pid=$(head -1 "$DATA/postmaster.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/comm" ]; then
    case $(cat "/proc/$pid/comm") in postgres | postmaster) ;; *) return 1 ;; esac
  fi
  echo "$pid"
}

stop_cluster() {
  local pid
  if ! pid=$(running_pid); then
    say "no cluster runs in $DATA"
    return 0
  fi
  kill -INT "$pid" # "fast" shutdown: roll back open transactions, then exit cleanly
  for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || {
      say "stopped the cluster in $DATA (pid $pid)"
      return 0
    }
    sleep 0.1
  done
  die "the postmaster (pid $pid) did not stop within 30s; see $LOG"
}

case $ACTION in
  stop)
    stop_cluster
    exit 0
    ;;
  start) ;;
  *) die "usage: $0 [start|stop]" ;;
esac

case $PG_PORT in
  '' | *[!0-9]*) die "PNR_PG_PORT=$PG_PORT is not a port number" ;;
esac

find_bindir() {
  if [ -n "${PNR_PG_BINDIR:-}" ]; then
    echo "$PNR_PG_BINDIR"
    return
  fi
  local dir
  # Debian keeps the server binaries (initdb, pg_ctl) out of PATH, one folder per major version
  dir=$(printf "%s\n" /usr/lib/postgresql/*/bin | grep -v "\*" | sort -V | tail -1) || true
  if [ -z "$dir" ] && command -v pg_ctl >/dev/null; then
    dir=$(dirname "$(command -v pg_ctl)")
  fi
  echo "$dir"
}

BINDIR=$(find_bindir)
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
  if [ "$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null; then
    say "installing PostgreSQL (Debian package postgresql) with apt-get ..."
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    BINDIR=$(find_bindir)
  else
    die "no PostgreSQL server found, and this is not root on Debian: install PostgreSQL >= $MIN_VERSION" \
      "(initdb, pg_ctl, postgres, psql) and set PNR_PG_BINDIR to its bin/ folder"
  fi
fi
[ -x "$BINDIR/initdb" ] || die "no initdb in $BINDIR"

VERSION=$("$BINDIR/postgres" --version | sed -E 's/^[^0-9]*([0-9]+(\.[0-9]+)?).*/\1/')
if [ "$(printf '%s\n%s\n' "$MIN_VERSION" "$VERSION" | sort -V | head -1)" != "$MIN_VERSION" ]; then
  die "PostgreSQL $VERSION in $BINDIR is too old: Prefect needs >= $MIN_VERSION (set PNR_PG_BINDIR to a newer one)"
fi

if [ "$(id -u)" = 0 ]; then
  OWNER=postgres
  id "$OWNER" >/dev/null 2>&1 || die "no '$OWNER' OS user (Debian's postgresql package creates it)"
  # initdb refuses to run as root; cd / because the caller's folder may be closed to the postgres user
  as_owner() { (cd / && runuser -u "$OWNER" -- "$@"); }
else
  OWNER=$(id -un)
  as_owner() { (cd / && "$@"); }
fi

mkdir -p "$PG_DIR"
chown "$OWNER" "$PG_DIR"
chmod 700 "$PG_DIR"
as_owner test -w "$PG_DIR" || die "$OWNER cannot write $PG_DIR (check the permissions of its parent folders)"
if [ ! -s "$PWFILE" ]; then
  (umask 077 && head -c 64 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24 >"$PWFILE")
fi
chown "$OWNER" "$PWFILE"
chmod 600 "$PWFILE"
PASSWORD=$(cat "$PWFILE")

if [ ! -s "$DATA/PG_VERSION" ]; then
  say "creating a PostgreSQL $VERSION cluster in $DATA ..."
  as_owner "$BINDIR/initdb" -D "$DATA" -U "$OWNER" -E UTF8 --locale=C \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  # loopback only, and a socket folder of its own (/var/run/postgresql may be missing or someone else's)
  cat >>"$DATA/postgresql.conf" <<EOF

# pnr (scripts/ensure_postgres.sh)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
EOF
fi
CLUSTER_VERSION=$(cat "$DATA/PG_VERSION")
[ "$CLUSTER_VERSION" = "${VERSION%%.*}" ] ||
  die "$DATA holds a PostgreSQL $CLUSTER_VERSION cluster but $BINDIR is PostgreSQL $VERSION: set PNR_PG_BINDIR," \
    "or remove $PG_DIR to start afresh"

mkdir -p "$SOCK"
chown "$OWNER" "$SOCK"
if pid=$(running_pid); then
  port=$(sed -n 4p "$DATA/postmaster.pid")
  [ "$port" = "$PG_PORT" ] ||
    die "the cluster in $DATA already runs on port $port, not $PG_PORT: use PNR_PG_PORT=$port, or stop it first ($0 stop)"
  say "the cluster in $DATA already runs (pid $pid, port $PG_PORT)"
else
  if (: <"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then
    die "port $PG_PORT on 127.0.0.1 is taken by another process: choose another with PNR_PG_PORT"
  fi
  if [ -e "$DATA/postmaster.pid" ]; then
    say "removing the stale $DATA/postmaster.pid (its pid runs no postgres)"
    rm -f "$DATA/postmaster.pid"
  fi
  say "starting the cluster in $DATA on 127.0.0.1:$PG_PORT (log: $LOG) ..."
  if ! as_owner "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 -o "-p $PG_PORT" start >/dev/null; then
    tail -20 "$LOG" >&2 || true
    die "PostgreSQL did not start; see $LOG"
  fi
fi

psql_owner() { as_owner "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PG_PORT" -U "$OWNER" "$@"; }
if [ "$(psql_owner -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'prefect'")" != 1 ]; then
  psql_owner -d postgres -c "CREATE ROLE prefect LOGIN"
fi
# on stdin, not argv: the password stays out of `ps`
echo "ALTER ROLE prefect PASSWORD '$PASSWORD';" | psql_owner -d postgres
if [ "$(psql_owner -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'prefect'")" != 1 ]; then
  psql_owner -d postgres -c "CREATE DATABASE prefect OWNER prefect"
fi
psql_owner -d prefect -c "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_trgm"
say "PostgreSQL $VERSION ready: database prefect on 127.0.0.1:$PG_PORT"
echo "postgresql+asyncpg://prefect:$PASSWORD@127.0.0.1:$PG_PORT/prefect"
