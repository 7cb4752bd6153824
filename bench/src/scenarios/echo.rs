//! Echo: each connection sends a message, waits for the same bytes back, and repeats.
//! Round trips are counted from the end of a warm-up until the deadline; every reply is
//! compared with what was sent, so a lost or garbled echo shows up as an error, not a rate.

use crate::args::Args;
use crate::client::{self, Target, Ws};
use crate::procfs;
use crate::stats::{self, Errors, Latencies};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub const USAGE: &str =
    "echo --url ws://127.0.0.1:PORT/ [--conns 50] [--secs 5] [--warmup-secs 1] \
[--size 32] [--threads 2] [--bind IP] [--server-pid PID]";

/// A reply slower than this counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

struct Options {
    target: Target,
    conns: usize,
    secs: f64,
    warmup_secs: f64,
    size: usize,
    threads: usize,
    server_pid: Option<u32>,
}

pub fn run(mut args: Args) -> Result<Value, String> {
    let o = Options {
        target: Target::from_args(&mut args)?,
        conns: args.get("conns", 50)?,
        secs: args.get("secs", 5.0)?,
        warmup_secs: args.get("warmup-secs", 1.0)?,
        size: args.get("size", 32)?,
        threads: args.get("threads", 2)?,
        server_pid: args.optional("server-pid")?,
    };
    args.finish()?;
    if o.conns == 0
        || o.secs.is_nan()
        || o.secs <= 0.0
        || o.warmup_secs.is_nan()
        || o.warmup_secs < 0.0
    {
        return Err("--conns and --secs must be positive, --warmup-secs not negative".into());
    }
    client::runtime(o.threads)?.block_on(echo(o))
}

/// What one connection did.
#[derive(Default)]
struct Outcome {
    latencies: Latencies,
    /// Round trips started inside the measured window.
    counted: u64,
    /// All round trips, warm-up included.
    total: u64,
    errors: Errors,
}

async fn echo(o: Options) -> Result<Value, String> {
    let read_buffer = 4096.max(o.size + 16);
    let connecting: Vec<_> = (0..o.conns)
        .map(|_| {
            let target = o.target.clone();
            tokio::spawn(async move { target.connect(read_buffer, Duration::from_secs(10)).await })
        })
        .collect();
    let mut connect_errors = Errors::default();
    let mut sockets = Vec::new();
    for c in connecting {
        match c.await.map_err(|e| e.to_string())? {
            Ok(ws) => sockets.push(ws),
            Err(e) => connect_errors.add(e),
        }
    }
    let connected = sockets.len();

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(o.warmup_secs);
    let end = measure_from + Duration::from_secs_f64(o.secs);
    let tasks: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(id, ws)| tokio::spawn(connection(ws, id, o.size, measure_from, end)))
        .collect();

    let server = o.server_pid.map(|p| p.to_string());
    tokio::time::sleep_until(measure_from).await;
    let before = [Usage::of("self"), Usage::of_opt(server.as_deref())];
    tokio::time::sleep_until(end).await;
    let after = [Usage::of("self"), Usage::of_opt(server.as_deref())];
    let window = end - measure_from;

    let mut all = Outcome::default();
    for t in tasks {
        let one = t.await.map_err(|e| e.to_string())?;
        all.latencies.merge(one.latencies);
        all.counted += one.counted;
        all.total += one.total;
        all.errors.merge(one.errors);
    }

    let mut out = json!({
        "mode": "echo",
        "url": o.target.url,
        "conns": o.conns,
        "connected": connected,
        "connect_errors": connect_errors.to_json(),
        "size": o.size,
        "threads": o.threads,
        "warmup_secs": o.warmup_secs,
        "secs": stats::secs(window),
        "round_trips": all.counted,
        "round_trips_per_sec": stats::rate(all.counted, window),
        "round_trips_with_warmup": all.total,
        "errors": all.errors.total(),
        "error_messages": all.errors.to_json(),
    });
    merge(&mut out, all.latencies.summary(""));
    let used =
        |i: usize, figure: fn(&Usage) -> Option<f64>| match (figure(&before[i]), figure(&after[i]))
        {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    merge(
        &mut out,
        json!({
            "client_cpu_secs": used(0, |u| u.cpu_secs).map(round),
            "client_user_secs": used(0, |u| u.user_secs).map(round),
            "client_on_cpu_secs": used(0, |u| u.on_cpu_secs).map(round),
            "client_runqueue_wait_secs": used(0, |u| u.waiting_secs).map(round),
        }),
    );
    if let Some(pid) = o.server_pid {
        let per_1k = used(1, |u| u.cpu_secs)
            .filter(|_| all.counted > 0)
            .map(|s| s / all.counted as f64 * 1000.0);
        merge(
            &mut out,
            json!({
                "server_pid": pid,
                "server_cpu_secs": used(1, |u| u.cpu_secs).map(round),
                "server_user_secs": used(1, |u| u.user_secs).map(round),
                "server_cpu_secs_per_1k_round_trips": per_1k.map(|x| (x * 1e5).round() / 1e5),
                "server_on_cpu_secs": used(1, |u| u.on_cpu_secs).map(round),
                "server_runqueue_wait_secs": used(1, |u| u.waiting_secs).map(round),
            }),
        );
    }
    Ok(out)
}

