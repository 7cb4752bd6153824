#!/usr/bin/env bash
# Issue 8's npm baselines, apart from bench/run.sh, as run.sh measures Surge: soketi 1.6.1 (baseline c) idle 10k, the
# same measurement as run.sh's idle_10k (server VmRSS listening vs with every connection
# established). Installs bench/peers/ (npm ci, its own package-lock.json) when node_modules is
# missing. 127.0.0.1 only; every wait is bounded; every process it starts is stopped on exit.
# Prints one summary line per scenario and writes bench/results/peers-latest.jsonl (raw).
# Then soketi fan-out to 1k (surge-load fanout, triggered through soketi's HTTP API by
# bench/peers/pusher-trigger.js), the same against Surge's own Pusher protocol (issue 8's scenario 5:
# bench/servers/pusher.php, same clients, same trigger, batches of 10 as Pusher's API allows), and
# laravel-echo-server 1.6.3 on the Laravel path (Redis) to 1k.
# Environment: PEERS_IDLE_CONNS (10000), PEERS_FANOUT_SECS (3), PEERS_LARAVEL_RATE (200), PEERS_ONLY_LARAVEL=1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/surge/target}"
IDLE_CONNS=${PEERS_IDLE_CONNS:-10000}
FANOUT_SECS=${PEERS_FANOUT_SECS:-3}
LARAVEL_RATE=${PEERS_LARAVEL_RATE:-200}
# wait_for, rss_kib, fd_count, settled_rss, loadavg, free_port
source bench/lib.sh

./scripts/build.sh
SO="$ROOT/build/surge.so"
echo "==> cargo build --release -p surge-bench"
cargo build --release --locked -p surge-bench
LOAD="$CARGO_TARGET_DIR/release/surge-load"
[ -d bench/peers/node_modules ] || (cd bench/peers && timeout 600 npm ci --no-audit --no-fund)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-peers.XXXXXX")
RESULTS="$WORK/results.jsonl"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM
fail() { echo "peers: $*" >&2; exit 1; }

stop() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# start_soketi NAME: soketi on a free 127.0.0.1 port (app app-id / app-key / app-secret), metrics
# on another; sets SERVER_PID and SERVER_PORT.
start_soketi() {
    SERVER_PORT=$(free_port)
    local mport
    mport=$(free_port)
    SOKETI_HOST=127.0.0.1 SOKETI_PORT=$SERVER_PORT SOKETI_METRICS_HOST=127.0.0.1 \
        SOKETI_METRICS_SERVER_PORT=$mport SOKETI_DEBUG=0 SOKETI_EVENT_MAX_BATCH_SIZE=100 \
        node "$ROOT/bench/peers/node_modules/@soketi/soketi/bin/server.js" start \
        >"$WORK/$1.server" 2>&1 </dev/null &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for 20 "$SERVER_PID" curl -fs -m 1 "http://127.0.0.1:$SERVER_PORT/" -o /dev/null \
        || { cat "$WORK/$1.server" >&2; fail "$1: soketi did not start"; }
}

# start_surge_pusher NAME: bench/servers/pusher.php (Surge, one Pusher app app-id / app-key /
# app-secret) on a free 127.0.0.1 port; sets SERVER_PID and SERVER_PORT.
start_surge_pusher() {
    SURGE_PORT=0 php -d extension="$SO" "$ROOT/bench/servers/pusher.php" >"$WORK/$1.server" 2>"$WORK/$1.server.err" </dev/null &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    wait_for 10 "$SERVER_PID" grep -q '^ready ' "$WORK/$1.server" \
        || { cat "$WORK/$1.server.err" >&2; fail "$1: Surge did not start"; }
    SERVER_PORT=$(awk '/^ready / { print $2; exit }' "$WORK/$1.server")
}

