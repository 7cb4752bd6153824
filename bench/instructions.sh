#!/usr/bin/env bash
# User-space instructions per echo round trip, counted by callgrind: Surge with worker_threads 0
# (bench/servers/echo.php, a PHP callback per message) and the naive Rust server, each under
# valgrind, driven by surge-load (BENCH_CG_CONNS connections, 10; BENCH_CG_SECS, 6 s).
#
# Rates and CPU times on these shared cores move by 30% from one minute to the next; these
# counts repeat within about 0.1%, so they tell whether a change to the hot path made it
# cheaper. They leave out the kernel (three quarters of an echo's CPU time), and callgrind runs
# one thread at a time, so naive's count holds none of its cross-thread waiting.
# callgrind also simulates the caches and branch predictors (32 KiB L1 caches here): equal
# instruction counts can still cost different times, and the misses per round trip say why (an
# instruction cache miss costs a dozen cycles or more; the kernel, left out here, evicts more).
# Usage: bash bench/instructions.sh   (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-path.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
CONNS=${BENCH_CG_CONNS:-10}
SECS=${BENCH_CG_SECS:-6}
# fail, spawn, stop, cleanup, wait_for, probe_start
source bench/lib.sh
probe_start cg valgrind valgrind

# count NAME COMMAND...: the server under callgrind; counting starts once it listens and ends
# when the load is done; prints the instructions per round trip.
count() {
    local name=$1
    shift
    SURGE_PORT=0 SURGE_WORKER_THREADS=0 spawn "$WORK/out" "$WORK/err" \
        valgrind --tool=callgrind --cache-sim=yes --branch-sim=yes --callgrind-out-file="$WORK/cg.%p" "$@"
    local pid=$SPAWNED
    wait_for 60 "$pid" grep -q '^ready ' "$WORK/out" || fail "$name did not start: $(cat "$WORK/err")"
    local port
    port=$(awk '/^ready /{print $2}' "$WORK/out")
    callgrind_control --zero "$pid" >/dev/null 2>&1
    "$LOAD" echo --url "ws://127.0.0.1:$port/" --conns "$CONNS" --secs "$SECS" --warmup-secs 0 \
        --size 32 --threads 2 >"$WORK/load.json"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    stop "$pid"
    local round_trips
    round_trips=$(php -r 'echo json_decode(file_get_contents($argv[1]), true)["round_trips_with_warmup"];' "$WORK/load.json")
    # The totals line: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw Bc Bcm Bi Bim, each followed by (100.0%).
    callgrind_annotate "$(ls "$WORK"/cg.*.1)" | awk -v name="$name" -v rt="$round_trips" '/PROGRAM TOTALS/ {
        for (i = 1; i <= NF; i += 2) { gsub(",", "", $i); v[(i + 1) / 2] = $i }
        printf "| %-23s | %11d | %12d | %9.1f | %8.1f | %11.1f |\n", name, rt, v[1] / rt, v[4] / rt, (v[5] + v[6]) / rt, (v[11] + v[13]) / rt }'
    rm -f "$WORK"/cg.*
}

echo "User space per echo round trip (callgrind; $CONNS connections, 32 B, $SECS s), commit $(git rev-parse --short HEAD)"
echo "| server                  | round trips | instructions | I1 misses | D1 misses | mispredicts |"
echo "|-------------------------|-------------|--------------|-----------|-----------|-------------|"
count "Surge, worker_threads 0" php -n -d "extension=$(pwd)/build/surge.so" bench/servers/echo.php
count "naive Rust" "$CARGO_TARGET_DIR/release/naive-server"
