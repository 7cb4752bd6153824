//! Entry points for the fuzz targets in `fuzz/` (cargo fuzz), one per parser that sees outside
//! bytes. Each takes arbitrary bytes and must neither panic nor hang. Built only with the
//! `fuzzing` feature (and in tests, which replay the seed corpus in `fuzz/corpus/`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::config::{Config, Value, KNOWN_KEYS};
use crate::events::{Event, HttpResponse};
use crate::pusher::{AppConfig, APP_KEYS, OPTION_KEYS};
use crate::registry::{Conn, Outgoing};
use crate::shared::Shared;

/// The Pusher app every fuzzed server has: key `fuzz-key`, id `1`, secret `fuzz-secret`.
fn fuzz_app() -> AppConfig {
    AppConfig {
        app_id: "1".into(),
        key: "fuzz-key".into(),
        secret: "fuzz-secret".into(),
        ..AppConfig::default()
    }
}

/// A server's shared state with every PHP callback "registered" and a Pusher app, small limits.
fn shared() -> (Arc<Shared>, mpsc::Receiver<Event>) {
    let config = Config {
        pusher: vec![fuzz_app()],
        package_max_length: 64 * 1024,
        socket_buffer_size: 64 * 1024,
        handshake_timeout: Duration::ZERO,
        websocket_compression: true,
        ..Config::default()
    };
    let (tx, rx) = mpsc::channel(64);
    let shared = Arc::new(Shared::new(config, tx, crate::workers::FdSource::single()));
    for flag in [
        &shared.handlers.open,
        &shared.handlers.message,
        &shared.handlers.close,
        &shared.handlers.request,
    ] {
        flag.store(true, Relaxed);
    }
    (shared, rx)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Feeds `input` to the server's HTTP listener (hyper, then the WebSocket upgrade, the
/// connection task, PHP events and the Pusher protocol) as one client connection that sends
/// `input` and then closes its sending side, while its answers are read and dropped.
fn serve_bytes(input: &[u8]) {
    let input = input.to_vec();
    runtime().block_on(async move {
        let (shared, mut events) = shared();
        // PHP's side: answer requests, take everything else.
        let php = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let Event::Request { reply, .. } = event {
                    reply.send(HttpResponse::text(200, "ok\n"));
                }
            }
        });
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (mut from_server, mut to_server) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            let _ = to_server.write_all(&input).await;
            let _ = to_server.shutdown().await;
        });
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            while matches!(from_server.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        crate::listener::serve_stream(server, shared.clone()).await;
        // The upgraded connection runs in its own task: it ends when the input does.
        let done = async {
            let _ = writer.await;
            let _ = reader.await;
        };
        if tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .is_err()
        {
            panic!("the server did not finish with a connection whose input ended");
        }
        php.abort();
    });
}

/// Raw bytes from a client: requests, handshakes, bodies, whatever follows.
pub fn http(input: &[u8]) {
    serve_bytes(input);
}

const HANDSHAKE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nHost: fuzz\r\n\r\n";

/// Raw WebSocket frames after a valid handshake, read by the engine's message reader.
pub fn websocket_frames(input: &[u8]) {
    let mut bytes = format!("GET /chat?fuzz=1 HTTP/1.1\r\n{HANDSHAKE}").into_bytes();
    bytes.extend_from_slice(input);
    serve_bytes(&bytes);
}

/// Frames after a handshake that negotiates permessage-deflate: compressed messages go through
/// the inflate layer (crates/engine/src/deflate/inflate.rs) before the message reader.
pub fn deflate_frames(input: &[u8]) {
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    let mut bytes = format!("GET /chat HTTP/1.1\r\n{offer}{HANDSHAKE}").into_bytes();
    bytes.extend_from_slice(input);
    serve_bytes(&bytes);
}

/// A client frame (masked) around `payload`; `first` is its first byte (FIN, RSV bits, opcode).
pub(crate) fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Pusher protocol messages from a client on `/app/fuzz-key`: `input` split at newlines, each
/// line one text message.
pub fn pusher_messages(input: &[u8]) {
    let mut bytes =
        format!("GET /app/fuzz-key?protocol=7&client=js HTTP/1.1\r\n{HANDSHAKE}").into_bytes();
    for line in input.split(|b| *b == b'\n') {
        bytes.extend_from_slice(&client_frame(0x81, line));
    }
    serve_bytes(&bytes);
}

