//! Which process made something that a child forked by a PHP callback (`pcntl_fork()`) inherits
//! a copy of: the child has none of that process's threads, so it must neither wait for them
//! nor do their work twice (write its parent's pushes, shut down its runtime).
//!
//! The check runs on every push to another worker's connection, so it compares a count of forks
//! that a fork handler bumps in each child, not the pid: `getpid()` is a system call (about
//! 160 ns on the benchmarks' machine, against a few µs for the whole push).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Once;

/// Forks this process's line has been through: a child counts one more than its parent did at
/// the fork.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    FORKS.fetch_add(1, Relaxed);
}

/// The process that made the value holding it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MadeIn(u64);

impl MadeIn {
    pub(crate) fn here() -> Self {
        static COUNTING: Once = Once::new();
        // Before the first value exists, so every fork after it is counted. pcntl_fork(), our
        // workers' fork and libc's fork() all run the handlers.
        COUNTING.call_once(|| {
            // SAFETY: the handler only touches an atomic, which is safe in a forked child.
            let failed = unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
            // It fails only for want of memory.
            assert_eq!(failed, 0, "pthread_atfork failed");
        });
        MadeIn(FORKS.load(Relaxed))
    }

    /// This is a child forked from that process.
    pub(crate) fn forked(self) -> bool {
        FORKS.load(Relaxed) != self.0
    }
}

#[cfg(test)]
mod tests {
    use super::MadeIn;

    #[test]
    fn a_forked_child_knows_it_is_one_and_its_parent_does_not() {
        let made = MadeIn::here();
        assert!(!made.forked());
        // SAFETY: the child only reads an atomic and exits.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            let in_child_made_here = MadeIn::here();
            let code = if made.forked() && !in_child_made_here.forked() {
                0
            } else {
                1
            };
            // SAFETY: ends the child without running the test harness's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw {status}"
        );
        assert!(!made.forked(), "the parent is not a forked child");
    }
}
