//! Room for compressed messages that inflate large, shared by a process's connections.
//!
//! A plain message holds no more memory than its client sent. A compressed one may hold a
//! thousand times more: 2 KB of zeros inflate to 2 MiB, which waits, whole, for room in the
//! inbound budget while PHP is busy, so 1,000 connections sending 2 MB in all held 1.6 GiB (a
//! review's measure). So a compressed message past [`LARGE`] inflated bytes, and more than
//! [`RATIO`] times the bytes it came in, is inflated further only while it holds one of a few
//! slots (their count times `package_max_length` is [`LARGE_BUDGET`], per process), from then
//! until its connection reads again after handing it on. A message waiting for a slot reads
//! nothing more, and TCP holds its client back, as the inbound budget does. Messages that
//! compress less (an image, an upload) hold about what their clients sent, as plain ones do,
//! and never wait for a slot: many slow uploads at once would have waited in turn.
//!
//! No deadlock: a slot's message needs nothing more than its own client's bytes, then the
//! inbound budget and room in the event queue, which PHP frees without any slot (and then the
//! writes its step may have to finish before the connection reads again). A client that sent
//! a few bytes of such a message and then next to nothing held a slot for as long as it liked,
//! and the clients waiting behind it were dropped by the heartbeat (they read nothing): a
//! message must arrive within [`SLOT_TIME`] of taking its slot, so that the slots pass on in
//! order (tokio's semaphore is first come, first served) well within `heartbeat_idle_time`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Inflated bytes of a message that need no slot: most messages never wait, and a connection
/// holds at most this (and one read more) of a message it inflates without one.
pub(crate) const LARGE: u64 = 64 * 1024;

/// How much larger than its compressed bytes a large message may inflate without a slot: about
/// what text and JSON shrink by (often 3 to 10 times), so that most of them never wait, while
/// zeros or repeats (a thousandfold) do; a client makes us hold at most this many times what
/// it sent without one.
pub(crate) const RATIO: u64 = 8;

/// What the large messages being inflated, or waiting to be handed on, may hold in all.
const LARGE_BUDGET: usize = 64 << 20;

/// How long a message may take to arrive once it holds a slot: 2 MiB that do not compress,
/// over a link of 600 kbit/s.
pub(crate) const SLOT_TIME: Duration = Duration::from_secs(30);

/// The slots of one process: [`LARGE_BUDGET`] in messages of `package_max_length` (at least one).
pub(crate) fn slots(package_max_length: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new((LARGE_BUDGET / package_max_length).max(1)))
}

type Acquiring = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// One connection's hold on a slot.
pub(crate) struct LargeSlot {
    slots: Arc<Semaphore>,
    state: State,
}

enum State {
    Free,
    Waiting(Acquiring),
    /// For the compressed message of this number, which must have arrived by `deadline`; the
    /// permit is given back when dropped.
    Held {
        _permit: OwnedSemaphorePermit,
        message: u64,
        deadline: Pin<Box<Sleep>>,
    },
}

impl LargeSlot {
    pub fn new(slots: Arc<Semaphore>) -> Self {
        LargeSlot {
            slots,
            state: State::Free,
        }
    }

    /// Ready once message number `message` holds a slot (at once if it already does).
    pub fn poll_hold(&mut self, message: u64, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Held { message: held, .. } if *held == message => return Poll::Ready(()),
                State::Waiting(acquiring) => {
                    let permit = ready!(acquiring.as_mut().poll(cx)).expect("never closed");
                    self.state = State::Held {
                        _permit: permit,
                        message,
                        deadline: Box::pin(tokio::time::sleep(SLOT_TIME)),
                    };
                }
                _ => self.state = State::Waiting(Box::pin(self.slots.clone().acquire_owned())),
            }
        }
    }

    /// Whether the message that holds the slot is past its [`SLOT_TIME`]; if not, `cx` is woken
    /// when it is. For a message still arriving (see `release_unless`).
    pub fn overdue(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.state {
            State::Held { deadline, .. } => deadline.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }

    /// Gives the slot back unless it is held for `current`, the message still being inflated:
    /// called when the reader wants more bytes and has had all the inflated ones, so a message
    /// that ended has been handed on.
    pub fn release_unless(&mut self, current: Option<u64>) {
        if matches!(self.state, State::Held { message, .. } if Some(message) != current) {
            self.state = State::Free;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_passes_on_once_its_message_is_done() {
        let slots = slots(LARGE_BUDGET / 2);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let (mut a, mut b, mut c) = (
            LargeSlot::new(slots.clone()),
            LargeSlot::new(slots.clone()),
            LargeSlot::new(slots.clone()),
        );
        assert!(a.poll_hold(1, &mut cx).is_ready());
        assert!(b.poll_hold(1, &mut cx).is_ready());
        assert!(c.poll_hold(1, &mut cx).is_pending());
        // Still inflating its message 1: kept.
        a.release_unless(Some(1));
        assert!(c.poll_hold(1, &mut cx).is_pending());
        // On to message 2, which needs none yet: given back, and c has it.
        a.release_unless(Some(2));
        assert!(c.poll_hold(1, &mut cx).is_ready());
        assert!(a.poll_hold(2, &mut cx).is_pending());
        c.release_unless(None);
        assert!(a.poll_hold(2, &mut cx).is_ready());
        assert!(a.poll_hold(2, &mut cx).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_is_overdue_slot_time_after_it_took_its_slot() {
        let mut slot = LargeSlot::new(slots(LARGE_BUDGET));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(!slot.overdue(&mut cx), "no slot, nothing overdue");
        assert!(slot.poll_hold(1, &mut cx).is_ready());
        tokio::time::advance(SLOT_TIME - Duration::from_millis(1)).await;
        assert!(!slot.overdue(&mut cx));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(slot.overdue(&mut cx));
    }

    #[test]
    fn at_least_one_slot_whatever_the_limit() {
        assert_eq!(slots(2 << 20).available_permits(), 32);
        assert_eq!(slots(1 << 30).available_permits(), 1);
    }
}
