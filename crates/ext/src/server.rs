//! `Surge\WebSocket\Server`: Swoole's WebSocket server API over the Surge engine.
//!
//! Every method takes `&self` and keeps state in `Cell`/`RefCell`, and no borrow is held while
//! a PHP callback runs, so callbacks may call any method (push, on, tick, shutdown ...).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ext_php_rs::convert::IntoZval;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::prelude::*;
use ext_php_rs::types::{ZendCallable, ZendClassObject, ZendHashTable, Zval};
use ext_php_rs::zend::bailout;
use surge_engine::{ClientInfo, Closed, Config, Engine, Handler, Payload, PushError, Value};

use crate::callable::Callable;
use crate::callbacks::{Callbacks, Kind, KINDS};
use crate::connections::Connections;
use crate::convert::{bytes_arg, int_arg, setting_value, setting_zval, type_name, Assoc, Int};
use crate::event_loop::{self, Ended};
use crate::exception::error;
use crate::frame::Frames;
use crate::pipe_message;
use crate::tasks::{self, Tasks};
use crate::timers::Timers;
use crate::unanswered::{self, Client};

pub const OPCODE_TEXT: i64 = 1;
pub const OPCODE_BINARY: i64 = 2;
pub const OPCODE_PING: i64 = 9;

/// Swoole's constructor arguments, with its values: taken so that ported code runs unchanged.
pub const SWOOLE_BASE: i64 = 1;
pub const SWOOLE_PROCESS: i64 = 2;
pub const SWOOLE_SOCK_TCP: i64 = 1;
pub const SWOOLE_SOCK_TCP6: i64 = 3;
pub const SWOOLE_SSL: i64 = 512;
/// push()'s `$flags`: the frame ends its message (all Surge sends); compress it.
pub const SWOOLE_WEBSOCKET_FLAG_FIN: i64 = 1;
pub const SWOOLE_WEBSOCKET_FLAG_COMPRESS: i64 = 2;
/// Swoole's log levels, for `log_level` (see `Config`'s reading of them).
pub const SWOOLE_LOG_LEVELS: [(&str, i64); 7] = [
    ("SWOOLE_LOG_DEBUG", 0),
    ("SWOOLE_LOG_TRACE", 1),
    ("SWOOLE_LOG_INFO", 2),
    ("SWOOLE_LOG_NOTICE", 3),
    ("SWOOLE_LOG_WARNING", 4),
    ("SWOOLE_LOG_ERROR", 5),
    ("SWOOLE_LOG_NONE", 6),
];

#[php_class]
#[php(name = "Surge\\WebSocket\\Server")]
pub struct Server {
    host: String,
    port: Cell<u16>,
    pub(crate) config: RefCell<Config>,
    pub(crate) callbacks: RefCell<Callbacks>,
    pub(crate) engine: RefCell<Option<Rc<Engine>>>,
    pub(crate) timers: RefCell<Timers>,
    pub(crate) frames: Frames,
    pub(crate) stop_requested: Cell<bool>,
    running: Cell<bool>,
    /// start() served and returned: its callbacks, timers and Redis subscriptions are released
    /// then (callbacks may hold the server, in a cycle PHP's GC cannot see), so it serves once.
    served: Cell<bool>,
    /// Channels given to subscribe() before start().
    pending_subscriptions: RefCell<Vec<String>>,
    /// This process's worker: 0 without worker processes, -1 in their master.
    pub(crate) worker_id: Cell<i64>,
    /// The process that called start().
    pub(crate) master_pid: Cell<u32>,
    pub(crate) tasks: Tasks,
    /// Callables given to defer(), run after the batch of events being handled.
    pub(crate) deferred: RefCell<std::collections::VecDeque<Callable>>,
    /// The connection whose close callback is running, as it was (see `Event::Close`).
    pub(crate) closing: RefCell<Option<(u64, Box<Closed>)>>,
    /// The constructor was given SWOOLE_SSL: start() needs a certificate.
    tls_asked: bool,
    /// What set() was given, for `$server->setting` (later calls replace a key's value).
    given_settings: RefCell<Vec<(String, Value)>>,
}

impl Server {
    /// The connection `fd` as it was when it closed, while its close callback runs.
    fn closing_fd(&self, fd: u64) -> Option<std::cell::Ref<'_, Closed>> {
        std::cell::Ref::filter_map(self.closing.borrow(), |closing| match closing {
            Some((id, closed)) if *id == fd => Some(&**closed),
            _ => None,
        })
        .ok()
    }
}

fn fd_arg(Int(fd): Int) -> u64 {
    // Negative fds never exist; mapping them to 0 (never allocated) makes every lookup fail.
    u64::try_from(fd).unwrap_or(0)
}

fn fds(list: Option<Vec<Int>>) -> Vec<u64> {
    list.unwrap_or_default().into_iter().map(fd_arg).collect()
}

/// A message from PHP: text (the default) must be UTF-8; binary and ping take any bytes. A
/// string's bytes go straight into the frame; the error text is only built for an error.
fn payload(data: &Zval, opcode: Option<Int>, what: &str) -> PhpResult<Payload> {
    let converted;
    let bytes = match data.zend_str() {
        Some(s) => s.as_bytes(),
        None => {
            converted = bytes_arg(data, &format!("{what} data"))?;
            &converted[..]
        }
    };
    Ok(match opcode.map_or(OPCODE_TEXT, |Int(o)| o) {
        OPCODE_TEXT => Payload::text(std::str::from_utf8(bytes).map_err(|_| {
            error(format!(
                "{what} data is not valid UTF-8; send it with WEBSOCKET_OPCODE_BINARY"
            ))
        })?),
        OPCODE_BINARY => Payload::binary(bytes),
        OPCODE_PING => Payload::ping(bytes),
        other => {
            return Err(error(format!(
                "opcode {other} cannot be sent; use WEBSOCKET_OPCODE_TEXT, _BINARY or _PING"
            )))
        }
    })
}

