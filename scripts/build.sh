#!/usr/bin/env bash
# Builds the extension (release) and puts it at build/surge.so. Cargo's target directory is
# kept outside the clone (CARGO_TARGET_DIR, default ~/.cache/surge/target) so that a fresh
# clone reuses an earlier build instead of compiling everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-path.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
echo "==> cargo build --release (target: $CARGO_TARGET_DIR)"
cargo build --release --locked -p surge
mkdir -p build
cp "$CARGO_TARGET_DIR/release/libsurge.so" build/surge.so
echo "==> built $(pwd)/build/surge.so"
