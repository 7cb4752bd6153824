//! One task per established WebSocket connection: read frames and hand whole messages to PHP,
//! write what pushers queued, and run the close handshake.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::deflate::inflate::{InflateError, Inflating};
use crate::events::{Closed, Event};
use crate::frame;
use crate::inline_dispatch;
use crate::message_reader::{Incoming, MessageReader, ReadError};
use crate::rate_limit::RateLimit;
use crate::registry::{Conn, Control, Outgoing};
use crate::shared::Shared;
use crate::stats::bump;

/// How long a closing connection waits for the client's close frame before dropping it.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How long a closed connection may take to write its TLS close_notify (a client that reads
/// nothing more leaves no room for it).
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// Frames handed to one vectored write (Linux takes up to 1024).
const MAX_IOV: usize = 64;

/// Close code for the `close` event when the connection ended without a close frame.
pub const ABNORMAL: u16 = 1006;

enum Flow {
    Continue,
    /// We sent a close frame; wait for the client's answer, handing PHP the messages the
    /// client sent before it saw ours.
    Closing(u16),
    /// We sent a close frame for bad input; discard the rest until the client's answer.
    Refusing(u16),
    /// Stop now: the socket broke, the peer is dead, or PHP is gone.
    Stop(u16),
    /// Stop now: we closed with this code, but the client read nothing more, not even what
    /// was queued before our close frame.
    Abandoned(u16),
}

/// What woke an idle connection up.
enum Wake {
    Outbox,
    Input(Option<Result<Incoming, ReadError>>),
}

/// An established connection's socket, with the layers under it, and the reader of its frames.
/// Frames are written straight to the socket.
pub(crate) struct WebSocket<S> {
    socket: S,
    reader: MessageReader,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// `max_message`: `package_max_length`. `first`: frames the client sent after its
    /// handshake, read with it.
    pub(crate) fn new(socket: S, max_message: usize, first: &[u8]) -> Self {
        WebSocket {
            socket,
            reader: MessageReader::new(max_message, first),
        }
    }

    /// The next message or control frame; None once the input has ended. `sending` runs when
    /// a read brought part of a message and no more.
    async fn next(&mut self, mut sending: impl FnMut()) -> Option<Result<Incoming, ReadError>> {
        poll_fn(|cx| {
            let next = self.reader.poll_next(&mut self.socket, cx);
            if next.is_pending() && self.reader.took_input() {
                sending();
            }
            next
        })
        .await
    }

