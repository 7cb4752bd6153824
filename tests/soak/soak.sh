#!/usr/bin/env bash
# A churn soak, not part of the test suite: thousands of clients connecting, talking and
# leaving against one server for SOAK_SECONDS (default 600), the server's RSS sampled every 10 s
# and printed as a table, then the first minute compared with the last.
#   tests/soak/soak.sh            # SURGE_SO=... to pick the extension (default: the release build)
#   SOAK_SECONDS=60 SOAK_CLIENTS=200 tests/soak/soak.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
so="${SURGE_SO:-${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}/release/libsurge.so}"
[ -f "$so" ] || { echo "no extension at $so (run scripts/build.sh or set SURGE_SO)" >&2; exit 2; }
port=$(.deps/venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
SURGE_PORT=$port php -n -d "extension=$so" tests/soak/server.php > /tmp/surge-soak-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^start' /tmp/surge-soak-server.log && break; sleep 0.1; done
echo "server pid $server on port $port, extension $so"
.deps/venv/bin/python tests/soak/churn.py "ws://127.0.0.1:$port" "$server" "${SOAK_SECONDS:-600}" "${SOAK_CLIENTS:-1000}" 10
