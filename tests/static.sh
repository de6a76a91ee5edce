#!/usr/bin/env bash
# The static build: the README's one command, then proof that the binary has no dynamic
# dependencies and serves. Run by .ci/run; needs PostgreSQL on 127.0.0.1:5432 (./quickstart setup).
set -euo pipefail
cd "$(dirname "$0")/.."

# The README's command, word for word.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target x86_64-unknown-linux-gnu
bin=target/x86_64-unknown-linux-gnu/release/gavel

fail() { echo "static.sh: $*" >&2; exit 1; }

deps=$(ldd "$bin" 2>&1 || true)
case "$deps" in
  *"statically linked"* | *"not a dynamic executable"*) ;;
  *) fail "ldd lists dynamic dependencies: $deps" ;;
esac
"$bin" --version | grep -q "release build" || fail "--version does not say release build"

# It starts and answers /ready on a free loopback port, against a scratch database.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
db="gavel_static_$$"
pg="${GAVEL_TEST_PG:-postgres://postgres@127.0.0.1:5432}"
GAVEL_LISTEN="127.0.0.1:$port" GAVEL_ADMIN_LISTEN=off REDIS_URL=off GAVEL_WORKERS=1 \
  DATABASE_URL="$pg/$db" RUST_LOG=warn "$bin" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
ready=0
for _ in $(seq 1 100); do
  if python3 - "$port" <<'PY' 2>/dev/null; then ready=1; break; fi
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    sys.exit(0 if s.recv(16).startswith(b"HTTP/1.1 200") else 1)
PY
  sleep 0.1
done
[ "$ready" = 1 ] || fail "the static binary did not answer /ready 200 within 10 s"
size=$(stat -c %s "$bin")
echo "static.sh: $bin has no dynamic dependencies, $size bytes, and serves"