    /// Writes one whole frame.
    async fn write(&mut self, frame: &[u8]) -> std::io::Result<()> {
        self.socket.write_all(frame).await?;
        self.socket.flush().await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<Inflating<S>> {
    /// After refused input: says we are done writing, then drops what the client still sends
    /// (the rest of a frame too big, its close frame), read from the socket itself, until it
    /// closes. Closing a socket with unread bytes makes the kernel send a reset, and the client
    /// would lose our close frame before it.
    async fn discard_input(&mut self) {
        let socket = self.socket.get_mut();
        if socket.shutdown().await.is_err() {
            return;
        }
        let mut dropped = [0u8; 4096];
        while matches!(socket.read(&mut dropped).await, Ok(n) if n > 0) {}
    }
}

/// This future lives as long as its connection, idle or not, so it holds only the socket and
/// the wait for input or a wake-up: handling what arrives, writing, and closing are boxed
/// futures that exist only while they run. `guard` is dropped when the connection ends.
///
/// Spawn it as it is, and keep it a plain function returning an `async move` block: an `async
/// fn`, or a block around it, would store the stream twice (arguments moved into locals keep
/// their first place too), 340 bytes more of every connection.
#[allow(clippy::manual_async_fn)] // on purpose, as said above
pub(crate) fn run<S>(
    mut ws: WebSocket<Inflating<S>>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    guard: impl Send,
) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async move {
        let deflate = ws.socket.deflate_window();
        let mut rate = RateLimit::new(shared.config.max_messages_per_second, shared.now_ms());
        let flow = loop {
            let wake = tokio::select! {
                biased;
                _ = poll_fn(|cx| conn.wake.poll_raised(cx)) => Wake::Outbox,
                // A message still coming counts as activity for the heartbeat.
                incoming = ws.next(|| conn.touch(shared.now_ms())) => Wake::Input(incoming),
            };
            let writing = matches!(wake, Wake::Outbox);
            let mut step = Box::pin(step(wake, &mut ws, &conn, &shared, &mut rate, deflate));
            let mut close_wait = CloseWait::default();
            let flow = poll_fn(|cx| {
                if let Poll::Ready(flow) = step.as_mut().poll(cx) {
                    return Poll::Ready(flow);
                }
                // A step may wait long on a write to a client that reads nothing: a kill (the
                // heartbeat's) ends it there. Looked at until the wait is registered again,
                // then raised again for whoever writes next: the step itself, when it waits
                // for room to hand PHP a message (`hand_over`), else the next step.
                let mut raised = false;
                while conn.wake.poll_raised(cx).is_ready() {
                    if conn.is_killed() {
                        return Poll::Ready(Flow::Stop(ABNORMAL));
                    }
                    raised = true;
                }
                if raised {
                    conn.wake.keep_raised();
                }
                if (writing || conn.answering()) && (raised || close_wait.watching()) {
                    if let Some(code) = close_wait.given_up(&conn, cx) {
                        return Poll::Ready(Flow::Abandoned(code));
                    }
                }
                Poll::Pending
            })
            .await;
            if !matches!(flow, Flow::Continue) {
                break flow;
            }
        };
        Box::pin(finish(flow, ws, conn, shared, deflate)).await;
        drop(guard);
    }
}

/// A close we asked for (a slow consumer's 1008, disconnect()) waits behind the write under way
/// (or is its last frame), which a client that reads nothing never lets end: once the write has
/// made no progress for CLOSE_WAIT, as long as the client's answer to a close gets, the
/// connection is dropped. Its `close` callback, and what the write holds, waited for the
/// heartbeat (a minute), or for ever. An [`answer`] (64 KiB at most) counts as progress only
/// once it is written whole.
#[derive(Default)]
struct CloseWait {
    /// Whether the step has been looked at once (a close may have come with its batch).
    looked: bool,
    /// Since our close: a timer of CLOSE_WAIT, and the bytes written when it was set.
    timer: Option<(Pin<Box<tokio::time::Sleep>>, u64)>,
}

impl CloseWait {
    /// Whether to look again though the outbox was not raised: once per step, then while a
    /// close waits.
    fn watching(&self) -> bool {
        !self.looked || self.timer.is_some()
    }

    /// The code we closed with, once the write has stood still for CLOSE_WAIT since. Out of
    /// line: it runs only for a write that waits, and the step's poll is the hot path.
    #[cold]
    #[inline(never)]
    fn given_up(&mut self, conn: &Conn, cx: &mut Context<'_>) -> Option<u16> {
        self.looked = true;
        let code = conn.closed_with()?;
        let (timer, seen) = self
            .timer
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(CLOSE_WAIT)), conn.written()));
        while timer.as_mut().poll(cx).is_ready() {
            if conn.written() == *seen {
                return Some(code);
            }
            *seen = conn.written();
            timer
                .as_mut()
                .reset(tokio::time::Instant::now() + CLOSE_WAIT);
        }
        None
    }
}

async fn step<S>(
    wake: Wake,
    ws: &mut WebSocket<S>,
    conn: &Conn,
    shared: &Shared,
    rate: &mut Option<RateLimit>,
    deflate: Option<u8>,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match wake {
        Wake::Outbox => write_outbox(ws, conn, shared, deflate).await,
        Wake::Input(Some(Ok(incoming))) => {
            let now = shared.now_ms();
            conn.touch(now);
            // Pings and pongs count against the rate too: a flood of them cost a core each.
            let limited = !matches!(incoming, Incoming::Close(_));
            if limited && rate.as_mut().is_some_and(|r| !r.take(now)) {
                log::info!(target: "surge", "fd {}: over max_messages_per_second; closing with 1008", conn.fd);
                return fail(ws, conn, 1008, "message rate limit exceeded").await;
            }
            let (data, binary) = match incoming {
                Incoming::Text(data) => (data, false),
                Incoming::Binary(data) => (data, true),
                Incoming::Ping(payload) => {
                    return match answer(ws, conn, &frame::control(frame::OP_PONG, &payload)).await {
                        Ok(()) => Flow::Continue,
                        Err(_) => Flow::Stop(ABNORMAL),
                    };
                }
                // Pongs only count as activity.
                Incoming::Pong => return Flow::Continue,
                Incoming::Close(code) => {
                    conn.closed_by_peer();
                    // The answer to the client's close frame, with its code.
                    let _ = ws.write(&frame::close(code, "")).await;
                    return Flow::Stop(code.unwrap_or(1005));
                }
            };
            receive(data, binary, ws, conn, shared, deflate).await
        }
        Wake::Input(Some(Err(err))) => close_for_error(ws, conn, err).await,
        Wake::Input(None) => Flow::Stop(ABNORMAL),
    }
}

