//! With `worker_threads` 0 the connection tasks run on the PHP thread, inside
//! [`Engine::serve`](crate::Engine::serve). There a task that has read a message runs its PHP
//! callback at once instead of queueing an event that the same thread would take a moment
//! later: the reply goes out in the same pass as the read, as in a server without PHP, and the
//! queue, its wake-up and the inbound budget are skipped (the reader itself waits for the
//! callback, which is all the backpressure needed). Whenever events wait in the queue (they keep
//! their order), a callback is already running, or the loop has stopped, the queue is used.
//!
//! A task that finds many messages already read (a client sending faster than PHP handles them)
//! runs their callbacks one after another with nothing to wait for: it yields once callbacks
//! have run [`SLICE_MS`] without the other tasks getting a turn, or every other connection's
//! network work (pings, handshakes, the heartbeat's view of them) waited for the whole burst.
//!
//! The first message such a callback pushes to its own connection (an echo, an answer) skips the
//! outbox too: it is handed back to the task, which writes it as soon as the callback returns,
//! with no registry lookup, no outbox lock and no wake-up of itself.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Poll, Waker};

use tokio::sync::mpsc;

use crate::events::Event;
use crate::frame::Encoded;
use crate::registry::Conn;
use crate::shared::Shared;

type Handle<'a> = dyn FnMut(&mut Vec<Event>) -> bool + 'a;

/// The largest message a callback's reply may be to skip the outbox.
const REPLY_MAX: usize = 64 * 1024;

/// How long callbacks run from tasks before the one running them lets the others have a turn,
/// in ms: long beside one callback of an echo-speed server (yielding after each cost 1,000
/// connections their rate), short beside the heartbeat and a client's patience.
const SLICE_MS: u64 = 5;

/// `Engine::serve`'s loop, on its stack while it runs.
pub(crate) struct Serving<'a> {
    shared: &'a Shared,
    handle: RefCell<&'a mut Handle<'a>>,
    /// The batch of one event that a callback run from a task gets.
    single: RefCell<Vec<Event>>,
    /// `handle` returned false: serving is over, nothing more runs from a task.
    stopped: Cell<bool>,
    /// The loop's waker, for a callback run from a task that stops it.
    waker: RefCell<Option<Waker>>,
    /// The connection whose task is running a callback, while it runs.
    replying: Cell<Option<NonNull<Conn>>>,
    /// The first message that callback pushed to its own connection, for the task to write.
    reply: Cell<Option<Arc<Encoded>>>,
    /// When callbacks began to run from tasks with no task yielding since (see [`SLICE_MS`]).
    slice_began: Cell<Option<u64>>,
}

thread_local! {
    /// The `Serving` of the loop running on this thread, if any.
    static SERVING: Cell<Option<NonNull<Serving<'static>>>> = const { Cell::new(None) };
}

/// Clears [`SERVING`] when the loop ends, however it ends.
pub(crate) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        SERVING.set(None);
    }
}

impl<'a> Serving<'a> {
    pub fn new(shared: &'a Shared, handle: &'a mut Handle<'a>) -> Self {
        Serving {
            shared,
            handle: RefCell::new(handle),
            single: RefCell::new(Vec::with_capacity(1)),
            stopped: Cell::new(false),
            waker: RefCell::new(None),
            replying: Cell::new(None),
            reply: Cell::new(None),
            slice_began: Cell::new(None),
        }
    }

    /// Makes this loop the one tasks on this thread run callbacks for, until the guard drops.
    /// Tasks on other threads (the I/O threads of the default mode) never see it.
    pub fn install(&self) -> Installed {
        SERVING.set(Some(NonNull::from(self).cast()));
        Installed
    }

    /// The next event from the queue; None once stopped or when the engine is gone.
    pub async fn next(&self, rx: &mut mpsc::Receiver<Event>) -> Option<Event> {
        poll_fn(|cx| {
            if self.stopped.get() {
                return Poll::Ready(None);
            }
            let mut waker = self.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            rx.poll_recv(cx)
        })
        .await
    }

