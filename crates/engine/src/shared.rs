//! The state every task of one engine shares. Kept in one place so that a later multi-process
//! version can find everything a process owns.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed},
};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::channels::Channels;
use crate::config::Config;
use crate::events::Event;
use crate::registry::{Conn, Registry};
use crate::signal_arrival::clock_nanos;
use crate::stats::Stats;
use crate::workers::FdSource;

/// Which PHP callbacks exist: events nobody listens to are never sent to the PHP thread.
#[derive(Debug, Default)]
pub struct Handlers {
    pub open: AtomicBool,
    pub message: AtomicBool,
    pub close: AtomicBool,
    pub request: AtomicBool,
    pub handshake: AtomicBool,
    pub redis: AtomicBool,
    pub pusher_subscribe: AtomicBool,
    pub pusher_unsubscribe: AtomicBool,
    pub pusher_client_event: AtomicBool,
}

/// Bytes of WebSocket messages and HTTP request bodies that may wait for the PHP thread at once.
/// The event channel is bounded by count (`event_queue_size`), which alone would let 4096
/// messages of `package_max_length` (8 GiB at 2 MiB) pile up behind a slow callback; past this
/// budget a reader waits, and TCP stops its client.
pub const INBOUND_BUDGET: usize = 64 << 20;
/// Bytes of task results that may wait for the PHP thread past a full [`INBOUND_BUDGET`] (see
/// `bus::ForPhp::send_now`): the results of a burst of tasks while PHP waits in task().
pub const RESULTS_OVERDRAFT: usize = 256 << 20;