# idle NAME URL: IDLE_CONNS connections from one surge-load process, held until measured.
idle() {
    local name=$1 url=$2 load base base_fds full full_fds after client
    load=$(loadavg)
    echo "==> $name: $IDLE_CONNS idle connections to $url (load average $load)"
    sleep 1
    base=$(settled_rss "$SERVER_PID")
    base_fds=$(fd_count "$SERVER_PID")
    "$LOAD" idle --url "$url" --conns "$IDLE_CONNS" --hold-secs 120 >"$WORK/$name.client" 2>"$WORK/$name.client.err" </dev/null &
    client=$!
    PIDS+=("$client")
    wait_for 90 "$client" grep -qs '"event":"connected"' "$WORK/$name.client" \
        || { cat "$WORK/$name.client.err" >&2; fail "$name: the client did not report its connections"; }
    full=$(settled_rss "$SERVER_PID")
    full_fds=$(fd_count "$SERVER_PID")
    stop "$client"
    sleep 1
    after=$(rss_kib "$SERVER_PID")
    printf '{"scenario":"%s","kind":"idle","loadavg":"%s","server_rss_listening_kib":%d,"server_rss_established_kib":%d,"server_rss_after_close_kib":%d,"server_fds_listening":%d,"server_fds_established":%d,"clients":[%s]}\n' \
        "$name" "$load" "$base" "$full" "$after" "$base_fds" "$full_fds" "$(paste -sd, "$WORK/$name.client")" >>"$RESULTS"
    php -r '
        $r = json_decode($argv[1], true);
        $c = null;
        foreach ($r["clients"] as $l) if (($l["event"] ?? "") === "connected") $c = $l;
        $n = $c["connected"] ?? 0;
        printf("%s: connected %d, RSS listening %.1f MiB, established %.1f MiB, %.2f KiB / conn, after close %.1f MiB, fds %d -> %d, load avg before %s\n",
            $r["scenario"], $n, $r["server_rss_listening_kib"] / 1024, $r["server_rss_established_kib"] / 1024,
            $n ? ($r["server_rss_established_kib"] - $r["server_rss_listening_kib"]) / $n : 0,
            $r["server_rss_after_close_kib"] / 1024, $r["server_fds_listening"], $r["server_fds_established"], $r["loadavg"]);
    ' "$(tail -n1 "$RESULTS")"
}

# fanout NAME CONNS [BATCH]: surge-load fanout against a Pusher server (soketi or Surge; SERVER_PORT,
# SERVER_PID): every client subscribes to "all"; bench/peers/pusher-trigger.js turns surge-load's
# GET /trigger and GET /members into signed HTTP API calls (batch_events of at most BATCH events,
# default 100; channel info). Server CPU is the server's.
fanout() {
    local name=$1 conns=$2 batch=${3:-100} load tport tpid out
    load=$(loadavg)
    echo "==> $name: $conns clients subscribed to \"all\", HTTP API trigger (load average $load)"
    tport=$(free_port)
    node "$ROOT/bench/peers/pusher-trigger.js" "$tport" "$SERVER_PORT" app-id app-key app-secret "$batch" >"$WORK/$name.trigger" 2>&1 </dev/null &
    tpid=$!
    PIDS+=("$tpid")
    wait_for 10 "$tpid" grep -q '^ready' "$WORK/$name.trigger" || { cat "$WORK/$name.trigger" >&2; fail "$name: trigger did not start"; }
    out="$WORK/$name.client"
    timeout -k 5 240 "$LOAD" fanout --url "ws://127.0.0.1:$SERVER_PORT/app/app-key?protocol=7&client=js&version=7.0.0" \
        --http "127.0.0.1:$tport" --trigger /trigger --subscribe '{"event":"pusher:subscribe","data":{"channel":"all"}}' \
        --conns "$conns" --secs "$FANOUT_SECS" --warmup-secs 1 --reps 20 --server-pid "$SERVER_PID" >"$out" 2>"$out.err" </dev/null \
        || { cat "$out.err" "$WORK/$name.trigger" >&2; fail "$name: surge-load failed"; }
    stop "$tpid"
    printf '{"scenario":"%s","kind":"fanout","loadavg":"%s","clients":[%s]}\n' "$name" "$load" "$(paste -sd, "$out")" >>"$RESULTS"
    php -r '
        $r = json_decode($argv[1], true);
        $c = $r["clients"][0]; $o = $c["one"] ?? []; $s = $c["sustained"] ?? [];
        $ms = fn($us) => $us === null ? "-" : sprintf("%.2f", $us / 1000);
        printf("%s: connected %d, one msg last p50 %s ms, p99 %s ms, first p50 %s ms; sustained %s deliveries/s, server CPU %s us / delivery, all delivered %s, batch last p99 %s ms, RSS %s MiB, errors %d, load avg before %s\n",
            $r["scenario"], $c["connected"] ?? 0, $ms($o["last_p50_us"] ?? null), $ms($o["last_p99_us"] ?? null), $ms($o["first_p50_us"] ?? null),
            number_format($s["deliveries_per_sec"] ?? 0), $s["server_cpu_us_per_delivery"] ?? "-", json_encode($s["all_delivered"] ?? null),
            $ms($s["batch_last_p99_us"] ?? null), isset($s["server_rss_kib_end"]) ? sprintf("%.1f", $s["server_rss_kib_end"] / 1024) : "-",
            ($c["errors"] ?? 0) + array_sum($c["connect_errors"] ?? []), $r["loadavg"]);
    ' "$(tail -n1 "$RESULTS")"
}