    /// Runs the callbacks of `batch`; false (and serving is over) when `handle` says stop.
    pub fn handle(&self, batch: &mut Vec<Event>) -> bool {
        let go_on = (self.handle.borrow_mut())(batch);
        if !go_on {
            self.stopped.set(true);
        }
        go_on
    }
}

/// A callback may run now, from the task that holds this; not `Send`, so it cannot be kept
/// across an `.await`.
pub(crate) struct Here<'a> {
    serving: &'a Serving<'a>,
    _not_send: PhantomData<*const ()>,
}

/// What [`Here::run`] leaves its task to do.
pub(crate) struct Ran {
    /// The message the callback pushed back to its connection that [`reply`] took, for the task
    /// to write before anything queued.
    pub reply: Option<Arc<Encoded>>,
    /// Callbacks have run [`SLICE_MS`] since a task last yielded: this one must, before it
    /// reads on.
    pub must_yield: bool,
}

impl Here<'_> {
    /// Runs the callback of `event`, a message from `conn`, now. A callback that stops the server
    /// ends the loop.
    pub fn run(self, event: Event, conn: &Conn) -> Ran {
        let serving = self.serving;
        if serving.slice_began.get().is_none() {
            serving.slice_began.set(Some(serving.shared.now_ms()));
        }
        let mut single = serving.single.borrow_mut();
        single.push(event);
        serving.replying.set(Some(NonNull::from(conn)));
        let go_on = serving.handle(&mut single);
        serving.replying.set(None);
        if !go_on {
            if let Some(waker) = serving.waker.borrow_mut().take() {
                waker.wake();
            }
        }
        single.clear();
        let must_yield = serving
            .slice_began
            .get()
            .is_some_and(|began| serving.shared.now_ms().saturating_sub(began) >= SLICE_MS);
        if must_yield {
            serving.slice_began.set(None);
        }
        Ran {
            reply: serving.reply.take(),
            must_yield,
        }
    }
}

/// Takes a push to `fd` for its own task to write, if a callback is running from the task of
/// `fd` (see [`Here::run`]), nothing is queued for it (this message must not pass those), and
/// the callback has not pushed to it yet. Otherwise gives `frame` back, for the outbox.
pub(crate) fn reply(shared: &Shared, fd: u64, frame: Arc<Encoded>) -> Result<(), Arc<Encoded>> {
    // A large one gains nothing here, and in the outbox a close that follows it is not stuck
    // behind it for good should the client read nothing (see `connection::CloseWait`).
    if frame.payload_len() > REPLY_MAX {
        return Err(frame);
    }
    let Some(serving) = SERVING.get() else {
        return Err(frame);
    };
    // SAFETY: as in `here`.
    let serving: &Serving<'_> = unsafe { serving.cast().as_ref() };
    let Some(conn) = serving.replying.get() else {
        return Err(frame);
    };
    // SAFETY: set by `Here::run` from a reference that outlives the callback, cleared after it.
    let conn = unsafe { conn.as_ref() };
    let taken = serving.reply.take();
    let free = taken.is_none();
    serving.reply.set(taken);
    if conn.fd != fd || !free || !std::ptr::eq(serving.shared, shared) || !conn.nothing_queued() {
        return Err(frame);
    }
    serving.reply.set(Some(frame));
    Ok(())
}

/// Whether this task may run a callback of `shared`'s engine now: it runs on the PHP thread
/// inside that engine's serving loop, no callback is running, and no event waits in the queue.
pub(crate) fn here(shared: &Shared) -> Option<Here<'_>> {
    let serving = SERVING.get()?;
    // SAFETY: set only by `install`, and cleared by `Installed` before the `Serving` it points
    // to goes away; read only on this thread, where that loop is running.
    let serving: &Serving<'_> = unsafe { serving.cast().as_ref() };
    let free = std::ptr::eq(serving.shared, shared)
        && !serving.stopped.get()
        && serving.handle.try_borrow_mut().is_ok()
        && shared.events.capacity() == shared.events.max_capacity();
    free.then_some(Here {
        serving,
        _not_send: PhantomData,
    })
}
