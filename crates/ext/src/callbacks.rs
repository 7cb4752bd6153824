//! The PHP callbacks registered with `on()`, and calling them so that an exception in one is
//! logged and the server keeps serving.

use ext_php_rs::convert::IntoZvalDyn;
use ext_php_rs::types::Zval;
use ext_php_rs::zend::ExecutorGlobals;
use surge_engine::Handler;

use crate::callable::{CallError, Callable};

/// A PHP event: the engine's events (see [`Handler`]), plus the server's own lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Start,
    WorkerStart,
    WorkerStop,
    Shutdown,
    /// In the master of worker processes: one ended when it was not asked to.
    WorkerError,
    /// In a task worker: a task to run (see `tasks.rs`).
    Task,
    /// In a worker: a task it sent is finished.
    Finish,
    /// In a worker: what another one sent with sendMessage().
    PipeMessage,
    /// Sent by the engine only while a callback for it is registered.
    Engine(Handler),
}

pub const KINDS: &[(&str, Kind)] = &[
    ("start", Kind::Start),
    ("workerStart", Kind::WorkerStart),
    ("open", Kind::Engine(Handler::Open)),
    ("message", Kind::Engine(Handler::Message)),
    ("close", Kind::Engine(Handler::Close)),
    ("request", Kind::Engine(Handler::Request)),
    ("handshake", Kind::Engine(Handler::Handshake)),
    ("redis", Kind::Engine(Handler::Redis)),
    ("pusherSubscribe", Kind::Engine(Handler::PusherSubscribe)),
    (
        "pusherUnsubscribe",
        Kind::Engine(Handler::PusherUnsubscribe),
    ),
    (
        "pusherClientEvent",
        Kind::Engine(Handler::PusherClientEvent),
    ),
    ("workerStop", Kind::WorkerStop),
    ("shutdown", Kind::Shutdown),
    ("workerError", Kind::WorkerError),
    ("task", Kind::Task),
    ("finish", Kind::Finish),
    ("pipeMessage", Kind::PipeMessage),
];

impl Kind {
    /// Event names are matched case-insensitively, as Swoole does (`workerStart`, `WorkerStart`).
    pub fn parse(name: &str) -> Option<Kind> {
        KINDS
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, k)| *k)
    }

    pub fn name(self) -> &'static str {
        KINDS[self.index()].0
    }

    fn index(self) -> usize {
        KINDS
            .iter()
            .position(|(_, k)| *k == self)
            .expect("every kind is in KINDS")
    }
}

/// What the event loop does after a callback returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// `exit()` was called: leave at once and let PHP finish exiting.
    Exit,
    /// A fatal error: stop without running more PHP code, then let PHP end as it does after
    /// one (see `event_loop::Ended::Fatal`).
    Fatal,
}

/// Calls `callback` with `args`. A thrown exception is taken, logged with its class, message
/// and place, and forgotten; `exit()` is left pending so PHP still exits.
pub fn call(callback: &Callable, args: &[&dyn IntoZvalDyn], context: &str) -> Outcome {
    call_for_value(callback, args, context).0
}

/// As [`call`], with what the callback returned (None when it did not return).
pub fn call_for_value(
    callback: &Callable,
    args: &[&dyn IntoZvalDyn],
    context: &str,
) -> (Outcome, Option<Zval>) {
    // Making the arguments can run PHP: a warning while a request's fields are parsed (more
    // than max_input_vars) reaches the script's error handler, which may throw (Laravel's
    // does). Pending, the exception would keep the callback from running at all.
    if ExecutorGlobals::has_exception() {
        match ExecutorGlobals::pending_exception_class().as_deref() {
            Some("UnwindExit") => return (Outcome::Exit, None),
            _ => log_pending(&format!(
                "while the {context} callback's arguments were made"
            )),
        }
    }
    match callback.call(args) {
        Ok(value) => return (Outcome::Continue, Some(value)),
        Err(CallError::NotCallable) => {
            log::error!(target: "surge", "the {context} callback is not callable");
            return (Outcome::Continue, None);
        }
        Err(CallError::Fatal) => {
            log::error!(target: "surge", "fatal error in the {context} callback: closing every client with 1011 and exiting");
            return (Outcome::Fatal, None);
        }
        Err(CallError::Threw) => {}
    }
    if ExecutorGlobals::pending_exception_class().as_deref() == Some("UnwindExit") {
        return (Outcome::Exit, None);
    }
    log_pending(&format!("in the {context} callback"));
    (Outcome::Continue, None)
}

/// Takes the exception PHP has pending, if any, and logs it as uncaught `place`, with its stack
/// trace as PHP prints one (the place it was thrown alone did not say which call led there).
fn log_pending(place: &str) {
    if let Some((class, what, trace)) = take_pending_traced() {
        log::error!(target: "surge", "uncaught {class} {place}: {what}\nStack trace:\n{trace}");
    }
}

/// Takes the exception PHP has pending, if any but `exit()`'s (left for PHP to exit): its
/// class, and its message and place.
pub fn take_pending() -> Option<(String, String)> {
    take_pending_traced().map(|(class, what, _)| (class, what))
}

/// As [`take_pending`], with the stack trace (`getTraceAsString()`).
fn take_pending_traced() -> Option<(String, String, String)> {
    if ExecutorGlobals::pending_exception_class().as_deref() == Some("UnwindExit") {
        return None;
    }
    let ex = ExecutorGlobals::take_exception()?;
    let class = ex.get_class_name().unwrap_or_else(|_| "Exception".into());
    let text = |method: &str| {
        ex.try_call_method(method, vec![])
            .ok()
            .and_then(|z| z.string())
            .unwrap_or_default()
    };
    let line = ex
        .try_call_method("getLine", vec![])
        .ok()
        .and_then(|z| z.long())
        .unwrap_or(0);
    let what = format!("{} in {}:{line}", text("getMessage"), text("getFile"));
    Some((class, what, text("getTraceAsString")))
}

/// Callables by event, at the event's place in [`KINDS`]. Held zvals are invisible to PHP's GC,
/// so they are released when the server stops (see `clear`).
#[derive(Default)]
pub struct Callbacks([Option<Callable>; KINDS.len()]);

impl Callbacks {
    /// Returns the callable it replaces, for the caller to drop once its borrow has ended (see
    /// `event_loop::release`).
    pub fn set(&mut self, kind: Kind, callback: Option<Callable>) -> Option<Callable> {
        std::mem::replace(&mut self.0[kind.index()], callback)
    }

    /// A new reference to the callable, so no borrow is held while PHP runs it.
    pub fn get(&self, kind: Kind) -> Option<Callable> {
        self.0[kind.index()].as_ref().map(Callable::shallow_clone)
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.0[kind.index()].is_some()
    }
}
