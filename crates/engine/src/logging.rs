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
        let stamp = utc_stamp();
        let line = format!(
            "[{stamp}] {} {}: {}\n",
            who(),
            record.level(),
            record.args()
        );
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
                "[{stamp}] {} WARN: {dropped} log lines dropped: stderr was not being read\n",
                who()
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

/// Which process of a server a line comes from, after `surge[pid]`: the processes of one
/// server share a stderr, and the pid alone does not say which worker a process is.
pub enum Role {
    /// The server is this one process.
    Alone,
    /// The process that called start() and forks the workers.
    Master,
    /// A worker process, with its `worker_id`.
    Worker(usize),
    /// A task worker, with its `worker_id` (from `worker_num` on).
    TaskWorker(usize),
}

static ROLE: Mutex<String> = Mutex::new(String::new());

fn who() -> String {
    format!("surge[{}]{}", std::process::id(), ROLE.lock())
}

/// The date and time of day in UTC, to the millisecond: a log line must say when without
/// whatever collects stderr adding it.
fn utc_stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: tm is plain integers and a pointer, for which zeroes are valid.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: gmtime_r reads secs and writes only the tm it is given.
    unsafe { libc::gmtime_r(&secs, &mut tm) };
    format!(
        "{}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

/// Installs the logger (once per process), sets the level and the process's role (every call).
pub fn init(level: LogLevel, role: Role) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level.filter());
    *ROLE.lock() = match role {
        Role::Alone => String::new(),
        Role::Master => " master".into(),
        Role::Worker(id) => format!(" worker {id}"),
        Role::TaskWorker(id) => format!(" task worker {id}"),
    };
}