/// Writes an answer of the step that read a message (its echo, a pong), marked as such so that
/// a close asked while it waits on a client that reads nothing gives up on it (see
/// [`CloseWait`]): it waited for the heartbeat.
async fn answer<S>(ws: &mut WebSocket<S>, conn: &Conn, frame: &[u8]) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.set_answering(true);
    let written = ws.write(frame).await;
    conn.set_answering(false);
    written
}

/// Ends the connection: the rest of the close handshake, then deregistration and the `close`
/// event (or the Pusher protocol's unsubscribes).
async fn finish<S>(
    flow: Flow,
    mut ws: WebSocket<Inflating<S>>,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    deflate: Option<u8>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let by_server = matches!(
        flow,
        Flow::Closing(_) | Flow::Refusing(_) | Flow::Abandoned(_)
    );
    let code = match flow {
        Flow::Closing(code) => {
            // Messages already on their way when we closed (at shutdown, those sent just
            // before the signal) are still the client's messages: PHP gets them, until the
            // client answers our close frame or time runs out.
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(incoming)) = ws.next(|| {}).await {
                    let (data, binary) = match incoming {
                        Incoming::Text(data) => (data, false),
                        Incoming::Binary(data) => (data, true),
                        // The client's answer: the handshake is done.
                        Incoming::Close(_) => break,
                        // No pong once our close frame is sent.
                        Incoming::Ping(_) | Incoming::Pong => continue,
                    };
                    if matches!(
                        receive(data, binary, &mut ws, &conn, &shared, deflate).await,
                        Flow::Stop(_)
                    ) {
                        break;
                    }
                }
            })
            .await;
            code
        }
        Flow::Refusing(code) => {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                loop {
                    match ws.next(|| {}).await {
                        // The client's answer: the handshake is done.
                        Some(Ok(Incoming::Close(_))) => return,
                        Some(Ok(_)) => {}
                        // The input was refused: what follows is not read as frames.
                        Some(Err(_)) | None => break,
                    }
                }
                ws.discard_input().await;
            })
            .await;
            code
        }
        Flow::Stop(code) => code,
        Flow::Abandoned(code) => {
            log::info!(target: "surge", "fd {}: closed with {code}, but it has read nothing for {CLOSE_WAIT:?}: dropping it", conn.fd);
            code
        }
        Flow::Continue => unreachable!(),
    };
    if code != ABNORMAL {
        // Over TLS, close_notify: a strict client takes a connection ended without it for a
        // truncation attack (Python's ssl raises). Over TCP a FIN, as the drop would send.
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, ws.socket.get_mut().shutdown()).await;
    }
    drop(ws);
    forget(&conn, code, by_server, &shared).await;
}

/// Deregisters a connection that has ended and tells PHP (its `close` event), or the Pusher
/// protocol (its unsubscribes). `by_server`: as [`Closed::by_server`].
pub(crate) async fn forget(conn: &Conn, code: u16, by_server: bool, shared: &Shared) {
    if !conn.end() {
        return; // cut off by the stop, which told PHP (`cut_off`)
    }
    let _closing = Closing::new(shared);
    let channels = deregister(conn, code, shared);
    if let Some(pusher) = conn.pusher.get() {
        if let Some(session) = pusher {
            for event in crate::pusher::socket::closed(session, conn.fd, shared) {
                if shared.events.send(event).await.is_err() {
                    break;
                }
            }
        }
    } else if let Some(event) = close_event(conn, code, by_server, channels, shared) {
        let _ = shared.events.send(event).await;
    }
}

