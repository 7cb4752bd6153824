#!/usr/bin/env bash
# Installs everything, builds the extension once, and runs the whole test suite: the Rust
# engine and table tests, then end-to-end tests with real PHP servers and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
./scripts/install-deps.sh --test
./scripts/build.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
echo "==> cargo test (engine, table)"
cargo test --locked -p surge-engine -p surge-table
echo "==> end-to-end tests"
export SURGE_SO="$(pwd)/build/surge.so"
status=0
.deps/venv/bin/pytest -q -p no:cacheprovider tests/e2e "$@" || status=$?
echo "==> test suite took $(( $(date +%s) - started )) s"
exit $status
