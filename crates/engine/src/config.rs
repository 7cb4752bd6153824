//! Typed server settings. `set()` in PHP hands every key/value pair to [`Config::apply`], which
//! either stores it or returns an error naming the key, so a typo never passes silently.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A setting's value as the PHP layer hands it over (no PHP types here).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    /// An array with string keys, in order.
    Map(Vec<(String, Value)>),
}

impl Value {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Off => log::LevelFilter::Off,
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        }
    }
}

/// Every setting the server understands, with its default. Durations are given in seconds from
/// PHP (int or float, as in Swoole) and kept as `Duration`; zero disables a timer.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tokio worker threads doing the network work, when set (see [`Config::network_threads`]).
    /// 0: none, the PHP thread does it between callbacks (no hand-off between threads, but a
    /// callback that blocks stalls every connection).
    pub worker_threads: Option<usize>,
    /// PHP worker processes, each with its own engine, accepting from one listening socket
    /// (see `workers.rs`). 1: the process that calls start() serves itself.
    pub worker_num: usize,
    /// PHP processes that run tasks handed over with `task()` (see `tasks.rs`); with any, the
    /// process that calls start() is a master even for `worker_num` 1.
    pub task_worker_num: usize,
    /// Open TCP connections (WebSocket and plain HTTP) accepted at once; past it new
    /// connections get `503` and are closed.
    pub max_connection: usize,
    /// Largest WebSocket message (after reassembly) or HTTP body accepted, in bytes.
    pub package_max_length: usize,
    /// How often the heartbeat sweep looks at every connection; None: not set, see
    /// [`Config::check_interval`].
    pub heartbeat_check_interval: Option<Duration>,
    /// A connection that sent nothing (not even a pong) for this long is dropped; None: not
    /// set, see [`Config::idle_time`].
    pub heartbeat_idle_time: Option<Duration>,
    /// A connection idle for this long is sent a ping (answered pongs count as activity); None:
    /// not set, see [`Config::ping_every`].
    pub ping_interval: Option<Duration>,
    /// An HTTP request or handshake whose headers have not arrived by then is dropped; a
    /// request body gets as long again after its headers, or a 408.
    pub handshake_timeout: Duration,
    /// An HTTP response (or a WebSocket over TLS) whose writes make no progress for this long
    /// is closed: its client stopped reading. Zero: never.
    pub send_timeout: Duration,
    /// Bytes queued for one client beyond which it is a slow consumer and is closed with 1008.
    pub socket_buffer_size: usize,
    /// Events (open/message/close/request/timer) waiting for PHP; when full, connections stop
    /// reading until PHP catches up.
    pub event_queue_size: usize,
    /// On shutdown, how long connections are given to finish their close handshake and PHP
    /// to handle what was received before the signal.
    pub shutdown_timeout: Duration,
    pub log_level: LogLevel,
    /// `redis://[:password@]host:port[/db]`; None: no Redis bridge.
    pub redis: Option<String>,
    /// Laravel's `database.redis.options.prefix`: added to subscribed and published channels.
    pub redis_prefix: String,
    /// Forward Laravel broadcasts on subscribed channels to the members of the same channel.
    pub redis_forward: bool,
    /// Pusher protocol apps (Laravel Echo, pusher-js); empty: the protocol is off.
    pub pusher: Vec<crate::pusher::AppConfig>,
    /// PEM certificate chain and private key: with both, the port speaks TLS (wss://, https://).
    pub ssl_cert_file: Option<String>,
    pub ssl_key_file: Option<String>,
    /// Origins (`scheme://host[:port]`, compared without case) whose pages may open a
    /// WebSocket; empty: any. A handshake without an Origin header (not from a browser) passes.
    pub allowed_origins: Vec<String>,
    /// Open connections from one remote IP address; 0: no limit.
    pub max_connections_per_ip: usize,
    /// Messages one client may send per second, on average (a token bucket holding one
    /// second's worth, so bursts up to this many pass); 0: no limit.
    pub max_messages_per_second: u32,
    /// Offer permessage-deflate (RFC 7692) to clients that ask for it.
    pub websocket_compression: bool,
    /// Subprotocols Surge's own handshake agrees to, Swoole's `websocket_subprotocol`.
    pub websocket_subprotocol: Vec<String>,
    /// Compress whole HTTP responses of the `request` callback for clients that accept gzip or
    /// deflate (see `http_compression.rs`), at this zlib level (1-9), from this many bytes.
    pub http_compression: bool,
    pub http_compression_level: u32,
    pub http_compression_min_length: usize,
    /// Serve the files under `document_root` without calling PHP (GET and HEAD); other paths
    /// go to the `request` callback.
    pub enable_static_handler: bool,
    /// The static handler's directory, resolved (canonical) when set.
    pub document_root: Option<PathBuf>,
    /// URL path prefixes the static handler serves (`/assets`); empty: every path.
    pub static_handler_locations: Vec<String>,
    /// File names the static handler looks for in a directory a request names (`index.html`).
    pub http_index_files: Vec<String>,
    /// Where uploaded files (`multipart/form-data` parts with a file name) are written, resolved
    /// when set; the system's temporary directory unless set.
    pub upload_tmp_dir: PathBuf,
    /// Files one request may upload; parts past it are skipped. Not a setting: the PHP layer
    /// gives PHP's `max_file_uploads` ini value.
    pub max_file_uploads: usize,
    /// Parts one form may have (see `multipart_form::parse`). Not a setting: the PHP layer gives
    /// PHP's `max_multipart_body_parts`.
    pub max_multipart_body_parts: usize,
}

