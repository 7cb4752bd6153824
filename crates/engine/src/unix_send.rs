//! Sends on the Unix sockets between a pool's processes (the bus's links, the task queue) from a
//! PHP thread: never blocking in the kernel, waiting for room with poll, so that the caller
//! chooses how long each wait may be.

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

/// One send without waiting: what it wrote, or WouldBlock when there is no room. MSG_NOSIGNAL:
/// to a process that died it fails with EPIPE instead of raising SIGPIPE (which PHP's CLI
/// ignores, but a script may have set back).
pub(crate) fn send_now(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: a buffer of the given length; a bad fd is an error, not undefined behaviour.
        let sent = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if sent >= 0 {
            return Ok(sent as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Waits until `deadline` at most for room to write on `fd`; false if none came. True also when
/// the socket failed meanwhile: the next send says how.
pub(crate) fn wait_for_room(fd: RawFd, deadline: Instant) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up: poll waits at least this long, so a timeout is never before the deadline
        // (rounded down, it came up to a millisecond early).
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut poll, 1, ms) } {
            0 => return false,
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            _ => return true,
        }
    }
}