/// The stop's deadline: the WebSocket clients that have not answered their close are let go
/// (out of the registry and their channels, their sockets dropped by their tasks), each with
/// the `close` event its end would have queued, so that PHP's bookkeeping (a Table of users
/// by fd) sees every connection it saw open close. Not the Pusher protocol's, whose sessions
/// end with the engine (`pusher::end_sessions`).
pub(crate) fn cut_off(shared: &Shared) -> Vec<Event> {
    let mut open = Vec::new();
    shared.registry.for_each(|conn| open.push(conn.clone()));
    let mut events = Vec::new();
    for conn in open {
        if conn.speaks_pusher() || !conn.end() {
            continue; // the Pusher protocol's, or ended: its task is telling PHP itself
        }
        let channels = deregister(&conn, ABNORMAL, shared);
        events.extend(close_event(&conn, ABNORMAL, true, channels, shared));
        conn.wake.raise(); // its task drops the socket (`is_killed`)
    }
    events
}

/// Out of the registry and its channels, counted closed; the channels it was in.
fn deregister(conn: &Conn, code: u16, shared: &Shared) -> Vec<String> {
    shared.registry.remove(conn.fd);
    let channels = shared.channels.leave_all(conn.fd);
    bump(&shared.stats.closed, 1);
    log::debug!(target: "surge", "fd {} closed ({code})", conn.fd);
    channels
}

/// The `close` event of a connection that ended, if PHP has a `close` callback.
fn close_event(
    conn: &Conn,
    code: u16,
    by_server: bool,
    channels: Vec<String>,
    shared: &Shared,
) -> Option<Event> {
    shared.handlers.close.load(Relaxed).then(|| Event::Close {
        fd: conn.fd,
        code,
        closed: Box::new(Closed {
            remote: conn.remote,
            connect_time: conn.connect_time,
            last_time: shared.to_unix_secs(conn.last_active_ms()),
            channels,
            by_server,
        }),
    })
}

/// [`forget`] for a connection that ended before it was served (let in by PHP, the client gone
/// before the 101 went out), from where there is no awaiting: on the runtime, when there is
/// one here (there is on the PHP thread while it serves); else only out of the registry.
pub(crate) fn forget_unserved(conn: Arc<Conn>, shared: Arc<Shared>) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move { forget(&conn, ABNORMAL, false, &shared).await });
        }
        Err(_) => shared.registry.remove(conn.fd),
    }
}

/// Counts a connection as live ([`Shared::live_connections`]) from its removal from the
/// registry until its close events are queued for PHP. The drain after a stop waits for
/// live connections: it found none while close events waited for room in a full event
/// queue, and ended without their close callbacks (6 of 15 ran, now and then).
struct Closing<'a>(&'a Shared);

impl<'a> Closing<'a> {
    fn new(shared: &'a Shared) -> Closing<'a> {
        shared.closing.fetch_add(1, Relaxed);
        Closing(shared)
    }
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        // Release: the drain that sees it fall sees the close event queued before.
        self.0.closing.fetch_sub(1, Release);
    }
}

/// A data message from the client, for PHP or the Pusher protocol. `deflate`: as for
/// [`write_outbox`], for a reply written at once (see `inline_dispatch`).
async fn receive<S>(
    data: Bytes,
    binary: bool,
    ws: &mut WebSocket<S>,
    conn: &Conn,
    shared: &Shared,
    deflate: Option<u8>,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    bump(&shared.stats.messages_in, 1);
    bump(&shared.stats.bytes_in, data.len() as u64);
    if let Some(pusher) = conn.pusher.get() {
        if let Some(session) = pusher {
            // What PHP observes (its callbacks exist) waits for room like a message does.
            if let Some(event) =
                crate::pusher::socket::receive(session, conn, shared, &data, binary)
            {
                let handing = async { shared.events.send(event).await.is_ok() };
                return hand_over(handing, ws, conn, shared, deflate).await;
            }
        }
        return Flow::Continue;
    }
    if shared.handlers.message.load(Relaxed) {
        if let Some(here) = inline_dispatch::here(shared) {
            let ran = here.run(
                Event::Message {
                    fd: conn.fd,
                    data,
                    binary,
                    held: None,
                },
                conn,
            );
            if let Some(frame) = ran.reply {
                // Borrowed, not cloned: the first clone of a frame's bytes allocates.
                if answer(ws, conn, frame.for_connection(deflate))
                    .await
                    .is_err()
                {
                    return Flow::Stop(ABNORMAL);
                }
                bump(&shared.stats.messages_out, 1);
                bump(&shared.stats.bytes_out, frame.payload_len() as u64);
            }
            if ran.must_yield {
                tokio::task::yield_now().await;
            }
            return Flow::Continue;
        }
        // Waiting here is the backpressure: a busy PHP thread stops this reader, and TCP
        // stops the client, instead of events piling up in memory.
        let handing = async {
            let held = Some(shared.hold_inbound(data.len()).await);
            let message = Event::Message {
                fd: conn.fd,
                data,
                binary,
                held,
            };
            shared.events.send(message).await.is_ok()
        };
        return hand_over(handing, ws, conn, shared, deflate).await;
    }
    Flow::Continue
}