/// `ping_interval` unless set, or unless the idle time is this short or shorter.
const DEFAULT_PING: Duration = Duration::from_secs(25);
/// `heartbeat_check_interval` unless set.
const DEFAULT_CHECK: Duration = Duration::from_secs(5);
/// `heartbeat_idle_time` unless it or `heartbeat_check_interval` is set.
const DEFAULT_IDLE: Duration = Duration::from_secs(60);

fn default_max_connection() -> usize {
    // Leave room for PHP's own files, the listener and Redis (and with a small limit, half of
    // it: 64 connections under a limit of 100 left too few for the rest).
    let limit = open_file_limit();
    limit.saturating_sub(64).max(limit / 2)
}

impl Config {
    /// `max_connection` as the open-file limit allows: a setting above what the default would
    /// be (Swoole configurations carry 10000 under a limit of 1024) is lowered to it, said once:
    /// past the limit, accept() failed and new clients were neither refused nor answered.
    pub(crate) fn within_open_files(mut self) -> Self {
        let most = default_max_connection();
        if self.max_connection > most {
            log::warn!(
                target: "surge",
                "max_connection {} is more than the open-file limit ({}) allows: {most} at most (raise the limit: ulimit -n, systemd's LimitNOFILE)",
                self.max_connection,
                open_file_limit()
            );
            self.max_connection = most;
        }
        self
    }
}

/// The process's soft limit of open files.
pub(crate) fn open_file_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur as usize
    } else {
        1024
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            worker_threads: None,
            worker_num: 1,
            task_worker_num: 0,
            max_connection: default_max_connection(),
            package_max_length: 2 * 1024 * 1024,
            heartbeat_check_interval: None,
            heartbeat_idle_time: None,
            ping_interval: None,
            handshake_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(60),
            socket_buffer_size: 4 * 1024 * 1024,
            event_queue_size: 4096,
            shutdown_timeout: Duration::from_secs(3),
            log_level: LogLevel::Info,
            redis: None,
            redis_prefix: "laravel_database_".into(),
            redis_forward: true,
            pusher: Vec::new(),
            ssl_cert_file: None,
            ssl_key_file: None,
            allowed_origins: Vec::new(),
            max_connections_per_ip: 0,
            max_messages_per_second: 0,
            websocket_compression: false,
            websocket_subprotocol: Vec::new(),
            // Swoole's defaults.
            http_compression: true,
            http_compression_level: 1,
            http_compression_min_length: 20,
            enable_static_handler: false,
            document_root: None,
            static_handler_locations: Vec::new(),
            http_index_files: Vec::new(),
            upload_tmp_dir: std::env::temp_dir(),
            max_file_uploads: 20,
            max_multipart_body_parts: 1020,
        }
    }
}

pub const KNOWN_KEYS: &[&str] = &[
    "worker_threads",
    "max_connection",
    "package_max_length",
    "heartbeat_check_interval",
    "heartbeat_idle_time",
    "ping_interval",
    "handshake_timeout",
    "send_timeout",
    "socket_buffer_size",
    "event_queue_size",
    "shutdown_timeout",
    "log_level",
    "redis",
    "redis_prefix",
    "redis_forward",
    "pusher",
    "ssl_cert_file",
    "ssl_key_file",
    "allowed_origins",
    "max_connections_per_ip",
    "max_messages_per_second",
    "websocket_compression",
    "websocket_subprotocol",
    "http_compression",
    "http_compression_level",
    "http_compression_min_length",
    "enable_static_handler",
    "document_root",
    "static_handler_locations",
    "http_index_files",
    "upload_tmp_dir",
    "worker_num",
    "task_worker_num",
];