/// push()'s Swoole `$flags`: true or FIN (COMPRESS may be added: `websocket_compression`
/// decides here); a fragment is refused, as every push here is a whole message.
fn whole_message(flags: &Zval) -> PhpResult<()> {
    let fin = match flags.bool() {
        Some(finish) => finish,
        None => int_arg(flags, "push flags")? & SWOOLE_WEBSOCKET_FLAG_FIN != 0,
    };
    if !fin {
        return Err(error(
            "push() sends whole messages: a fragment (flags without SWOOLE_WEBSOCKET_FLAG_FIN) cannot be sent",
        ));
    }
    Ok(())
}

/// A channel name or a list of them.
fn names_arg(value: &Zval, what: &str) -> PhpResult<Vec<String>> {
    if let Some(name) = value.str() {
        return Ok(vec![name.to_owned()]);
    }
    if value.is_string() {
        return Err(error(format!("{what}() takes channel names as UTF-8 text")));
    }
    if let Some(list) = value.array() {
        return list
            .values()
            .map(|v| {
                v.str()
                    .map(str::to_owned)
                    .ok_or_else(|| error(format!("{what}() takes channel names as UTF-8 strings")))
            })
            .collect();
    }
    Err(error(format!(
        "{what}() takes a channel name or an array of them, got {}",
        type_name(value)
    )))
}

fn timer_delay(ms: i64) -> PhpResult<Duration> {
    if !(1..=86_400_000 * 365).contains(&ms) {
        return Err(error(format!(
            "timer interval must be between 1 and 31536000000 ms, got {ms}"
        )));
    }
    Ok(Duration::from_millis(ms as u64))
}

fn handler_for(kind: Kind) -> Option<Handler> {
    match kind {
        Kind::Engine(handler) => Some(handler),
        _ => None,
    }
}

impl Server {
    pub(crate) fn engine(&self) -> Option<Rc<Engine>> {
        self.engine.borrow().clone()
    }

    /// The engine's callbacks registered so far, for `Engine::start`.
    pub(crate) fn registered_handlers(&self) -> Vec<Handler> {
        let callbacks = self.callbacks.borrow();
        KINDS
            .iter()
            .filter(|(_, kind)| callbacks.has(*kind))
            .filter_map(|(_, kind)| handler_for(*kind))
            .collect()
    }

    pub(crate) fn subscribe_pending(&self, engine: &Engine) {
        if let Some(redis) = engine.redis() {
            for name in self.pending_subscriptions.take() {
                redis.subscribe(&name);
            }
        }
    }

    pub(crate) fn set_running(&self, running: bool, port: Option<u16>) {
        self.running.set(running);
        if let Some(port) = port {
            self.port.set(port);
        }
    }
}

#[php_impl]
impl Server {
    /// Creates a server that will listen on `$host:$port` (port 0 picks a free port).
    /// `$mode` and `$sock_type` are Swoole's: either mode serves alike; SWOOLE_SSL in
    /// `$sock_type` makes start() insist on `ssl_cert_file` (TLS comes from the settings).
    pub fn __construct(
        host: String,
        port: Option<Int>,
        mode: Option<Int>,
        sock_type: Option<Int>,
    ) -> PhpResult<Self> {
        let port = port.map_or(0, |Int(p)| p);
        let port = u16::try_from(port)
            .map_err(|_| error(format!("port must be between 0 and 65535, got {port}")))?;
        if let Some(Int(mode)) = mode.filter(|Int(m)| ![SWOOLE_BASE, SWOOLE_PROCESS].contains(m)) {
            return Err(error(format!(
                "mode must be SWOOLE_BASE or SWOOLE_PROCESS (both serve alike here), got {mode}"
            )));
        }
        let sock_type = sock_type.map_or(SWOOLE_SOCK_TCP, |Int(t)| t);
        if ![SWOOLE_SOCK_TCP, SWOOLE_SOCK_TCP6].contains(&(sock_type & !SWOOLE_SSL)) {
            return Err(error(format!(
                "socket type must be SWOOLE_SOCK_TCP or SWOOLE_SOCK_TCP6 (with | SWOOLE_SSL for TLS), got {sock_type}"
            )));
        }
        Ok(Server {
            host,
            port: Cell::new(port),
            config: RefCell::new(Config::default()),
            callbacks: RefCell::default(),
            engine: RefCell::new(None),
            timers: RefCell::default(),
            frames: Frames::default(),
            stop_requested: Cell::new(false),
            running: Cell::new(false),
            served: Cell::new(false),
            pending_subscriptions: RefCell::default(),
            worker_id: Cell::new(0),
            master_pid: Cell::new(std::process::id()),
            tasks: Tasks::default(),
            deferred: RefCell::default(),
            closing: RefCell::new(None),
            tls_asked: sock_type & SWOOLE_SSL != 0,
            given_settings: RefCell::default(),
        })
    }

    /// The host given to the constructor.
    #[php(getter)]
    pub fn get_host(&self) -> String {
        self.host.clone()
    }

