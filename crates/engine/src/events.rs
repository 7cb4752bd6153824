//! What the engine tells the PHP thread. Everything here is plain data: the PHP layer turns it
//! into PHP objects on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::http_file::FileToSend;
use crate::http_stream::{self, ChunkReceiver, ChunkSender};
use crate::multipart_form::MultipartForm;
use crate::registry::Conn;
use crate::shared::Shared;

/// A connection as it was when it closed: Swoole's getClientInfo() and a channel list still
/// answer for it in its close callback.
#[derive(Debug)]
pub struct Closed {
    pub remote: std::net::SocketAddr,
    /// Unix seconds.
    pub connect_time: u64,
    /// Unix seconds of the last frame received.
    pub last_time: u64,
    /// The channels it was in, sorted.
    pub channels: Vec<String>,
    /// The server sent its close frame first (disconnect(), close(), the stop, a broken rule);
    /// not for the client's close, the network, nor a heartbeat drop (no frame), as in Swoole.
    pub by_server: bool,
}

/// A parsed HTTP request: a WebSocket handshake (for `open`) or a plain request (for `request`).
#[derive(Debug)]
pub struct HttpRequest {
    pub fd: u64,
    pub method: String,
    /// The path without the query string, e.g. `/chat`.
    pub path: String,
    /// The raw query string without `?` (may be empty).
    pub query: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'static str,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// A `multipart/form-data` body's fields and uploaded files (whose temporary files last as
    /// long as this does, or whoever takes it).
    pub form: Option<MultipartForm>,
    pub remote: SocketAddr,
    pub server_port: u16,
    /// When its connection was accepted, in Unix seconds.
    pub connect_time: u64,
    /// When the request was read, as a Unix time in seconds.
    pub time: f64,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// A reason phrase other than the status code's own (`status(404, 'Gone Fishing')`).
    pub reason: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(status: u16, body: &str) -> Self {
        HttpResponse {
            status,
            reason: None,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }
}

/// PHP's answer to one HTTP request.
#[derive(Debug)]
pub(crate) enum Answer {
    Whole(HttpResponse),
    /// The status and headers, and a body that follows in chunks (the response's `body` is the
    /// first).
    Streamed(HttpResponse, ChunkReceiver),
    /// The status and headers, and a file as the body (the response's `body` is not used).
    File(HttpResponse, FileToSend),
    /// A `handshake` callback's 101: the connection is let in (see [`Admission`]) with these
    /// headers beside the handshake's own.
    Admitted(HttpResponse),
    /// No answer: the connection is closed (Swoole's `close($request->fd)`).
    Dropped,
}

/// Where PHP's answer to one HTTP request goes. Dropping it unanswered sends a 500.
#[derive(Debug)]
pub struct Responder {
    pub(crate) tx: oneshot::Sender<Answer>,
    /// At most this many bytes of a streamed body wait for the client (`socket_buffer_size`).
    pub(crate) stream_limit: usize,
}

impl Responder {
    /// The client has gone away: nothing sent now would reach it.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends the response; false when the client has gone away meanwhile.
    pub fn send(self, response: HttpResponse) -> bool {
        self.tx.send(Answer::Whole(response)).is_ok()
    }

    /// Closes the connection without an answer, as Swoole's `close($request->fd)` does (a
    /// request it refuses gets nothing); false when the client has gone away meanwhile.
    pub fn close_connection(self) -> bool {
        self.tx.send(Answer::Dropped).is_ok()
    }

    /// Sends the status and headers with `file` as the body; false when the client has gone
    /// away meanwhile.
    pub fn send_file(self, head: HttpResponse, file: FileToSend) -> bool {
        self.tx.send(Answer::File(head, file)).is_ok()
    }

    /// Sends the status and headers, with `head.body` as the first chunk of a body that goes on
    /// with what the returned sender queues, until it is dropped. None when the client has gone
    /// away meanwhile.
    pub fn stream(self, head: HttpResponse) -> Option<ChunkSender> {
        let (sender, receiver) = http_stream::channel(self.stream_limit);
        self.tx
            .send(Answer::Streamed(head, receiver))
            .ok()
            .map(|_| sender)
    }
}

/// A WebSocket connection that a `handshake` callback may let in, made (not yet registered)
/// when its handshake was read.
pub struct Admission {
    pub(crate) conn: Arc<Conn>,
    pub(crate) shared: Arc<Shared>,
}

impl Admission {
    /// Lets the connection in with `head` (a 101; its body is not sent): it is registered now,
    /// before the answer goes, so that a push made right after (in the callback, or in what it
    /// defers) waits in its outbox and follows the 101. False when the client has gone away:
    /// the connection then ends as any other, its close event following (what PHP did for it
    /// after end() is undone there, as Swoole's onClose would).
    pub fn admit(self, reply: Responder, head: HttpResponse) -> bool {
        let Admission { conn, shared } = self;
        // Its idle time starts now, not when its handshake came: the callback may have taken
        // longer than `heartbeat_idle_time` (an auth call), and the sweep dropped it at once.
        conn.touch(shared.now_ms());
        shared.registry.insert(conn.clone());
        if reply.tx.send(Answer::Admitted(head)).is_ok() {
            return true;
        }
        crate::connection::forget_unserved(conn, shared);
        false
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("fd", &self.conn.fd)
            .finish()
    }
}

#[derive(Debug)]
pub enum Event {
    /// A WebSocket handshake completed; the connection is established and accepts pushes.
    Open { fd: u64, request: Box<HttpRequest> },
    /// A whole message (fragments reassembled). `binary` is false for text, which is valid UTF-8.
    /// `held` is its share of [`crate::shared::INBOUND_BUDGET`], given back when the event is
    /// dropped; None when the reading task runs the callback itself (`inline_dispatch`).
    Message {
        fd: u64,
        data: Bytes,
        binary: bool,
        held: Option<OwnedSemaphorePermit>,
    },
    /// The connection is gone; no push to `fd` will succeed from now on. `closed` says what it
    /// was, for its close callback.
    Close {
        fd: u64,
        code: u16,
        closed: Box<Closed>,
    },
    /// A plain HTTP request for the `request` callback; `held` as for `Message`, for its body.
    Request {
        request: Box<HttpRequest>,
        reply: Responder,
        held: OwnedSemaphorePermit,
    },
    /// A WebSocket handshake for the `handshake` callback, which answers it in `reply`: a 101
    /// through `admission` lets the connection in (and no `Open` follows, as in Swoole), any
    /// other answer refuses it.
    Handshake {
        request: Box<HttpRequest>,
        reply: Responder,
        admission: Admission,
    },
    /// A timer registered with [`crate::Engine::add_timer`] fired.
    Timer { id: u64 },
    /// Nothing happened: the PHP thread's loop is to come round once more (see
    /// [`crate::Engine::wake_php`]).
    Wake,
    /// A message on a subscribed Redis channel (prefix removed), for the `redis` callback.
    /// `held` is its share of the bridge's memory budget for the callback, given back when the
    /// event is dropped.
    Redis {
        channel: String,
        payload: Bytes,
        held: OwnedSemaphorePermit,
    },
    /// SIGINT or SIGTERM arrived. `again`: one came a second or more after the first (timed as
    /// they arrive, `signal_arrival.rs`; closer, two are one Ctrl-C reaching the process twice),
    /// so the user wants out now. Signals that come together may be told as one.
    Signal { name: &'static str, again: bool },
    /// In a task worker: a task handed over with `task()` (see `tasks.rs`). The next is taken
    /// once [`crate::Engine::task_done`] says this one is finished.
    Task(Task),
    /// In a worker: what a task worker finished one of this worker's tasks with. `held` as for
    /// `Message`: a worker whose PHP is busy holds what the others send it within the budget.
    Finish {
        task_id: u64,
        data: Vec<u8>,
        held: OwnedSemaphorePermit,
    },
    /// In a worker: what worker (or task worker) `worker` sent it with `sendMessage()`; `held`
    /// as for `Finish`.
    PipeMessage {
        worker: usize,
        data: Vec<u8>,
        held: OwnedSemaphorePermit,
    },
    /// A Pusher protocol connection of app `app_id` subscribed, unsubscribed or sent a client
    /// event on `channel`; sent only when the matching PHP callback exists. Observed, not vetoed:
    /// it has happened (and been answered) when PHP sees it.
    Pusher {
        fd: u64,
        app_id: String,
        channel: String,
        what: PusherEvent,
    },
}

/// A task for a task worker's PHP thread, for [`Event::Task`].
#[derive(Debug)]
pub struct Task {
    pub task_id: u64,
    /// Where the result goes: pass it on to [`crate::Engine::finish`].
    pub reply_to: ReplyTo,
    pub data: Vec<u8>,
}

/// The process that sent a task, which gets its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTo {
    /// The sending worker's id.
    pub worker: usize,
    /// The sending process: a worker restarted since does not get the result (its own task
    /// ids start from 0 again, so the result would pass for one of its tasks).
    pub pid: u32,
    /// The sender waits for the result (`taskwait()`).
    pub waited: bool,
    /// The sender keeps a callback for the result: a task that ends without one sends an
    /// empty one, for the sender to let the callback go.
    pub callback: bool,
}

/// What happened on a Pusher channel, for [`Event::Pusher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PusherEvent {
    /// A subscription succeeded (a new one, not a repeat). Presence channels give the member:
    /// its `user_id` and its `user_info` as JSON (`null` when none was given).
    Subscribe { member: Option<(String, String)> },
    /// The connection left the channel: `pusher:unsubscribe`, or the connection ended.
    Unsubscribe,
    /// A `client-*` event delivered to the channel's other subscribers; `data` is its JSON.
    ClientEvent { event: String, data: String },
}
