//! Which process holds a lock, and whether it still runs: a process killed (SIGKILL, the OOM
//! killer) inside one of the table's critical sections never unlocks, and every process that
//! then wants that row or bucket would wait for ever. Each lock records its holder's pid, and a
//! waiter that has waited long asks whether that process is gone (see `sync`).

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Once;

/// This process's pid, kept here because getpid() is a system call and a lock is taken on
/// every write; a fork handler puts the child's own pid in the child's copy.
static PID: AtomicU32 = AtomicU32::new(0);
static WATCH_FORKS: Once = Once::new();

/// Linux pids stay below 2^22 (PID_MAX_LIMIT on 64-bit), so a pid fits in the bits a row's
/// lock word leaves above its sequence.
pub(crate) const PID_BITS: u32 = 22;

extern "C" fn after_fork_in_child() {
    // SAFETY: getpid has no preconditions.
    PID.store(unsafe { libc::getpid() } as u32, Relaxed);
}

/// Must run before the process forks a child that uses a table: `Table::create` calls it.
pub(crate) fn watch_forks() {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a handler that only makes a system call and an atomic store, which
        // is all a child may do before it returns from fork.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        after_fork_in_child();
    });
}

/// This process's pid; never 0.
pub(crate) fn me() -> u32 {
    match PID.load(Relaxed) {
        0 => {
            watch_forks();
            PID.load(Relaxed)
        }
        pid => pid,
    }
}

/// True when process `pid` no longer runs: it is gone, or it is a zombie its parent has not
/// reaped yet (the parent may be the very process waiting on its lock). 0 means the holder is
/// not known: not gone.
pub(crate) fn is_gone(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } == -1 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    // "pid (comm) S ...": the state follows the last ')', since comm may hold one too.
    std::fs::read(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let after = stat.iter().rposition(|&b| b == b')').map_or(0, |i| i + 2);
        matches!(stat.get(after), Some(b'Z' | b'X'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_runs_and_a_reaped_child_is_gone() {
        assert!(!is_gone(me()));
        assert!(!is_gone(0));
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let mut child = child;
        // A zombie until reaped, then gone; either way it no longer runs.
        while !is_gone(pid) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        child.wait().unwrap();
        assert!(is_gone(pid));
    }
}