/// What a process has used so far (None where unreadable): CPU time as `/proc/PID/stat` counts
/// it (all of it, and its user-space part), and the scheduler's own on-CPU and run-queue wait
/// times.
#[derive(Default)]
struct Usage {
    cpu_secs: Option<f64>,
    user_secs: Option<f64>,
    on_cpu_secs: Option<f64>,
    waiting_secs: Option<f64>,
}

impl Usage {
    fn of(pid: &str) -> Usage {
        let sched = procfs::sched_secs(pid).ok();
        let cpu = procfs::cpu_split(pid).ok();
        Usage {
            cpu_secs: cpu.map(|(user, system)| user + system),
            user_secs: cpu.map(|c| c.0),
            on_cpu_secs: sched.map(|s| s.0),
            waiting_secs: sched.map(|s| s.1),
        }
    }

    fn of_opt(pid: Option<&str>) -> Usage {
        pid.map(Usage::of).unwrap_or_default()
    }
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

/// `size` ASCII bytes that name the connection and the round trip, so a reply that belongs
/// to another message cannot pass for the right one.
fn payload(id: usize, seq: u64, size: usize) -> String {
    let mut s = format!("{id}.{seq}.");
    s.truncate(size);
    s.extend(std::iter::repeat_n('x', size - s.len()));
    s
}

async fn connection(
    mut ws: Ws,
    id: usize,
    size: usize,
    measure_from: Instant,
    end: Instant,
) -> Outcome {
    let mut out = Outcome::default();
    let mut seq = 0u64;
    loop {
        let sent_at = Instant::now();
        if sent_at >= end {
            break;
        }
        let text = payload(id, seq, size);
        if let Err(e) = ws.send(Message::text(text.clone())).await {
            out.errors.add(format!("send: {e}"));
            return out;
        }
        match tokio::time::timeout(REPLY_TIMEOUT, client::next_data(&mut ws)).await {
            Err(_) => {
                out.errors
                    .add(format!("no echo within {} s", REPLY_TIMEOUT.as_secs()));
                return out;
            }
            Ok(Err(e)) => {
                out.errors.add(e);
                return out;
            }
            Ok(Ok(Message::Text(t))) if t.as_str() == text => {}
            Ok(Ok(_)) => {
                out.errors.add("echo differs from the message sent");
                return out;
            }
        }
        out.total += 1;
        if sent_at >= measure_from {
            out.counted += 1;
            out.latencies.record(sent_at.elapsed());
        }
        seq += 1;
    }
    client::close(ws).await;
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn payload_has_the_size_and_names_the_message() {
        assert_eq!(super::payload(3, 17, 10), "3.17.xxxxx");
        assert_eq!(super::payload(12345, 1234567, 4), "1234");
        assert_eq!(super::payload(1, 2, 0), "");
    }
}