/// A Pusher HTTP API request once its body is in: the first line is `METHOD path?query`, the
/// rest the body. Signatures are checked but a bad one does not stop the request here, so that
/// the endpoints behind them are reached too.
pub fn pusher_api(input: &[u8]) {
    let (head, body) = match input.iter().position(|b| *b == b'\n') {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let (method, target) = head.split_once(' ').unwrap_or(("POST", &head));
    let Ok(method) = hyper::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (shared, _events) = shared();
    let _ = crate::pusher::api::route(&shared, &method, path, query, body, false);
    let _ = crate::pusher::api::route(&shared, &method, path, query, body, true);
}

/// What a forwarded broadcast must look like to a client, in both shapes.
#[derive(serde::Deserialize)]
struct Sent<'a> {
    #[serde(rename = "event")]
    _event: String,
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// A Laravel broadcast as it arrives from Redis: the first line is the channel, the rest the
/// payload. Forwarded as the bridge does to a native member and a Pusher subscriber of that
/// channel; what each is sent must be JSON naming the channel, with `data` JSON too (for Pusher,
/// a string holding it).
pub fn laravel_broadcast(input: &[u8]) {
    let (channel, payload) = match input.iter().position(|b| *b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&input[..i]).into_owned(),
            &input[i + 1..],
        ),
        None => ("fuzz".to_owned(), input),
    };
    let (shared, _events) = shared();
    let remote = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
    let native = Arc::new(Conn::new(1, remote, 0, 0));
    let pusher = Arc::new(Conn::new(2, remote, 0, 0));
    shared.channels.join(&native, &channel);
    shared.pusher.apps[0].channels.join(&pusher, &channel);
    let pushed = crate::redis_bridge::forward_laravel(&shared, &channel, payload);
    let mut frames = 0;
    for (conn, pusher_shape) in [(native, false), (pusher, true)] {
        for item in conn.drain().items {
            frames += 1;
            let Outgoing::Frame(frame) = item else {
                panic!("a forwarded broadcast is a data frame")
            };
            let plain = frame.plain();
            let text = &plain[plain.len() - frame.payload_len()..];
            // RawValue: numbers past f64's range such as 1e999 are valid JSON and are forwarded
            // byte for byte, though serde_json::Value would refuse them.
            let sent: Sent = serde_json::from_slice(text).expect("a forwarded broadcast is JSON");
            assert_eq!(sent.channel, channel);
            if pusher_shape {
                let data: String =
                    serde_json::from_str(sent.data.get()).expect("Pusher data is a string");
                serde_json::from_str::<&RawValue>(&data).expect("holding JSON");
            }
        }
    }
    assert_eq!(frames, pushed.unwrap_or(0));
}

/// The key a tag byte names: Surge's settings, one it does not know, then a Pusher app's keys and
/// options, in this order (the corpus's tags count on it); past them, none.
fn named_key(tag: usize) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .chain(&["daemonize"])
        .chain(APP_KEYS)
        .chain(OPTION_KEYS)
        .nth(tag)
        .copied()
}

/// Reads a `Value` tree out of bytes: a tag byte, then what that kind needs.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self
            .0
            .split_first()
            .map(|(b, r)| (*b, r))
            .unwrap_or((0, &[]));
        self.0 = rest;
        first
    }

    fn int(&mut self) -> i64 {
        let mut n = [0u8; 8];
        let take = self.0.len().min(8);
        n[..take].copy_from_slice(&self.0[..take]);
        self.0 = &self.0[take..];
        i64::from_le_bytes(n)
    }

    fn string(&mut self) -> String {
        let len = (self.byte() as usize).min(self.0.len());
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(s).into_owned()
    }

    fn key(&mut self) -> String {
        let tag = self.byte() as usize;
        match named_key(tag) {
            Some(key) => key.to_owned(),
            None => self.string(),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.byte() % 12 {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::Int(self.int()),
            3 => Value::Int(self.byte() as i64 - 16),
            4 => Value::Float(f64::from_bits(self.int() as u64)),
            5 => Value::Float(self.byte() as f64 / 4.0 - 1.0),
            6 | 7 => Value::Str(self.string()),
            8 | 9 if depth < 4 => {
                let n = self.byte() % 6;
                Value::List((0..n).map(|_| self.value(depth + 1)).collect())
            }
            _ if depth < 4 => {
                let n = self.byte() % 6;
                Value::Map(
                    (0..n)
                        .map(|_| (self.key(), self.value(depth + 1)))
                        .collect(),
                )
            }
            _ => Value::Null,
        }
    }
}