    /// The port listened on (the real one once started, when 0 was given).
    #[php(getter)]
    pub fn get_port(&self) -> i64 {
        i64::from(self.port.get())
    }

    /// This process's worker id: 0 to worker_num - 1 in a worker, -1 in the master of worker
    /// processes, 0 without them.
    #[php(getter, name = "worker_id")]
    pub fn get_worker_id(&self) -> i64 {
        self.worker_id.get()
    }

    /// True in a task worker (worker ids from worker_num on).
    #[php(getter, name = "taskworker")]
    pub fn get_taskworker(&self) -> bool {
        self.worker_id.get() >= self.config.borrow().worker_num as i64
    }

    /// This process's id.
    #[php(getter, name = "worker_pid")]
    pub fn get_worker_pid(&self) -> i64 {
        i64::from(std::process::id())
    }

    /// The id of the process that called start() (the master of worker processes).
    #[php(getter, name = "master_pid")]
    pub fn get_master_pid(&self) -> i64 {
        i64::from(self.master_pid.get())
    }

    /// Swoole's manager process: its work (starting workers again, workerError) is the
    /// master's here, so its id.
    #[php(getter, name = "manager_pid")]
    pub fn get_manager_pid(&self) -> i64 {
        self.get_master_pid()
    }

    /// Swoole's getMasterPid(): `master_pid`.
    #[php(name = "getMasterPid")]
    pub fn master_pid_method(&self) -> i64 {
        self.get_master_pid()
    }

    /// Swoole's getManagerPid(): `manager_pid`, the master's id.
    #[php(name = "getManagerPid")]
    pub fn manager_pid_method(&self) -> i64 {
        self.get_master_pid()
    }

    /// Swoole's getWorkerId(): `worker_id`.
    #[php(name = "getWorkerId")]
    pub fn worker_id_method(&self) -> i64 {
        self.get_worker_id()
    }

    /// Swoole's getWorkerPid(): `worker_pid`.
    #[php(name = "getWorkerPid")]
    pub fn worker_pid_method(&self) -> i64 {
        self.get_worker_pid()
    }

    /// Applies settings; an unknown key or a wrong type throws Surge\Exception naming it, and
    /// then none of the given settings is applied.
    pub fn set(&self, settings: &ZendHashTable) -> PhpResult<bool> {
        if self.running.get() {
            return Err(error("settings cannot change after start()"));
        }
        let mut config = self.config.borrow().clone();
        let mut given = Vec::new();
        for (key, value) in settings.iter() {
            let key = key.to_string();
            if value.is_object() || value.is_resource() {
                return Err(error(format!(
                    "setting '{key}' must be a value such as an int, a string or an array, got {}",
                    type_name(value)
                )));
            }
            let value = setting_value(value).ok_or_else(|| {
                error(format!(
                    "setting '{key}' nests arrays too deep (or holds an object)"
                ))
            })?;
            config.apply(&key, &value).map_err(|e| error(e.0))?;
            given.push((key, value));
        }
        // Settings that go together (the certificate and its key, the heartbeat's three) are
        // checked by start(): Swoole code gives them in several set() calls.
        *self.config.borrow_mut() = config;
        let mut settings = self.given_settings.borrow_mut();
        for (key, value) in given {
            settings.retain(|(k, _)| *k != key);
            settings.push((key, value));
        }
        Ok(true)
    }

    /// Swoole's `$server->setting`: what set() was given, with `worker_num` and
    /// `task_worker_num` always there (Swoole's way to tell a task worker is
    /// `$workerId >= $server->setting['worker_num']`).
    #[php(getter, name = "setting")]
    pub fn get_setting(&self) -> PhpResult<Zval> {
        let config = self.config.borrow();
        let mut settings = self.given_settings.borrow().clone();
        for (key, n) in [
            ("worker_num", config.worker_num),
            ("task_worker_num", config.task_worker_num),
        ] {
            if !settings.iter().any(|(k, _)| k == key) {
                settings.push((key.to_string(), Value::Int(n as i64)));
            }
        }
        setting_zval(&Value::Map(settings))
    }

    /// Registers the callable for an event: start, workerStart, open, message, close, request,
    /// shutdown. `null` removes it. The callable is resolved now, in the caller's scope (see
    /// `callable.rs`), so a class may register its private methods.
    pub fn on(&self, event: String, callback: &Zval) -> PhpResult<bool> {
        self.refuse_once_served("a callback registered now would never be called")?;
        let Some(kind) = Kind::parse(&event) else {
            let known: Vec<&str> = KINDS.iter().map(|(n, _)| *n).collect();
            return Err(error(format!(
                "unknown event '{event}'; the events are: {}",
                known.join(", ")
            )));
        };
        let callback = if callback.is_null() {
            None
        } else {
            let callable = Callable::new(callback);
            Some(
                callable
                    .ok_or_else(|| error(format!("the callback for '{event}' is not callable")))?,
            )
        };
        let present = callback.is_some();
        let replaced = self.callbacks.borrow_mut().set(kind, callback);
        if let (Some(engine), Some(handler)) = (self.engine(), handler_for(kind)) {
            engine.set_handler(handler, present);
        }
        drop(replaced);
        Ok(true)
    }

