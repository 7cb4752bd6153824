#!/usr/bin/env bash
# Installs everything, builds the extension once, and runs the whole test suite: the Rust
# code's formatting, the engine and table tests, a short run of every fuzz target, then
# end-to-end tests with real PHP servers and real clients, and a part of them again with PHP
# under valgrind's memcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
./scripts/install-deps.sh --test
./scripts/build.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
source scripts/cargo-path.sh
echo "==> cargo fmt --check (rustfmt's default style; run cargo fmt to apply it)"
cargo fmt --check
(cd fuzz && cargo fmt --check)
echo "==> cargo test (engine, table)"
cargo test --locked -p surge-engine -p surge-table
status=0
echo "==> fuzz smoke run (SURGE_FUZZ_SECONDS per target)"
./scripts/fuzz-smoke.sh || status=$?
echo "==> end-to-end tests"
export SURGE_SO="$(pwd)/build/surge.so"
.deps/venv/bin/pytest -q -p no:cacheprovider tests/e2e "$@" || status=$?
# Arguments choose some end-to-end tests; without any, the whole suite runs, memcheck included.
if [ $# -eq 0 ]; then
  echo "==> end-to-end tests again, PHP under valgrind's memcheck (a part of them)"
  ./tests/memcheck/memcheck.sh || status=$?
fi
echo "==> test suite took $(( $(date +%s) - started )) s"
exit $status