impl Config {
    /// The network threads of each worker: `worker_threads` when set, else the CPUs shared out
    /// among the workers, at least one each. Each worker holding as many as there are CPUs
    /// (4 threads and 2 PHP threads on 2 cores for `worker_num` 2) made them write each message
    /// as it came instead of several at once: the articles' foreach-push loop to 10k clients
    /// ran at 145-175k deliveries/s, 215-400k with one thread each (BENCHMARKS.md).
    pub fn network_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            (cpus / self.worker_num).max(1)
        })
    }

    /// Stores one setting, or explains what is wrong with it.
    pub fn apply(&mut self, key: &str, value: &Value) -> Result<(), ConfigError> {
        match key {
            "worker_threads" => self.worker_threads = Some(count(key, value, 0, 256)?),
            "worker_num" => self.worker_num = count(key, value, 1, 256)?,
            "task_worker_num" => self.task_worker_num = count(key, value, 0, 256)?,
            // Swoole takes both names.
            "max_connection" | "max_conn" => {
                self.max_connection = count(key, value, 1, 10_000_000)?
            }
            "package_max_length" => self.package_max_length = count(key, value, 16, 1 << 30)?,
            "heartbeat_check_interval" => {
                self.heartbeat_check_interval = Some(seconds(key, value)?)
            }
            "heartbeat_idle_time" => self.heartbeat_idle_time = Some(seconds(key, value)?),
            "ping_interval" => self.ping_interval = Some(seconds(key, value)?),
            "handshake_timeout" => self.handshake_timeout = seconds(key, value)?,
            "send_timeout" => self.send_timeout = seconds(key, value)?,
            "socket_buffer_size" => self.socket_buffer_size = count(key, value, 1024, 1 << 32)?,
            "event_queue_size" => self.event_queue_size = count(key, value, 1, 1 << 24)?,
            // Swoole's name for the same wait.
            "shutdown_timeout" | "max_wait_time" => self.shutdown_timeout = seconds(key, value)?,
            "log_level" => self.log_level = log_level(value)?,
            "redis" => self.redis = redis_url(value)?,
            "redis_prefix" => self.redis_prefix = string(key, value)?,
            "redis_forward" => self.redis_forward = boolean(key, value)?,
            "pusher" => self.pusher = crate::pusher::AppConfig::parse_all(value)?,
            "ssl_cert_file" => self.ssl_cert_file = path(key, value)?,
            "ssl_key_file" => self.ssl_key_file = path(key, value)?,
            "allowed_origins" => self.allowed_origins = origins(value)?,
            "max_connections_per_ip" => {
                self.max_connections_per_ip = count(key, value, 0, 10_000_000)?
            }
            "max_messages_per_second" => {
                self.max_messages_per_second = count(key, value, 0, 1_000_000)? as u32
            }
            "websocket_compression" => self.websocket_compression = boolean(key, value)?,
            "websocket_subprotocol" => self.websocket_subprotocol = subprotocols(value)?,
            "http_compression" => self.http_compression = boolean(key, value)?,
            "http_compression_level" => {
                self.http_compression_level = count(key, value, 1, 9)? as u32
            }
            "http_compression_min_length" => {
                self.http_compression_min_length = count(key, value, 0, 1 << 30)?
            }
            "enable_static_handler" => self.enable_static_handler = boolean(key, value)?,
            "document_root" => self.document_root = directory(key, value)?,
            "static_handler_locations" => self.static_handler_locations = locations(value)?,
            "http_index_files" => self.http_index_files = file_names(value)?,
            "upload_tmp_dir" => self.upload_tmp_dir = writable_directory(key, value)?,
            _ => {
                return swoole_setting(key, value).unwrap_or_else(|| {
                    Err(ConfigError(format!(
                        "unknown setting '{key}'; known settings: {}",
                        KNOWN_KEYS.join(", ")
                    )))
                })
            }
        }
        Ok(())
    }

    /// How long a connection may be silent before it is dropped: `heartbeat_idle_time`, or
    /// unless set twice `heartbeat_check_interval` when that is set (Swoole's default: ported
    /// settings often give the interval alone, 60 s, and with the idle time at its own 60 s the
    /// sweep after a ping dropped the client that answered it), or 60 s.
    pub fn idle_time(&self) -> Duration {
        let set_check = self.heartbeat_check_interval.filter(|c| !c.is_zero());
        (self.heartbeat_idle_time).unwrap_or(set_check.map_or(DEFAULT_IDLE, |check| check * 2))
    }

    /// How often the heartbeat sweep runs: `heartbeat_check_interval`, or unless set 5 s, or
    /// half of `heartbeat_idle_time` when that is set and shorter than 10 s (with the idle time
    /// alone at 4 s, a sweep every 5 s dropped a client that answered pings before any ping).
    pub fn check_interval(&self) -> Duration {
        let set_idle = self.heartbeat_idle_time.filter(|idle| !idle.is_zero());
        self.heartbeat_check_interval
            .unwrap_or(set_idle.map_or(DEFAULT_CHECK, |idle| DEFAULT_CHECK.min(idle / 2)))
    }

    /// How long a connection may be silent before it is pinged: `ping_interval`, or unless set
    /// 25 s, or half of the idle time when that is no longer (Swoole has no `ping_interval`:
    /// settings brought from it often drop idle clients after 10 or 20 s).
    pub fn ping_every(&self) -> Duration {
        let idle = self.idle_time();
        self.ping_interval
            .unwrap_or(match idle.is_zero() || idle > DEFAULT_PING {
                true => DEFAULT_PING,
                false => idle / 2,
            })
    }

    /// Checks the settings against each other, once all are applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let idle = self.idle_time();
        let ping = self.ping_every();
        if !idle.is_zero() && !ping.is_zero() && ping >= idle {
            let unless_set = match self.heartbeat_idle_time {
                Some(_) => "",
                None => ", unless set twice 'heartbeat_check_interval'",
            };
            return Err(ConfigError(format!(
                "setting 'ping_interval' ({ping:?}) must be shorter than 'heartbeat_idle_time' ({idle:?}{unless_set}), \
                 or clients are dropped before they are pinged"
            )));
        }
        if self.check_interval().is_zero() && (!idle.is_zero() || !ping.is_zero()) {
            return Err(ConfigError(
                "setting 'heartbeat_check_interval' is 0, so nothing would ping or drop idle clients; \
                 set 'ping_interval' and 'heartbeat_idle_time' to 0 as well to turn the heartbeat off"
                    .into(),
            ));
        }
        if self.enable_static_handler && self.document_root.is_none() {
            return Err(ConfigError(
                "setting 'enable_static_handler' needs 'document_root': the directory to serve"
                    .into(),
            ));
        }
        if self.worker_num > 1 && !self.pusher.is_empty() {
            // A presence channel's members and a channel's occupancy would each be one
            // worker's share.
            return Err(ConfigError(
                "setting 'pusher' needs 'worker_num' 1: the Pusher protocol is served by one process"
                    .into(),
            ));
        }
        if self.task_worker_num > 0 && !self.pusher.is_empty() {
            // A task worker would see none of the apps' channels.
            return Err(ConfigError(
                "setting 'pusher' needs 'task_worker_num' 0: the Pusher protocol is served by one process"
                    .into(),
            ));
        }
        if self.ssl_cert_file.is_some() != self.ssl_key_file.is_some() {
            return Err(ConfigError(
                "settings 'ssl_cert_file' and 'ssl_key_file' go together: give both for TLS, or neither".into(),
            ));
        }
        Ok(())
    }

    /// Whether a handshake with this Origin header may open a WebSocket.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        match origin {
            _ if self.allowed_origins.is_empty() => true,
            None => true,
            Some(origin) => {
                let origin = origin.trim().trim_end_matches('/');
                self.allowed_origins
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(origin))
            }
        }
    }
}

