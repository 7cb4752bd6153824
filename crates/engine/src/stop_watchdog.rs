//! What ends a process whose PHP does not finish after a stop signal. SIGINT and SIGTERM only
//! become events for the PHP thread (`engine.rs`), so a callback that never returns (an endless
//! loop, a hung query, a long sleep) kept the process, its port and its clients: Ctrl-C,
//! systemd's stop and a master's reload did nothing until it returned, and a worker whose master
//! was killed outright stayed behind holding the port. This thread is woken by the signals
//! whatever PHP does, and ends the process `shutdown_timeout` + [`STOP_MARGIN`] after the first
//! (the time a master gives a worker before it kills it), or a second after another one in a
//! server of one process (where a second Ctrl-C, a second or more after the first, means
//! "now"); unless the engine ended before.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use signal_hook_registry::SigId;

use crate::signal_arrival;

/// How long past `shutdown_timeout` a stopping process may take (the drain, `workerStop`,
/// `shutdown`) before it is ended: by its own watchdog, or by its master.
pub const STOP_MARGIN: Duration = Duration::from_secs(5);

/// After a second stop signal to a server of one process.
const AFTER_ANOTHER: Duration = Duration::from_secs(1);

/// Written to the pipe: a stop signal came, or the engine ended.
const STOP: u8 = 1;
const ENDED: u8 = 0;

pub(crate) struct StopWatchdog {
    actions: Vec<SigId>,
    /// The pipe's write end; `ENDED` written on drop lets the thread return.
    wake: OwnedFd,
    /// The process whose thread it is: a child forked by PHP (pcntl_fork) shares the pipe and
    /// must not end its parent's watch when it exits.
    owner: libc::pid_t,
}

impl StopWatchdog {
    /// `whole`: this process is the whole server (no master), so a second signal shortens the
    /// wait. A worker gets two signals at one stop (a terminal's Ctrl-C reaches every process
    /// of the group, then its master's SIGTERM), and keeps its whole time for the drain.
    pub(crate) fn start(shutdown_timeout: Duration, whole: bool) -> Result<StopWatchdog, String> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills both fds on success; each is then owned once.
        let (read, wake) = unsafe {
            if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
                return Err(format!(
                    "cannot make the stop watchdog's pipe: {}",
                    std::io::Error::last_os_error()
                ));
            }
            (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
        };
        let grace = shutdown_timeout + STOP_MARGIN;
        std::thread::Builder::new()
            .name("surge-stop".into())
            .spawn(move || watch(read, grace, whole))
            .map_err(|e| format!("cannot start the stop watchdog: {e}"))?;
        // SAFETY: getpid never fails.
        let owner = unsafe { libc::getpid() };
        let mut watchdog = StopWatchdog {
            actions: Vec::new(),
            wake,
            owner,
        };
        let fd = watchdog.wake.as_raw_fd();
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the action only calls getpid and write, both async-signal-safe. A child
            // forked by PHP (pcntl_fork) inherits it with the pipe: it must not wake our thread.
            let id = unsafe {
                signal_hook_registry::register(signal, move || {
                    if libc::getpid() == owner {
                        libc::write(fd, [STOP].as_ptr().cast(), 1);
                    }
                })
            }
            .map_err(|e| format!("cannot watch signal {signal}: {e}"))?;
            watchdog.actions.push(id);
        }
        Ok(watchdog)
    }
}

impl Drop for StopWatchdog {
    fn drop(&mut self) {
        // Unregistered before the pipe closes: a signal handler then never writes to a closed
        // (or reused) descriptor.
        for id in self.actions.drain(..) {
            signal_hook_registry::unregister(id);
        }
        // SAFETY: getpid never fails; one byte from a valid buffer to our own pipe.
        unsafe {
            if libc::getpid() == self.owner {
                libc::write(self.wake.as_raw_fd(), [ENDED].as_ptr().cast(), 1);
            }
        }
    }
}

/// `poll`'s timeout for `left`: a millisecond more than `as_millis` (which rounds down), so
/// that it does not wake just before the deadline; capped to poll's `i32` (a shutdown_timeout
/// of a year is past it), where a wrap would have made it wait for ever.
fn poll_timeout(left: Duration) -> i32 {
    left.as_millis().min(i32::MAX as u128 - 1) as i32 + 1
}

fn watch(read: OwnedFd, grace: Duration, whole: bool) {
    let mut deadline: Option<Instant> = None;
    let mut stops = 0;
    loop {
        let wait_ms = match deadline {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    give_up(stops);
                }
                poll_timeout(left)
            }
        };
        let bytes = match next_bytes(read.as_raw_fd(), wait_ms) {
            Next::Bytes(bytes) => bytes,
            Next::Nothing => continue, // timed out or interrupted: the deadline is checked above
            Next::Closed => return,
        };
        for byte in bytes {
            if byte == ENDED {
                return;
            }
            stops += 1;
            let now = Instant::now();
            // Timed as it arrived (`signal_arrival`, whose action runs before this pipe's).
            let limit = match whole && signal_arrival::again() {
                true => AFTER_ANOTHER,
                false => grace,
            };
            let at = now + limit;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
}

enum Next {
    Bytes(Vec<u8>),
    Nothing,
    /// Every write end is gone (cannot happen while the engine holds one; ends the watch).
    Closed,
}

/// What the pipe holds, waiting up to `wait_ms` (-1: for ever).
fn next_bytes(fd: RawFd, wait_ms: i32) -> Next {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut buf = [0u8; 16];
    // SAFETY: one valid pollfd; a read into a buffer of its stated length.
    let read = unsafe {
        if libc::poll(&mut poll, 1, wait_ms) <= 0 {
            return Next::Nothing;
        }
        libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
    };
    match read {
        0 => Next::Closed,
        n if n < 0 => Next::Nothing,
        n => Next::Bytes(buf[..n as usize].to_vec()),
    }
}

fn give_up(stops: u32) -> ! {
    log::error!(target: "surge", "PHP did not finish after the stop signal ({stops} received; a callback that does not return?): exiting now");
    // SAFETY: ends the process at once, without running PHP's shutdown (the PHP thread is
    // busy in a callback and would never get there).
    unsafe { libc::_exit(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_timeout_ends_after_the_deadline_and_never_wraps() {
        assert_eq!(poll_timeout(Duration::from_micros(1500)), 2);
        assert_eq!(poll_timeout(Duration::ZERO), 1);
        let year = Duration::from_secs(365 * 24 * 3600);
        assert_eq!(poll_timeout(year), i32::MAX);
    }
}
