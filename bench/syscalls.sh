#!/usr/bin/env bash
# The kernel's side of an echo round trip, counted: socket syscalls, futex calls, epoll waits and
# context switches per round trip, and CPU time per round trip, of the server and of the load
# client, for Surge as shipped, Surge with worker_threads 0, two worker processes with
# worker_threads 0 each (bench/servers/echo.php, a PHP callback per message) and the naive Rust
# server, driven by surge-load (32-byte messages,
# BENCH_SC_CONNS connections, "50 1000"). perf stat counts 3 s from the 2nd second of a 5 s run.
#
# The kernel is three quarters of an echo's CPU time here, and what a server asks of it (how
# often its threads sleep and wake each other, and how often its replies find a client thread
# asleep: waking it is paid by the sender's sendto) is where the modes differ. perf slows what
# it counts a little; the counts per round trip move less than the rates do. The TCP segments
# (nstat's TcpOutSegs over the same 3 s, machine-wide: both directions, so 2 per round trip when
# every reply carries the ACK of its request and no bare ACK is sent) say whether a server makes
# the kernel send more packets than another.
# Usage: bash bench/syscalls.sh   (needs perf: apt-get install linux-perf)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-path.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
CONNS=${BENCH_SC_CONNS:-50 1000}
# "As shipped" means the default worker_threads and one process, whatever this shell has set.
unset SURGE_WORKER_THREADS SURGE_WORKER_NUM
# fail, spawn, stop, reap, exited, cleanup, wait_for, probe_start
source bench/lib.sh
for conns in $CONNS; do
    [[ $conns =~ ^[1-9][0-9]*$ ]] || fail "BENCH_SC_CONNS: '$conns' is not a number of connections"
done
probe_start sc perf linux-perf
command -v nstat >/dev/null || fail "nstat is not installed (apt-get install iproute2)"
EVENTS=syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,context-switches,task-clock
perf stat -x, -e "$EVENTS" -- true >/dev/null 2>&1 ||
    fail "perf cannot count $EVENTS here (perf_event_paranoid, or no tracefs: run as root)"

# count NAME CONNS COMMAND...: one row, the server started by COMMAND.
count() {
    local name=$1 conns=$2
    shift 2
    SURGE_PORT=0 spawn "$WORK/out" "$WORK/err" "$@"
    local pid=$SPAWNED port client
    wait_for 20 "$pid" grep -q '^ready ' "$WORK/out" || fail "$name did not start: $(cat "$WORK/err")"
    port=$(awk '/^ready /{print $2}' "$WORK/out")
    spawn "$WORK/load.json" "$WORK/load.err" "$LOAD" echo --url "ws://127.0.0.1:$port/" --conns "$conns" \
        --secs 5 --warmup-secs 1 --size 32 --threads 2
    client=$SPAWNED
    sleep 2
    # perf cannot attach to a process that is gone: say which one, and why.
    exited "$pid" && fail "$name exited during the run: $(cat "$WORK/err")"
    if exited "$client"; then
        reap "$client" 1
        fail "surge-load against $name: $ENDED: $(cat "$WORK/load.err")"
    fi
    # A server with worker processes is counted whole: the master and its workers.
    local pids
    pids=$(pgrep -d, -P "$pid" || true)
    perf stat -x, -e "$EVENTS" -p "$pid${pids:+,$pids}" -o "$WORK/server.csv" -- sleep 3 &
    local server_perf=$!
    nstat -n
    perf stat -x, -e "$EVENTS" -p "$client" -o "$WORK/client.csv" -- sleep 3
    wait "$server_perf"
    local segments
    segments=$(nstat -z TcpOutSegs | awk '$1 == "TcpOutSegs" { print $2 }')
    reap "$client" 10
    [ "$ENDED" = "exit 0" ] || fail "surge-load against $name: $ENDED: $(cat "$WORK/load.err")"
    stop "$pid"
    local rate
    rate=$(php -r 'echo json_decode(file_get_contents($argv[1]), true)["round_trips_per_sec"];' "$WORK/load.json")
    [ "${rate%.*}" -gt 0 ] 2>/dev/null || fail "no round trips against $name: $(cat "$WORK/load.json")"
    # perf's CSV: value,unit,event,...; task-clock is in ms.
    paste -d, "$WORK/server.csv" "$WORK/client.csv" | awk -F, -v name="$name" -v conns="$conns" -v rate="$rate" -v segments="$segments" '
        /^[0-9.]+,/ {
            n = split($0, f, ","); half = n / 2
            scale = ($3 == "task-clock") ? 1000 : 1   # ms to us
            row = row sprintf(" %6.3f / %6.3f |", f[1] * scale / (rate * 3), f[half + 1] * scale / (rate * 3))
        }
        END { printf "| %-23s | %5d | %7d |%s %8.3f |\n", name, conns, rate, row, segments / (rate * 3) }'
}

echo "Per echo round trip, server / client (perf stat over 3 s of 5; 32 B), commit $(git rev-parse --short HEAD)"
echo "| server                  | conns | RT/s    | recvfrom        | sendto          | epoll_wait      | futex           | context sw.     | CPU us          | segments |"
echo "|-------------------------|-------|---------|-----------------|-----------------|-----------------|-----------------|-----------------|-----------------|----------|"
for conns in $CONNS; do
    count "Surge, as shipped" "$conns" php -n -d "extension=$(pwd)/build/surge.so" bench/servers/echo.php
    SURGE_WORKER_THREADS=0 count "Surge, worker_threads 0" "$conns" php -n -d "extension=$(pwd)/build/surge.so" bench/servers/echo.php
    SURGE_WORKER_THREADS=0 SURGE_WORKER_NUM=2 count "Surge, worker_num 2" "$conns" php -n -d "extension=$(pwd)/build/surge.so" bench/servers/echo.php
    count "naive Rust" "$conns" "$CARGO_TARGET_DIR/release/naive-server"
done