    /// Listens and serves until SIGINT/SIGTERM or shutdown(); then closes every client with
    /// 1001, runs the shutdown callback and returns. A server serves once. After a fatal error
    /// in a callback, closes every client with 1011, stops, and lets PHP end the script as a
    /// fatal error does.
    pub fn start(self_: &mut ZendClassObject<Server>) -> PhpResult<bool> {
        if self_.running.get() {
            return Err(error("the server is already running"));
        }
        if self_.tls_asked && self_.config.borrow().ssl_cert_file.is_none() {
            return Err(error(
                "the server was made with SWOOLE_SSL: set ssl_cert_file and ssl_key_file for its certificate",
            ));
        }
        if self_.served.get() {
            return Err(error(
                "this server has served and stopped: create a new Surge\\WebSocket\\Server to serve again",
            ));
        }
        surge_engine::stop_on_hangup();
        // PHP ends a script whose output fails (stdout a pipe whose reader left, /dev/full) as
        // a client that went away, unless told to ignore it: the server died at its next echo.
        // It serves on, its output off.
        let yes = true.into_zval(false)?;
        ZendCallable::try_from_name("ignore_user_abort")?.try_call(vec![&yes])?;
        let mut this = Zval::new();
        this.set_object(&mut self_.std);
        let ended = event_loop::run(self_, &this)?;
        self_.served.set(true);
        drop(this);
        match ended {
            Ended::Stopped => Ok(true),
            Ended::Worker => {
                crate::supervisor::exit_worker();
                Ok(true)
            }
            Ended::Exited => Ok(false),
            // SAFETY: nothing of ours is left on the stack between here and the catch that
            // ext-php-rs puts around this method, which raises the bailout on to PHP.
            Ended::Fatal => unsafe { bailout() },
        }
    }

    /// Queues a message for `$fd`. False (and no warning) if the connection is gone or closing,
    /// or the client is too slow and is being closed. `$flags` is Swoole's: true or
    /// SWOOLE_WEBSOCKET_FLAG_FIN (with _COMPRESS, which `websocket_compression` decides here);
    /// a fragment (no FIN) cannot be sent.
    pub fn push(
        &self,
        fd: Int,
        data: &Zval,
        opcode: Option<Int>,
        flags: Option<&Zval>,
    ) -> PhpResult<bool> {
        if let Some(flags) = flags {
            whole_message(flags)?;
        }
        let payload = payload(data, opcode, "push")?;
        let Some(engine) = self.engine() else {
            return Ok(false);
        };
        Ok(match engine.push(fd_arg(fd), payload) {
            Ok(()) => true,
            Err(PushError::Closed | PushError::SlowConsumer) => false,
        })
    }

    /// Queues `$data` for every established connection except the fds in `$except`; the frame
    /// is encoded once. Returns how many connections it was queued for.
    pub fn broadcast(
        &self,
        data: &Zval,
        except: Option<Vec<Int>>,
        opcode: Option<Int>,
    ) -> PhpResult<i64> {
        let payload = payload(data, opcode, "broadcast")?;
        let except = fds(except);
        Ok(self.engine().map_or(0, |e| e.broadcast(payload, &except)) as i64)
    }

    /// Adds `$fd` to `$channel`; false if the connection is not open or already a member.
    pub fn join(&self, fd: Int, channel: String) -> bool {
        self.engine().is_some_and(|e| e.join(fd_arg(fd), &channel))
    }

    /// Removes `$fd` from `$channel`; false if it was not a member.
    pub fn leave(&self, fd: Int, channel: String) -> bool {
        self.engine().is_some_and(|e| e.leave(fd_arg(fd), &channel))
    }

    /// Queues `$data` for the members of `$channel` except `$except`; returns how many.
    pub fn publish(
        &self,
        channel: String,
        data: &Zval,
        except: Option<Vec<Int>>,
        opcode: Option<Int>,
    ) -> PhpResult<i64> {
        let payload = payload(data, opcode, "publish")?;
        let except = fds(except);
        Ok(self
            .engine()
            .map_or(0, |e| e.publish(&channel, payload, &except)) as i64)
    }

    /// Channel name => member count, for every channel with members.
    pub fn channels(&self) -> PhpResult<Zval> {
        let mut a = Assoc::new();
        for (name, count) in self.engine().map(|e| e.channels()).unwrap_or_default() {
            a.set(&name, count as i64)?;
        }
        Ok(a.into_zval())
    }

    /// The fds in `$channel`, ascending.
    pub fn members(&self, channel: String) -> Vec<i64> {
        self.engine()
            .map(|e| e.members(&channel))
            .unwrap_or_default()
            .into_iter()
            .map(|fd| fd as i64)
            .collect()
    }

    /// The channels `$fd` is in, sorted.
    pub fn channels_of(&self, fd: Int) -> Vec<String> {
        let fd = fd_arg(fd);
        if let Some(closed) = self.closing_fd(fd) {
            return closed.channels.clone();
        }
        self.engine().map(|e| e.channels_of(fd)).unwrap_or_default()
    }

    /// Subscribes Redis channels, or patterns with `*`, `?` or `[` (the `redis_prefix` is added).
    /// Messages go to the `redis` callback and, with `redis_forward`, to the channel's members.
    pub fn subscribe(&self, channels: &Zval) -> PhpResult<bool> {
        let names = names_arg(channels, "subscribe")?;
        self.require_redis("subscribe")?;
        self.not_in_the_master("subscribe")?;
        match self.engine() {
            Some(engine) => names
                .iter()
                .for_each(|n| engine.redis().expect("checked").subscribe(n)),
            None => self.pending_subscriptions.borrow_mut().extend(names),
        }
        Ok(true)
    }

