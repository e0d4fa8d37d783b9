#!/usr/bin/env bash
# Installs PostgreSQL and Redis from Debian packages and starts them on
# loopback for the scale-out tests; sourced by .ci/run so the exported URLs
# reach `make test`. Also installs Debian's chromium for the red-team report's
# headless screenshot test (Playwright drives /usr/bin/chromium; no browser
# download). Fails loudly: these tests are part of CI, not optional.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
run_dir=$(mktemp -d /tmp/mantlet-ci-XXXXXX)
chmod 0755 "$run_dir"
chown postgres "$run_dir"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_port=$(free_port)
redis_port=$(free_port)

runuser -u postgres -- "$pg_bin/initdb" -D "$run_dir/pg" -A trust -U postgres >/dev/null
runuser -u postgres -- "$pg_bin/pg_ctl" -D "$run_dir/pg" -l "$run_dir/pg.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $run_dir" start >/dev/null
runuser -u postgres -- "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres mantlet_test

redis-server --bind 127.0.0.1 --port "$redis_port" --daemonize yes --save '' \
  --appendonly no --dir "$run_dir" --logfile "$run_dir/redis.log"

stop_services() {
  redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
  runuser -u postgres -- "$pg_bin/pg_ctl" -D "$run_dir/pg" -m fast stop >/dev/null 2>&1 || true
}
trap stop_services EXIT

export MANTLET_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$pg_port/mantlet_test"
export MANTLET_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export MANTLET_REQUIRE_SERVICES=1
echo "services: PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port ($run_dir)"
