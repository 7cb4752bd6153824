//! naive-server: baseline (a) of issue 8, "our stack without PHP", built the naive way that
//! ../shared/PERFORMANCE.md describes: tokio (2 worker threads) + tokio-tungstenite, one task
//! per connection, a registry of per-connection unbounded mpsc senders, the `Message` cloned
//! (shared bytes) to each sender and framed by each connection itself. Buffers as in the
//! "small buffers" column there: read 4 KiB, write 0.
//!
//! On the same port: a WebSocket upgrade echoes every data message back; `GET /members`
//! answers the number of connections; `GET /trigger?mode=broadcast&seq=S&count=C` sends C
//! messages of 100 bytes ("#<seq>#" padded with 'x') to every connection and answers how many
//! deliveries it queued. Listens on 127.0.0.1:$SURGE_PORT (0: a free port), prints
//! "ready PORT", exits on SIGTERM or SIGINT.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

type Registry = Arc<Mutex<HashMap<u64, UnboundedSender<Message>>>>;

fn main() {
    let port: u16 = std::env::var("SURGE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("ready {}", listener.local_addr().expect("addr").port());
        let registry: Registry = Arc::default();
        let ids = Arc::new(AtomicU64::new(1));
        let accept = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (registry, id) = (registry.clone(), ids.fetch_add(1, Ordering::Relaxed));
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let _ = handle(stream, id, registry).await;
                });
            }
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        tokio::select! {
            _ = accept => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    // Do not wait for the connection tasks.
    std::process::exit(0);
}

/// The request head, peeked (not consumed) so that tungstenite can read it again.
async fn peek_head(stream: &TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 8192];
    for _ in 0..200 {
        let n = stream.peek(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = buf[..n].windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end + 4]).into_owned());
        }
        if n == buf.len() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

async fn handle(mut stream: TcpStream, id: u64, registry: Registry) -> Option<()> {
    let head = peek_head(&stream).await?;
    if !head.to_ascii_lowercase().contains("upgrade: websocket") {
        let mut skip = vec![0u8; head.len()];
        stream.read_exact(&mut skip).await.ok()?;
        let body = http(&head, &registry);
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(resp.as_bytes()).await.ok()?;
        return Some(());
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config))
        .await
        .ok()?;
    let (tx, mut rx) = unbounded_channel();
    registry.lock().unwrap().insert(id, tx);
    loop {
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if ws.send(m).await.is_err() { break; }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            Some(m) = rx.recv() => {
                if ws.send(m).await.is_err() { break; }
            }
        }
    }
    registry.lock().unwrap().remove(&id);
    Some(())
}

/// `/members` or `/trigger?...&seq=S&count=C` (mode is ignored: broadcast is all there is).
fn http(head: &str, registry: &Registry) -> String {
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |k: &str| -> u64 {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    match path {
        "/members" => format!("{}\n", registry.lock().unwrap().len()),
        "/trigger" => {
            let (seq, count) = (param("seq"), param("count").max(1));
            let mut queued = 0u64;
            for s in seq..seq + count {
                let mut text = format!("#{s}#");
                text.extend(std::iter::repeat_n(
                    'x',
                    100usize.saturating_sub(text.len()),
                ));
                let msg = Message::text(text);
                for tx in registry.lock().unwrap().values() {
                    queued += tx.send(msg.clone()).is_ok() as u64;
                }
            }
            format!("{queued}\n")
        }
        _ => "unknown path\n".into(),
    }
}
