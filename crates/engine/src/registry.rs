//! fd -> connection. Pushes from PHP look a connection up here and append to its outbox; they
//! never touch the socket, so PHP never waits for the network.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::frame::{self, Encoded};
use crate::logging::Throttle;
use crate::wake_signal::WakeSignal;

const SLOW_CONSUMER_WARN_EVERY: Duration = Duration::from_secs(10);
static SLOW_CONSUMER_SAID: Throttle = Throttle::new(SLOW_CONSUMER_WARN_EVERY);
/// Slow consumers closed in this process.
static SLOW_CONSUMERS: AtomicU64 = AtomicU64::new(0);

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No such connection, or it is closing.
    Closed,
    /// The client reads too slowly: its outbox passed `socket_buffer_size`; it is being closed.
    SlowConsumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// A close frame is queued (by us, with this code, or in answer to the client's: None);
    /// nothing more is accepted.
    Closing(Option<u16>),
    /// Drop the socket without a close handshake (dead peer found by the heartbeat).
    Kill,
    /// The connection's task has ended: it left the registry and its channels.
    Gone,
}

/// What waits in a connection's outbox.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A data message encoded once (see `frame.rs`), possibly shared with many connections.
    Frame(Arc<Encoded>),
    /// Pings and close frames, encoded as they are written.
    Control(Control),
}

/// A control frame waiting in an outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    Ping(Bytes),
    /// Our close frame: its status code and reason.
    Close(u16, String),
}

impl Control {
    /// The frame as written.
    pub(crate) fn frame(&self) -> Bytes {
        match self {
            Control::Ping(payload) => frame::control(frame::OP_PING, payload),
            Control::Close(code, reason) => frame::close(Some(*code), reason),
        }
    }

    fn len(&self) -> usize {
        match self {
            Control::Ping(payload) => payload.len(),
            Control::Close(_, reason) => 2 + reason.len(),
        }
    }
}

impl Outgoing {
    pub(crate) fn frame(&self) -> Option<&Encoded> {
        match self {
            Outgoing::Frame(frame) => Some(frame),
            Outgoing::Control(_) => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Outgoing::Frame(frame) => frame.plain().len(),
            Outgoing::Control(control) => control.len(),
        }
    }
}

struct Outbox {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    state: State,
}

/// One established WebSocket connection, shared between its task, the registry and pushers.
pub struct Conn {
    pub fd: u64,
    pub remote: SocketAddr,
    /// Unix seconds.
    pub connect_time: u64,
    /// Milliseconds since the engine started, of the last frame received.
    last_active: AtomicU64,
    last_ping: AtomicU64,
    /// Bytes of queued frames written so far (by the connection's task alone): a close waiting
    /// behind a write gives up on the client only while this stands still.
    written: AtomicU64,
    /// The task is writing in a step that read a message (an echo written straight after the
    /// callback, a pong, the outbox while the message waits for PHP): a close asked meanwhile
    /// waits behind it as behind an outbox step's write.
    answering: AtomicBool,
    /// The task waits for room to hand PHP a message it read (PHP is behind), reading no more.
    held: AtomicBool,
    outbox: Mutex<Outbox>,
    pub(crate) wake: WakeSignal,
    /// Set once for a connection on the Pusher protocol's path (`/app/{key}`): its session,
    /// or None if it was refused (unknown key, protocol version, quota) and is closing.
    pub(crate) pusher: std::sync::OnceLock<Option<Arc<crate::pusher::Session>>>,
}

/// What the connection task takes out of the outbox in one go.
pub(crate) struct Drained {
    pub items: VecDeque<Outgoing>,
    pub kill: bool,
}

