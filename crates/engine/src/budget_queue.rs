//! A queue bounded in bytes, for a source that cannot be paused: what does not fit is dropped,
//! counted, and logged at most every [`WARN_EVERY`].
//!
//! The Redis bridge needs it three times (the third: `redisPublish`'s messages, while Redis
//! takes them slowly or not at all). The redis crate reads pub/sub messages as fast as Redis
//! sends them and keeps them, without a limit, until they are taken; it offers no way to slow
//! Redis down. So the bridge takes each message at once into such a queue (forwarding works
//! from there), and what the `redis` callback should get waits in a second one, so that a slow
//! callback costs neither memory without bound nor forwarding's pace.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::logging::Throttle;
use crate::stats::bump;

/// What an item costs beyond the bytes it is given for: its allocations and bookkeeping.
const PER_ITEM: usize = 256;
const WARN_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct BudgetQueue<T> {
    /// Unbounded in count but not in size: every item in it holds its cost of `budget`.
    queue: mpsc::UnboundedSender<T>,
    budget: Arc<Semaphore>,
    bytes: usize,
    /// Items that did not fit.
    pub dropped: AtomicU64,
    warning: Throttle,
    /// Said in the warning: why items are dropped.
    why: &'static str,
}

impl<T> BudgetQueue<T> {
    /// A queue of at most `bytes`, and its receiving end.
    pub fn new(bytes: usize, why: &'static str) -> (BudgetQueue<T>, mpsc::UnboundedReceiver<T>) {
        let (queue, receiver) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(bytes));
        (
            BudgetQueue {
                queue,
                budget,
                bytes,
                dropped: AtomicU64::new(0),
                warning: Throttle::new(WARN_EVERY),
                why,
            },
            receiver,
        )
    }

    /// Queues the item `make` builds around its share of the budget (`size` bytes plus
    /// [`PER_ITEM`]), which it must hold until it is done with; drops it if that does not fit.
    /// Whether it was queued.
    pub fn offer(&self, size: usize, make: impl FnOnce(OwnedSemaphorePermit) -> T) -> bool {
        let cost = u32::try_from(size.saturating_add(PER_ITEM)).unwrap_or(u32::MAX);
        match self.budget.clone().try_acquire_many_owned(cost) {
            // Fails only when the receiving end is gone: nobody is left to tell.
            Ok(held) => self.queue.send(make(held)).is_ok(),
            Err(_) => {
                self.drop_one(size);
                false
            }
        }
    }

    /// Whether every item queued has been let go of (its share of the budget given back).
    pub fn is_idle(&self) -> bool {
        self.budget.available_permits() >= self.bytes
    }

    fn drop_one(&self, size: usize) {
        bump(&self.dropped, 1);
        if self.warning.due() {
            let (why, mib, dropped) = (self.why, self.bytes >> 20, self.dropped.load(Relaxed));
            match size > self.bytes {
                true => {
                    log::warn!(target: "surge", "redis: a message of {} MiB is over the {mib} MiB that may wait; dropped ({dropped} so far)", size >> 20)
                }
                false => {
                    log::warn!(target: "surge", "redis: {why}: {mib} MiB of messages wait; dropping ({dropped} so far)")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_does_not_fit_is_counted_and_handled_items_give_their_bytes_back() {
        let (queue, mut taken) = BudgetQueue::new(1 << 20, "test");
        for i in 0..10 {
            queue.offer((1 << 20) / 4, |held| (i, held));
        }
        // Three fit (a fourth would pass the budget by its PER_ITEM).
        assert_eq!(queue.dropped.load(Relaxed), 7);
        for i in 0..3 {
            assert_eq!(taken.recv().await.map(|(n, _)| n), Some(i));
        }
        queue.offer((1 << 20) / 4, |held| (10, held));
        assert_eq!(taken.recv().await.map(|(n, _)| n), Some(10));
        assert_eq!(queue.dropped.load(Relaxed), 7);
    }
}
