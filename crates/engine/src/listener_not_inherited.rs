//! The listening socket is closed in every process this one forks without exec (`pcntl_fork()`
//! in a callback or in `workerStart`: a helper of the app's; an exec'd process never has it,
//! the socket being close-on-exec). Held there, it went on taking its share of new connections
//! after this process stopped accepting (a worker that died or was reloaded: its replacement
//! listens on a socket of its own), unanswered for as long as the helper lived, and kept the
//! port of a stopped server.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::Once;

/// The fd of the socket the accept loop listens on; -1 when none.
static LISTENING: AtomicI32 = AtomicI32::new(-1);
static IN_CHILDREN: Once = Once::new();

extern "C" fn close_in_child() {
    let fd = LISTENING.swap(-1, Relaxed);
    if fd >= 0 {
        // SAFETY: closes the child's copy of the descriptor: a system call, all a child may do
        // before fork returns. The child never drops the socket's Rust owner (see
        // `Engine::drop`), so the number is not closed twice.
        unsafe { libc::close(fd) };
    }
}

/// Held by the accept loop while it listens on `fd`.
pub(crate) struct Listening(RawFd);

impl Listening {
    pub(crate) fn new(fd: RawFd) -> Self {
        IN_CHILDREN.call_once(|| {
            // SAFETY: registers a handler that makes one system call in the child.
            unsafe { libc::pthread_atfork(None, None, Some(close_in_child)) };
        });
        LISTENING.store(fd, Relaxed);
        Listening(fd)
    }
}

impl Drop for Listening {
    /// Dropped before the socket closes.
    fn drop(&mut self) {
        let _ = LISTENING.compare_exchange(self.0, -1, Relaxed, Relaxed);
    }
}
