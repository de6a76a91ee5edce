#!/usr/bin/env bash
# Tests ./quickstart against this machine's real services: stops the local PostgreSQL cluster on
# 127.0.0.1:5432 and Redis on 127.0.0.1:6379, checks that `./quickstart setup` brings both back
# (and says so), that a second run changes nothing (0 changes, pg_hba.conf and postgresql.conf
# byte for byte, the same clusters), and its exit codes. Whatever happens, it leaves both services
# running (trap). Run after `./quickstart setup`, as root or with sudo: bash tests/quickstart.sh
# While clients are connected to either it skips, stopping nothing (QUICKSTART_TEST_FORCE=1: runs).
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
# The default services, whatever the caller's environment points Gavel at.
unset DATABASE_URL GAVEL_TEST_PG REDIS_URL

PASSED=0
FAILED=0
pass() {
  PASSED=$((PASSED + 1))
  printf 'ok    %s\n' "$1"
}
fail() {
  FAILED=$((FAILED + 1))
  printf 'FAIL  %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 40 | sed 's/^/      | /'; fi
}
check() { # check NAME COMMAND...: passes when the command succeeds
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
priv() { if [ "$EUID" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
pg_login() { PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
# The cluster on port 5432 that is online: "VER NAME".
cluster() { pg_lsclusters -h | awk '$3 == 5432 && $4 ~ /^online/ {print $1, $2; exit}'; }
clusters() { pg_lsclusters -h | awk '{print $1, $2, $3, $4}'; }
conf_sums() { priv sha256sum "/etc/postgresql/$1/$2/pg_hba.conf" "/etc/postgresql/$1/$2/postgresql.conf"; }
changes() { sed -n 's/^setup: \([0-9]*\) change(s)$/\1/p' <<<"$1" | tail -n 1; }

for tool in pg_lsclusters pg_isready psql redis-cli sha256sum; do
  command -v "$tool" >/dev/null || { echo "tests/quickstart.sh: $tool is missing; run ./quickstart setup first" >&2; exit 2; }
done
if ! pg_up || ! redis_up || [ -z "$(cluster)" ]; then
  echo "tests/quickstart.sh: run ./quickstart setup first (a local cluster on 127.0.0.1:5432 and Redis on 127.0.0.1:6379)" >&2
  exit 2
fi
read -r VER NAME <<<"$(cluster)"
busy_pg=$(PGCONNECT_TIMEOUT=5 psql -X -w -h 127.0.0.1 -U postgres -d postgres -Atc \
  "select count(*) from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid()")
busy_redis=$(redis-cli -h 127.0.0.1 -p 6379 info clients | awk -F: '/^connected_clients:/ {print $2 - 1}' | tr -d '\r')
if [ "${QUICKSTART_TEST_FORCE:-0}" != 1 ] && { [ "$busy_pg" != 0 ] || [ "$busy_redis" != 0 ]; }; then
  echo "skip  tests/quickstart.sh: PostgreSQL $VER/$NAME has $busy_pg other client(s) and Redis $busy_redis: in use, so not stopped (QUICKSTART_TEST_FORCE=1 stops them anyway)"
  exit 0
fi

# As ./quickstart starts it, without relying on ./quickstart (which may be what is broken).
start_redis() {
  if [ -d /run/systemd/system ]; then
    priv systemctl start redis-server
  else
    priv mkdir -p /var/lib/redis /var/log/redis
    priv redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/quickstart.log
  fi
  for _ in $(seq 1 30); do redis_up && return 0; sleep 0.2; done
  return 1
}
# Whatever happens below: both services answer again when this script exits.
restore() {
  if ! pg_up; then priv pg_ctlcluster --skip-systemctl-redirect "$VER" "$NAME" start >/dev/null 2>&1 || true; fi
  if ! redis_up; then start_redis >/dev/null 2>&1 || true; fi
  if ! pg_up || ! redis_up; then echo "tests/quickstart.sh: could not restore PostgreSQL or Redis" >&2; fi
}
trap restore EXIT

clusters_before=$(clusters)
sums_before=$(conf_sums "$VER" "$NAME")

# Runs ./quickstart setup, shows its lines, checks its exit status; leaves its output in $out.
run_setup() {
  local rc
  set +e
  out=$(./quickstart setup 2>&1)
  rc=$?
  set -e
  printf '%s\n' "$out" | sed 's/^/      > /'
  if [ "$rc" = 0 ]; then pass "setup exits 0"; else fail "setup exits 0 (it exited $rc)"; fi
}

echo "== (a) PostgreSQL $VER/$NAME and Redis stopped, then ./quickstart setup"
if [ -d /run/systemd/system ] && systemctl is-active -q redis-server 2>/dev/null; then
  priv systemctl stop redis-server
else
  redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
fi
priv pg_ctlcluster --skip-systemctl-redirect "$VER" "$NAME" stop
for _ in $(seq 1 50); do redis_up || break; sleep 0.1; done
check "Redis stopped" bash -c '! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1'
check "PostgreSQL stopped" bash -c '! pg_isready -q -h 127.0.0.1 -p 5432'
run_setup
check "PostgreSQL answers again" pg_up
check "postgres@127.0.0.1 logs in again" pg_login
check "Redis answers PING again" redis_up
n=$(changes "$out")
if [ -n "$n" ] && [ "$n" -ge 2 ]; then pass "setup reported $n change(s), at least 2"; else fail "setup reported at least 2 changes (it said: ${n:-nothing})"; fi
if grep -q "^PostgreSQL $VER/$NAME: stopped, started$" <<<"$out"; then pass "PostgreSQL's line says stopped, started"; else fail "PostgreSQL's line says stopped, started"; fi
if grep -q "^Redis 127.0.0.1:6379: stopped, started$" <<<"$out"; then pass "Redis's line says stopped, started"; else fail "Redis's line says stopped, started"; fi

echo "== (b) ./quickstart setup again: nothing to do"
sums_mid=$(conf_sums "$VER" "$NAME")
clusters_mid=$(clusters)
run_setup
if grep -qx 'setup: 0 change(s)' <<<"$out"; then pass "setup reported 0 change(s)"; else fail "setup reported 0 change(s)"; fi
sums_after=$(conf_sums "$VER" "$NAME")
if [ "$sums_after" = "$sums_mid" ] && [ "$sums_after" = "$sums_before" ]; then
  pass "pg_hba.conf and postgresql.conf byte-identical (sha256) before and after"
else
  fail "pg_hba.conf and postgresql.conf byte-identical (sha256) before and after" \
    "$(printf 'before:\n%s\nafter (a):\n%s\nafter (b):\n%s' "$sums_before" "$sums_mid" "$sums_after")"
fi
clusters_after=$(clusters)
if [ "$clusters_after" = "$clusters_mid" ] && [ "$clusters_after" = "$clusters_before" ]; then
  pass "the same clusters: $(tr '\n' ';' <<<"$clusters_after")"
else
  fail "the same clusters" "$(printf 'before:\n%s\nafter:\n%s' "$clusters_before" "$clusters_after")"
fi

echo "== (c) exit codes"
set +e
./quickstart bogus >/dev/null 2>&1
rc=$?
set -e
if [ "$rc" = 2 ]; then pass "./quickstart bogus exits 2"; else fail "./quickstart bogus exits 2 (it exited $rc)"; fi
for h in --help -h help; do
  set +e
  usage=$(./quickstart "$h" 2>&1)
  rc=$?
  set -e
  if [ "$rc" = 0 ] && grep -q '^Usage: ./quickstart' <<<"$usage"; then pass "./quickstart $h exits 0 with the usage"; else fail "./quickstart $h exits 0 with the usage (exit $rc)"; fi
done

echo "quickstart.sh: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
