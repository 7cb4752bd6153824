#!/usr/bin/env bash
# Issue 8's benchmarks in one command: Surge and its baselines side by side, scenario by
# scenario, on 127.0.0.1 only. Builds the extension and the load generator (release), installs
# the npm peers (bench/peers, npm ci) when they are missing, runs every scenario, prints one
# table (scenario, server, figures, ratio against issue 8's targets) and writes
# bench/results/latest.json (plus a dated copy). Bounded: every wait has a limit, surge-load gets
# at most 240 s a run; every process it starts is stopped on exit, failure or Ctrl-C.
#
# Each row is a fresh server process with default settings apart from the log level. Servers:
#   Surge          bench/servers/*.php on build/surge.so
#   naive          naive-server (bench/src/naive_server.rs), baseline (a): our stack without PHP
#   soketi         soketi (bench/peers), baseline (c); triggered through its HTTP API
#   les            laravel-echo-server (bench/peers/les.js), baseline (b)
# Scenarios (BENCH_ONLY picks some, by these names):
#   idle     1k, 10k, 19k connections held by surge-load (one client process per 10k, from
#            127.0.0.2, .3, ... when more than one): server RSS per connection. Surge
#            (echo.php), Surge as a Pusher server (pusher.php, clients on soketi's path: the
#            like-for-like row for soketi), naive, soketi, les; at 10k Surge once more with
#            websocket_compression on and every client negotiating permessage-deflate, and
#            Surge and naive once more after one 64 KiB message from every client, echoed back
#            (what a connection keeps after traffic).
#   echo     50 and 1000 connections, 32-byte messages echoed by a PHP callback (echo.php), 1 s
#            warm-up then BENCH_ECHO_SECS: round trips/s, p50/p99, server CPU per round trip.
#            Surge as shipped, Surge with worker_threads 0 (network work on the PHP thread), Surge
#            with worker_num 2 (two such PHP processes), naive, in turn, BENCH_ECHO_ROUNDS times: each round is judged against its own naive row
#            (rates here move by 30% from one minute to the next).
#   fanout   1k and 10k clients, 100-byte messages: one at a time (20 times, until the last
#            client has it), then a closed loop for BENCH_FANOUT_SECS after 1 s warm-up.
#            Surge fanout.php in modes broadcast, publish and loop (PHP foreach push), the loop
#            again with worker_num 2 (most pushes go to the other worker's clients), naive;
#            and issue 8's scenario 5, the Pusher HTTP API (bench/peers/pusher-trigger.js) to
#            Pusher clients: Surge pusher.php beside soketi.
#   laravel  1k clients; Laravel-shaped payloads PUBLISHed to a redis-server of the row's own:
#            one at a time, a fixed rate, a closed loop. Surge laravel.php (Redis bridge), les.
# Environment: BENCH_ONLY (idle,echo,fanout,laravel), BENCH_PEERS=0 to leave out everything
# that needs Node.js (soketi, les and Surge's Pusher row), BENCH_IDLE_CONNS ("1000 10000 19000"),
# BENCH_FANOUT_CONNS ("1000 10000"), BENCH_ECHO_SECS (5), BENCH_ECHO_CONNS ("50 1000"),
# BENCH_ECHO_ROUNDS (5), BENCH_FANOUT_ROUNDS (3: every fan-out row in turn, each round judged
# against its own naive and soketi rows; 1 runs each once),
# BENCH_FANOUT_SECS (3), BENCH_LARAVEL_RATE (200 messages/s).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
source scripts/cargo-path.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
ONLY=${BENCH_ONLY:-idle,echo,fanout,laravel}
PEERS=${BENCH_PEERS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-1000 10000 19000}
FANOUT_CONNS=${BENCH_FANOUT_CONNS:-1000 10000}
ECHO_SECS=${BENCH_ECHO_SECS:-5}
ECHO_CONNS=${BENCH_ECHO_CONNS:-50 1000}
ECHO_ROUNDS=${BENCH_ECHO_ROUNDS:-5}
FANOUT_ROUNDS=${BENCH_FANOUT_ROUNDS:-3}
FANOUT_SECS=${BENCH_FANOUT_SECS:-3}
LARAVEL_RATE=${BENCH_LARAVEL_RATE:-200}
# Every Surge row runs as shipped (the php_thread and workers echo rows set theirs themselves),
# whatever this shell has set.
unset SURGE_WORKER_THREADS SURGE_WORKER_NUM
# A client process holds at most this many connections (the open-file limit is 20,000).
CONNS_PER_CLIENT=10000
PUSHER_PATH='/app/app-key?protocol=7&client=js&version=7.0.0'
PUSHER_SUBSCRIBE='{"event":"pusher:subscribe","data":{"channel":"all"}}'
SOCKETIO_PATH='/socket.io/?EIO=3&transport=websocket'
SOCKETIO_SUBSCRIBE='42["subscribe",{"channel":"bench","auth":{"headers":{}}}]'
started=$(date +%s)
# fail, spawn, reap, stop, cleanup, wait_for, rss_kib, fd_count, settled_rss, loadavg, free_port,
# json_lines, json_array, size_name
source bench/lib.sh

