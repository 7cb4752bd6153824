//! When the stop signals arrive, taken in the signal handler itself. Tokio's signal streams say
//! only that a signal came, once the task reading them runs: with `worker_threads` 0 that is
//! between two batches of PHP's events, so a second Ctrl-C pressed while PHP worked through a
//! long batch was timed after it, and two presses a second apart became "the same stop" (or
//! two signals of one press, seen late, "another one"). What tells them apart is the time each
//! one came.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

/// Signals this close to the first are the same stop: one Ctrl-C reaches the whole process
/// group, and a wrapper (npm, honcho, tini -g) may forward it once more.
const SAME_STOP: Duration = Duration::from_secs(1);

/// CLOCK_MONOTONIC of the first SIGINT/SIGTERM since `reset`, in nanoseconds; 0: none yet.
static FIRST: AtomicU64 = AtomicU64::new(0);
/// A SIGINT/SIGTERM came `SAME_STOP` or more after the first: another stop, not the same one.
static AGAIN: AtomicBool = AtomicBool::new(false);

/// Starts timing the signals, once per process. Must come before Tokio and the stop watchdog
/// watch them: the registry runs its actions in the order they were registered, so the time
/// is taken before their actions wake what reads it (`again`).
pub(crate) fn time_signals() -> std::io::Result<()> {
    static REGISTERED: Once = Once::new();
    let mut result = Ok(());
    REGISTERED.call_once(|| {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the action only reads the clock and atomics, all async-signal-safe.
            if let Err(err) = unsafe { signal_hook_registry::register(signal, arrived) } {
                result = Err(err);
            }
        }
    });
    result
}

/// SIGHUP (the terminal closed, `kill -HUP`) stops the server as SIGTERM does: it is turned
/// into one, so that every process (a master, its workers) takes it the way it takes SIGTERM.
/// Its default action killed the process outright (no close frames, no `close` or `shutdown`
/// callbacks). Left alone when the process was started with it ignored (`nohup`: the server is
/// meant to outlive the terminal; see `remember_hangup_ignored`). As for SIGTERM, a handler of
/// PHP's own (zend_signal's, which would run the default action after ours; `pcntl_signal`'s)
/// is replaced. Once per process.
pub fn stop_on_hangup() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        if HANGUP_IGNORED.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: SIG_DFL is a valid action for SIGHUP; the registered action only stores an
        // atomic and calls getpid and kill, all async-signal-safe.
        let installed = unsafe {
            libc::signal(libc::SIGHUP, libc::SIG_DFL);
            signal_hook_registry::register(libc::SIGHUP, || {
                HUNG_UP.store(true, Ordering::Relaxed);
                libc::kill(libc::getpid(), libc::SIGTERM);
            })
        };
        if let Err(err) = installed {
            log::warn!(target: "surge", "SIGHUP will end the process at once: {err}");
        }
    });
}

/// A SIGHUP became the SIGTERM to come: the log names the signal sent.
static HUNG_UP: AtomicBool = AtomicBool::new(false);

/// The name of the SIGTERM just taken: "SIGHUP" when it was one turned into it.
pub(crate) fn terminate_name() -> &'static str {
    match HUNG_UP.swap(false, Ordering::Relaxed) {
        true => "SIGHUP",
        false => "SIGTERM",
    }
}

/// SIGHUP was ignored when the process started.
static HANGUP_IGNORED: AtomicBool = AtomicBool::new(false);

/// Notes whether SIGHUP is ignored, before PHP's request start puts its own handler on it
/// (which then ignores it itself: the process's own disposition no longer tells).
pub fn remember_hangup_ignored() {
    // SAFETY: sigaction with no new action only reads the current one.
    let ignored = unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut current);
        current.sa_sigaction == libc::SIG_IGN
    };
    HANGUP_IGNORED.store(ignored, Ordering::Relaxed);
}

/// A new engine: the signals before it were another server's.
pub(crate) fn reset() {
    AGAIN.store(false, Ordering::SeqCst);
    FIRST.store(0, Ordering::SeqCst);
}

/// How long ago the first stop signal since `reset` came, if one did: known as it arrives,
/// before Tokio's signal stream (which runs only between two of PHP's batches with
/// `worker_threads` 0) has queued its event.
pub(crate) fn since_first() -> Option<Duration> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        first => Some(Duration::from_nanos(
            monotonic_nanos().saturating_sub(first),
        )),
    }
}

/// Whether a stop signal came a second or more after the first one since `reset`.
pub(crate) fn again() -> bool {
    AGAIN.load(Ordering::SeqCst)
}

fn arrived() {
    let now = monotonic_nanos().max(1);
    if let Err(first) = FIRST.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst) {
        if now.saturating_sub(first) > SAME_STOP.as_nanos() as u64 {
            AGAIN.store(true, Ordering::SeqCst);
        }
    }
}

fn monotonic_nanos() -> u64 {
    clock_nanos(libc::CLOCK_MONOTONIC)
}

/// `clock`'s time in nanoseconds (also `Shared::now_ms`'s coarse clock).
pub(crate) fn clock_nanos(clock: libc::clockid_t) -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills a valid timespec; it is async-signal-safe.
    unsafe { libc::clock_gettime(clock, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
