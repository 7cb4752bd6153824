# Shell helpers of bench/run.sh, instructions.sh and syscalls.sh (sourced; bash): processes they
# start, and what they read of them.

# Every process started in the background is listed here, so that cleanup stops it.
PIDS=()

# fail MESSAGE: says why and exits (a row's subshell only, within a row: see row in run.sh).
fail() {
    echo "bench: $*" >&2
    [ -z "${ROW_FAILURE:-}" ] || echo "$*" >"$ROW_FAILURE"
    exit 1
}

# cleanup: SIGTERM to every process still listed, up to 5 s, then SIGKILL (the EXIT trap).
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
}

# spawn OUT ERR COMMAND...: COMMAND in the background, stdout to OUT, stderr to ERR, no stdin;
# sets SPAWNED to its pid and lists it for cleanup.
spawn() {
    local out=$1 err=$2
    shift 2
    "$@" >"$out" 2>"$err" </dev/null &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

# wait_for SECONDS PID COMMAND...: runs COMMAND every 0.1 s until it succeeds; fails when
# PID has exited or the time is up.
wait_for() {
    local limit=$1 pid=$2 i
    shift 2
    for i in $(seq $((limit * 10))); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

exited() { [ ! -e "/proc/$1" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" = Z ]; }

# reap PID LIMIT: waits up to LIMIT s for PID to exit, kills it if it has not, and sets ENDED
# to how it ended ("exit N", "signal N", "signal 9 (killed: ...)").
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
    wait "$pid" 2>/dev/null || status=$?  # (bash would print "Killed" for a SIGKILLed job)
    local rest=()
    for i in "${PIDS[@]}"; do [ "$i" = "$pid" ] || rest+=("$i"); done
    PIDS=("${rest[@]}")
    if [ "$status" -gt 128 ]; then ENDED="signal $((status - 128))$killed"; else ENDED="exit $status"; fi
}

# stop PID: SIGTERM, then reap within 10 s.
stop() {
    kill -TERM "$1" 2>/dev/null || true
    reap "$1" 10
}

# A server's RSS and open files count its children too (Surge's worker processes).
rss_kib() {
    local p
    for p in "$1" $(pgrep -P "$1"); do awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | awk '{ s += $1 } END { print s }'
}
fd_count() {
    local p
    for p in "$1" $(pgrep -P "$1"); do ls "/proc/$p/fd" 2>/dev/null; done | wc -l
}

# RSS once it stops moving: samples every 0.5 s until two agree within 0.5% (at most 5 s).
settled_rss() {
    local prev now i
    prev=$(rss_kib "$1")
    for i in $(seq 10); do
        sleep 0.5
        now=$(rss_kib "$1")
        [ $(( (now > prev ? now - prev : prev - now) * 200 )) -le "$now" ] && break
        prev=$now
    done
    echo "$now"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

free_port() { php -r '$s = stream_socket_server("tcp://127.0.0.1:0"); echo substr(strrchr(stream_socket_get_name($s, false), ":"), 1);'; }

# Lines of a file as a JSON array of strings (a server's log: it may hold anything).
json_lines() { php -r 'echo json_encode(array_map("rtrim", file($argv[1]) ?: []));' "$1"; }
# JSON lines as a JSON array.
json_array() { printf '[%s]' "$(paste -sd, "$1")"; }

# 1k for 1000, 19k for 19000, 500 for 500: the size in a scenario's name.
size_name() { if [ $(($1 % 1000)) -eq 0 ]; then echo "$(($1 / 1000))k"; else echo "$1"; fi; }

# probe_start NAME TOOL PACKAGE: the start of instructions.sh and syscalls.sh: fails unless TOOL
# is installed, makes WORK (removed on exit, after every process started is stopped), builds
# the extension and surge-load (the log shown only if that fails) and sets LOAD.
probe_start() {
    command -v "$2" >/dev/null || fail "$2 is not installed (apt-get install $3)"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/surge-$1.XXXXXX")
    trap 'cleanup; rm -rf "$WORK"' EXIT
    { ./scripts/build.sh && cargo build --release --locked -p surge-bench; } >"$WORK/build.log" 2>&1 ||
        { cat "$WORK/build.log"; fail "the build failed"; }
    LOAD=$CARGO_TARGET_DIR/release/surge-load
}
