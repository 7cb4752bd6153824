//! Fan-out: N clients connect, an HTTP trigger (`GET <trigger>&seq=S&count=C`) makes the server
//! send 100-byte messages numbered S.. to all of them. Measures one message at a time (trigger
//! until the first and the last client had it, p50/p99 over `--reps`), then sustained
//! deliveries/s in a closed loop (never more than `--window` messages ahead of the slowest
//! client), with server CPU per delivery. Before starting it polls `GET /members` until the
//! server counts every client (its first number), so no client misses the first message.

use crate::args::Args;
use crate::client;
use crate::delivery::{merge, Common, Session, Trigger};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const USAGE: &str =
    "fanout --url ws://127.0.0.1:PORT/ --trigger /trigger?mode=broadcast [--conns 1000] [--http IP:PORT] [--subscribe TEXT] \
[--reps 20] [--secs 5] [--warmup-secs 1] [--window 16] [--threads 2] [--parallel 256] [--bind IP] \
[--server-pid PID]";

/// A plain HTTP/1.1 GET on a fresh connection (Connection: close), as a trigger.
pub struct HttpTrigger {
    addr: SocketAddr,
    path: String,
    pub queued: u64,
}

/// `GET path` on `addr`: status 200 required; returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let io = async {
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("trigger connect: {e}"))?;
        s.set_nodelay(true).ok();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("trigger write: {e}"))?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 2048];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("trigger read: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(head_end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
                if let Some(len) = len {
                    if buf.len() >= head_end + 4 + len {
                        buf.truncate(head_end + 4 + len);
                        break;
                    }
                }
            }
        }
        let head_end = find(&buf, b"\r\n\r\n").ok_or("trigger: no complete HTTP response")?;
        let status_line = String::from_utf8_lossy(&buf[..head_end]);
        if !status_line.starts_with("HTTP/1.1 200") && !status_line.starts_with("HTTP/1.0 200") {
            return Err(format!(
                "trigger: {}",
                status_line.lines().next().unwrap_or_default()
            ));
        }
        Ok(String::from_utf8_lossy(&buf[head_end + 4..]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .unwrap_or_else(|_| Err(format!("GET {path}: no answer within 30 s")))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Trigger for HttpTrigger {
    async fn fire(&mut self, seq: u64, count: u64) -> Result<(), String> {
        let sep = if self.path.contains('?') { '&' } else { '?' };
        let body = http_get(
            self.addr,
            &format!("{}{sep}seq={seq}&count={count}", self.path),
        )
        .await?;
        self.queued += body.trim().parse::<u64>().unwrap_or(0);
        Ok(())
    }
}

/// Polls `GET /members` until its first number reaches `n` and, if the body names a Redis
/// state, that state is "connected" (at most `limit`).
pub async fn wait_members(addr: SocketAddr, n: usize, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let body = http_get(addr, "/members").await?;
        let mut words = body.split_whitespace();
        let members: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
        let redis_ok = !body.contains("redis") || body.contains("redis connected");
        if members >= n && redis_ok {
            return Ok(body.trim().to_string());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "server not ready within {} s: {}",
                limit.as_secs(),
                body.trim()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn run(mut args: Args) -> Result<Value, String> {
    let c = Common::from_args(&mut args, 16)?;
    let trigger: String = args.required("trigger")?;
    args.finish()?;
    client::runtime(c.threads)?.block_on(async move {
        let mut out = json!({ "mode": "fanout", "trigger": trigger, "size": 100 });
        let Some(mut session) = Session::open(&c, &mut out).await? else {
            return Ok(out);
        };
        let mut trig = HttpTrigger { addr: c.http, path: trigger, queued: 0 };
        let one = session.one(&mut trig, &c).await;
        let sustained = if one["error"].is_null() && c.secs > 0.0 {
            session.sustained(&mut trig, &c).await
        } else {
            Value::Null
        };
        merge(
            &mut out,
            json!({ "one": one, "sustained": sustained, "deliveries_queued_by_server": trig.queued }),
        );
        session.finish(&mut out);
        Ok(out)
    })
}