wants() { [[ ",$ONLY," == *",$1,"* ]]; }
for scenario in ${ONLY//,/ }; do
    case $scenario in idle | echo | fanout | laravel) ;; *) fail "BENCH_ONLY: unknown scenario '$scenario'" ;; esac
done
# peers ARGS...: ARGS, or nothing when BENCH_PEERS=0.
peers() { [ "$PEERS" = 0 ] || echo "$@"; }

./scripts/build.sh
echo "==> cargo build --release -p surge-bench"
cargo build --release --locked -p surge-bench
LOAD="$CARGO_TARGET_DIR/release/surge-load"
NAIVE="$CARGO_TARGET_DIR/release/naive-server"
SO="$ROOT/build/surge.so"
if [ "$PEERS" != 0 ] && { wants idle || wants fanout || wants laravel; }; then
    command -v node >/dev/null || fail "node not found: install Node.js 18+ for the peers, or set BENCH_PEERS=0"
    [ -d bench/peers/node_modules ] || (cd bench/peers && timeout 600 npm ci --no-audit --no-fund)
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-bench.XXXXXX")
RESULTS="$WORK/results.jsonl"
trap 'cleanup; rm -rf "$WORK"' EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

# start_redis: a redis-server of its own on a free 127.0.0.1 port, no persistence; sets
# REDIS_PORT and REDIS_PID.
start_redis() {
    REDIS_PORT=$(free_port)
    spawn "$SERVER_LOG.redis" "$SERVER_LOG.redis.err" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save '' --appendonly no --protected-mode yes
    REDIS_PID=$SPAWNED
    wait_for 10 "$REDIS_PID" redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 || fail "redis-server did not start"
}

# start_trigger ARGS...: bench/peers/pusher-trigger.js on a free port, in front of the server's
# HTTP API (see that file for ARGS); sets TRIGGER_PORT and TRIGGER_PID.
start_trigger() {
    TRIGGER_PORT=$(free_port)
    spawn "$SERVER_LOG.trigger" "$SERVER_LOG.trigger.err" node bench/peers/pusher-trigger.js "$TRIGGER_PORT" "$SERVER_PORT" "$@"
    TRIGGER_PID=$SPAWNED
    wait_for 10 "$TRIGGER_PID" grep -q '^ready' "$SERVER_LOG.trigger" || { cat "$SERVER_LOG.trigger"* >&2; fail "pusher-trigger.js did not start"; }
}

# Printed "ready PORT" (Surge's bench servers, naive-server)?
said_ready() { grep -qs '^ready ' "$SERVER_LOG.out"; }
# Listening on SERVER_PORT itself, and answers HTTP GET PATH there? (The port was free when
# chosen; on a busy machine something else may take it first, and soketi then runs without it.)
answers() {
    ss -Hltnp "sport = :$SERVER_PORT" | grep -q "pid=$SERVER_PID," && curl -fs -m 1 "http://127.0.0.1:$SERVER_PORT$1" -o /dev/null
}

