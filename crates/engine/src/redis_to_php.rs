//! Redis messages on their way to PHP's `redis` callback, bounded in bytes.
//!
//! The redis crate reads pub/sub messages as fast as Redis sends them and keeps them, without a
//! limit, until they are taken; it offers no way to slow Redis down. So the bridge takes each
//! message at once (forwarding to WebSocket clients needs no PHP and happens right away) and
//! what the callback should get waits here, within [`BUDGET`] bytes. When the callback is slower
//! than Redis and the budget is spent, messages for it are dropped and counted, with a warning
//! at most every [`WARN_EVERY`]: memory stays bounded, and Redis, which cannot be paused, is
//! never made to wait either.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Semaphore};

use crate::events::Event;
use crate::stats::bump;

/// Bytes of Redis messages waiting for the `redis` callback, at most.
pub const BUDGET: usize = 64 * 1024 * 1024;
/// What a message costs beyond its channel and payload bytes: the event and its allocations.
const PER_MESSAGE: usize = 256;
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct ToPhp {
    /// Unbounded in count but not in size: every message in it holds its cost of `budget`.
    queue: mpsc::UnboundedSender<Event>,
    budget: Arc<Semaphore>,
    /// Messages the callback did not get because it was too slow.
    pub dropped: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl ToPhp {
    /// Starts the task that hands the queued messages to the PHP thread's event channel, waiting
    /// there as connections' events do.
    pub fn start(events: mpsc::Sender<Event>) -> ToPhp {
        let (queue, mut queued) = mpsc::unbounded_channel::<Event>();
        tokio::spawn(async move {
            while let Some(event) = queued.recv().await {
                if events.send(event).await.is_err() {
                    return;
                }
            }
        });
        ToPhp { queue, budget: Arc::new(Semaphore::new(BUDGET)), dropped: AtomicU64::new(0), last_warning: Mutex::new(None) }
    }

    /// Queues a message for the callback without waiting; drops it if the budget is spent.
    pub fn offer(&self, channel: &str, payload: &[u8]) {
        let cost = u32::try_from(channel.len() + payload.len() + PER_MESSAGE).unwrap_or(u32::MAX);
        let Ok(held) = self.budget.clone().try_acquire_many_owned(cost) else {
            self.drop_one();
            return;
        };
        let event = Event::Redis { channel: channel.to_owned(), payload: Bytes::copy_from_slice(payload), held };
        // Fails only when the engine is gone: nobody is left to tell.
        let _ = self.queue.send(event);
    }

    fn drop_one(&self) {
        bump(&self.dropped, 1);
        let mut last = self.last_warning.lock();
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            log::warn!(
                target: "surge",
                "redis: the redis callback is behind by {} MiB of messages; dropping messages for it ({} so far, stats()['redis']['callback_dropped'])",
                BUDGET >> 20,
                self.dropped.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_php_gets_what_fits_and_the_rest_is_counted() {
        let (events, mut php) = mpsc::channel(4);
        let to_php = ToPhp::start(events);
        let big = vec![b'x'; BUDGET / 4];
        for _ in 0..10 {
            to_php.offer("news", &big);
        }
        // Three fit (a fourth would pass the budget by its channel and overhead).
        assert_eq!(to_php.dropped.load(Relaxed), 7);
        for _ in 0..3 {
            assert!(matches!(php.recv().await, Some(Event::Redis { payload, .. }) if payload.len() == BUDGET / 4));
        }
        // Handled (dropped) events give their bytes back: the next message goes through.
        to_php.offer("news", b"after");
        assert!(matches!(php.recv().await, Some(Event::Redis { payload, .. }) if &payload[..] == b"after"));
        assert_eq!(to_php.dropped.load(Relaxed), 7);
    }
}
