#!/usr/bin/env bash
# Surge's benchmarks in one command: builds the extension and the load generator (release),
# runs every scenario against a PHP server on 127.0.0.1, prints a table and writes
# bench/results/latest.json (plus a dated copy). Bounded: each wait has a limit, the whole run
# takes about a minute. Every process it starts is stopped on exit, failure or Ctrl-C.
#
# Scenarios (each on a fresh server process, default settings apart from the log level):
#   echo      50 and 1000 connections, 32-byte text messages echoed by a PHP callback
#             (bench/servers/echo.php),
#             5 s after 1 s warm-up: round trips/s, p50/p99, server CPU per 1000 round trips;
#             the same against baseline (a), naive-server (bench/src/naive_server.rs)
#   idle 10k  server RSS listening with no connection vs with 10,000 established; again with
#             websocket_compression on and every client negotiating permessage-deflate
#   idle 19k  the same with 19,000, from two client processes bound to 127.0.0.2 and 127.0.0.3
#   fanout    1k and 10k clients, bench/servers/fanout.php in modes broadcast, publish and loop
#             (PHP foreach connections push), and naive-server: one 100-byte message at a time
#             (HTTP trigger until the last client has it, 20 times), then a closed loop for
#             BENCH_FANOUT_SECS after 1 s warm-up: deliveries/s, server CPU per delivery
#   laravel   1k clients joined to "bench", bench/servers/laravel.php subscribed through the Redis
#             bridge to a redis-server started here on a free 127.0.0.1 port; Laravel-shaped
#             payloads PUBLISHed by surge-load: one at a time, a fixed rate, a closed loop
# Environment: BENCH_ECHO_SECS (5), BENCH_ECHO_CONNS ("50 1000": a Surge and a naive run per
# count), BENCH_SKIP_19K=1 to leave out 19k, BENCH_FANOUT_SECS (3), BENCH_LARAVEL_RATE
# (200 messages/s), BENCH_SKIP_10K_FANOUT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
ECHO_SECS=${BENCH_ECHO_SECS:-5}
ECHO_CONNS=${BENCH_ECHO_CONNS:-50 1000}
FANOUT_SECS=${BENCH_FANOUT_SECS:-3}
LARAVEL_RATE=${BENCH_LARAVEL_RATE:-200}
started=$(date +%s)
# wait_for, rss_kib, fd_count, settled_rss, loadavg, free_port
source bench/lib.sh

./scripts/build.sh
echo "==> cargo build --release -p surge-bench"
cargo build --release --locked -p surge-bench
LOAD="$CARGO_TARGET_DIR/release/surge-load"
NAIVE="$CARGO_TARGET_DIR/release/naive-server"
SO="$ROOT/build/surge.so"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
PIDS=()

