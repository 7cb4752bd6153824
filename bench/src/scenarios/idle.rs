//! Idle: open many connections, say so, hold them without sending anything, then close them.
//! With `--message-bytes N`, each connection first sends one text message of N bytes and waits
//! for one back (an echo server's answer): what the server keeps of a connection after traffic.
//!
//! Prints two JSON lines: `{"event": "connected", "connected": N, ...}` once every attempt has
//! finished (a runner waits for it before measuring the server), and `{"event": "done", ...}`
//! after the hold, which ends after `--hold-secs`, on SIGTERM or SIGINT, or when standard
//! input is a pipe and its writer closes it. Connections the server closes during the hold
//! are counted, with the reason; messages the server sends are counted and ignored.

use crate::args::Args;
use crate::client::{self, Target};
use crate::stats::{self, Errors, Latencies};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

pub const USAGE: &str =
    "idle --url ws://127.0.0.1:PORT/ [--conns 10000] [--bind IP] [--hold-secs 30] \
[--threads 2] [--parallel 256] [--connect-timeout-secs 10] [--deflate false] [--message-bytes 0]";

struct Options {
    target: Target,
    conns: usize,
    hold: Duration,
    threads: usize,
    parallel: usize,
    connect_timeout: Duration,
    message_bytes: usize,
}

pub fn run(mut args: Args) -> Result<Value, String> {
    let o = Options {
        // --deflate true: offer permessage-deflate, to measure what it costs an idle server.
        target: Target::from_args(&mut args)?.offering_deflate(args.get("deflate", false)?),
        conns: args.get("conns", 10_000)?,
        hold: Duration::from_secs_f64(args.get("hold-secs", 30.0)?),
        threads: args.get("threads", 2)?,
        parallel: args.get::<usize>("parallel", 256)?.max(1),
        connect_timeout: Duration::from_secs_f64(args.get("connect-timeout-secs", 10.0)?),
        message_bytes: args.get("message-bytes", 0)?,
    };
    args.finish()?;
    client::runtime(o.threads)?.block_on(idle(o))
}

/// How one connection ended.
enum Ended {
    NeverConnected,
    /// Still open when the hold ended; closed by us.
    Held,
    /// Closed by the server (or the network) during the hold.
    Dropped(String),
}

async fn idle(o: Options) -> Result<Value, String> {
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (attempt_tx, mut attempts) = mpsc::unbounded_channel::<Result<Duration, String>>();
    let slots = Arc::new(Semaphore::new(o.parallel));
    let started = Instant::now();
    let messages = Arc::new(AtomicU64::new(0));

    let tasks: Vec<_> = (0..o.conns)
        .map(|_| {
            let (target, slots, attempt_tx, mut stop, messages) = (
                o.target.clone(),
                slots.clone(),
                attempt_tx.clone(),
                stop_rx.clone(),
                messages.clone(),
            );
            let (limit, message_bytes) = (o.connect_timeout, o.message_bytes);
            tokio::spawn(async move {
                let permit = slots.acquire_owned().await;
                let t0 = Instant::now();
                // An idle connection reads nothing but pings: a small read buffer will do.
                let connected = target.connect(1024, limit).await;
                let took = t0.elapsed();
                let connected = match connected {
                    Ok(mut ws) if message_bytes > 0 => {
                        exchange(&mut ws, message_bytes, limit).await.map(|()| ws)
                    }
                    other => other,
                };
                drop(permit);
                let mut ws = match connected {
                    Ok(ws) => {
                        let _ = attempt_tx.send(Ok(took));
                        ws
                    }
                    Err(e) => {
                        let _ = attempt_tx.send(Err(e));
                        return Ended::NeverConnected;
                    }
                };
                drop(attempt_tx);
                // Messages from the server (a Pusher server's pusher:connection_established,
                // for one) are counted and otherwise ignored: the connection stays held.
                let dropped = tokio::select! {
                    e = async {
                        loop {
                            match client::next_data(&mut ws).await {
                                Ok(_) => { messages.fetch_add(1, Ordering::Relaxed); }
                                Err(e) => break e,
                            }
                        }
                    } => Some(e),
                    _ = stop.wait_for(|s| *s) => None,
                };
                match dropped {
                    Some(why) => Ended::Dropped(why),
                    None => {
                        client::close(ws).await;
                        Ended::Held
                    }
                }
            })
        })
        .collect();
    drop(attempt_tx);

    let mut connect_times = Latencies::default();
    let mut connect_errors = Errors::default();
    while let Some(a) = attempts.recv().await {
        match a {
            Ok(d) => connect_times.record(d),
            Err(e) => connect_errors.add(e),
        }
    }
    let connect_secs = started.elapsed();
    let connected = connect_times.len() as u64;
    let mut line = json!({
        "mode": "idle",
        "event": "connected",
        "url": o.target.url,
        "conns": o.conns,
        "connected": connected,
        "failed": connect_errors.total(),
        "connect_errors": connect_errors.to_json(),
        "connect_secs": stats::secs(connect_secs),
        "connects_per_sec": stats::rate(connected, connect_secs),
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut line, connect_times.summary("connect_")) {
        a.extend(b);
    }
    println!("{line}");
    let _ = std::io::stdout().flush();

    let hold_started = Instant::now();
    let why = tokio::select! {
        _ = tokio::time::sleep(o.hold) => "hold-secs",
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
        _ = stdin_closed() => "stdin closed",
    };
    let held_secs = hold_started.elapsed();
    let _ = stop_tx.send(true);

    let (mut held, mut dropped) = (0u64, Errors::default());
    let joined = tokio::time::timeout(Duration::from_secs(10), async {
        for t in tasks {
            match t.await {
                Ok(Ended::Held) => held += 1,
                Ok(Ended::Dropped(why)) => dropped.add(why),
                Ok(Ended::NeverConnected) => {}
                Err(e) => dropped.add(format!("task: {e}")),
            }
        }
    })
    .await;
    Ok(json!({
        "mode": "idle",
        "event": "done",
        "connected": connected,
        "held": held,
        "held_secs": stats::secs(held_secs),
        "hold_ended_by": why,
        "dropped_by_server": dropped.total(),
        "drop_reasons": dropped.to_json(),
        "closed_in_time": joined.is_ok(),
        "messages_from_server": messages.load(Ordering::Relaxed),
    }))
}

/// Sends one text message of `bytes` bytes and waits for a message back.
async fn exchange(ws: &mut client::Ws, bytes: usize, limit: Duration) -> Result<(), String> {
    let round_trip = async {
        ws.send(Message::text("x".repeat(bytes)))
            .await
            .map_err(|e| format!("send: {e}"))?;
        client::next_data(ws).await.map(drop)
    };
    tokio::time::timeout(limit, round_trip)
        .await
        .map_err(|_| "no answer to the message".to_string())?
}

/// Resolves when standard input is a pipe and has been closed; never otherwise (a terminal
/// or /dev/null does not end the hold).
async fn stdin_closed() {
    let is_pipe = std::fs::metadata("/dev/stdin")
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if !is_pipe {
        return std::future::pending().await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    let _ = rx.await;
}
