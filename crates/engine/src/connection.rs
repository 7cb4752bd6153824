//! One task per established WebSocket connection: read frames and hand whole messages to PHP,
//! write what pushers queued, and run the close handshake.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::events::Event;
use crate::registry::{close_message, Conn};
use crate::shared::Shared;
use crate::stats::bump;

/// How long a closing connection waits for the client's close frame before dropping it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Close code for the `close` event when the connection ended without a close frame.
pub const ABNORMAL: u16 = 1006;

enum Flow {
    Continue,
    /// We sent a close frame; wait for the client's answer.
    Closing(u16),
    /// Stop now: the socket broke, the peer is dead, or PHP is gone.
    Stop(u16),
}

pub(crate) async fn run<S>(mut ws: WebSocketStream<S>, conn: Arc<Conn>, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let flow = loop {
        let flow = tokio::select! {
            biased;
            _ = conn.wake.notified() => write_outbox(&mut ws, &conn, &shared).await,
            incoming = ws.next() => match incoming {
                Some(Ok(message)) => {
                    conn.touch(shared.now_ms());
                    receive(message, &mut ws, &conn, &shared).await
                }
                Some(Err(err)) => close_for_error(&mut ws, &conn, err).await,
                None => Flow::Stop(ABNORMAL),
            },
        };
        if !matches!(flow, Flow::Continue) {
            break flow;
        }
    };
    let code = match flow {
        Flow::Closing(code) => {
            // Read (and discard) until the client answers our close frame or time runs out.
            let _ = tokio::time::timeout(CLOSE_WAIT, async { while let Some(Ok(_)) = ws.next().await {} }).await;
            code
        }
        Flow::Stop(code) => code,
        Flow::Continue => unreachable!(),
    };
    drop(ws);
    shared.registry.remove(conn.fd);
    bump(&shared.stats.closed, 1);
    log::debug!(target: "surge", "fd {} closed ({code})", conn.fd);
    if shared.handlers.close.load(Relaxed) {
        let _ = shared.events.send(Event::Close { fd: conn.fd, code }).await;
    }
}

async fn receive<S>(message: Message, ws: &mut WebSocketStream<S>, conn: &Conn, shared: &Shared) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (data, binary): (Bytes, bool) = match message {
        Message::Text(text) => (text.into(), false),
        Message::Binary(data) => (data, true),
        Message::Close(frame) => {
            conn.closed_by_peer();
            // tungstenite has queued the echo of the client's close frame: send it.
            let _ = ws.flush().await;
            return Flow::Stop(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
        }
        // Pings are answered by tungstenite; pongs only count as activity.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Flow::Continue,
    };
    bump(&shared.stats.messages_in, 1);
    bump(&shared.stats.bytes_in, data.len() as u64);
    if shared.handlers.message.load(Relaxed) {
        // Waiting here is the backpressure: a busy PHP thread stops this reader, and TCP
        // stops the client, instead of events piling up in memory.
        if shared.events.send(Event::Message { fd: conn.fd, data, binary }).await.is_err() {
            return Flow::Stop(ABNORMAL);
        }
    }
    Flow::Continue
}

async fn write_outbox<S>(ws: &mut WebSocketStream<S>, conn: &Conn, shared: &Shared) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drained = conn.drain();
    if drained.kill {
        return Flow::Stop(ABNORMAL);
    }
    let mut closing = None;
    let (mut count, mut bytes) = (0u64, 0u64);
    for message in drained.messages {
        match &message {
            Message::Close(frame) => closing = Some(frame.as_ref().map(|f| u16::from(f.code)).unwrap_or(1000)),
            Message::Text(_) | Message::Binary(_) => {
                count += 1;
                bytes += message.len() as u64;
            }
            _ => {}
        }
        // feed() only buffers (up to write_buffer_size): all waiting frames go out together.
        if ws.feed(message).await.is_err() {
            return Flow::Stop(ABNORMAL);
        }
    }
    if ws.flush().await.is_err() {
        return Flow::Stop(ABNORMAL);
    }
    bump(&shared.stats.messages_out, count);
    bump(&shared.stats.bytes_out, bytes);
    match closing {
        Some(code) => Flow::Closing(code),
        None => Flow::Continue,
    }
}

/// Answers bad input with the close code RFC 6455 gives for it.
async fn close_for_error<S>(ws: &mut WebSocketStream<S>, conn: &Conn, err: WsError) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (code, reason) = match &err {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => (1009, "message too big"),
        WsError::Capacity(_) => (1009, "frame too big"),
        WsError::Utf8(_) => (1007, "invalid UTF-8 in text message"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return Flow::Stop(ABNORMAL),
        WsError::Protocol(_) => (1002, "protocol error"),
        _ => return Flow::Stop(ABNORMAL),
    };
    log::debug!(target: "surge", "fd {}: {err}; closing with {code}", conn.fd);
    conn.closed_by_peer();
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.send(close_message(code, reason))).await;
    Flow::Closing(code)
}
