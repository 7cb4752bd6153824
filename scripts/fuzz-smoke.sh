#!/usr/bin/env bash
# A short run of every fuzz target (fuzz/README.md): each starts from its seed corpus in
# fuzz/corpus/<target>/ and runs for SURGE_FUZZ_SECONDS (default 10) seconds; what it finds new
# goes to a temporary directory, a crash fails the run and is kept in fuzz/artifacts/<target>/.
# Stable Rust is enough (RUSTC_BOOTSTRAP=1, no sanitizer); needs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
source ../scripts/cargo-path.sh
export RUSTC_BOOTSTRAP=1
seconds="${SURGE_FUZZ_SECONDS:-10}"
# Its own target directory: fuzz builds are instrumented, unlike the extension's.
target_dir="${SURGE_FUZZ_TARGET_DIR:-$HOME/.cache/surge/fuzz-target}"
flags=(-s none -O --target-dir "$target_dir")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

echo "==> cargo fuzz build"
cargo fuzz build "${flags[@]}"
status=0
for target in $(cargo fuzz list); do
  mkdir "$scratch/$target"
  if cargo fuzz run "${flags[@]}" "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" >"$scratch/$target.log" 2>&1; then
    echo "==> fuzz $target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$scratch/$target.log")"
  else
    echo "==> fuzz $target FAILED (the input is in fuzz/artifacts/$target/):"
    tail -n 40 "$scratch/$target.log"
    status=1
  fi
done
exit $status