impl Conn {
    pub fn new(fd: u64, remote: SocketAddr, connect_time: u64, now_ms: u64) -> Self {
        Conn {
            fd,
            remote,
            connect_time,
            last_active: AtomicU64::new(now_ms),
            last_ping: AtomicU64::new(now_ms),
            written: AtomicU64::new(0),
            answering: AtomicBool::new(false),
            held: AtomicBool::new(false),
            outbox: Mutex::new(Outbox {
                queue: VecDeque::new(),
                bytes: 0,
                state: State::Open,
            }),
            wake: WakeSignal::default(),
            pusher: std::sync::OnceLock::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.outbox.lock().state == State::Open
    }

    pub fn last_active_ms(&self) -> u64 {
        self.last_active.load(Relaxed)
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_active.store(now_ms, Relaxed);
    }

    /// Queues a message unless the connection is closing or its outbox is over `limit` bytes,
    /// in which case the client is closed with 1008 (see the README's slow-consumer policy).
    /// The message next in line does not count: whether the writer has taken it yet is the
    /// scheduler's doing, not the client's (a small reply right behind a large message closed a
    /// client that read at full speed when the writer's thread had not run in between).
    pub fn push(&self, item: Outgoing, limit: usize) -> Result<(), PushError> {
        let mut out = self.outbox.lock();
        if out.state != State::Open {
            return Err(PushError::Closed);
        }
        let size = item.len();
        let next = out.queue.front().map_or(0, Outgoing::len);
        // Pings go in uncounted: hence saturating.
        let behind_next = out.bytes.saturating_sub(next);
        if behind_next + size > limit && !out.queue.is_empty() {
            // At most every 10 s, with how many so far: a broadcast to a crowd that stalled
            // wrote a line each in one millisecond.
            let so_far = SLOW_CONSUMERS.fetch_add(1, Relaxed) + 1;
            if SLOW_CONSUMER_SAID.due() {
                log::warn!(target: "surge", "fd {}: slow consumer, {} bytes queued (limit {limit}); closing with 1008 ({so_far} slow consumers closed so far; said at most every {}s)", self.fd, out.bytes, SLOW_CONSUMER_WARN_EVERY.as_secs());
            }
            out.queue.clear();
            out.bytes = 0;
            out.state = State::Closing(Some(1008));
            out.queue.push_back(Outgoing::Control(Control::Close(
                1008,
                "slow consumer: too much data queued".into(),
            )));
            drop(out);
            self.wake.raise();
            return Err(PushError::SlowConsumer);
        }
        out.bytes += size;
        out.queue.push_back(item);
        drop(out);
        self.wake.raise();
        Ok(())
    }

    pub(crate) fn wrote(&self, bytes: usize) {
        // One writer: a load and a store, not a locked add.
        let total = self.written.load(Relaxed) + bytes as u64;
        self.written.store(total, Relaxed);
    }

    pub(crate) fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    pub(crate) fn set_answering(&self, answering: bool) {
        self.answering.store(answering, Relaxed);
    }

    pub(crate) fn answering(&self) -> bool {
        self.answering.load(Relaxed)
    }

    pub(crate) fn set_held(&self, held: bool) {
        self.held.store(held, Relaxed);
    }

    /// The wait to hand PHP a message is over: the idle time starts again now.
    pub(crate) fn end_hold(&self, now_ms: u64) {
        self.held.store(false, Relaxed);
        self.touch(now_ms);
    }

    /// Whether the task waits to hand PHP a message: the silence is then the server's (see
    /// `heartbeat`).
    pub(crate) fn held(&self) -> bool {
        self.held.load(Relaxed)
    }

    /// The code we closed with, once we have (our close frame queued, or in the batch being
    /// written).
    pub(crate) fn closed_with(&self) -> Option<u16> {
        match self.outbox.lock().state {
            State::Closing(code) => code,
            _ => None,
        }
    }

    /// Open, with nothing waiting in the outbox.
    pub(crate) fn nothing_queued(&self) -> bool {
        let out = self.outbox.lock();
        out.state == State::Open && out.queue.is_empty()
    }

    /// Starts the close handshake after what is already queued; false if already closing.
    pub fn close(&self, code: u16, reason: &str) -> bool {
        let mut out = self.outbox.lock();
        if out.state != State::Open {
            return false;
        }
        out.state = State::Closing(Some(code));
        out.queue
            .push_back(Outgoing::Control(Control::Close(code, reason.into())));
        drop(out);
        self.wake.raise();
        true
    }

    /// Marks the connection closing because the client started the close handshake.
    pub(crate) fn closed_by_peer(&self) {
        let mut out = self.outbox.lock();
        if out.state == State::Open {
            out.state = State::Closing(None);
        }
    }

    /// Set as the connection ends, before it leaves its channels: a join that raced the end
    /// (PHP's `join()` of an fd whose client just vanished) then adds nothing. False if it had
    /// ended already: its task and the stop's cut-off (`connection::cut_off`) both end it, and
    /// only the first tells PHP.
    pub(crate) fn end(&self) -> bool {
        let mut out = self.outbox.lock();
        !matches!(std::mem::replace(&mut out.state, State::Gone), State::Gone)
    }

    /// A connection of the Pusher protocol, which PHP's broadcast() and `connections` leave
    /// out: its clients read Pusher's messages only.
    pub(crate) fn speaks_pusher(&self) -> bool {
        self.pusher.get().is_some()
    }

    /// Has the task drop the socket with no close handshake; nothing once the connection has
    /// ended (a sweep that found it just before it left the registry must not mark it live
    /// again for the stop's cut-off, which would tell PHP of its close a second time).
    pub(crate) fn kill(&self) {
        let mut out = self.outbox.lock();
        if out.state == State::Gone {
            return;
        }
        out.state = State::Kill;
        drop(out);
        self.wake.raise();
    }

    /// Killed, or cut off by the stop while its task runs on (`connection::cut_off`): either
    /// way the socket is dropped without waiting more.
    pub(crate) fn is_killed(&self) -> bool {
        matches!(self.outbox.lock().state, State::Kill | State::Gone)
    }

    /// Queues a ping if the last one was at least `every_ms` ago.
    pub(crate) fn ping_if_due(&self, now_ms: u64, every_ms: u64) {
        if now_ms.saturating_sub(self.last_ping.load(Relaxed)) < every_ms {
            return;
        }
        self.last_ping.store(now_ms, Relaxed);
        let mut out = self.outbox.lock();
        if out.state == State::Open {
            out.queue
                .push_back(Outgoing::Control(Control::Ping(Bytes::new())));
            drop(out);
            self.wake.raise();
        }
    }

    pub(crate) fn drain(&self) -> Drained {
        let mut out = self.outbox.lock();
        out.bytes = 0;
        // Taking the queue (not draining it) leaves an idle connection holding no buffer.
        Drained {
            items: std::mem::take(&mut out.queue),
            kill: matches!(out.state, State::Kill | State::Gone),
        }
    }
}

/// A map keyed by fd. fds are ours (counted up from 1, never chosen by a client), so a
/// multiply-and-fold hash is enough; the default SipHash was a visible share of every push.
pub(crate) type FdMap<V> = HashMap<u64, V, BuildHasherDefault<FdHasher>>;

#[derive(Default)]
pub(crate) struct FdHasher(u64);

impl Hasher for FdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The fold brings the product's high bits down to the low ones, which pick the bucket
        // (a shard's fds share their low bits).
        let h = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

const SHARDS: usize = 16;

/// Established connections, sharded so that pushes from PHP and the I/O threads' inserts and
/// removals rarely meet on one lock.
pub struct Registry {
    shards: Vec<Mutex<FdMap<Arc<Conn>>>>,
    len: AtomicUsize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(FdMap::default())).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl Registry {
    fn shard(&self, fd: u64) -> &Mutex<FdMap<Arc<Conn>>> {
        &self.shards[fd as usize % SHARDS]
    }

    pub fn insert(&self, conn: Arc<Conn>) {
        self.shard(conn.fd).lock().insert(conn.fd, conn);
        self.len.fetch_add(1, Relaxed);
    }

    pub fn remove(&self, fd: u64) {
        if self.shard(fd).lock().remove(&fd).is_some() {
            // Release: whoever sees the count fall also sees what came before (a closing
            // connection counted in `Shared::closing`: see `live_connections`).
            self.len.fetch_sub(1, Release);
        }
    }

    pub fn get(&self, fd: u64) -> Option<Arc<Conn>> {
        self.shard(fd).lock().get(&fd).cloned()
    }

    pub fn len(&self) -> usize {
        self.len.load(Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `f` on every connection, one shard locked at a time; `f` must be quick.
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Conn>)) {
        for shard in &self.shards {
            for conn in shard.lock().values() {
                f(conn);
            }
        }
    }

    /// The fds of established connections (not closing), in ascending order; not the Pusher
    /// protocol's, which PHP does not serve.
    pub fn open_fds(&self) -> Vec<u64> {
        let mut fds = Vec::with_capacity(self.len());
        self.for_each(|c| {
            if c.is_open() && !c.speaks_pusher() {
                fds.push(c.fd)
            }
        });
        fds.sort_unstable();
        fds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(fd: u64) -> Arc<Conn> {
        Arc::new(Conn::new(fd, "127.0.0.1:1".parse().unwrap(), 0, 0))
    }

    fn frame(len: usize) -> Outgoing {
        Outgoing::Frame(Encoded::new(crate::frame::OP_BINARY, &vec![0u8; len]))
    }

    #[test]
    fn push_after_close_is_refused() {
        let c = conn(1);
        assert!(c.push(frame(1), 1024).is_ok());
        assert!(c.close(1000, "bye"));
        assert_eq!(c.push(frame(1), 1024), Err(PushError::Closed));
        assert!(!c.close(1000, "again"));
        let drained = c.drain();
        assert_eq!(
            drained.items.len(),
            2,
            "the queued message goes out before the close"
        );
    }

    #[test]
    fn slow_consumer_is_closed_with_1008() {
        let c = conn(1);
        c.push(frame(600), 1000).unwrap();
        // The next in line does not count: its writer may just not have run yet.
        c.push(frame(600), 1000).unwrap();
        assert_eq!(c.push(frame(600), 1000), Err(PushError::SlowConsumer));
        let drained = c.drain();
        assert_eq!(drained.items.len(), 1);
        match &drained.items[0] {
            Outgoing::Control(Control::Close(code, _)) => assert_eq!(*code, 1008),
            other => panic!("expected a close, got {other:?}"),
        }
    }

    #[test]
    fn one_message_larger_than_the_limit_still_goes_to_an_idle_client() {
        let c = conn(1);
        assert!(c.push(frame(5000), 1000).is_ok());
        // Nor does a small one behind it, not yet taken by the writer, close the client.
        assert!(c.push(frame(10), 1000).is_ok());
        assert_eq!(c.push(frame(5000), 1000), Err(PushError::SlowConsumer));
    }

    #[test]
    fn registry_lists_only_open_connections_in_order() {
        let r = Registry::default();
        for fd in [5, 3, 40, 17] {
            r.insert(conn(fd));
        }
        r.get(40).unwrap().close(1000, "");
        assert_eq!(r.open_fds(), vec![3, 5, 17]);
        r.remove(3);
        r.remove(3);
        assert_eq!(r.len(), 3);
    }
}