# laravel NAME CONNS: laravel-echo-server (bench/peers/les.js) subscribed to a redis-server of
# its own; CONNS socket.io 2 clients (engine.io 3 over a plain WebSocket: surge-load's clients,
# "42[subscribe]" after the server's open packet) join "bench"; surge-load PUBLISHes the same
# Laravel-shaped payloads as run.sh's laravel_1k. Server CPU is laravel-echo-server's.
laravel() {
    local name=$1 conns=$2 load rport rpid port pid tport tpid out
    load=$(loadavg)
    echo "==> $name: $conns socket.io clients joined to \"bench\", Redis PUBLISH (load average $load)"
    rport=$(free_port)
    redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --protected-mode yes >"$WORK/redis.log" 2>&1 </dev/null &
    rpid=$!
    PIDS+=("$rpid")
    wait_for 10 "$rpid" redis-cli -h 127.0.0.1 -p "$rport" ping >/dev/null 2>&1 || fail "redis-server did not start"
    port=$(free_port)
    (cd "$ROOT/bench/peers" && exec node les.js "$port" "$rport") >"$WORK/$name.server" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    wait_for 20 "$pid" curl -fs -m 1 "http://127.0.0.1:$port/apps/les/channels/bench?auth_key=bench-key" -o /dev/null \
        || { cat "$WORK/$name.server" >&2; fail "$name: laravel-echo-server did not start"; }
    tport=$(free_port)
    node "$ROOT/bench/peers/pusher-trigger.js" "$tport" "$port" les >"$WORK/$name.trigger" 2>&1 </dev/null &
    tpid=$!
    PIDS+=("$tpid")
    wait_for 10 "$tpid" grep -q '^ready' "$WORK/$name.trigger" || { cat "$WORK/$name.trigger" >&2; fail "$name: members shim did not start"; }
    out="$WORK/$name.client"
    timeout -k 5 240 "$LOAD" laravel --url "ws://127.0.0.1:$port/socket.io/?EIO=3&transport=websocket" \
        --http "127.0.0.1:$tport" --subscribe '42["subscribe",{"channel":"bench","auth":{"headers":{}}}]' \
        --redis "127.0.0.1:$rport" --rate "$LARAVEL_RATE" --rate-secs 5 \
        --conns "$conns" --secs "$FANOUT_SECS" --warmup-secs 1 --reps 20 --server-pid "$pid" >"$out" 2>"$out.err" </dev/null \
        || { cat "$out.err" "$WORK/$name.server" >&2; fail "$name: surge-load failed"; }
    stop "$tpid"
    stop "$pid"
    stop "$rpid"
    printf '{"scenario":"%s","kind":"laravel","loadavg":"%s","clients":[%s]}\n' "$name" "$load" "$(paste -sd, "$out")" >>"$RESULTS"
    php -r '
        $r = json_decode($argv[1], true);
        $c = $r["clients"][0]; $o = $c["one"] ?? []; $f = $c["fixed_rate"] ?? []; $s = $c["sustained"] ?? [];
        $ms = fn($us) => $us === null ? "-" : sprintf("%.2f", $us / 1000);
        printf("%s: connected %d, one msg last p50 %s ms, p99 %s ms; fixed %s msgs/s: last p50 %s ms, p99 %s ms, all delivered %s, CPU %s us / delivery; sustained %s deliveries/s, CPU %s us / delivery, all delivered %s, errors %d, load avg before %s\n",
            $r["scenario"], $c["connected"] ?? 0, $ms($o["last_p50_us"] ?? null), $ms($o["last_p99_us"] ?? null),
            $f["rate"] ?? "-", $ms($f["last_p50_us"] ?? null), $ms($f["last_p99_us"] ?? null), json_encode($f["all_delivered"] ?? null), $f["server_cpu_us_per_delivery"] ?? "-",
            number_format($s["deliveries_per_sec"] ?? 0), $s["server_cpu_us_per_delivery"] ?? "-", json_encode($s["all_delivered"] ?? null),
            ($c["errors"] ?? 0) + array_sum($c["connect_errors"] ?? []), $r["loadavg"]);
    ' "$(tail -n1 "$RESULTS")"
}

echo "Surge peers, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git rev-parse --short HEAD), node $(node --version)"
[ "${PEERS_ONLY_LARAVEL:-0}" = 1 ] || {
    start_soketi soketi_idle
    idle soketi_idle_10k "ws://127.0.0.1:$SERVER_PORT/app/app-key?protocol=7&client=js&version=7.0.0"
    stop "$SERVER_PID"
    start_soketi soketi_fanout
    fanout soketi_fanout_1k 1000
    stop "$SERVER_PID"
    start_surge_pusher surge_pusher_fanout
    fanout surge_pusher_fanout_1k 1000 10
    stop "$SERVER_PID"
}
laravel les_laravel_1k 1000

mkdir -p bench/results
cp "$RESULTS" bench/results/peers-latest.jsonl
echo "written: bench/results/peers-latest.jsonl"
