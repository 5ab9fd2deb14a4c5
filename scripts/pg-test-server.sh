#!/usr/bin/env bash
# A throwaway PostgreSQL server for the compat tests (test/compat/pg.test.ts).
#
#   scripts/pg-test-server.sh start   start it (idempotent); prints PGHOST=... lines
#   scripts/pg-test-server.sh stop    stop it (idempotent)
#   scripts/pg-test-server.sh status  exit 0 when it is running
#
# It listens on 127.0.0.1:$COWFORK_PG_PORT (default 54329) only, trusts local
# connections, and keeps its data in $COWFORK_PG_DIR (default
# ${TMPDIR:-/tmp}/cowfork-pg-<port>), with fsync off: nothing in it is worth
# keeping. PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` system user that Debian's package creates
# (scripts/install-system-deps.sh installs it).
set -euo pipefail

PORT="${COWFORK_PG_PORT:-54329}"
DIR="${COWFORK_PG_DIR:-${TMPDIR:-/tmp}/cowfork-pg-$PORT}"
DATA="$DIR/data"
USER_NAME=cowfork

die() {
  echo "pg-test-server: $*" >&2
  exit 1
}

# Debian keeps the server binaries off PATH, one directory per major version.
bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return; fi
  d="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")"
  [ -x "$d/pg_ctl" ] || die "PostgreSQL is not installed (no pg_ctl); run: sudo bash scripts/install-system-deps.sh"
  echo "$d"
}

BIN="$(bindir)"

# Runs a server command as the user that owns the cluster.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (Debian's postgresql package creates it)"
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A server killed without a shutdown (a machine's processes all ended, kill -9)
# leaves its pid file; once that pid belongs to another process, pg_ctl would
# take the server for running and postgres would refuse to start.
clear_stale_pidfile() {
  local pid
  [ -f "$DATA/postmaster.pid" ] || return 0
  pid="$(head -n 1 "$DATA/postmaster.pid")"
  if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != postgres ]; then
    rm -f "$DATA/postmaster.pid"
  fi
}

running() {
  clear_stale_pidfile
  [ -f "$DATA/PG_VERSION" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

print_env() {
  printf 'PGHOST=127.0.0.1\nPGPORT=%s\nPGUSER=%s\nPGDATABASE=postgres\n' "$PORT" "$USER_NAME"
}

start() {
  if running; then
    # Running, or still starting up (another run started it a moment ago).
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 30 || die "a server runs in $DATA but does not accept connections on 127.0.0.1:$PORT"
    print_env
    return
  fi
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR"
  # A cluster made by another major version cannot start here; it holds nothing of value.
  local major
  major="$("$BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
  if [ -f "$DATA/PG_VERSION" ] && [ "$(cat "$DATA/PG_VERSION")" != "$major" ]; then
    rm -rf "$DATA"
  fi
  if [ ! -f "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    as_owner "$BIN/initdb" -D "$DATA" -U "$USER_NAME" -A trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 ||
      die "initdb failed: $(tail -n 5 "$DIR/initdb.log")"
  fi
  # -w waits until the server accepts connections; the log tells why when it does not.
  if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null; then
    die "the server did not start on 127.0.0.1:$PORT: $(tail -n 5 "$DIR/server.log" 2>/dev/null)"
  fi
  print_env
}

stop() {
  if running; then
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  *) die "usage: $0 start|stop|status" ;;
esac