    /// Unsubscribes channels or patterns given to subscribe().
    pub fn unsubscribe(&self, channels: &Zval) -> PhpResult<bool> {
        let names = names_arg(channels, "unsubscribe")?;
        self.require_redis("unsubscribe")?;
        self.not_in_the_master("unsubscribe")?;
        match self.engine() {
            Some(engine) => {
                let redis = engine.redis().expect("checked");
                // Every name is unsubscribed (no short-circuit); true if any was subscribed.
                Ok(names
                    .iter()
                    .map(|n| redis.unsubscribe(n))
                    .fold(false, |a, b| a | b))
            }
            None => {
                let mut pending = self.pending_subscriptions.borrow_mut();
                let before = pending.len();
                pending.retain(|p| !names.contains(p));
                Ok(pending.len() != before)
            }
        }
    }

    /// PUBLISHes `$payload` to `<redis_prefix>$channel` without waiting; false if Redis is not
    /// configured, the server is not running, or too many publishes are waiting.
    pub fn redis_publish(&self, channel: String, payload: &Zval) -> PhpResult<bool> {
        let payload = bytes_arg(payload, "redisPublish payload")?;
        self.require_redis("redisPublish")?;
        Ok(self
            .engine()
            .is_some_and(|e| e.redis_publish(&channel, payload.into())))
    }

    /// Triggers a Pusher event on a channel (or up to 100) for the Pusher clients subscribed,
    /// as the HTTP API's trigger does, without the HTTP round trip: `$data` a string as it is,
    /// anything else as its JSON; `$exceptSocketId` left out (Laravel's toOthers());
    /// `$appId` needed only with several apps. Returns how many connections it was sent to.
    pub fn pusher_trigger(
        &self,
        channels: &Zval,
        event: String,
        data: &Zval,
        except_socket_id: Option<String>,
        app_id: Option<String>,
    ) -> PhpResult<i64> {
        if self.config.borrow().pusher.is_empty() {
            return Err(error(
                "pusherTrigger() needs the Pusher protocol: set(['pusher' => [[...]]])",
            ));
        }
        let channels = names_arg(channels, "pusherTrigger")?;
        let data = pusher_data(data)?;
        let Some(engine) = self.engine() else {
            return Ok(0);
        };
        engine
            .pusher_trigger(app_id.as_deref(), channels, event, data, except_socket_id)
            .map(|sent| sent as i64)
            .map_err(|why| error(format!("pusherTrigger(): {why}")))
    }

    /// The connection's socket id (`<pid>.<fd>`), the id Laravel's toOthers() sends back; null
    /// if the connection is gone.
    pub fn socket_id(&self, fd: Int) -> Option<String> {
        self.engine().and_then(|e| e.socket_id(fd_arg(fd)))
    }

    /// True while the connection exists (also while it is closing); for an HTTP request's fd,
    /// until its response is sent.
    pub fn exist(&self, fd: Int) -> bool {
        let fd = fd_arg(fd);
        self.engine().is_some_and(|e| e.exists(fd)) || unanswered::client(fd).is_some()
    }

    /// True if `$fd` is an established WebSocket connection that is not closing.
    pub fn is_established(&self, fd: Int) -> bool {
        self.engine().is_some_and(|e| e.is_established(fd_arg(fd)))
    }