cleanup() {
    local pid left=()
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null && left+=("$pid")
    done
    for _ in $(seq 50); do
        [ ${#left[@]} -eq 0 ] && break
        local still=()
        for pid in "${left[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
        left=("${still[@]}")
        [ ${#left[@]} -gt 0 ] && sleep 0.1
    done
    for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

fail() {
    echo "bench: $*" >&2
    exit 1
}


exited() { [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; }

# reap PID LIMIT: waits up to LIMIT s for PID to exit, kills it if it has not, and sets ENDED
# to how it ended.
reap() {
    local pid=$1 limit=$2 status=0 i killed=""
    for i in $(seq $((limit * 10))); do
        exited "$pid" && break
        sleep 0.1
    done
    if ! exited "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        killed=" (killed: still running after ${limit} s)"
    fi
    wait "$pid" || status=$?
    local rest=()
    for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || rest+=("$i"); done
    PIDS=("${rest[@]}")
    if [ "$status" -gt 128 ]; then ENDED="signal $((status - 128))$killed"; else ENDED="exit $status"; fi
}



# Lines of a file as a JSON array of strings (the server's log: it may hold anything).
json_lines() { php -r 'echo json_encode(array_map("rtrim", file($argv[1]) ?: []));' "$1"; }
# JSON lines as a JSON array.
json_array() { printf '[%s]' "$(paste -sd, "$1")"; }

# start_server NAME [SERVER]: a fresh server on a free port; sets SERVER_PID and SERVER_PORT.
# SERVER is a script under bench/servers (default echo.php) or "naive" for naive-server.
start_server() {
    SERVER_LOG="$WORK/server.$1"
    local server=${2:-echo.php}
    if [ "$server" = naive ]; then
        SURGE_PORT=0 "$NAIVE" >"$SERVER_LOG.out" 2>"$SERVER_LOG.err" </dev/null &
    else
        SURGE_PORT=0 php -d extension="$SO" "bench/servers/$server" >"$SERVER_LOG.out" 2>"$SERVER_LOG.err" </dev/null &
    fi
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for 10 "$SERVER_PID" grep -q '^ready ' "$SERVER_LOG.out" || {
        cat "$SERVER_LOG.err" >&2
        fail "the $1 server did not start"
    }
    SERVER_PORT=$(awk '/^ready / { print $2; exit }' "$SERVER_LOG.out")
}

# stop_server: SIGTERM, then up to 10 s for start() to return; sets SERVER_END to the JSON of
# how it went (exit status, everything it logged at warn level or above).
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    reap "$SERVER_PID" 10
    SERVER_END=$(printf '{"ended":"%s","log":%s}' "$ENDED" "$(json_lines "$SERVER_LOG.err")")
}


run_echo() {
    local name=$1 conns=$2 server=${3:-echo.php} load out
    echo "==> $name: $conns connections, 32 B, ${ECHO_SECS} s, $server (load average $(loadavg))"
    load=$(loadavg)
    start_server "$name" "$server"
    out="$WORK/$name.client"
    "$LOAD" echo --url "ws://127.0.0.1:$SERVER_PORT/" --conns "$conns" --secs "$ECHO_SECS" --warmup-secs 1 \
        --size 32 --threads 2 --server-pid "$SERVER_PID" >"$out" 2>"$out.err" \
        || { cat "$out.err" >&2; fail "$name: surge-load failed"; }
    local rss
    rss=$(rss_kib "$SERVER_PID")
    stop_server
    printf '{"scenario":"%s","kind":"echo","server_kind":"%s","conns":%d,"loadavg":"%s","server_rss_kib":%d,"server":%s,"clients":%s}\n' \
        "$name" "$server" "$conns" "$load" "$rss" "$SERVER_END" "$(json_array "$out")" >>"$RESULTS"
}

# run_idle NAME CONNS SOURCE_ADDR...: CONNS idle connections split over one client process per
# source address. With SURGE_COMPRESSION=1 the server has websocket_compression on and the
# clients negotiate permessage-deflate.
run_idle() {
    local name=$1 conns=$2
    shift 2
    local addrs=("$@") load base base_fds full full_fds after after_fds pid i deflate=false
    [ "${SURGE_COMPRESSION:-0}" = 1 ] && deflate=true
    local per=$((conns / ${#addrs[@]}))
    load=$(loadavg)
    echo "==> $name: $conns idle connections from ${addrs[*]} (load average $load)"
    start_server "$name"
    sleep 1
    base=$(settled_rss "$SERVER_PID")
    base_fds=$(fd_count "$SERVER_PID")
    local clients=()
    for i in "${!addrs[@]}"; do
        "$LOAD" idle --url "ws://127.0.0.1:$SERVER_PORT/" --conns "$per" --bind "${addrs[$i]}" --hold-secs 120 --deflate "$deflate" \
            >"$WORK/$name.client$i" 2>"$WORK/$name.client$i.err" </dev/null &
        clients+=($!)
        PIDS+=($!)
    done
    for i in "${!clients[@]}"; do
        wait_for 90 "${clients[$i]}" grep -qs '"event":"connected"' "$WORK/$name.client$i" || {
            cat "$WORK/$name.client$i.err" >&2
            fail "$name: client $i did not report its connections"
        }
    done
    full=$(settled_rss "$SERVER_PID")
    full_fds=$(fd_count "$SERVER_PID")
    local ended=()
    for pid in "${clients[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${clients[@]}"; do
        reap "$pid" 20
        ended+=("$ENDED")
    done
    sleep 1
    after=$(rss_kib "$SERVER_PID")
    after_fds=$(fd_count "$SERVER_PID")
    cat "$WORK/$name".client? >"$WORK/$name.clients"
    stop_server
    printf '{"scenario":"%s","kind":"idle","conns":%d,"client_processes":%d,"client_ends":"%s","loadavg":"%s",' \
        "$name" "$conns" "${#addrs[@]}" "${ended[*]}" "$load" >>"$RESULTS"
    printf '"server_rss_listening_kib":%d,"server_rss_established_kib":%d,"server_rss_after_close_kib":%d,' \
        "$base" "$full" "$after" >>"$RESULTS"
    printf '"server_fds_listening":%d,"server_fds_established":%d,"server_fds_after_close":%d,"server":%s,"clients":%s}\n' \
        "$base_fds" "$full_fds" "$after_fds" "$SERVER_END" "$(json_array "$WORK/$name.clients")" >>"$RESULTS"
}

# run_delivery NAME KIND SERVER CONNS SURGE-LOAD-ARGS...: a fan-out or Laravel scenario (KIND)
# against a fresh SERVER; surge-load gets at most 240 s.
run_delivery() {
    local name=$1 kind=$2 server=$3 conns=$4 load out rss
    shift 4
    load=$(loadavg)
    echo "==> $name: $conns clients, $server $* (load average $load)"
    start_server "$name" "$server"
    out="$WORK/$name.client"
    timeout -k 5 240 "$LOAD" "$kind" --url "ws://127.0.0.1:$SERVER_PORT/" --conns "$conns" --secs "$FANOUT_SECS" \
        --warmup-secs 1 --reps 20 --server-pid "$SERVER_PID" "$@" >"$out" 2>"$out.err" </dev/null \
        || { cat "$out.err" >&2; fail "$name: surge-load failed"; }
    rss=$(rss_kib "$SERVER_PID")
    stop_server
    printf '{"scenario":"%s","kind":"%s","server_kind":"%s","conns":%d,"loadavg":"%s","server_rss_kib":%d,"server":%s,"clients":%s}\n' \
        "$name" "$kind" "$server" "$conns" "$load" "$rss" "$SERVER_END" "$(json_array "$out")" >>"$RESULTS"
}


# run_laravel NAME CONNS: a redis-server of its own on a free port, then the scenario.
run_laravel() {
    local name=$1 conns=$2 port rpid
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --protected-mode yes \
        >"$WORK/redis.log" 2>&1 </dev/null &
    rpid=$!
    PIDS+=("$rpid")
    wait_for 10 "$rpid" redis-cli -h 127.0.0.1 -p "$port" ping >/dev/null 2>&1 || fail "redis-server did not start"
    SURGE_REDIS="redis://127.0.0.1:$port"
    run_delivery "$name" laravel laravel.php "$conns" --redis "127.0.0.1:$port" --rate "$LARAVEL_RATE" --rate-secs 5
    SURGE_REDIS=""
    kill -TERM "$rpid" 2>/dev/null || true
    reap "$rpid" 10
}

export SURGE_REDIS=""
for conns in $ECHO_CONNS; do
    run_echo "echo_$conns" "$conns"
    run_echo "echo_${conns}_naive" "$conns" naive
done
for conns in 1000 10000; do
    [ "$conns" = 10000 ] && [ "${BENCH_SKIP_10K_FANOUT:-0}" = 1 ] && continue
    k=$((conns / 1000))k
    for mode in broadcast publish loop; do
        run_delivery "fanout_${k}_$mode" fanout fanout.php "$conns" --trigger "/trigger?mode=$mode"
    done
    run_delivery "fanout_${k}_naive" fanout naive "$conns" --trigger "/trigger?mode=broadcast"
done
run_laravel laravel_1k 1000
run_idle idle_10k 10000 127.0.0.1
SURGE_COMPRESSION=1 run_idle idle_10k_deflate 10000 127.0.0.4
[ "${BENCH_SKIP_19K:-0}" = 1 ] || run_idle idle_19k 19000 127.0.0.2 127.0.0.3

mkdir -p bench/results
php bench/report.php "$RESULTS" bench/results "$(( $(date +%s) - started ))"