/// Waits until `handing` has handed PHP a message of the client's (false: PHP's side is gone),
/// which takes long while PHP is behind. The outbox is written meanwhile: a client whose
/// message waited got nothing PHP pushed to it, nor its pings, and was closed as a slow
/// consumer (1008) though it read everything. The wait is the server's, not the client's
/// silence: the heartbeat leaves the connection alone while it lasts (`Conn::set_held`).
async fn hand_over<S>(
    handing: impl Future<Output = bool>,
    ws: &mut WebSocket<S>,
    conn: &Conn,
    shared: &Shared,
    deflate: Option<u8>,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut handing = std::pin::pin!(handing);
    // Most messages find room at once: then this costs no more than the wait alone.
    let mut handed = poll_fn(|cx| Poll::Ready(handing.as_mut().poll(cx))).await;
    while handed.is_pending() {
        conn.set_held(true);
        tokio::select! {
            biased;
            ok = &mut handing => handed = Poll::Ready(ok),
            _ = poll_fn(|cx| conn.wake.poll_raised(cx)) => {
                // While it writes, the task waits on the client, as any write does: one that
                // reads nothing is dropped by the heartbeat, its idle time counted from here.
                conn.end_hold(shared.now_ms());
                // Marked as an answer, and raised for `run` to look at while it waits: a close
                // asked meanwhile, or already in this batch, gives up on a client that reads
                // nothing (`CloseWait`). Raised only while it waits: raised before, the next
                // turn of this loop found it so and wrote again, for ever.
                conn.set_answering(true);
                let mut write = std::pin::pin!(write_outbox(ws, conn, shared, deflate));
                let wrote = poll_fn(|cx| {
                    let polled = write.as_mut().poll(cx);
                    if polled.is_pending() {
                        conn.wake.keep_raised();
                    }
                    polled
                })
                .await;
                conn.set_answering(false);
                match wrote {
                    Flow::Continue => {}
                    // Our close frame went out: the message read before it is still the
                    // client's, as are those `finish` reads after it.
                    Flow::Closing(code) => {
                        conn.set_held(true);
                        let ok = handing.as_mut().await;
                        conn.set_held(false);
                        return if ok { Flow::Closing(code) } else { Flow::Stop(ABNORMAL) };
                    }
                    stop => return stop,
                }
            }
        }
    }
    if conn.held() {
        conn.end_hold(shared.now_ms());
    }
    match handed {
        Poll::Ready(true) => Flow::Continue,
        _ => Flow::Stop(ABNORMAL),
    }
}

/// `deflate`: the window agreed if the client negotiated permessage-deflate.
async fn write_outbox<S>(
    ws: &mut WebSocket<S>,
    conn: &Conn,
    shared: &Shared,
    deflate: Option<u8>,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let drained = conn.drain();
    if drained.kill {
        return Flow::Stop(ABNORMAL);
    }
    let mut items = drained.items;
    let (mut count, mut bytes) = (0u64, 0u64);
    for frame in items.iter().filter_map(Outgoing::frame) {
        count += 1;
        bytes += frame.payload_len() as u64;
    }
    let mut closing = None;
    while !items.is_empty() {
        // Data frames queued before a control frame go out before it.
        let frames = items
            .iter()
            .take_while(|item| item.frame().is_some())
            .count();
        if write_frames(ws, conn, &mut items, frames, deflate)
            .await
            .is_err()
        {
            return Flow::Stop(ABNORMAL);
        }
        if let Some(Outgoing::Control(control)) = items.pop_front() {
            if let Control::Close(code, _) = control {
                closing = Some(code);
            }
            if ws.write(&control.frame()).await.is_err() {
                return Flow::Stop(ABNORMAL);
            }
        }
    }
    bump(&shared.stats.messages_out, count);
    bump(&shared.stats.bytes_out, bytes);
    match closing {
        Some(code) => Flow::Closing(code),
        None => Flow::Continue,
    }
}

