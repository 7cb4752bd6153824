//! One line per event worth knowing, on stderr, at the level from `log_level`.

use std::io::Write;
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
        let line = format!(
            "[{:02}:{:02}:{:02}.{:03}] surge {}: {}\n",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            now.subsec_millis(),
            record.level(),
            record.args()
        );
        // One write per line so lines from several threads never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger (once per process) and sets the level (every call).
pub fn init(level: LogLevel) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level.filter());
}