/// `$server->set([...])`: settings built from the bytes, applied one by one, then validated;
/// if valid, the engine state they make (Pusher apps) is built and the origin check run.
pub fn settings(input: &[u8]) {
    let mut reader = Reader(input);
    let mut config = Config::default();
    while !reader.0.is_empty() {
        let key = reader.key();
        let value = reader.value(0);
        let _ = config.apply(&key, &value);
    }
    if config.validate().is_ok() {
        let origin = reader.string();
        let _ = config.origin_allowed(Some(&origin));
        let (tx, _rx) = mpsc::channel(1);
        let _ = Shared::new(config, tx, crate::workers::FdSource::single());
    }
}

/// A fuzz target's entry point: it takes the fuzzer's bytes.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call them.
pub const TARGETS: &[(&str, Target)] = &[
    ("http", http),
    ("websocket_frames", websocket_frames),
    ("deflate_frames", deflate_frames),
    ("pusher_messages", pusher_messages),
    ("pusher_api", pusher_api),
    ("laravel_broadcast", laravel_broadcast),
    ("settings", settings),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Every seed (and every crash found and fixed, kept as a regression) goes through its
    /// target: the fuzzers' work replayed on stable Rust in the normal test run.
    #[test]
    fn fuzz_corpus_replays_without_a_panic() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = corpus.join(name);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.expect("a corpus entry").path())
                .collect();
            files.sort();
            assert!(!files.is_empty(), "no seeds in {}", dir.display());
            for file in files {
                let input = std::fs::read(&file).expect("a seed");
                eprintln!("{name}: {}", file.display());
                target(&input);
            }
        }
    }

    #[test]
    fn a_websocket_message_reaches_php_through_the_fuzzed_path() {
        // The harness really gets past the handshake: a text frame arrives as a message.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let bytes = {
            let mut b = format!("GET /chat HTTP/1.1\r\n{HANDSHAKE}").into_bytes();
            b.extend(client_frame(0x81, b"hello"));
            b
        };
        runtime().block_on(async {
            let (shared, mut events) = shared();
            let php = tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    let _ = tx.send(event);
                }
            });
            let (client, server) = tokio::io::duplex(64 * 1024);
            let (mut r, mut w) = tokio::io::split(client);
            w.write_all(&bytes).await.unwrap();
            w.shutdown().await.unwrap();
            crate::listener::serve_stream(server, shared).await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut sink)).await;
            php.abort();
        });
        let mut messages = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let Event::Message { data, .. } = event {
                messages.push(data);
            }
        }
        assert_eq!(messages.len(), 1);
        assert_eq!(&messages[0][..], b"hello");
    }

    #[test]
    fn an_upgrade_registered_after_the_stop_began_is_closed_too() {
        // The 101 went out before the stop, the connection joins the registry after the stop's
        // close-all ran (its task runs only when this one waits): it must be closed all the same.
        runtime().block_on(async {
            let (shared, mut events) = shared();
            let php = tokio::spawn(async move { while events.recv().await.is_some() {} });
            let (client, server) = tokio::io::duplex(64 * 1024);
            let (mut r, mut w) = tokio::io::split(client);
            let handshake = format!("GET /chat HTTP/1.1\r\n{HANDSHAKE}");
            w.write_all(handshake.as_bytes()).await.unwrap();
            crate::listener::serve_stream(server, shared.clone()).await;
            assert!(shared.registry.is_empty(), "registered before the stop");
            shared.begin_shutdown(1001, "server shutting down");
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            let closed = tokio::time::timeout(Duration::from_secs(2), async {
                // Past the 101's headers, a close frame: 0x88, length, then the code 1001.
                while !got.windows(2).any(|w| w == [0x03, 0xe9]) {
                    match r.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
            })
            .await;
            php.abort();
            assert!(
                closed.is_ok() && got.contains(&0x88),
                "no close frame: {got:?}"
            );
        });
    }
}