    /// Closes the connection with a close frame carrying `$code` and `$reason`.
    pub fn disconnect(
        &self,
        fd: Int,
        code: Option<Int>,
        reason: Option<String>,
    ) -> PhpResult<bool> {
        let code = code.map_or(1000, |Int(c)| c);
        let reason = reason.unwrap_or_default();
        // RFC 6455's codes an endpoint may send (1004-1006 and 1015 it may not), and those
        // for applications.
        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            return Err(error(format!(
                "close code must be 1000-1003, 1007-1014 or 3000-4999, got {code}"
            )));
        }
        if reason.len() > 123 {
            return Err(error(format!(
                "close reason is {} bytes; at most 123 fit in a close frame",
                reason.len()
            )));
        }
        Ok(self
            .engine()
            .is_some_and(|e| e.disconnect(fd_arg(fd), code as u16, &reason)))
    }

    /// Closes the connection normally (close code 1000); an HTTP request's connection, before
    /// its response is sent, without one (Swoole's way to refuse a request). `$reset` is
    /// Swoole's (an RST instead of a FIN), taken and not needed.
    pub fn close(&self, fd: Int, reset: Option<&Zval>) -> bool {
        let _ = reset;
        let fd = fd_arg(fd);
        self.engine().is_some_and(|e| e.disconnect(fd, 1000, "")) || unanswered::close(fd)
    }

    /// remote_ip, remote_port, server_port, connect_time, last_time, websocket_status; or false.
    /// Also for an HTTP request's fd until its response is sent. `$reactor_id` and
    /// `$ignore_error` are Swoole's, taken and not needed.
    pub fn get_client_info(
        &self,
        fd: Int,
        reactor_id: Option<&Zval>,
        ignore_error: Option<&Zval>,
    ) -> PhpResult<Zval> {
        let _ = (reactor_id, ignore_error);
        let fd = fd_arg(fd);
        let info = self.engine().and_then(|e| {
            e.client_info(fd).or_else(|| {
                let closed = self.closing_fd(fd)?;
                Some(ClientInfo {
                    remote: closed.remote,
                    server_port: e.local_addr().port(),
                    connect_time: closed.connect_time,
                    last_time: closed.last_time,
                    // Swoole's status in onClose: still ACTIVE (3) when the client or the
                    // network ended it, CLOSING (4) when the server did.
                    established: !closed.by_server,
                })
            })
        });
        let info = info.map(|info| Client {
            remote: info.remote,
            server_port: info.server_port,
            connect_time: info.connect_time,
            last_time: info.last_time,
            // Swoole's WEBSOCKET_STATUS_ACTIVE (3) while open, WEBSOCKET_STATUS_CLOSING (4) after.
            websocket_status: if info.established { 3 } else { 4 },
        });
        let Some(info) = info.or_else(|| unanswered::client(fd)) else {
            let mut no = Zval::new();
            no.set_bool(false);
            return Ok(no);
        };
        let mut a = Assoc::new();
        a.set("fd", fd as i64)?;
        a.set("remote_ip", info.remote.ip().to_string())?;
        a.set("remote_port", i64::from(info.remote.port()))?;
        a.set("server_port", i64::from(info.server_port))?;
        a.set("connect_time", info.connect_time as i64)?;
        a.set("last_time", info.last_time as i64)?;
        a.set("websocket_status", info.websocket_status)?;
        Ok(a.into_zval())
    }

    /// Swoole's `connection_info()`, the older name of getClientInfo().
    #[php(name = "connection_info")]
    pub fn connection_info(
        &self,
        fd: Int,
        reactor_id: Option<&Zval>,
        ignore_error: Option<&Zval>,
    ) -> PhpResult<Zval> {
        self.get_client_info(fd, reactor_id, ignore_error)
    }

    /// Up to `$find_count` (at most 100) established connections with fds above `$start_fd`,
    /// ascending; false when there are none (Swoole's paging loop ends on it).
    pub fn get_client_list(
        &self,
        start_fd: Option<Int>,
        find_count: Option<Int>,
    ) -> PhpResult<Zval> {
        let start = start_fd.map_or(0, |Int(fd)| fd);
        let count = find_count.map_or(10, |Int(n)| n).clamp(0, 100) as usize;
        let fds: Vec<i64> = (self.engine().map(|e| e.connections()).unwrap_or_default())
            .into_iter()
            .map(|fd| fd as i64)
            .filter(|&fd| fd > start)
            .take(count)
            .collect();
        if fds.is_empty() {
            return Ok(false.into_zval(false)?);
        }
        Ok(fds.into_zval(false)?)
    }

    /// Swoole's `connection_list()`, the older name of getClientList().
    #[php(name = "connection_list")]
    pub fn connection_list(
        &self,
        start_fd: Option<Int>,
        find_count: Option<Int>,
    ) -> PhpResult<Zval> {
        self.get_client_list(start_fd, find_count)
    }

    /// Sends a ping frame (Swoole's `ping()`), as push($fd, $data, WEBSOCKET_OPCODE_PING).
    pub fn ping(&self, fd: Int, data: Option<&Zval>) -> PhpResult<bool> {
        let mut empty = Zval::new();
        empty.set_string("", false)?;
        self.push(fd, data.unwrap_or(&empty), Some(Int(OPCODE_PING)), None)
    }

    /// The established WebSocket connections: countable and iterable (fds).
    #[php(getter)]
    pub fn get_connections(&self) -> Connections {
        Connections::new(self.engine().map(|e| e.connections()).unwrap_or_default())
    }

    /// Counters since start: connections, accepted, closed, rejected, messages_in/out,
    /// bytes_in/out, http_requests, start_time (and Swoole's connection_num, accept_count,
    /// close_count).
    pub fn stats(&self) -> PhpResult<Zval> {
        let s = self.engine().map(|e| e.stats()).unwrap_or_default();
        let mut a = Assoc::new();
        for (key, value) in [
            ("start_time", s.start_time),
            ("connections", s.connections),
            ("accepted", s.accepted),
            ("closed", s.closed),
            ("rejected", s.rejected),
            ("messages_in", s.messages_in),
            ("messages_out", s.messages_out),
            ("bytes_in", s.bytes_in),
            ("bytes_out", s.bytes_out),
            ("http_requests", s.http_requests),
            ("connection_num", s.connections),
            ("accept_count", s.accepted),
            ("close_count", s.closed),
            // Swoole's counts messages and requests (its onReceive, onMessage, onRequest).
            ("request_count", s.http_requests + s.messages_in),
        ] {
            a.set(key, value as i64)?;
        }
        let config = self.config.borrow();
        a.set("worker_num", config.worker_num as i64)?;
        a.set("task_worker_num", config.task_worker_num as i64)?;
        drop(config);
        if let Some(r) = self.engine().and_then(|e| e.redis().map(|r| r.snapshot())) {
            let mut redis = Assoc::new();
            redis.set("state", format!("{:?}", r.state).to_lowercase())?;
            for (key, value) in [
                ("received", r.received),
                ("forwarded", r.forwarded),
                ("dropped", r.dropped),
                ("reconnects", r.reconnects),
                ("published", r.published),
                ("callback_dropped", r.callback_dropped),
                ("overload_dropped", r.overload_dropped),
                ("subscriptions", r.subscriptions as u64),
            ] {
                redis.set(key, value as i64)?;
            }
            a.set("redis", redis.into_zval())?;
        }
        Ok(a.into_zval())
    }

    /// Calls `$callback($timerId, ...$params)` every `$ms` milliseconds; returns the timer id.
    pub fn tick(&self, ms: Int, callback: &Zval, params: &[&Zval]) -> PhpResult<i64> {
        self.add_timer(timer_delay(ms.0)?, callback, params, true)
    }

    /// Calls `$callback(...$params)` once after `$ms` milliseconds; returns the timer id.
    pub fn after(&self, ms: Int, callback: &Zval, params: &[&Zval]) -> PhpResult<i64> {
        self.add_timer(timer_delay(ms.0)?, callback, params, false)
    }

    /// Calls `$callback()` once the batch of events being handled is done, as Swoole's
    /// `defer()`: after the callback that asks returns, also while stopping.
    pub fn defer(&self, callback: &Zval) -> PhpResult<bool> {
        self.refuse_once_served("a callback deferred now would never run")?;
        if self.worker_id.get() == -1 {
            return Err(error(
                "defer() runs in workers: the master process (start, shutdown) has no event loop",
            ));
        }
        let callback =
            Callable::new(callback).ok_or_else(|| error("the defer callback is not callable"))?;
        self.deferred.borrow_mut().push_back(callback);
        Ok(true)
    }

    /// Stops a timer; false if there is no such timer.
    pub fn clear_timer(&self, timer_id: Int) -> bool {
        let engine = self.engine();
        let cleared = self
            .timers
            .borrow_mut()
            .clear(fd_arg(timer_id), engine.as_deref());
        cleared.is_some()
    }

    /// Hands `$data` (a string, or any value serialize() takes) to a free task worker, whose
    /// `task` callback runs with it; what that returns (or gives finish()) comes back to
    /// `$finish_callback($server, $taskId, $result)` if given, else to the `finish` callback.
    /// Returns the task id, or false if the queue stayed full for 5 s.
    pub fn task(
        &self,
        data: &Zval,
        dst_worker_id: Option<Int>,
        finish_callback: Option<&Zval>,
    ) -> PhpResult<Zval> {
        let engine = self.task_engine("task", dst_worker_id)?;
        let callback = match finish_callback.filter(|z| !z.is_null()) {
            Some(z) => {
                Some(Callable::new(z).ok_or_else(|| error("the finish callback is not callable"))?)
            }
            None => None,
        };
        let bytes = tasks::encode(data)?;
        let has_callback = callback.is_some();
        let id = self.tasks.next_id(callback);
        match engine.task(id, has_callback, &bytes) {
            Ok(()) => tasks::id_or_false(Some(id)),
            Err(e) => {
                self.tasks.forget(id);
                log::warn!(target: "surge", "task() failed: {e}");
                tasks::id_or_false(None)
            }
        }
    }

    /// As task(), then waits up to `$timeout` seconds (default 0.5) for the result and returns
    /// it (no finish callback runs), or false if it did not come in time (a late result is
    /// dropped). The worker waits meanwhile: with `worker_threads` 0, its network work too.
    pub fn taskwait(
        &self,
        data: &Zval,
        timeout: Option<f64>,
        dst_worker_id: Option<Int>,
    ) -> PhpResult<Zval> {
        let engine = self.task_engine("taskwait", dst_worker_id)?;
        let result = tasks::wait_for(self, &engine, "taskwait", &[data], timeout)?;
        match result.and_then(|mut results| results.pop().flatten()) {
            Some(result) => Ok(result),
            None => Ok(false.into_zval(false)?),
        }
    }

    /// As taskwait() for every value of `$tasks`, all queued at once: returns their results
    /// under the keys of `$tasks`, leaving out those that did not come within `$timeout`
    /// seconds (default 0.5); false if the queue stayed full.
    pub fn task_wait_multi(&self, tasks: &ZendHashTable, timeout: Option<f64>) -> PhpResult<Zval> {
        let engine = self.task_engine("taskWaitMulti", None)?;
        let (keys, values): (Vec<_>, Vec<_>) = tasks.iter().unzip();
        let Some(results) = tasks::wait_for(self, &engine, "taskWaitMulti", &values, timeout)?
        else {
            return Ok(false.into_zval(false)?);
        };
        let mut came = ZendHashTable::new();
        for (key, result) in keys.into_iter().zip(results) {
            if let Some(result) = result {
                came.insert(key, result)?;
            }
        }
        let mut array = Zval::new();
        array.set_hashtable(came);
        Ok(array)
    }

    /// Sends `$message` (a string as it is, any other value as serialize() makes it) to worker
    /// `$dst_worker_id`'s `pipeMessage` callback, `($server, $srcWorkerId, $message)`; true
    /// once handed over. From a worker or a task worker, to another worker or task worker.
    pub fn send_message(&self, message: &Zval, dst_worker_id: Int) -> PhpResult<bool> {
        pipe_message::send(self, message, dst_worker_id.0)
    }

    /// In the `task` callback: sends `$data` to the worker that sent the task, for its finish
    /// callback (returning a value from the callback does the same). Once per task.
    pub fn finish(&self, data: &Zval) -> PhpResult<bool> {
        tasks::finish(self, data)
    }

    /// Stops the server: start() closes every client with 1001, runs `shutdown` and returns.
    /// In a worker process, the master is asked to stop every worker.
    pub fn shutdown(&self) -> bool {
        self.stop_requested.set(true);
        if self.master_pid.get() != std::process::id() {
            // SAFETY: a signal to the master, which waits for it.
            unsafe { libc::kill(self.master_pid.get() as libc::pid_t, libc::SIGTERM) };
        }
        true
    }

    /// Restarts the worker and task worker processes one at a time (the task workers only with
    /// `$only_reload_taskworker`), as SIGUSR1 (SIGUSR2) to the master does: each stops as at a
    /// stop (its clients are closed with 1001 and may reconnect to the others) and a new process,
    /// forked from the master, takes its id and runs `workerStart` (code included there is read
    /// anew; what the script loaded before start() is the master's). Returns once asked.
    pub fn reload(&self, only_reload_taskworker: Option<bool>) -> PhpResult<bool> {
        let config = self.config.borrow();
        if config.worker_num < 2 && config.task_worker_num == 0 {
            return Err(error(
                "reload() restarts worker processes: set worker_num above 1 or task_worker_num",
            ));
        }
        let signal = match only_reload_taskworker.unwrap_or(false) {
            true if config.task_worker_num == 0 => {
                return Err(error(
                    "reload(true) restarts the task workers: there are none",
                ))
            }
            true => libc::SIGUSR2,
            false => libc::SIGUSR1,
        };
        if !self.running.get() {
            return Err(error(
                "reload() needs a running server: call it from a callback",
            ));
        }
        // SAFETY: a signal to the master (this process, in the master), which waits for it.
        unsafe { libc::kill(self.master_pid.get() as libc::pid_t, signal) };
        Ok(true)
    }
}

