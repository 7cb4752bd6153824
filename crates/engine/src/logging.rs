//! One line per event worth knowing, on stderr, at the level from `log_level`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::config::LogLevel;

/// For a warning that may come once a message: true at most once every `every`, so that a
/// flood is said, not written out line by line.
pub(crate) struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
}

impl Throttle {
    pub(crate) const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Mutex::new(None),
        }
    }

    /// Whether to say it now.
    pub(crate) fn due(&self) -> bool {
        let mut last = self.last.lock();
        let due = last.is_none_or(|at| at.elapsed() >= self.every);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        // Only Surge's own lines: the crates below us log at debug/trace about every frame.
        meta.target().starts_with("surge")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() % 86_400;
        let stamp = format!(
            "{:02}:{:02}:{:02}.{:03}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            now.subsec_millis()
        );
        let line = format!("[{stamp}] surge {}: {}\n", record.level(), record.args());
        // One write per line so lines from several threads never interleave.
        let mut stderr = std::io::stderr().lock();
        // Never waited for: a log reader that stopped reading (`php server.php 2>&1 | shipper`)
        // held every network thread in its write, and the stop watchdog too. Past a full pipe
        // the lines are dropped, and counted.
        if !writable_now(&stderr) {
            DROPPED.fetch_add(1, Relaxed);
            return;
        }
        let dropped = DROPPED.swap(0, Relaxed);
        if dropped > 0 {
            let said = format!(
                "[{stamp}] surge WARN: {dropped} log lines dropped: stderr was not being read\n"
            );
            let _ = stderr.write_all(said.as_bytes());
        }
        let _ = stderr.write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Lines not written since the last one that was.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Whether a line can be written to stderr without waiting (a file or a terminal always; a pipe
/// while its buffer has room).
fn writable_now(stderr: &impl AsRawFd) -> bool {
    let mut poll = libc::pollfd {
        fd: stderr.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut poll, 1, 0) == 1 && poll.revents & libc::POLLOUT != 0 }
}

/// Installs the logger (once per process) and sets the level (every call).
pub fn init(level: LogLevel) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level.filter());
}
