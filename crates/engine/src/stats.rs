//! Counters shown by `stats()`: relaxed atomics, bumped on the I/O threads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub rejected: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub http_requests: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub accepted: u64,
    pub closed: u64,
    pub rejected: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub http_requests: u64,
    pub start_time: u64,
}

/// When the server started (Unix seconds): set by the process that calls `start()`, inherited
/// by the worker processes it forks, so that `start_time` stays the server's across a reload
/// (it became the time of the reload: each worker's engine starts anew).
static SERVER_START: AtomicU64 = AtomicU64::new(0);

/// Called as `start()` begins to serve.
pub fn mark_server_start() {
    SERVER_START.store(crate::shared::unix_ms() / 1000, Relaxed);
}

/// The server's start time, or `engine_start` (Unix seconds) where none was marked (an engine
/// started without `start()`, in tests).
pub(crate) fn server_start(engine_start: u64) -> u64 {
    match SERVER_START.load(Relaxed) {
        0 => engine_start,
        marked => marked,
    }
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Relaxed);
}

impl Stats {
    pub(crate) fn snapshot(&self, connections: u64, start_time: u64) -> StatsSnapshot {
        StatsSnapshot {
            connections,
            accepted: self.accepted.load(Relaxed),
            closed: self.closed.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            http_requests: self.http_requests.load(Relaxed),
            start_time,
        }
    }
}