impl Server {
    /// The engine, for `what` (task, taskwait) in a worker of a server with task workers.
    fn task_engine(&self, what: &str, dst_worker_id: Option<Int>) -> PhpResult<Rc<Engine>> {
        if self.config.borrow().task_worker_num == 0 {
            return Err(error(format!(
                "{what}() needs task workers: set(['task_worker_num' => 4]) and on('task', ...)"
            )));
        }
        if self.get_taskworker() {
            return Err(error(format!(
                "{what}() is for workers; a task worker cannot send tasks"
            )));
        }
        if dst_worker_id.is_some_and(|Int(id)| id != -1) {
            return Err(error(format!(
                "{what}() hands a task to the first free task worker: pass -1 as $dst_worker_id"
            )));
        }
        self.engine().ok_or_else(|| {
            error(format!(
                "{what}() needs a running server: call it from a callback"
            ))
        })
    }

    /// The master of worker processes (its `start` and `shutdown` callbacks) runs no bridge: a
    /// subscription noted there would reach only the workers it forks later (replacements).
    fn not_in_the_master(&self, what: &str) -> PhpResult<()> {
        if self.worker_id.get() == -1 {
            return Err(error(format!(
                "{what}() in the master process (start, shutdown) reaches no worker: call it before start() or in workerStart"
            )));
        }
        Ok(())
    }

