//! How pushers wake a connection's task: a flag and the one waiter's waker. tokio's `Notify`
//! did the same for any number of waiters, with a lock to join and leave its list on every pass
//! of the connection loop.

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{AcqRel, Release};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

#[derive(Default)]
pub(crate) struct WakeSignal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl WakeSignal {
    /// Wakes the task, or has its next wait return at once; several raises before it looks are
    /// one wake-up.
    pub fn raise(&self) {
        self.raised.store(true, Release);
        self.waker.wake();
    }

    /// Raises it again without waking the task: for a raise taken by a look that does not act
    /// on it, so that the next look finds it.
    pub fn keep_raised(&self) {
        self.raised.store(true, Release);
    }

    /// Ready (and lowered) once raised. Only the connection's own task waits.
    pub fn poll_raised(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.raised.swap(false, AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Checked again after registering: a raise in between found no waker to wake.
        if self.raised.swap(false, AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WakeSignal;
    use std::future::poll_fn;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_raise_before_or_during_the_wait_wakes_it_once() {
        let signal = Arc::new(WakeSignal::default());
        signal.raise();
        signal.raise();
        poll_fn(|cx| signal.poll_raised(cx)).await;
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { poll_fn(|cx| signal.poll_raised(cx)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the two raises before were one");
        signal.raise();
        waiting.await.unwrap();
    }
}
