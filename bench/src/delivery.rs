//! What fan-out and the Laravel path share: many clients that each expect numbered messages
//! ("#<seq>#" somewhere in the text) in order, a tracker that knows when every client has a
//! message, and the three ways of driving them (one at a time, a fixed rate, a closed loop).

use crate::client::{self, Target};
use crate::procfs;
use crate::stats::{self, Errors, Latencies};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// How long the slowest client may take for a message before the run counts it as lost.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Per message: how many clients have it, and when the first and the last got it.
pub struct Tracker {
    clients: u32,
    base: Instant,
    counts: Vec<AtomicU32>,
    first_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    /// Messages 0..completed have reached every client.
    completed: AtomicU64,
    delivered: AtomicU64,
    notify: Notify,
    errors: Mutex<Errors>,
}

impl Tracker {
    pub fn new(clients: u32, capacity: usize) -> Tracker {
        let zeros32 = || (0..capacity).map(|_| AtomicU32::new(0)).collect();
        let zeros64 = || (0..capacity).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Tracker {
            clients,
            base: Instant::now(),
            counts: zeros32(),
            first_ns: zeros64(),
            last_ns: zeros64(),
            completed: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            notify: Notify::new(),
            errors: Mutex::new(Errors::default()),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.counts.len() as u64
    }

    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn received(&self, seq: u64) {
        let Some(count) = self.counts.get(seq as usize) else {
            self.error("message number beyond the run's capacity");
            return;
        };
        self.delivered.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ns();
        let c = count.fetch_add(1, Ordering::AcqRel) + 1;
        if c == 1 {
            self.first_ns[seq as usize].store(now, Ordering::Release);
        }
        if c == self.clients {
            self.last_ns[seq as usize].store(now, Ordering::Release);
            // Every client reads in order, so all earlier messages are complete as well.
            self.completed.fetch_max(seq + 1, Ordering::AcqRel);
            self.notify.notify_waiters();
        }
    }

    pub fn error(&self, e: impl Into<String>) {
        self.errors.lock().unwrap().add(e);
        self.notify.notify_waiters();
    }

    pub fn error_count(&self) -> u64 {
        self.errors.lock().unwrap().total()
    }

    pub fn errors_json(&self) -> Value {
        self.errors.lock().unwrap().to_json()
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Time from `since` until the last (first) client had message `seq`.
    fn last_after(&self, seq: u64, since: Instant) -> Duration {
        let at =
            self.base + Duration::from_nanos(self.last_ns[seq as usize].load(Ordering::Acquire));
        at.saturating_duration_since(since)
    }

    fn first_after(&self, seq: u64, since: Instant) -> Duration {
        let at =
            self.base + Duration::from_nanos(self.first_ns[seq as usize].load(Ordering::Acquire));
        at.saturating_duration_since(since)
    }

    /// Waits until messages 0..upto have reached every client, or the `limit` is over.
    pub async fn wait_completed(&self, upto: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.completed() >= upto {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.completed() >= upto;
            }
        }
    }

    /// Waits for any progress (or an error), at most `limit`.
    async fn wait_change(&self, limit: Duration) {
        let notified = self.notify.notified();
        let _ = tokio::time::timeout(limit, notified).await;
    }
}

/// The number in "#<seq>#" (the first '#' of the text).
pub fn seq_of(text: &str) -> Option<u64> {
    let start = text.find('#')? + 1;
    let len = text[start..].find('#')?;
    text[start..start + len].parse().ok()
}

/// Connects `conns` clients (`parallel` handshakes at a time); returns the sockets, the
/// connect errors and how long it took.
pub async fn connect_clients(
    target: &Target,
    conns: usize,
    parallel: usize,
    subscribe: Option<&str>,
) -> (Vec<client::Ws>, Errors, Duration) {
    let slots = Arc::new(Semaphore::new(parallel.max(1)));
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (target, slots) = (target.clone(), slots.clone());
            let subscribe = subscribe.map(str::to_string);
            tokio::spawn(async move {
                let _permit = slots.acquire_owned().await;
                let mut ws = target.connect(4096, Duration::from_secs(20)).await?;
                if let Some(text) = subscribe {
                    // A Pusher server ignores what comes before its pusher:connection_established.
                    tokio::time::timeout(Duration::from_secs(20), client::next_data(&mut ws))
                        .await
                        .map_err(|_| "no first message from the server in 20 s".to_string())??;
                    ws.send(Message::text(text))
                        .await
                        .map_err(|e| format!("subscribe: {e}"))?;
                }
                Ok::<_, String>(ws)
            })
        })
        .collect();
    let mut sockets = Vec::with_capacity(conns);
    let mut errors = Errors::default();
    for t in tasks {
        match t.await {
            Ok(Ok(ws)) => sockets.push(ws),
            Ok(Err(e)) => errors.add(e),
            Err(e) => errors.add(e.to_string()),
        }
    }
    (sockets, errors, started.elapsed())
}