pub struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub channels: Channels,
    /// Pusher protocol apps and their channels (empty without the `pusher` setting).
    pub pusher: crate::pusher::Pusher,
    pub stats: Stats,
    pub handlers: Handlers,
    pub events: mpsc::Sender<Event>,
    /// [`INBOUND_BUDGET`], held by the events that carry client bytes until PHP is done with them.
    inbound: Arc<Semaphore>,
    /// [`RESULTS_OVERDRAFT`].
    overdraft: Arc<Semaphore>,
    /// For compressed messages that inflate large (see `deflate::large_slot`).
    pub(crate) large_messages: Arc<Semaphore>,
    /// Set when the server stops accepting (shutdown): the close code and reason every client
    /// gets, a connection registered later too.
    pub stopping: watch::Sender<Option<(u16, String)>>,
    /// SIGINT or SIGTERM came (set by the signal watcher itself, before PHP hears of it): no
    /// connection is accepted, and a task worker takes no task, after it.
    pub signalled: watch::Sender<bool>,
    /// TCP connections not (yet) upgraded to WebSocket: handshakes and plain HTTP.
    pub http_live: AtomicUsize,
    /// How many times a connection stopped speaking HTTP (it ended or was upgraded): with
    /// `stats.accepted` and `stats.closed`, the churn after which `memory.rs` trims.
    pub(crate) http_ended: AtomicU64,
    /// WebSocket connections gone from the registry whose close events are not queued yet.
    pub(crate) closing: AtomicUsize,
    /// Open connections per remote address, kept when `max_connections_per_ip` is set.
    pub per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// Results of the tasks this worker's PHP thread waits for (`taskwait()`).
    pub(crate) task_results: crate::tasks::TaskResults,
    /// In a task worker: its taker may still hand PHP a task (see `tasks::take_tasks`), so the
    /// stop waits for it as it waits for connections.
    pub(crate) taking_tasks: AtomicBool,
    fds: FdSource,
    /// When the engine started, in the monotonic clock's ns (see `now_ms`).
    epoch_ns: u64,
    pub start_unix_ms: u64,
    /// The first part of this engine's socket ids (see `socket_id`): random.
    socket_id_prefix: u32,
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Shared {
    pub(crate) fn new(config: Config, events: mpsc::Sender<Event>, fds: FdSource) -> Self {
        let pusher = crate::pusher::Pusher::new(&config.pusher);
        let large_messages = crate::deflate::large_slot::slots(config.package_max_length);
        Shared {
            pusher,
            config,
            registry: Registry::default(),
            channels: Channels::default(),
            stats: Stats::default(),
            handlers: Handlers::default(),
            events,
            inbound: Arc::new(Semaphore::new(INBOUND_BUDGET)),
            overdraft: Arc::new(Semaphore::new(RESULTS_OVERDRAFT)),
            large_messages,
            stopping: watch::channel(None).0,
            signalled: watch::channel(false).0,
            http_live: AtomicUsize::new(0),
            http_ended: AtomicU64::new(0),
            closing: AtomicUsize::new(0),
            per_ip: Default::default(),
            task_results: Default::default(),
            taking_tasks: AtomicBool::new(false),
            fds,
            epoch_ns: clock_nanos(libc::CLOCK_MONOTONIC),
            start_unix_ms: unix_ms(),
            socket_id_prefix: random_u32(),
        }
    }

    /// Waits until `len` more bytes (at most the whole budget) fit in [`INBOUND_BUDGET`]; the
    /// permit gives them back when it is dropped with the event that carries it.
    pub async fn hold_inbound(&self, len: usize) -> OwnedSemaphorePermit {
        let cost = len.min(INBOUND_BUDGET) as u32;
        self.inbound
            .clone()
            .acquire_many_owned(cost)
            .await
            .expect("the inbound budget is never closed")
    }

    /// Takes `len` bytes of [`INBOUND_BUDGET`] if they are free, else of [`RESULTS_OVERDRAFT`];
    /// waits for the budget only when both are taken. For task results (see
    /// `bus::ForPhp::send_now`).
    pub async fn hold_inbound_or_overdraft(&self, len: usize) -> OwnedSemaphorePermit {
        let cost = len.min(INBOUND_BUDGET) as u32;
        match self.inbound.clone().try_acquire_many_owned(cost) {
            Ok(held) => held,
            Err(_) => match self.overdraft.clone().try_acquire_many_owned(cost) {
                Ok(held) => held,
                Err(_) => self.hold_inbound(len).await,
            },
        }
    }

    #[cfg(test)]
    pub fn inbound_available(&self) -> usize {
        self.inbound.available_permits()
    }

    /// Bytes of client messages and task results that wait for PHP or that PHP is handling:
    /// memory not freed yet (see `memory.rs`).
    pub(crate) fn inbound_held(&self) -> u64 {
        let free = self.inbound.available_permits() + self.overdraft.available_permits();
        (INBOUND_BUDGET + RESULTS_OVERDRAFT - free) as u64
    }

    /// fds start at 1 and are never reused while the server runs (see `workers.rs`).
    pub fn next_fd(&self) -> u64 {
        self.fds.next()
    }

    /// Milliseconds since the engine started, by the coarse monotonic clock: read for every
    /// message (activity, rate limits), where the precise one cost four times as much; it lags
    /// by a few ms at most, nothing beside what it times.
    pub fn now_ms(&self) -> u64 {
        clock_nanos(libc::CLOCK_MONOTONIC_COARSE).saturating_sub(self.epoch_ns) / 1_000_000
    }

    pub fn to_unix_secs(&self, engine_ms: u64) -> u64 {
        (self.start_unix_ms + engine_ms) / 1000
    }

    pub fn live_connections(&self) -> usize {
        // The registry first: a connection leaves it after it is counted as closing.
        self.http_live.load(Relaxed) + self.registry.len() + self.closing.load(Acquire)
    }

    /// A connection's socket id, `<random>.<fd>`: the `digits.digits` form Laravel Echo and the
    /// Pusher protocol use. Laravel's `toOthers()` sends it back, and private channels' auth
    /// signs it, so it must name one connection only, here and on any other server: the
    /// process id did not (a server in a container is process 1 at every start, and its fds
    /// start again from 1), and a signature leaked from one run subscribed anew on the next.
    pub fn socket_id(&self, fd: u64) -> String {
        format!("{}.{fd}", self.socket_id_prefix)
    }

    /// The fd of one of our socket ids; None for another server's or a malformed one.
    pub fn fd_of_socket_id(&self, socket_id: &str) -> Option<u64> {
        let (prefix, fd) = socket_id.split_once('.')?;
        (prefix.parse::<u32>().ok()? == self.socket_id_prefix)
            .then(|| fd.parse().ok())
            .flatten()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.borrow().is_some()
    }

    /// Stops accepting and sends every client `code`; false if the stop had begun already.
    pub fn begin_shutdown(&self, code: u16, reason: &str) -> bool {
        let begun = self.stopping.send_if_modified(|stop| {
            stop.is_none() && stop.replace((code, reason.to_owned())).is_none()
        });
        if !begun {
            return false;
        }
        self.registry.for_each(|c| {
            c.close(code, reason);
        });
        true
    }

    /// For a connection just registered: if the stop has begun, it gets the stop's close too.
    /// Its upgrade was answered before the stop, and it may have joined the registry after the
    /// close-all went by (which set the close first, so one of the two always sees it).
    pub fn close_if_stopping(&self, conn: &Conn) {
        if let Some((code, reason)) = &*self.stopping.borrow() {
            conn.close(*code, reason);
        }
    }
}

/// 32 random bits from the kernel.
fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // SAFETY: getrandom fills at most the 4 bytes of a valid buffer; a pool that is not ready
    // yet (early boot) leaves zeros after a short read, which still works, only less randomly.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    u32::from_ne_bytes(bytes)
}