/// Swoole settings Surge has no key for. Accepted when they ask for what Surge does anyway
/// (`'daemonize' => false`, `'enable_coroutine' => false`), so that ported settings keep
/// working; refused otherwise, with how Surge does the same. None for a key Swoole lacks too.
fn swoole_setting(key: &str, value: &Value) -> Option<Result<(), ConfigError>> {
    // Numbers as the other settings take them: numeric strings too (env() gives strings).
    let n = integer(key, value).ok();
    let off = matches!(value, Value::Bool(false)) || n == Some(0);
    let on = matches!(value, Value::Bool(true)) || n == Some(1);
    let mode_1_to_3 = n.is_some_and(|n| (1..=3).contains(&n));
    let (as_here, how) = match key {
        "daemonize" => (off, "Surge stays in the foreground: run it under systemd, supervisord or Docker, which keep it running"),
        "log_file" => (false, "Surge logs to stderr: redirect it (2>>surge.log) or let systemd or supervisord keep it"),
        "pid_file" => (false, "Surge writes no pid file: $server->master_pid (in the start callback) is the process to signal"),
        "reactor_num" => (false, "Surge's network threads per worker are 'worker_threads'"),
        "max_request" => (off, "Surge does not restart a worker after a number of requests: reload() (or SIGUSR1) restarts the workers"),
        "task_max_request" => (off, "Surge does not restart a task worker after a number of tasks: reload(true) (or SIGUSR2) restarts the task workers"),
        // Mode 3 (a queue any free task worker takes from) is how tasks go here; 1 and 2 (sent
        // to a free one) give a program nothing more to count on.
        "task_ipc_mode" => (mode_1_to_3, "tasks go through one queue that any free task worker takes from (modes 1 to 3 are taken)"),
        "task_tmpdir" => (false, "large task data goes to files in the system's temporary directory: set the TMPDIR environment variable"),
        // 1 and 3 (round robin, to a free worker) promise nothing a program could count on
        // for a connection's messages; 4 and 5 (by IP, by uid) do.
        // Swoole's examples carry 128: the kernel's longest queue is at least that.
        "backlog" => (n.is_some_and(|n| n > 0), "Surge listens with the kernel's longest backlog (net.core.somaxconn): a number above 0 is taken as asking for it"),
        "dispatch_mode" => (mode_1_to_3, "a connection stays with the worker that accepted it (mode 2; 1 and 3 are taken as it); the kernel spreads new ones, not by IP or uid"),
        "enable_coroutine" | "task_enable_coroutine" => (off, "Surge has no coroutines: callbacks run one at a time; hand slow work to task workers"),
        "open_websocket_protocol" | "open_http_protocol" => (on, "Surge always speaks WebSocket and HTTP on its port"),
        "open_websocket_close_frame" => (off, "close frames are not handed to PHP: the close callback runs for every closed connection"),
        "open_websocket_ping_frame" => (off, "Surge answers pings itself and does not hand them to PHP"),
        "open_websocket_pong_frame" => (off, "pongs are not handed to PHP: they count as activity for the heartbeat"),
        // A worker that reload() stops finishes what is under way, as Swoole's async reload.
        "reload_async" => (on, "reload() stops each worker as at a stop (its HTTP requests get their answer, its clients are closed with 1001), never at once"),
        "open_http2_protocol" => (off, "Surge speaks HTTP/1.1 (a proxy in front can speak HTTP/2)"),
        _ => return None,
    };
    Some(match as_here {
        true => Ok(()),
        false => Err(ConfigError(format!("setting '{key}' is Swoole's: {how}"))),
    })
}

