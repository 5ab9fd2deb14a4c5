#!/usr/bin/env bash
# A throwaway Redis server for the iterate-over-BullMQ tests (test/iterate-bullmq*.test.ts).
#
#   scripts/redis-test-server.sh start   start it (idempotent); prints REDIS_HOST=... lines
#   scripts/redis-test-server.sh stop    stop it (idempotent)
#   scripts/redis-test-server.sh status  exit 0 when it is running
#
# It listens on 127.0.0.1:$COWFORK_REDIS_PORT (default 63790) only, and keeps
# its files in $COWFORK_REDIS_DIR (default ${TMPDIR:-/tmp}/cowfork-redis-<port>),
# with persistence off: nothing in it is worth keeping. Debian's redis-server
# package provides the binary (scripts/install-system-deps.sh installs it); the
# package's own service on 6379 is not used.
set -euo pipefail

PORT="${COWFORK_REDIS_PORT:-63790}"
DIR="${COWFORK_REDIS_DIR:-${TMPDIR:-/tmp}/cowfork-redis-$PORT}"
PIDFILE="$DIR/redis.pid"

die() {
  echo "redis-test-server: $*" >&2
  exit 1
}

command -v redis-server >/dev/null 2>&1 || die "Redis is not installed (no redis-server); run: sudo bash scripts/install-system-deps.sh"
command -v redis-cli >/dev/null 2>&1 || die "Redis is installed without redis-cli; run: sudo bash scripts/install-system-deps.sh"

cli() {
  redis-cli -h 127.0.0.1 -p "$PORT" "$@"
}

# A server killed without a shutdown (kill -9, a machine's processes all ended)
# leaves its pid file; once that pid belongs to another process, it must not be
# taken for the server.
clear_stale_pidfile() {
  local pid
  [ -f "$PIDFILE" ] || return 0
  pid="$(head -n 1 "$PIDFILE")"
  if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" != redis-server ]; then
    rm -f "$PIDFILE"
  fi
}

running() {
  clear_stale_pidfile
  [ -f "$PIDFILE" ] && [ "$(cli ping 2>/dev/null)" = PONG ]
}

print_env() {
  printf 'REDIS_HOST=127.0.0.1\nREDIS_PORT=%s\n' "$PORT"
}

start() {
  if running; then
    print_env
    return
  fi
  clear_stale_pidfile
  if [ -f "$PIDFILE" ]; then
    # Started a moment ago by another run, still loading: wait for it below.
    :
  else
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    # No snapshots, no append-only file: a throwaway server. noeviction is
    # what BullMQ needs (an evicted job key would corrupt a queue).
    redis-server --bind 127.0.0.1 --port "$PORT" --dir "$DIR" --daemonize yes \
      --pidfile "$PIDFILE" --logfile "$DIR/server.log" --save '' --appendonly no \
      --maxmemory-policy noeviction --protected-mode yes >/dev/null ||
      die "the server did not start on 127.0.0.1:$PORT: $(tail -n 5 "$DIR/server.log" 2>/dev/null)"
  fi
  local i
  for i in $(seq 1 300); do
    if [ "$(cli ping 2>/dev/null)" = PONG ]; then
      print_env
      return
    fi
    sleep 0.1
  done
  die "the server does not answer on 127.0.0.1:$PORT: $(tail -n 5 "$DIR/server.log" 2>/dev/null)"
}

stop() {
  if running; then
    cli shutdown nosave >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 100); do
      [ -f "$PIDFILE" ] || return 0
      clear_stale_pidfile
      sleep 0.1
    done
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running ;;
  *) die "usage: $0 start|stop|status" ;;
esac
