# Shell helpers shared by bench/run.sh and bench/peers.sh (sourced; bash).

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

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" | wc -l; }

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