# start_server NAME [SERVER]: a fresh server, by default bench/servers/echo.php. SERVER is a
# script under bench/servers, naive, soketi or les (laravel.php and les get a redis-server of
# their own). Sets SERVER_KIND, SERVER_PID, SERVER_PORT and SERVER_PATH (its WebSocket path).
start_server() {
    SERVER_LOG="$WORK/server.$1"
    SERVER_KIND=${2:-echo.php}
    SERVER_PATH=/
    REDIS_PID="" TRIGGER_PID=""
    local ready=(said_ready) out="$SERVER_LOG.out" err="$SERVER_LOG.err"
    case $SERVER_KIND in
    naive) spawn "$out" "$err" env SURGE_PORT=0 "$NAIVE" ;;
    soketi)
        SERVER_PORT=$(free_port)
        SERVER_PATH=$PUSHER_PATH
        ready=(answers /)
        # (its AWS SDK v2 would log a deprecation notice at start, counted as a server log line)
        spawn "$out" "$err" env AWS_SDK_JS_SUPPRESS_MAINTENANCE_MODE_MESSAGE=1 SOKETI_HOST=127.0.0.1 SOKETI_PORT="$SERVER_PORT" SOKETI_METRICS_HOST=127.0.0.1 \
            SOKETI_METRICS_SERVER_PORT="$(free_port)" SOKETI_DEBUG=0 SOKETI_EVENT_MAX_BATCH_SIZE=100 \
            node bench/peers/node_modules/@soketi/soketi/bin/server.js start
        ;;
    les)
        start_redis
        SERVER_PORT=$(free_port)
        SERVER_PATH=$SOCKETIO_PATH
        ready=(answers "/apps/les/channels/bench?auth_key=bench-key")
        spawn "$out" "$err" node bench/peers/les.js "$SERVER_PORT" "$REDIS_PORT"
        ;;
    laravel.php)
        start_redis
        spawn "$out" "$err" env SURGE_PORT=0 SURGE_REDIS="redis://127.0.0.1:$REDIS_PORT" php -d extension="$SO" bench/servers/laravel.php
        ;;
    *)
        [ "$SERVER_KIND" = pusher.php ] && SERVER_PATH=$PUSHER_PATH
        spawn "$out" "$err" env SURGE_PORT=0 php -d extension="$SO" "bench/servers/$SERVER_KIND"
        ;;
    esac
    SERVER_PID=$SPAWNED
    wait_for 20 "$SERVER_PID" "${ready[@]}" || {
        cat "$err" >&2
        fail "the $1 server ($SERVER_KIND) did not start"
    }
    [ "${ready[0]}" = said_ready ] && SERVER_PORT=$(awk '/^ready / { print $2; exit }' "$out")
    return 0
}

# stop_server: its trigger, then the server (SIGTERM, up to 10 s to exit), then its redis-server;
# sets SERVER_END to the JSON of how the server ended and what it wrote to stderr.
stop_server() {
    [ -z "$TRIGGER_PID" ] || stop "$TRIGGER_PID"
    stop "$SERVER_PID"
    SERVER_END=$(printf '{"ended":"%s","log":%s}' "$ENDED" "$(json_lines "$SERVER_LOG.err")")
    [ -z "$REDIS_PID" ] || stop "$REDIS_PID"
}

# record JSON-FIELDS CLIENT-LINES: one result line: the fields given, the server's end and the
# client's JSON lines.
record() {
    printf '{%s,"server":%s,"clients":%s}\n' "$1" "$SERVER_END" "$(json_array "$2")" >>"$RESULTS"
}

