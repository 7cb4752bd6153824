//! The Laravel broadcast path: N clients joined to the Surge channel "bench" (the server
//! subscribes the Redis channel of that name through its bridge and forwards natively); this
//! load generator PUBLISHes Laravel-shaped payloads, `{"event","data","socket":null}`, to Redis
//! itself (RESP written by hand on one TcpStream). Measures one message at a time, a fixed
//! rate (latency of every message from PUBLISH to the last client), and the sustained rate in
//! a closed loop (never more than `--window` messages ahead of the slowest client).

use crate::args::Args;
use crate::client;
use crate::delivery::{self, merge, Common, Session, Trigger};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const USAGE: &str =
    "laravel --url ws://127.0.0.1:PORT/ --redis 127.0.0.1:PORT [--channel laravel_database_bench] \
[--conns 1000] [--reps 20] [--rate 200] [--rate-secs 5] [--secs 5] [--warmup-secs 1] [--window 64] \
[--threads 2] [--bind IP] [--server-pid PID]";

/// PUBLISH over one Redis connection; `count` messages are pipelined and their replies read.
struct RedisTrigger {
    conn: BufReader<TcpStream>,
    channel: String,
    /// Subscribers Redis reported for the last PUBLISH (the bridge: 1).
    receivers: u64,
    line: String,
    buf: Vec<u8>,
}

/// A Laravel broadcast as Illuminate's RedisBroadcaster publishes it, carrying "#seq#".
fn payload(seq: u64) -> String {
    format!(
        r##"{{"event":"App\\Events\\OrderShipped","data":{{"seq":"#{seq}#","order":{{"id":{seq},"status":"shipped"}}}},"socket":null}}"##
    )
}

impl Trigger for RedisTrigger {
    async fn fire(&mut self, seq: u64, count: u64) -> Result<(), String> {
        self.buf.clear();
        for s in seq..seq + count {
            let p = payload(s);
            let cmd = format!(
                "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{}\r\n${}\r\n{}\r\n",
                self.channel.len(),
                self.channel,
                p.len(),
                p
            );
            self.buf.extend_from_slice(cmd.as_bytes());
        }
        let io = async {
            self.conn
                .get_mut()
                .write_all(&self.buf)
                .await
                .map_err(|e| format!("redis write: {e}"))?;
            for _ in 0..count {
                self.line.clear();
                self.conn
                    .read_line(&mut self.line)
                    .await
                    .map_err(|e| format!("redis read: {e}"))?;
                match self
                    .line
                    .trim_end()
                    .strip_prefix(':')
                    .and_then(|n| n.parse().ok())
                {
                    Some(n) => self.receivers = n,
                    None => return Err(format!("redis answered {:?}", self.line.trim_end())),
                }
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .unwrap_or_else(|_| Err("redis: no answer within 10 s".into()))
    }
}

pub fn run(mut args: Args) -> Result<Value, String> {
    let c = Common::from_args(&mut args, 64)?;
    let redis: SocketAddr = args.required("redis")?;
    if !redis.ip().is_loopback() {
        return Err("--redis: only loopback addresses are allowed".into());
    }
    let channel: String = args.get("channel", "laravel_database_bench".to_string())?;
    let rate: f64 = args.get("rate", 200.0)?;
    let rate_secs: f64 = args.get("rate-secs", 5.0)?;
    args.finish()?;
    if rate.is_nan() || rate <= 0.0 {
        return Err("--rate must be positive".into());
    }
    client::runtime(c.threads)?.block_on(async move {
        let mut out = json!({
            "mode": "laravel",
            "redis": redis.to_string(),
            "channel": channel,
            "payload_bytes": payload(0).len(),
        });
        let Some(mut session) = Session::open(&c, &mut out).await? else {
            return Ok(out);
        };
        let conn = TcpStream::connect(redis)
            .await
            .map_err(|e| format!("redis connect: {e}"))?;
        conn.set_nodelay(true).ok();
        let mut trig = RedisTrigger {
            conn: BufReader::new(conn),
            channel,
            receivers: 0,
            line: String::new(),
            buf: Vec::new(),
        };
        let one = session.one(&mut trig, &c).await;
        let fixed = if one["error"].is_null() && rate_secs > 0.0 {
            let s = &mut session;
            delivery::fixed_rate(
                &mut trig,
                &s.tracker,
                &mut s.seq,
                rate,
                rate_secs,
                c.server_pid,
            )
            .await
        } else {
            Value::Null
        };
        let sustained = if one["error"].is_null() && fixed["error"].is_null() && c.secs > 0.0 {
            session.sustained(&mut trig, &c).await
        } else {
            Value::Null
        };
        merge(
            &mut out,
            json!({
                "one": one,
                "fixed_rate": fixed,
                "sustained": sustained,
                "redis_receivers_last_publish": trig.receivers,
            }),
        );
        session.finish(&mut out);
        Ok(out)
    })
}