/// Writes the first `frames` items of `items` (data frames, pre-encoded) straight to the socket,
/// in vectored writes, taking each off once it is written. They are written from where they
/// are, borrowed: copying them out took an allocation for the list and one for the first clone
/// of each frame's bytes.
async fn write_frames<S>(
    ws: &mut WebSocket<S>,
    conn: &Conn,
    items: &mut VecDeque<Outgoing>,
    mut frames: usize,
    deflate: Option<u8>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if frames == 0 {
        return Ok(());
    }
    let socket = &mut ws.socket;
    // Bytes of the first frame already written.
    let mut done = 0;
    while frames > 0 {
        let mut written = poll_fn(|cx| {
            poll_write_front(Pin::new(&mut *socket), cx, items, frames, done, deflate)
        })
        .await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        conn.wrote(written);
        while written > 0 {
            let left = frame_bytes(&items[0], deflate).len() - done;
            if written >= left {
                written -= left;
                items.pop_front();
                frames -= 1;
                done = 0;
            } else {
                done += written;
                written = 0;
            }
        }
    }
    socket.flush().await
}

/// The bytes to write for a queued data frame.
fn frame_bytes(item: &Outgoing, deflate: Option<u8>) -> &[u8] {
    item.frame()
        .expect("only data frames are written as bytes")
        .for_connection(deflate)
}

/// One write of the first `frames` frames of `items`, the first from byte `done` on, vectored
/// when there are several. The slices live on the stack of this call only: kept in the future,
/// their array (1 KiB) made every connection step a large allocation.
fn poll_write_front<S: AsyncWrite>(
    socket: Pin<&mut S>,
    cx: &mut Context<'_>,
    items: &VecDeque<Outgoing>,
    frames: usize,
    done: usize,
    deflate: Option<u8>,
) -> Poll<std::io::Result<usize>> {
    let first = &frame_bytes(&items[0], deflate)[done..];
    if frames == 1 {
        return socket.poll_write(cx, first);
    }
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let n = frames.min(MAX_IOV);
    slices[0] = IoSlice::new(first);
    for (slice, item) in slices[1..n].iter_mut().zip(items.iter().skip(1)) {
        *slice = IoSlice::new(frame_bytes(item, deflate));
    }
    socket.poll_write_vectored(cx, &slices[..n])
}

/// Answers bad input with the close code RFC 6455 gives for it.
async fn close_for_error<S>(ws: &mut WebSocket<S>, conn: &Conn, err: ReadError) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (code, reason) = match &err {
        ReadError::MessageTooBig => (1009, "message too big"),
        ReadError::FrameTooBig => (1009, "frame too big"),
        ReadError::Utf8 => (1007, "invalid UTF-8 in text message"),
        ReadError::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<InflateError>()) {
            Some(InflateError::BadData) => (1007, "invalid compressed data"),
            Some(InflateError::TooBig) => (1009, "message too big"),
            Some(InflateError::TooSlow) => (1008, "message too slow"),
            None => return Flow::Stop(ABNORMAL),
        },
        ReadError::Protocol(_) => (1002, "protocol error"),
    };
    log::debug!(target: "surge", "fd {}: {err}; closing with {code}", conn.fd);
    fail(ws, conn, code, reason).await
}

/// Sends our close frame at once; what the client sends after it is discarded.
async fn fail<S>(ws: &mut WebSocket<S>, conn: &Conn, code: u16, reason: &str) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    conn.closed_by_peer();
    let close = Control::Close(code, reason.into()).frame();
    let _ = tokio::time::timeout(CLOSE_WAIT, ws.write(&close)).await;
    Flow::Refusing(code)
}