/// Starts one reading task per socket: each expects messages 0, 1, 2, ... in order.
/// With `skip_unnumbered`, messages without a number (a Pusher server's own events) are skipped.
pub fn start_readers(
    sockets: Vec<client::Ws>,
    tracker: &Arc<Tracker>,
    skip_unnumbered: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    sockets
        .into_iter()
        .map(|mut ws| {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                let mut next = 0u64;
                loop {
                    match client::next_data(&mut ws).await {
                        Ok(m) => {
                            let text = m.to_text().unwrap_or_default();
                            match seq_of(text) {
                                Some(seq) => {
                                    if seq != next {
                                        tracker.error(format!(
                                            "out of order: expected #{next}, got #{seq}"
                                        ));
                                    }
                                    next = seq + 1;
                                    tracker.received(seq);
                                }
                                None if skip_unnumbered => {}
                                None => tracker.error("a message without #seq#"),
                            }
                        }
                        Err(e) => {
                            if e != "stop" {
                                tracker.error(e);
                            }
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

/// Sends messages `seq .. seq + count` (to every client).
pub trait Trigger {
    fn fire(&mut self, seq: u64, count: u64) -> impl Future<Output = Result<(), String>>;
}

fn cpu(pid: Option<u32>) -> Option<f64> {
    pid.and_then(|p| procfs::cpu_secs(&p.to_string()).ok())
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One message at a time, `reps` times: time from the trigger until the first and the last
/// client had it.
pub async fn one_at_a_time<T: Trigger>(
    trigger: &mut T,
    tracker: &Tracker,
    next_seq: &mut u64,
    reps: u64,
    pause: Duration,
) -> Value {
    let mut last = Latencies::default();
    let mut first = Latencies::default();
    let mut lost = 0u64;
    let mut error = Value::Null;
    for _ in 0..reps {
        let seq = *next_seq;
        if seq >= tracker.capacity() {
            break;
        }
        let t0 = Instant::now();
        if let Err(e) = trigger.fire(seq, 1).await {
            error = json!(e);
            break;
        }
        *next_seq += 1;
        if !tracker.wait_completed(seq + 1, DELIVERY_TIMEOUT).await {
            lost += 1;
            error = json!(format!(
                "message #{seq} not delivered to every client within {} s",
                DELIVERY_TIMEOUT.as_secs()
            ));
            break;
        }
        last.record(tracker.last_after(seq, t0));
        first.record(tracker.first_after(seq, t0));
        tokio::time::sleep(pause).await;
    }
    let mut out = json!({ "reps": last.len(), "lost": lost, "error": error });
    merge(&mut out, last.summary("last_"));
    merge(&mut out, first.summary("first_"));
    out
}

/// `rate` messages per second for `secs` (without waiting for deliveries), then waits for all:
/// per message, the time from its trigger until the last client had it.
pub async fn fixed_rate<T: Trigger>(
    trigger: &mut T,
    tracker: &Tracker,
    next_seq: &mut u64,
    rate: f64,
    secs: f64,
    server_pid: Option<u32>,
) -> Value {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let first_seq = *next_seq;
    let mut sent_at = Vec::new();
    let mut error = Value::Null;
    let cpu0 = cpu(server_pid);
    let d0 = tracker.delivered();
    let mut at = start;
    while at < end && *next_seq < tracker.capacity() {
        tokio::time::sleep_until(at).await;
        let t = Instant::now();
        if let Err(e) = trigger.fire(*next_seq, 1).await {
            error = json!(e);
            break;
        }
        sent_at.push(t);
        *next_seq += 1;
        at += interval;
    }
    let sent_secs = start.elapsed();
    let all = tracker.wait_completed(*next_seq, DELIVERY_TIMEOUT).await;
    let cpu1 = cpu(server_pid);
    let deliveries = tracker.delivered() - d0;
    let mut lat = Latencies::default();
    for (i, t) in sent_at.iter().enumerate() {
        let seq = first_seq + i as u64;
        if seq < tracker.completed() {
            lat.record(tracker.last_after(seq, *t));
        }
    }
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let mut out = json!({
        "rate": rate,
        "messages": sent_at.len(),
        "secs": stats::secs(sent_secs),
        "all_delivered": all,
        "deliveries": deliveries,
        "error": error,
        "server_cpu_secs": server_cpu.map(round3),
        "server_cpu_us_per_delivery": server_cpu.filter(|_| deliveries > 0).map(|c| round3(c / deliveries as f64 * 1e6)),
    });
    merge(&mut out, lat.summary("last_"));
    out
}

/// Closed loop: messages back to back, never more than `c.window` ahead of the slowest client
/// (sent in batches of what the window allows), for `c.warmup + c.secs`; counts what clients
/// received in the last `c.secs`, then waits until every message sent has arrived.
async fn closed_loop<T: Trigger>(
    trigger: &mut T,
    tracker: &Tracker,
    next_seq: &mut u64,
    c: &Common,
) -> Value {
    let (window, warmup, secs, server_pid) = (c.window, c.warmup, c.secs, c.server_pid);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(warmup);
    let end = measure_from + Duration::from_secs_f64(secs);
    let first_seq = *next_seq;
    let mut sent_at: Vec<(u64, Instant)> = Vec::new();
    let mut error = Value::Null;
    let errors_before = tracker.error_count();
    // The counted window is sampled on its own timer, beside the loop: a trigger that is slow
    // to answer (soketi's HTTP API with 10k clients takes seconds) must not move its ends.
    let sample = || {
        (
            tracker.delivered(),
            tracker.completed(),
            cpu(server_pid),
            Instant::now(),
        )
    };
    let window_ends = async {
        tokio::time::sleep_until(measure_from).await;
        let first = sample();
        tokio::time::sleep_until(end).await;
        (first, sample())
    };
    let send = async {
        while Instant::now() < end {
            if tracker.error_count() > errors_before {
                error = json!("a client failed (see errors)");
                break;
            }
            let ahead = *next_seq - tracker.completed();
            if ahead < window && *next_seq < tracker.capacity() {
                let n = (window - ahead).min(tracker.capacity() - *next_seq);
                let t = Instant::now();
                if let Err(e) = trigger.fire(*next_seq, n).await {
                    error = json!(e);
                    break;
                }
                sent_at.push((*next_seq, t));
                *next_seq += n;
            } else {
                tracker.wait_change(Duration::from_millis(50)).await;
            }
        }
    };
    let (((d0, c0, cpu0, t0), (d1, c1, cpu1, t1)), ()) = tokio::join!(window_ends, send);
    let all = tracker.wait_completed(*next_seq, DELIVERY_TIMEOUT).await;
    let span = t1 - t0;
    let deliveries = d1 - d0;
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b - a);
    let mut out = json!({
        "window": window,
        "warmup_secs": warmup,
        "messages": *next_seq - first_seq,
        "all_delivered": all,
        "error": error,
        "secs": stats::secs(span),
        "deliveries": deliveries,
        "deliveries_per_sec": stats::rate(deliveries, span),
        "messages_completed_per_sec": stats::rate(c1 - c0, span),
        "server_cpu_secs": server_cpu.map(round3),
        "server_cpu_us_per_delivery": server_cpu.filter(|_| deliveries > 0).map(|c| round3(c / deliveries as f64 * 1e6)),
        "server_rss_kib_end": server_pid.and_then(procfs::rss_kib),
    });
    // Per batch: from its trigger until the last client had its last message.
    let mut lat = Latencies::default();
    let done = tracker.completed();
    for (i, (_, t)) in sent_at.iter().enumerate() {
        let last_of_batch = sent_at.get(i + 1).map_or(*next_seq, |n| n.0) - 1;
        if last_of_batch < done {
            lat.record(tracker.last_after(last_of_batch, *t));
        }
    }
    merge(&mut out, lat.summary("batch_last_"));
    out
}

/// The options every delivery scenario takes.
pub struct Common {
    pub target: Target,
    pub http: std::net::SocketAddr,
    pub conns: usize,
    pub reps: u64,
    pub secs: f64,
    pub warmup: f64,
    pub window: u64,
    pub threads: usize,
    pub parallel: usize,
    pub server_pid: Option<u32>,
    /// Sent by every client once connected (a Pusher `pusher:subscribe`); then messages
    /// without a number are skipped.
    pub subscribe: Option<String>,
}

impl Common {
    pub fn from_args(args: &mut crate::args::Args, default_window: u64) -> Result<Common, String> {
        let target = Target::from_args(args)?;
        let http_arg: Option<String> = args.optional("http")?;
        let http = http_arg
            .as_deref()
            .unwrap_or(&target.url)
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .parse()
            .map_err(|_| format!("--url {}: use an ip:port authority", target.url))?;
        let c = Common {
            target,
            http,
            conns: args.get("conns", 1000)?,
            reps: args.get("reps", 20)?,
            secs: args.get("secs", 5.0)?,
            warmup: args.get("warmup-secs", 1.0)?,
            window: args.get("window", default_window)?,
            threads: args.get("threads", 2)?,
            parallel: args.get("parallel", 256)?,
            server_pid: args.optional("server-pid")?,
            subscribe: args.optional("subscribe")?,
        };
        if c.conns == 0 || c.window == 0 {
            return Err("--conns and --window must be positive".into());
        }
        Ok(c)
    }
}

/// Connected clients reading into a tracker, and the next message number to send.
pub struct Session {
    pub tracker: Arc<Tracker>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    pub seq: u64,
}

impl Session {
    /// Connects the clients (adding what happened to `out`) and waits until the server counts
    /// them all (`GET /members`); None if not one connected.
    pub async fn open(c: &Common, out: &mut Value) -> Result<Option<Session>, String> {
        let (sockets, connect_errors, connect_time) =
            connect_clients(&c.target, c.conns, c.parallel, c.subscribe.as_deref()).await;
        let connected = sockets.len();
        merge(
            out,
            json!({
                "url": c.target.url,
                "conns": c.conns,
                "connected": connected,
                "connect_secs": stats::secs(connect_time),
                "connect_errors": connect_errors.to_json(),
                "threads": c.threads,
                "server_pid": c.server_pid,
            }),
        );
        if connected == 0 {
            return Ok(None);
        }
        let ready =
            crate::scenarios::fanout::wait_members(c.http, connected, Duration::from_secs(30))
                .await?;
        merge(out, json!({ "ready": ready }));
        // Capacity: far more than a run can send (every slot costs 20 bytes).
        let tracker = Arc::new(Tracker::new(connected as u32, 2_000_000));
        let readers = start_readers(sockets, &tracker, c.subscribe.is_some());
        Ok(Some(Session {
            tracker,
            readers,
            seq: 0,
        }))
    }

    /// Adds the totals to `out` and stops the readers.
    pub fn finish(self, out: &mut Value) {
        merge(
            out,
            json!({
                "messages_sent": self.seq,
                "deliveries_received": self.tracker.delivered(),
                "errors": self.tracker.error_count(),
                "error_messages": self.tracker.errors_json(),
            }),
        );
        for r in self.readers {
            r.abort();
        }
    }

    /// One message at a time, `c.reps` times.
    pub async fn one<T: Trigger>(&mut self, t: &mut T, c: &Common) -> Value {
        one_at_a_time(
            t,
            &self.tracker,
            &mut self.seq,
            c.reps,
            Duration::from_millis(20),
        )
        .await
    }

    /// The closed loop with `c.window`, `c.warmup`, `c.secs`.
    pub async fn sustained<T: Trigger>(&mut self, t: &mut T, c: &Common) -> Value {
        closed_loop(t, &self.tracker, &mut self.seq, c).await
    }
}

pub fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_number() {
        assert_eq!(seq_of("#12#xxxx"), Some(12));
        assert_eq!(seq_of(r##"{"event":"E","data":{"seq":"#7#"}}"##), Some(7));
        assert_eq!(seq_of("xx"), None);
        assert_eq!(seq_of("#x#"), None);
    }

    #[test]
    fn completes_in_order() {
        let t = Tracker::new(2, 4);
        t.received(0);
        assert_eq!(t.completed(), 0);
        t.received(0);
        t.received(1);
        t.received(1);
        assert_eq!(t.completed(), 2);
        assert_eq!(t.delivered(), 4);
    }
}
