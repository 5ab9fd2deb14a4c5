#!/usr/bin/env bash
# System packages the tests and benchmarks use. Idempotent; a no-op when present.
set -euo pipefail
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)                # HTTP load: prefork tests and bench
command -v script >/dev/null 2>&1 || need+=(bsdutils)        # a pty for the progress-bar test
# ASan and UBSan runtimes for scripts/sanitize.sh (gcc's libasan and libubsan).
if ! echo 'int main(void){return 0;}' | gcc -fsanitize=address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
  need+=(libasan8 libubsan1)
fi
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)     # unshare and nsenter: the PID-1 tests
# PostgreSQL for the compat tests (scripts/pg-test-server.sh runs a throwaway server).
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
# Redis for the iterate-over-BullMQ tests (scripts/redis-test-server.sh runs a throwaway server).
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    if [[ " ${need[*]} " == *" postgresql "* ]]; then
      # The tests make their own cluster: skip the package's default one (and its server on 5432).
      mkdir -p /etc/postgresql-common/createcluster.d
      echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/cowfork-no-main.conf
    fi
    # Nothing installed here needs to survive a power cut: skip dpkg's fsyncs.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-unsafe-io "${need[@]}" >/dev/null
    if [[ " ${need[*]} " == *" redis-server "* ]]; then
      # The tests run their own server: stop the package's (on 6379) where an init
      # system started it, and keep it from starting at boot.
      if [ -d /run/systemd/system ]; then
        systemctl disable --now redis-server >/dev/null 2>&1 || true
      elif command -v service >/dev/null 2>&1; then
        service redis-server stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null 2>&1 && update-rc.d redis-server disable >/dev/null 2>&1 || true
      fi
    fi
  else
    echo "install-system-deps: missing ${need[*]} (install them with your package manager)" >&2
  fi
fi