/// An int, as PHP's coercive typing reads one: also a numeric string (settings read from the
/// environment, `env('SURGE_WORKERS')`) and a float without fraction.
fn integer(key: &str, value: &Value) -> Result<i64, ConfigError> {
    match value {
        Value::Int(n) => Ok(*n),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Ok(*f as i64),
        Value::Str(s) if s.trim().parse::<i64>().is_ok() => Ok(s.trim().parse().expect("checked")),
        other => Err(ConfigError(format!(
            "setting '{key}' must be an int, got {}",
            other.kind()
        ))),
    }
}

fn count(key: &str, value: &Value, min: u64, max: u64) -> Result<usize, ConfigError> {
    let n = integer(key, value)?;
    if n < min as i64 || n as u64 > max {
        return Err(ConfigError(format!(
            "setting '{key}' must be between {min} and {max}, got {n}"
        )));
    }
    Ok(n as usize)
}

fn seconds(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    let secs = match value {
        Value::Int(n) => *n as f64,
        Value::Float(f) => *f,
        Value::Str(s) if s.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
            s.trim().parse().expect("checked")
        }
        other => {
            return Err(ConfigError(format!(
                "setting '{key}' must be a number of seconds (int or float), got {}",
                other.kind()
            )))
        }
    };
    if !(0.0..=86_400.0 * 365.0).contains(&secs) {
        return Err(ConfigError(format!(
            "setting '{key}' must be between 0 and one year in seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn string(key: &str, value: &Value) -> Result<String, ConfigError> {
    match value {
        Value::Str(s) => Ok(s.clone()),
        other => Err(ConfigError(format!(
            "setting '{key}' must be a string, got {}",
            other.kind()
        ))),
    }
}

/// A file name; empty or null: none.
fn path(key: &str, value: &Value) -> Result<Option<String>, ConfigError> {
    match value {
        Value::Null => Ok(None),
        Value::Str(s) if s.is_empty() => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        other => Err(ConfigError(format!(
            "setting '{key}' must be a file name (string), got {}",
            other.kind()
        ))),
    }
}

/// An existing directory, resolved once (the static handler tells by it what is inside).
fn directory(key: &str, value: &Value) -> Result<Option<PathBuf>, ConfigError> {
    let Some(dir) = path(key, value)? else {
        return Ok(None);
    };
    match std::fs::canonicalize(&dir) {
        Ok(resolved) if resolved.is_dir() => Ok(Some(resolved)),
        Ok(_) => Err(ConfigError(format!(
            "setting '{key}': {dir} is not a directory"
        ))),
        Err(e) => Err(ConfigError(format!("setting '{key}': {dir}: {e}"))),
    }
}

/// An existing directory a file can be made in (tried now, so that a read-only one is said at
/// `set()` rather than by every upload failing); unset: the system's temporary directory.
fn writable_directory(key: &str, value: &Value) -> Result<PathBuf, ConfigError> {
    let Some(dir) = directory(key, value)? else {
        return Ok(std::env::temp_dir());
    };
    match tempfile::tempfile_in(&dir) {
        Ok(_) => Ok(dir),
        Err(e) => Err(ConfigError(format!(
            "setting '{key}': cannot write in {}: {e}",
            dir.display()
        ))),
    }
}

fn locations(value: &Value) -> Result<Vec<String>, ConfigError> {
    strings(
        value,
        "static_handler_locations",
        "URL paths like ['/assets']",
        |s| s.starts_with('/'),
    )
}

/// One subprotocol (Swoole's way) or a list, each a token as RFC 6455 requires.
fn subprotocols(value: &Value) -> Result<Vec<String>, ConfigError> {
    let list = match value {
        Value::Str(_) => Value::List(vec![value.clone()]),
        other => other.clone(),
    };
    strings(
        &list,
        "websocket_subprotocol",
        "subprotocol names like 'chat' or ['graphql-transport-ws']",
        |s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        },
    )
}

fn file_names(value: &Value) -> Result<Vec<String>, ConfigError> {
    strings(
        value,
        "http_index_files",
        "file names like ['index.html']",
        |s| !s.is_empty() && !s.contains('/') && s != "." && s != "..",
    )
}

/// A list of strings each of which passes `valid`; the error says they should be `what` and
/// names the first that is not.
fn strings(
    value: &Value,
    key: &str,
    what: &str,
    valid: impl Fn(&str) -> bool,
) -> Result<Vec<String>, ConfigError> {
    let wrong = |got: String| ConfigError(format!("setting '{key}' must list {what}, got {got}"));
    let Value::List(items) = value else {
        return Err(wrong(value.kind().to_string()));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Str(s) if valid(s) => Ok(s.clone()),
            Value::Str(s) => Err(wrong(format!("'{s}'"))),
            other => Err(wrong(format!("a {}", other.kind()))),
        })
        .collect()
}

fn origins(value: &Value) -> Result<Vec<String>, ConfigError> {
    let Value::List(items) = value else {
        return Err(ConfigError(format!(
            "setting 'allowed_origins' must be a list of origins like ['https://example.com'], got {}",
            value.kind()
        )));
    };
    items
        .iter()
        .map(|item| match item {
            Value::Str(s) if s.starts_with("http://") || s.starts_with("https://") => {
                let origin = s.trim_end_matches('/');
                if origin.split("://").nth(1).is_some_and(|host| !host.is_empty() && !host.contains('/')) {
                    Ok(origin.to_owned())
                } else {
                    Err(ConfigError(format!(
                        "setting 'allowed_origins': '{s}' is not an origin (scheme://host[:port], no path)"
                    )))
                }
            }
            Value::Str(s) => Err(ConfigError(format!(
                "setting 'allowed_origins': '{s}' is not an origin; write it as http(s)://host[:port]"
            ))),
            other => Err(ConfigError(format!("setting 'allowed_origins' must list strings, got {}", other.kind()))),
        })
        .collect()
}

fn boolean(key: &str, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Int(0) => Ok(false),
        Value::Int(1) => Ok(true),
        // As read from the environment.
        Value::Str(s) if matches!(s.as_str(), "0" | "" | "false") => Ok(false),
        Value::Str(s) if matches!(s.as_str(), "1" | "true") => Ok(true),
        other => Err(ConfigError(format!(
            "setting '{key}' must be a bool, got {}",
            other.kind()
        ))),
    }
}