    fn require_redis(&self, what: &str) -> PhpResult<()> {
        if self.config.borrow().redis.is_none() {
            return Err(error(format!(
                "{what}() needs the Redis bridge: set(['redis' => 'redis://127.0.0.1:6379'])"
            )));
        }
        Ok(())
    }

    /// `Surge\Timer::clearAll()`: stops every timer, dropping them once the borrow has ended
    /// (their callables may hold objects whose destructors call back in).
    pub(crate) fn clear_all_timers(&self) {
        let engine = self.engine();
        let cleared = self.timers.borrow_mut().take_all(engine.as_deref());
        drop(cleared);
    }

    pub(crate) fn timer_exists(&self, timer_id: Int) -> bool {
        self.timers.borrow().contains(fd_arg(timer_id))
    }

    pub(crate) fn timer_ids(&self) -> Vec<i64> {
        self.timers
            .borrow()
            .ids()
            .into_iter()
            .map(|id| id as i64)
            .collect()
    }

    /// What is handed over after start() returned would be kept unused until the script ends
    /// (out of reach of PHP's cycle collector, with all it holds): refused, saying why.
    fn refuse_once_served(&self, why: &str) -> PhpResult<()> {
        if self.served.get() {
            return Err(error(format!(
                "the server has stopped (start() returned): {why}"
            )));
        }
        Ok(())
    }

    fn add_timer(
        &self,
        delay: Duration,
        callback: &Zval,
        params: &[&Zval],
        repeat: bool,
    ) -> PhpResult<i64> {
        self.refuse_once_served("a timer added now would never run")?;
        // The master runs no event loop; a timer kept here would only start in the workers it
        // forks later (after a reload or a crash), in each of them.
        if self.worker_id.get() == -1 {
            return Err(error(
                "timers run in workers: the master process (start, shutdown) has none; add them in workerStart",
            ));
        }
        let callback =
            Callable::new(callback).ok_or_else(|| error("the timer callback is not callable"))?;
        let params = params.iter().map(|p| p.shallow_clone()).collect();
        let engine = self.engine();
        Ok(self
            .timers
            .borrow_mut()
            .add(callback, params, delay, repeat, engine.as_deref()) as i64)
    }
}

/// pusherTrigger()'s data as Pusher carries it: a string as it is (usually JSON already),
/// anything else as json_encode() writes it.
fn pusher_data(data: &Zval) -> PhpResult<String> {
    if data.zend_str().is_none() {
        let encode = ZendCallable::try_from_name("json_encode")?;
        let json = encode.try_call(vec![data])?;
        return json.str().map(str::to_owned).ok_or_else(|| {
            error(
                "pusherTrigger() data could not be encoded as JSON (json_encode() returned false)",
            )
        });
    }
    data.str().map(str::to_owned).ok_or_else(|| {
        error("pusherTrigger() data must be UTF-8 text (Pusher carries it in a JSON string)")
    })
}
