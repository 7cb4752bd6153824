#!/usr/bin/env bash
# End-to-end tests with every PHP process (servers and scripts) run under valgrind's memcheck,
# which reports a read or write outside what was allocated, or a decision taken on memory never
# written: what the extension's unsafe code could get wrong without a test noticing (PHP's JSON
# decoder reading past a Rust string was found this way). Fails if any process reported one.
#   tests/memcheck/memcheck.sh                        # the tests chosen below
#   tests/memcheck/memcheck.sh tests/e2e/test_table.py -k sum    # any pytest arguments
# SURGE_SO picks the extension (default: the release build). Needs valgrind (install-deps --test).
set -euo pipefail
cd "$(dirname "$0")/../.."
export SURGE_SO="${SURGE_SO:-${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}/release/libsurge.so}"
[ -f "$SURGE_SO" ] || { echo "no extension at $SURGE_SO (run scripts/build.sh or set SURGE_SO)" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind is missing (scripts/install-deps.sh --test)" >&2; exit 2; }
[ -x .deps/venv/bin/pytest ] || { echo "pytest is missing (scripts/install-deps.sh --test)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin" "$work/logs"
# PHP's own allocator hides its blocks from valgrind (USE_ZEND_ALLOC=0 hands them to malloc);
# PCRE's JIT code is opaque to it (pcre.jit=0).
cat >"$work/bin/php" <<WRAPPER
#!/bin/sh
USE_ZEND_ALLOC=0 exec valgrind -q --error-limit=no --num-callers=40 \
  --suppressions=$(pwd)/tests/memcheck/known.supp --log-file=$work/logs/%p \
  $(command -v php) -d pcre.jit=0 "\$@"
WRAPPER
chmod +x "$work/bin/php"
if [ $# -eq 0 ]; then
  # As shipped, and the server tests with worker_threads 0 too (inline_dispatch's pointers).
  set -- tests/e2e/test_server.py tests/e2e/test_php_thread_io.py tests/e2e/test_pusher.py \
    tests/e2e/test_channels.py tests/e2e/test_table.py tests/e2e/test_redis.py \
    tests/e2e/test_hostile_calls.py -k "not php_thread or test_server or test_php_thread_io or hostile"
fi
status=0
# Everything runs 10-50x slower under valgrind: the tests' waits for PHP are made 6x longer.
SURGE_E2E_TIME_FACTOR=6 PATH="$work/bin:$PATH" .deps/venv/bin/pytest -q -p no:cacheprovider "$@" || status=$?
reports=$(find "$work/logs" -type f -size +0)
for log in $reports; do
  echo "==> memcheck report of PHP process $(basename "$log"):"
  cat "$log"
done
echo "==> memcheck: $(find "$work/logs" -type f | wc -l) PHP processes, $(echo "$reports" | grep -c . || true) with a report"
[ -z "$reports" ] || status=1
exit $status