/// The URL schemes of the `redis` setting (as the redis crate reads them; `unix://` is
/// predis's name for a socket), in any case, as URL schemes are.
const REDIS_SCHEMES: [&str; 4] = ["redis://", "rediss://", "redis+unix://", "unix://"];

fn starts_with_ignoring_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

fn redis_url(value: &Value) -> Result<Option<String>, ConfigError> {
    match value {
        Value::Null => Ok(None),
        Value::Str(s) if s.is_empty() => Ok(None),
        Value::Str(s) if REDIS_SCHEMES.iter().any(|scheme| starts_with_ignoring_case(s, scheme)) => {
            Ok(Some(s.clone()))
        }
        Value::Str(s) => Err(ConfigError(format!(
            "setting 'redis' must be a URL like redis://[[user]:password@]host:port[/db], rediss:// (TLS) or redis+unix:///path/to/redis.sock[?db=0&pass=...], got '{}'",
            crate::redis_bridge::redacted(s)
        ))),
        other => Err(ConfigError(format!(
            "setting 'redis' must be a URL string, got {}",
            other.kind()
        ))),
    }
}

/// Swoole's SWOOLE_LOG_DEBUG (0) ... SWOOLE_LOG_NONE (6), as Surge's levels.
const SWOOLE_LOG_LEVELS: [&str; 7] = ["debug", "trace", "info", "info", "warn", "error", "off"];