# run_echo NAME CONNS [SERVER [MODE [ROUND]]]: MODE php_thread runs echo.php with worker_threads 0,
# MODE workers with worker_num 2 (two PHP processes, as naive has two threads), each with
# worker_threads 0.
run_echo() {
    local name=$1 conns=$2 server=${3:-echo.php} mode=${4:-} round=${5:-1} load out
    echo "==> $name: $conns connections, 32 B, ${ECHO_SECS} s, $server $mode (load average $(loadavg))"
    load=$(loadavg)
    case $mode in
    php_thread) export SURGE_WORKER_THREADS=0 ;;
    workers) export SURGE_WORKER_THREADS=0 SURGE_WORKER_NUM=2 ;;
    esac
    start_server "$name" "$server"
    out="$WORK/$name.client"
    "$LOAD" echo --url "ws://127.0.0.1:$SERVER_PORT/" --conns "$conns" --secs "$ECHO_SECS" --warmup-secs 1 \
        --size 32 --threads 2 --server-pid "$SERVER_PID" >"$out" 2>"$out.err" \
        || { cat "$out.err" >&2; fail "$name: surge-load failed"; }
    local rss
    rss=$(rss_kib "$SERVER_PID")
    stop_server
    printf '{"scenario":"%s","kind":"echo","server_kind":"%s","mode":"%s","round":%d,"conns":%d,"loadavg":"%s","server_rss_kib":%d,"server":%s,"clients":%s}\n' \
        "$name" "$server" "$mode" "$round" "$conns" "$load" "$rss" "$SERVER_END" "$(json_array "$out")" >>"$RESULTS"
}

# run_idle NAME SERVER CONNS: CONNS connections held by surge-load, CONNS_PER_CLIENT at most a
# process; server RSS and open files listening, with every connection up, and 1 s after close.
# With SURGE_COMPRESSION=1 (exported) echo.php has websocket_compression on and the clients
# negotiate permessage-deflate; with IDLE_MESSAGE_BYTES=N each client sends one message of N
# bytes, and waits for it to come back, before it counts as connected.
run_idle() {
    local name=$1 server=$2 conns=$3 load base base_fds full full_fds after after_fds pid i deflate=false
    local message_bytes=${IDLE_MESSAGE_BYTES:-0}
    [ "${SURGE_COMPRESSION:-0}" = 1 ] && deflate=true
    local procs=$(((conns + CONNS_PER_CLIENT - 1) / CONNS_PER_CLIENT)) addrs=(127.0.0.1)
    if [ "$procs" -gt 1 ]; then addrs=($(seq -f '127.0.0.%g' 2 $((procs + 1)))); fi
    load=$(loadavg)
    echo "==> $name: $conns idle connections to $server from ${addrs[*]} (load average $load)"
    start_server "$name" "$server"
    sleep 1
    base=$(settled_rss "$SERVER_PID")
    base_fds=$(fd_count "$SERVER_PID")
    local clients=()
    for i in "${!addrs[@]}"; do
        # floor((conns + i) / procs) over i = 0..procs-1 adds up to conns exactly.
        spawn "$WORK/$name.client$i" "$WORK/$name.client$i.err" "$LOAD" idle --url "ws://127.0.0.1:$SERVER_PORT$SERVER_PATH" \
            --conns $(((conns + i) / procs)) --bind "${addrs[$i]}" --hold-secs 120 --connect-timeout-secs 30 --deflate "$deflate" \
            --message-bytes "$message_bytes"
        clients+=("$SPAWNED")
    done
    for i in "${!clients[@]}"; do
        wait_for 90 "${clients[$i]}" grep -qs '"event":"connected"' "$WORK/$name.client$i" || {
            cat "$WORK/$name.client$i.err" >&2
            fail "$name: client $i did not report its connections"
        }
    done
    # Every server gets 3 s after its last connection before RSS is read: what an idle server
    # holds, not the handshakes' leftovers (Surge gives those back a second after a burst;
    # garbage-collected peers may shrink too).
    sleep 3
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
    local fields
    fields=$(printf '"scenario":"%s","kind":"idle","server_kind":"%s","mode":"%s","conns":%d,"message_bytes":%d,"client_processes":%d,"client_ends":"%s","loadavg":"%s"' \
        "$name" "$server" "$([ "$deflate" = true ] && echo deflate)" "$conns" "$message_bytes" "$procs" "${ended[*]}" "$load")
    fields+=$(printf ',"server_rss_listening_kib":%d,"server_rss_established_kib":%d,"server_rss_after_close_kib":%d' "$base" "$full" "$after")
    fields+=$(printf ',"server_fds_listening":%d,"server_fds_established":%d,"server_fds_after_close":%d' "$base_fds" "$full_fds" "$after_fds")
    record "$fields" "$WORK/$name.clients"
}

