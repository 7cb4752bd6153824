//! One line per event worth knowing, on stderr, at the level from `log_level`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogLevel;

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