fn log_level(value: &Value) -> Result<LogLevel, ConfigError> {
    let name = match value {
        Value::Int(n @ 0..=6) => SWOOLE_LOG_LEVELS[*n as usize].into(),
        Value::Str(s) if matches!(s.trim().parse::<usize>(), Ok(0..=6)) => {
            SWOOLE_LOG_LEVELS[s.trim().parse::<usize>().expect("checked")].into()
        }
        Value::Str(s) => s.to_ascii_lowercase(),
        other => {
            return Err(ConfigError(format!(
                "setting 'log_level' must be off, error, warn, info or debug (or Swoole's SWOOLE_LOG_* 0-6), got {}",
                other.kind()
            )))
        }
    };
    Ok(match name.as_str() {
        "off" | "none" => LogLevel::Off,
        "error" => LogLevel::Error,
        "warn" | "warning" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" | "trace" => LogLevel::Debug,
        _ => {
            return Err(ConfigError(format!(
                "setting 'log_level' must be one of off, error, warn, info, debug; got '{name}'"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let err = Config::default()
            .apply("heartbeat_idel_time", &Value::Int(3))
            .unwrap_err();
        assert!(err.0.contains("'heartbeat_idel_time'"), "{err}");
    }

    #[test]
    fn redis_urls_in_every_scheme_redis_reads_and_no_password_in_a_refusal() {
        let mut c = Config::default();
        for url in [
            "redis://:pw@127.0.0.1:6379/2",
            "REDIS://127.0.0.1",
            "rediss://cache:6380/#insecure",
            "redis+unix:///run/redis.sock?db=1&pass=pw",
            "unix:///run/redis.sock",
        ] {
            c.apply("redis", &Value::Str(url.into())).unwrap();
            assert_eq!(c.redis.as_deref(), Some(url));
        }
        let err = (c.apply("redis", &Value::Str("tcp://:s3cret@127.0.0.1".into()))).unwrap_err();
        assert!(err.0.ends_with("got 'tcp://:***@127.0.0.1'"), "{err}");
    }

    #[test]
    fn websocket_subprotocol_is_one_token_or_a_list_of_them() {
        let mut c = Config::default();
        c.apply("websocket_subprotocol", &Value::Str("chat".into()))
            .unwrap();
        assert_eq!(c.websocket_subprotocol, ["chat"]);
        let list = Value::List(vec![
            Value::Str("v12.stomp".into()),
            Value::Str("mqtt".into()),
        ]);
        c.apply("websocket_subprotocol", &list).unwrap();
        assert_eq!(c.websocket_subprotocol, ["v12.stomp", "mqtt"]);
        for bad in ["", "a,b", "two words"] {
            let err = c
                .apply("websocket_subprotocol", &Value::Str(bad.into()))
                .unwrap_err();
            assert!(err.0.contains("subprotocol names"), "{err}");
        }
    }

    #[test]
    fn wrong_type_is_named() {
        let err = Config::default()
            .apply("max_connection", &Value::Str("ten".into()))
            .unwrap_err();
        assert_eq!(err.0, "setting 'max_connection' must be an int, got string");
    }

    #[test]
    fn numbers_read_from_the_environment_are_taken() {
        let mut c = Config::default();
        c.apply("max_connection", &Value::Str(" 10".into()))
            .unwrap();
        c.apply("heartbeat_idle_time", &Value::Str("30.5".into()))
            .unwrap();
        c.apply("websocket_compression", &Value::Str("true".into()))
            .unwrap();
        c.apply("worker_num", &Value::Float(2.0)).unwrap();
        assert_eq!(c.max_connection, 10);
        assert_eq!(c.idle_time(), Duration::from_millis(30_500));
        assert!(c.websocket_compression);
        assert_eq!(c.worker_num, 2);
        assert!(c.apply("worker_num", &Value::Float(2.5)).is_err());
    }

    #[test]
    fn seconds_accept_floats() {
        let mut c = Config::default();
        c.apply("ping_interval", &Value::Float(0.25)).unwrap();
        assert_eq!(c.ping_every(), Duration::from_millis(250));
    }

    #[test]
    fn swoole_worker_settings() {
        let mut c = Config::default();
        c.apply("worker_num", &Value::Int(4)).unwrap();
        assert_eq!(c.worker_num, 4);
        c.apply("task_worker_num", &Value::Int(2)).unwrap();
        assert_eq!(c.task_worker_num, 2);
        assert!(c.apply("task_worker_num", &Value::Int(257)).is_err());
        assert!(c.apply("worker_num", &Value::Int(0)).is_err());
        c.pusher = crate::pusher::AppConfig::parse_all(&Value::List(vec![Value::Map(vec![
            ("app_id".into(), Value::Str("1".into())),
            ("key".into(), Value::Str("k".into())),
            ("secret".into(), Value::Str("s".into())),
        ])]))
        .unwrap();
        assert!(c.validate().unwrap_err().0.contains("'worker_num' 1"));
        c.worker_num = 1;
        assert!(c.validate().unwrap_err().0.contains("'task_worker_num' 0"));
        c.task_worker_num = 0;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn ping_must_come_before_idle_drop() {
        let mut c = Config::default();
        c.apply("ping_interval", &Value::Int(30)).unwrap();
        c.apply("heartbeat_idle_time", &Value::Int(10)).unwrap();
        assert!(c.validate().unwrap_err().0.contains("'ping_interval'"));
        // Swoole's settings, which have no ping_interval: pinged at half the idle time.
        let mut c = Config::default();
        c.apply("heartbeat_check_interval", &Value::Int(5)).unwrap();
        c.apply("heartbeat_idle_time", &Value::Int(10)).unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(c.ping_every(), Duration::from_secs(5));
        c.apply("heartbeat_idle_time", &Value::Int(60)).unwrap();
        assert_eq!(c.ping_every(), Duration::from_secs(25));
    }

    #[test]
    fn the_check_interval_fits_a_short_idle_time_when_only_that_is_set() {
        let mut c = Config::default();
        c.apply("heartbeat_idle_time", &Value::Int(4)).unwrap();
        assert_eq!(c.check_interval(), Duration::from_secs(2));
        c.validate().unwrap();
        c.apply("heartbeat_idle_time", &Value::Int(60)).unwrap();
        assert_eq!(c.check_interval(), DEFAULT_CHECK);
        c.apply("heartbeat_idle_time", &Value::Int(0)).unwrap();
        assert_eq!(c.check_interval(), DEFAULT_CHECK);
        c.apply("heartbeat_check_interval", &Value::Int(3)).unwrap();
        c.apply("heartbeat_idle_time", &Value::Int(4)).unwrap();
        assert_eq!(c.check_interval(), Duration::from_secs(3));
    }

    #[test]
    fn the_idle_time_is_twice_the_check_interval_when_only_that_is_set() {
        let mut c = Config::default();
        assert_eq!(
            (c.check_interval(), c.idle_time()),
            (DEFAULT_CHECK, DEFAULT_IDLE)
        );
        // As Swoole: with the idle time at its own 60 s, the sweep after the one that pinged a
        // client dropped it, pong or not.
        c.apply("heartbeat_check_interval", &Value::Int(60))
            .unwrap();
        assert_eq!(c.idle_time(), Duration::from_secs(120));
        c.validate().unwrap();
        c.apply("heartbeat_idle_time", &Value::Int(150)).unwrap();
        assert_eq!(c.idle_time(), Duration::from_secs(150));
        // The heartbeat off takes all three at 0, as before.
        let mut c = Config::default();
        c.apply("heartbeat_check_interval", &Value::Int(0)).unwrap();
        assert_eq!(c.idle_time(), DEFAULT_IDLE);
        assert!(c.validate().is_err());
        // A ping_interval past the derived idle time names where that comes from.
        let mut c = Config::default();
        c.apply("heartbeat_check_interval", &Value::Int(5)).unwrap();
        c.apply("ping_interval", &Value::Int(25)).unwrap();
        let error = c.validate().unwrap_err().0;
        assert!(
            error.contains("(10s, unless set twice 'heartbeat_check_interval')"),
            "{error}"
        );
    }

    #[test]
    fn tls_needs_both_files() {
        let mut c = Config::default();
        c.apply("ssl_cert_file", &Value::Str("/etc/surge/cert.pem".into()))
            .unwrap();
        assert!(c.validate().unwrap_err().0.contains("'ssl_key_file'"));
        c.apply("ssl_key_file", &Value::Str("/etc/surge/key.pem".into()))
            .unwrap();
        c.validate().unwrap();
        assert_eq!(c.ssl_key_file.as_deref(), Some("/etc/surge/key.pem"));
        assert!(c
            .apply("ssl_cert_file", &Value::Int(1))
            .unwrap_err()
            .0
            .contains("'ssl_cert_file'"));
    }

    #[test]
    fn allowed_origins() {
        let mut c = Config::default();
        assert!(
            c.origin_allowed(Some("https://evil.example")),
            "empty list: any origin"
        );
        let list =
            |items: &[&str]| Value::List(items.iter().map(|s| Value::Str(s.to_string())).collect());
        c.apply(
            "allowed_origins",
            &list(&["https://App.example.com/", "http://localhost:8080"]),
        )
        .unwrap();
        assert!(c.origin_allowed(Some("https://app.example.com")));
        assert!(c.origin_allowed(Some("http://localhost:8080")));
        assert!(!c.origin_allowed(Some("http://localhost:8081")));
        assert!(!c.origin_allowed(Some("https://app.example.com.evil.example")));
        assert!(!c.origin_allowed(Some("null")));
        assert!(
            c.origin_allowed(None),
            "no Origin header: not a browser, nothing to check"
        );
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "https://",
        ] {
            let err = c.apply("allowed_origins", &list(&[bad])).unwrap_err();
            assert!(err.0.contains(bad), "{err}");
        }
        assert!(c
            .apply("allowed_origins", &Value::Str("https://a.example".into()))
            .is_err());
    }

    #[test]
    fn connection_and_message_limits() {
        let mut c = Config::default();
        assert_eq!(
            (c.max_connections_per_ip, c.max_messages_per_second),
            (0, 0),
            "unlimited by default"
        );
        c.apply("max_connections_per_ip", &Value::Int(10)).unwrap();
        c.apply("max_messages_per_second", &Value::Int(50)).unwrap();
        assert_eq!(
            (c.max_connections_per_ip, c.max_messages_per_second),
            (10, 50)
        );
        let err = c
            .apply("max_messages_per_second", &Value::Int(-1))
            .unwrap_err();
        assert!(
            err.0
                .starts_with("setting 'max_messages_per_second' must be between 0"),
            "{err}"
        );
    }

    #[test]
    fn log_level_names() {
        let mut c = Config::default();
        c.apply("log_level", &Value::Str("WARN".into())).unwrap();
        assert_eq!(c.log_level, LogLevel::Warn);
        assert!(c.apply("log_level", &Value::Str("loud".into())).is_err());
    }
}