# delivery_args MODE: sets LOAD_ARGS to what surge-load needs for the running server (and starts
# the HTTP API trigger of a Pusher server, or the members shim of laravel-echo-server).
delivery_args() {
    local rate=(--rate "$LARAVEL_RATE" --rate-secs 5)
    case $SERVER_KIND in
    fanout.php | naive) LOAD_ARGS=(--trigger "/trigger?mode=$1") ;;
    pusher.php | soketi)
        # Surge takes at most 10 events a batch, as Pusher's API; soketi is set to 100.
        start_trigger app-id app-key app-secret "$([ "$SERVER_KIND" = soketi ] && echo 100 || echo 10)"
        LOAD_ARGS=(--http "127.0.0.1:$TRIGGER_PORT" --trigger /trigger --subscribe "$PUSHER_SUBSCRIBE")
        ;;
    laravel.php) LOAD_ARGS=(--redis "127.0.0.1:$REDIS_PORT" "${rate[@]}") ;;
    les)
        start_trigger les
        LOAD_ARGS=(--http "127.0.0.1:$TRIGGER_PORT" --subscribe "$SOCKETIO_SUBSCRIBE" --redis "127.0.0.1:$REDIS_PORT" "${rate[@]}")
        ;;
    esac
}

# run_delivery NAME KIND SERVER CONNS [MODE [ROUND]]: surge-load KIND (fanout or laravel) against
# a fresh SERVER, the fan-out in MODE (broadcast, publish, loop); ROUND when rows repeat.
run_delivery() {
    local name=$1 kind=$2 server=$3 conns=$4 mode=${5:-} round=${6:-} load out rss
    load=$(loadavg)
    echo "==> $name: $conns clients, $server $mode (load average $load)"
    start_server "$name" "$server"
    delivery_args "$mode"
    out="$WORK/$name.client"
    timeout -k 5 240 "$LOAD" "$kind" --url "ws://127.0.0.1:$SERVER_PORT$SERVER_PATH" --conns "$conns" --secs "$FANOUT_SECS" \
        --warmup-secs 1 --reps 20 --server-pid "$SERVER_PID" "${LOAD_ARGS[@]}" >"$out" 2>"$out.err" </dev/null \
        || { cat "$out.err" >&2; fail "$name: surge-load failed"; }
    rss=$(rss_kib "$SERVER_PID")
    stop_server
    record "$(printf '"scenario":"%s","kind":"%s","server_kind":"%s","mode":"%s","worker_num":%d,"conns":%d,"loadavg":"%s","server_rss_kib":%d%s' \
        "$name" "$kind" "$server" "$mode" "${SURGE_WORKER_NUM:-1}" "$conns" "$load" "$rss" "$(round_field "$round")")" "$out"
}

# row FUNCTION NAME ARGS...: one row of the table (run_idle, run_echo or run_delivery) in a
# subshell of its own, so that a failure (a server that does not start, a client that fails)
# costs that row only: its processes are stopped, it is recorded as failed with the reason, and
# the run goes on. An interrupted row (Ctrl-C, SIGTERM) ends the run.
row() {
    local status fields failure="$WORK/$2.failed"
    set +e
    (
        set -e
        PIDS=()
        ROW_FAILURE=$failure
        trap cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        "$@"
    )
    status=$?
    set -e
    [ "$status" -eq 0 ] && return
    [ "$status" -lt 128 ] || exit "$status"
    [ -s "$failure" ] || echo "exit status $status" >"$failure"
    case $1 in
    run_echo) fields=$(printf '"kind":"echo","server_kind":"%s","mode":"%s","round":%d,"conns":%d' "${4:-echo.php}" "${5:-}" "${6:-1}" "$3") ;;
    run_idle) fields=$(printf '"kind":"idle","server_kind":"%s","conns":%d,"message_bytes":%d' "$3" "$4" "${IDLE_MESSAGE_BYTES:-0}") ;;
    run_delivery) fields=$(printf '"kind":"%s","server_kind":"%s","conns":%d,"mode":"%s","worker_num":%d%s' "$3" "$4" "$5" "${6:-}" "${SURGE_WORKER_NUM:-1}" "$(round_field "${7:-}")") ;;
    esac
    printf '{"scenario":"%s",%s,"loadavg":"%s","failed":%s}\n' "$2" "$fields" "$(loadavg)" \
        "$(php -r 'echo json_encode(trim(file_get_contents($argv[1])));' "$failure")" >>"$RESULTS"
}

idle_scenario() {
    local conns server short
    for conns in $IDLE_CONNS; do
        for server in echo.php pusher.php naive $(peers soketi les); do
            short=${server/echo.php/surge}
            row run_idle "idle_$(size_name "$conns")_${short%.php}" "$server" "$conns"
        done
        if [ "$conns" = 10000 ]; then
            SURGE_COMPRESSION=1 row run_idle idle_10k_deflate echo.php "$conns"
            for server in echo.php naive; do
                IDLE_MESSAGE_BYTES=65536 row run_idle "idle_10k_after_64k_${server/echo.php/surge}" "$server" "$conns"
            done
        fi
    done
}

echo_scenario() {
    local conns round
    for conns in $ECHO_CONNS; do
        for round in $(seq "$ECHO_ROUNDS"); do
            row run_echo "echo_${conns}_r$round" "$conns" echo.php "" "$round"
            row run_echo "echo_${conns}_php_thread_r$round" "$conns" echo.php php_thread "$round"
            row run_echo "echo_${conns}_workers_r$round" "$conns" echo.php workers "$round"
            row run_echo "echo_${conns}_naive_r$round" "$conns" naive "" "$round"
        done
    done
}

# round_field [ROUND]: the JSON field of a repeated row (,"round":N), nothing for a single one.
round_field() { [ -z "${1:-}" ] || printf ',"round":%d' "$1"; }

fanout_scenario() {
    local conns k mode round r=""
    for conns in $FANOUT_CONNS; do
        k=$(size_name "$conns")
        for round in $(seq "$FANOUT_ROUNDS"); do
            [ "$FANOUT_ROUNDS" = 1 ] || r=$round
            for mode in broadcast publish loop; do
                row run_delivery "fanout_${k}_$mode${r:+_r$r}" fanout fanout.php "$conns" "$mode" "$r"
            done
            # The articles' loop with worker processes: most of its pushes cross to the other one.
            SURGE_WORKER_NUM=2 row run_delivery "fanout_${k}_loop_workers${r:+_r$r}" fanout fanout.php "$conns" loop "$r"
            row run_delivery "fanout_${k}_naive${r:+_r$r}" fanout naive "$conns" broadcast "$r"
            [ "$PEERS" = 0 ] && continue
            row run_delivery "fanout_${k}_pusher${r:+_r$r}" fanout pusher.php "$conns" "" "$r"
            row run_delivery "fanout_${k}_soketi${r:+_r$r}" fanout soketi "$conns" "" "$r"
        done
    done
}

laravel_scenario() {
    row run_delivery laravel_1k laravel laravel.php 1000
    [ "$PEERS" = 0 ] || row run_delivery laravel_1k_les laravel les 1000
}

LOADAVG_START=$(loadavg)
echo "==> scenarios: $ONLY; peers: $([ "$PEERS" = 0 ] && echo no || echo yes); load average $LOADAVG_START"
for scenario in idle echo fanout laravel; do
    if wants "$scenario"; then "${scenario}_scenario"; fi
done

mkdir -p bench/results
# The raw lines first: a report that fails can be made again from them.
cp "$RESULTS" bench/results/latest.jsonl
SETTINGS=$(printf '{"only":"%s","peers":%s,"idle_conns":"%s","fanout_conns":"%s","echo_secs":"%s","echo_conns":"%s","echo_rounds":"%s","fanout_rounds":"%s","fanout_secs":"%s","laravel_rate":"%s","loadavg_start":"%s"}' \
    "$ONLY" "$([ "$PEERS" = 0 ] && echo false || echo true)" "$IDLE_CONNS" "$FANOUT_CONNS" "$ECHO_SECS" "$ECHO_CONNS" "$ECHO_ROUNDS" "$FANOUT_ROUNDS" "$FANOUT_SECS" "$LARAVEL_RATE" "$LOADAVG_START")
php bench/report.php bench/results/latest.jsonl bench/results "$(( $(date +%s) - started ))" "$SETTINGS"
