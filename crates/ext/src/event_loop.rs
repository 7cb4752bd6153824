//! `start()`: the PHP thread's loop. It receives engine events in batches, builds the PHP
//! objects and calls the callbacks; it is the only place PHP code runs while serving.

use std::cell::Cell;
use std::ptr::NonNull;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ext_php_rs::convert::{IntoZval, IntoZvalDyn};
use ext_php_rs::exception::PhpResult;
use ext_php_rs::types::Zval;
use surge_engine::{Config, Engine, Event, Handler, HttpRequest, PusherEvent, Worker};

use crate::callable::Callable;
use crate::callbacks::{call, call_for_value, Kind, Outcome};
use crate::convert::{binary_zval, json_zval, Assoc};
use crate::exception::error;
use crate::fatal_error::{unclean_shutdown, zend_try};
use crate::form_input;
use crate::pipe_message;
use crate::request::Request;
use crate::response::Response;
use crate::server::Server;
use crate::supervisor::{self, Ready};
use crate::tasks;
use crate::unanswered::Client;

const BATCH: usize = 256;

/// What the loop does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Continue,
    /// A signal arrived: stop serving (or, during the drain, stop waiting).
    Stop,
    Exit,
    Fatal,
}

impl From<Outcome> for Next {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Continue => Next::Continue,
            Outcome::Exit => Next::Exit,
            Outcome::Fatal => Next::Fatal,
        }
    }
}

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop (a signal or shutdown()): the shutdown callback ran.
    Stopped,
    /// `exit()` in a callback: PHP finishes exiting when start() returns.
    Exited,
    /// A worker process stopped (see `supervisor.rs`): it ends as `exit(0)` would.
    Worker,
    /// A fatal error in a callback: every client got 1011 and no more PHP code ran. PHP ends
    /// the script as after any fatal error (exit status 255, shutdown functions) once start()
    /// raises the bailout again, with nothing of the server left running.
    Fatal,
}

thread_local! {
    /// True while start() runs on this thread: its callbacks run inside the engine's runtime,
    /// where another server's start() could not run its own.
    static STARTED: Cell<bool> = const { Cell::new(false) };
    /// The server whose callbacks may run, from start() until `release`: `Surge\Timer`'s
    /// static methods reach its timers through it.
    static SERVING: Cell<Option<NonNull<Server>>> = const { Cell::new(None) };
}

/// Clears [`STARTED`] and [`SERVING`] however `run` ends.
struct Serving;

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.set(None);
        STARTED.set(false);
    }
}

/// Calls `f` with the server serving on this thread; None when none serves.
pub fn with_serving<R>(f: impl FnOnce(&Server) -> R) -> Option<R> {
    // SAFETY: set from run()'s `&Server` and cleared before run returns, so valid while set;
    // PHP code, the only caller, runs on this thread.
    SERVING.get().map(|server| f(unsafe { server.as_ref() }))
}

pub fn run(server: &Server, this: &Zval) -> PhpResult<Ended> {
    if STARTED.replace(true) {
        return Err(error(
            "start() cannot be called from a callback: a server is already serving in this process",
        ));
    }
    SERVING.set(Some(NonNull::from(server)));
    let _serving = Serving;
    let mut config = server.config.borrow().clone();
    config.validate().map_err(|e| error(e.0))?;
    config.max_file_uploads = form_input::max_file_uploads();
    config.max_multipart_body_parts = form_input::max_multipart_body_parts(config.max_file_uploads);
    server.master_pid.set(std::process::id());
    surge_engine::mark_server_start();
    if config.task_worker_num > 0 && !server.callbacks.borrow().has(Kind::Task) {
        return Err(error(
            "task_worker_num needs a task callback: on('task', function ($server, $taskId, $workerId, $data) {...})",
        ));
    }
    if config.worker_num > 1 || config.task_worker_num > 0 {
        return supervisor::run(server, this, config);
    }
    let engine = start_engine(server, config, None).map_err(error)?;
    serve_and_stop(server, this, engine, None)
}

/// A forked worker (see `supervisor.rs`): serves until SIGTERM or a fatal error, then ends with
/// `Ended::Worker` (the master runs `start` and `shutdown`). An engine that cannot start is
/// reported to the master through `ready` and returned as the error.
pub fn serve_worker(
    server: &Server,
    this: &Zval,
    mut config: Config,
    worker: Worker,
    ready: &mut Ready,
) -> PhpResult<Ended> {
    if worker.id >= worker.count {
        // A task worker has no connections: its PHP thread needs no I/O threads beside it,
        // but for the Redis bridge, which must publish (and answer Redis's health check)
        // while a task runs.
        config.worker_threads = Some(usize::from(config.redis.is_some()));
    }
    let engine = match start_engine(server, config, Some(worker)) {
        Ok(engine) => {
            ready.engine_started();
            engine
        }
        Err(message) => {
            ready.report(Err(&message));
            return Err(error(message));
        }
    };
    serve_and_stop(server, this, engine, Some(ready))
}

/// Starts the engine; the error is a message for the user.
fn start_engine(
    server: &Server,
    config: Config,
    worker: Option<Worker>,
) -> Result<Rc<Engine>, String> {
    let handlers = server.registered_handlers();
    let no_task_workers = config.task_worker_num == 0;
    let engine = Rc::new(Engine::start(
        config,
        &server.get_host(),
        server.get_port() as u16,
        &handlers,
        worker,
    )?);
    // Said once (worker 0), now that the log is set up: the callback never runs, and the
    // task() that should reach it throws wherever it is (a timer's game stopped so).
    if no_task_workers && engine.worker().0 == 0 && server.callbacks.borrow().has(Kind::Task) {
        log::warn!(target: "surge", "a task callback is set but task_worker_num is 0: it never runs, and task() throws (set(['task_worker_num' => 2]))");
    }
    server.stop_requested.set(false);
    server.set_running(true, Some(engine.local_addr().port()));
    *server.engine.borrow_mut() = Some(engine.clone());
    server.timers.borrow().schedule_all(&engine);
    if !engine.is_task_worker() {
        // Subscriptions deliver to connections, which task workers do not have.
        server.subscribe_pending(&engine);
    }
    Ok(engine)
}

/// Serves, drains, runs `workerStop` (and `start` before, `shutdown` after, when `whole`: this
/// process is the whole server) and lets everything go.
/// `ready`: a worker's report to the master, None for a server of one process (`whole`).
fn serve_and_stop(
    server: &Server,
    this: &Zval,
    engine: Rc<Engine>,
    ready: Option<&mut Ready>,
) -> PhpResult<Ended> {
    let whole = ready.is_none();
    let mut next = match whole {
        true => Next::from(callback(server, Kind::Start, &[this])),
        false => Next::Continue,
    };
    let mut stopping = Stopping::default();
    if next == Next::Continue {
        (next, stopping) = serve(server, this, &engine, ready);
    }
    let failed_start = stopping.failed_start.take();
    if matches!(next, Next::Continue | Next::Stop) {
        next = drain(server, this, &engine, next, whole, stopping);
    }
    if next == Next::Fatal {
        drain(
            server,
            this,
            &engine,
            Next::Fatal,
            whole,
            Stopping::default(),
        );
    }
    if next == Next::Exit {
        flush_after_exit(&engine);
    }
    let worker_id = engine.worker().0 as i64;
    let mut ended = match next {
        Next::Exit => Ended::Exited,
        Next::Fatal => Ended::Fatal,
        // No stop callbacks for a worker that never started.
        Next::Continue | Next::Stop if failed_start.is_some() => Ended::Worker,
        Next::Continue | Next::Stop => lifecycle(server, Kind::WorkerStop, &[this, &worker_id]),
    };
    if ended == Ended::Stopped {
        ended = match whole {
            true => lifecycle(server, Kind::Shutdown, &[this]),
            false => Ended::Worker,
        };
    }
    if matches!(ended, Ended::Stopped | Ended::Worker) && !engine.stop_signal_again() {
        flush(&engine, ANSWERS_AFTER_STOP);
    }
    server.engine.borrow_mut().take();
    drop(engine);
    release(server);
    match failed_start {
        Some(why) if ended == Ended::Worker => Err(error(why)),
        _ => Ok(ended),
    }
}

/// How long the answers `workerStop` and `shutdown` gave requests still under way after the
/// drain (a long poll kept for later) get to go out, with clients still open (the drain's
/// deadline passed): with `worker_threads` 0 nothing else would write them.
const ANSWERS_AFTER_STOP: Duration = Duration::from_millis(300);

/// How long exit() in a callback lets the network work go on (see `flush_after_exit`).
const EXIT_FLUSH: Duration = Duration::from_millis(500);

/// How long a stop "now" (a second signal) lets the 1001s go out: the stop watchdog gives the
/// process a second after that signal.
const NOW_FLUSH: Duration = Duration::from_millis(300);

/// exit() in a callback: PHP runs no more, but what it pushed or answered just before is
/// written, and every client gets its 1001 rather than a reset, for [`EXIT_FLUSH`] at most.
/// Events that come meanwhile are dropped (a request among them gets a 500).
fn flush_after_exit(engine: &Engine) {
    // A child forked by a callback has no network work to let go on (nor the threads for it).
    if engine.in_forked_child() {
        return;
    }
    engine.begin_shutdown(1001, "server shutting down");
    flush(engine, EXIT_FLUSH);
}

/// Lets the network work go on, without PHP, until every client is gone or `within` passed.
fn flush(engine: &Engine, within: Duration) {
    let deadline = Instant::now() + within;
    let mut dropped = Vec::with_capacity(BATCH);
    while !engine.is_idle() && Instant::now() < deadline {
        engine.recv(&mut dropped, BATCH, Some(Duration::from_millis(10)));
        dropped.clear();
    }
}

/// Runs the callables given to `defer()`, in order, after the batch of events (or the
/// `workerStart` callback) during which they were deferred. Those they defer in turn wait for
/// the next turn, as in Swoole (a callable deferring itself would never let the events in):
/// the engine is woken for it.
fn run_deferred(server: &Server, engine: &Engine) -> Next {
    // Taken out before the calls: they may defer again.
    let deferred = std::mem::take(&mut *server.deferred.borrow_mut());
    let mut next = Next::Continue;
    for callable in &deferred {
        match Next::from(call(callable, &[], "defer")) {
            Next::Continue | Next::Stop => {}
            end => {
                next = end;
                break;
            }
        }
    }
    // Dropped here, not while the queue is borrowed: a destructor may call defer().
    drop(deferred);
    if !server.deferred.borrow().is_empty() {
        engine.wake_php();
    }
    next
}

/// After serving: releases everything PHP's GC cannot see (callables may hold the server);
/// `Server::served` keeps start() from serving again without them. The engine (and with it
/// Tokio) is gone by then. Each is taken out of its RefCell before it is dropped: the
/// destructors of what the callables captured run PHP code, which may call the server back
/// (`on()`, `clearTimer()`), and a borrow held meanwhile would make that call panic.
pub fn release(server: &Server) {
    // Nothing serves any more: a destructor's `Surge\Timer` call must not reach this server
    // (and a fatal error in one would jump past `Serving`'s drop).
    SERVING.set(None);
    let callbacks = std::mem::take(&mut *server.callbacks.borrow_mut());
    drop(callbacks);
    server.tasks.clear();
    server.frames.clear();
    let timers = server.timers.borrow_mut().take_all(None);
    drop(timers);
    let deferred = std::mem::take(&mut *server.deferred.borrow_mut());
    drop(deferred);
    server.set_running(false, None);
}

/// Runs a lifecycle callback (`start`, `workerStop`, `shutdown`): how serving ends after it.
pub fn lifecycle(server: &Server, kind: Kind, args: &[&dyn IntoZvalDyn]) -> Ended {
    match callback(server, kind, args) {
        Outcome::Continue => Ended::Stopped,
        Outcome::Exit => Ended::Exited,
        Outcome::Fatal => Ended::Fatal,
    }
}

/// How long clients get to answer their 1001 at least (`shutdown_timeout` if shorter), when
/// what came before the stop signal took all of `shutdown_timeout`.
const ANSWER_TIME: Duration = Duration::from_secs(1);

/// How far a stop signal's stop has gone when serving ends. Events queued before the signal are
/// still served (what their callbacks push goes out before the 1001s), but for
/// `shutdown_timeout` at most from the signal's arrival (which the stop watchdog counts from
/// too): a backlog of slow callbacks had no bound, and the watchdog ended the process without
/// its 1001s, `close` or `shutdown` callbacks.
#[derive(Default)]
struct Stopping {
    /// `shutdown_timeout` after the stop signal came, once PHP has seen that it did.
    deadline: Option<Instant>,
    /// Events that were not served for lack of time, for the drain to take first.
    left: Vec<Event>,
    /// The stop signal's event was served (and logged): serving may run out of time before.
    signal_told: bool,
    /// Why it could not start (`workerStart` threw): the server (or this worker) stops without
    /// its stop callbacks, and start() throws this.
    failed_start: Option<String>,
}

/// Why start() throws, and a worker could not start, when `workerStart` threw.
const WORKER_START_THREW: &str = "the workerStart callback threw (the log says what): not started";

impl Stopping {
    /// Whether serving must end before the next event: a stop signal came `shutdown_timeout`
    /// ago or more. While none came, one atomic load.
    fn out_of_time(&mut self, engine: &Engine) -> bool {
        let deadline = match self.deadline {
            Some(deadline) => deadline,
            None => {
                let Some(since) = engine.since_stop_signal() else {
                    return false;
                };
                let came = Instant::now()
                    .checked_sub(since)
                    .unwrap_or_else(Instant::now);
                *self.deadline.insert(came + engine.shutdown_timeout())
            }
        };
        Instant::now() >= deadline
    }

    /// Serving ran out of time: the messages still queued are not handed to PHP (what their
    /// callbacks pushed could not follow the 1001s, and the time was spent), so that the
    /// clients' closes and the HTTP requests under way are in the time left.
    fn cut_short(&self) -> bool {
        !self.left.is_empty()
    }

    /// Until when the drain hands PHP events and waits for the clients' closes.
    fn drain_deadline(&self, engine: &Engine) -> Instant {
        let now = Instant::now();
        match self.deadline {
            Some(deadline) => deadline.max(now + ANSWER_TIME.min(engine.shutdown_timeout())),
            None => now + engine.shutdown_timeout(),
        }
    }
}

/// Next::Stop: a second signal came while serving (in a server of one process), no drain.
fn serve(
    server: &Server,
    this: &Zval,
    engine: &Engine,
    ready: Option<&mut Ready>,
) -> (Next, Stopping) {
    let whole = ready.is_none();
    let worker_id = engine.worker().0 as i64;
    let (outcome, returned) = match registered(server, Kind::WorkerStart) {
        Some(cb) => call_for_value(&cb, &[this, &worker_id], "workerStart"),
        None => (Outcome::Continue, Some(Zval::new())),
    };
    let mut next = Next::from(outcome);
    let mut stopping = Stopping::default();
    // It threw (logged by the call): a boot that failed (an app that cannot reach its database)
    // served on without the app, and a reload went on to the next worker as if this one had
    // started. A start that failed, as in Swoole (where it ends the worker).
    let threw = next == Next::Continue && returned.is_none();
    if next == Next::Continue && !threw {
        next = guarded(|| run_deferred(server, engine));
    }
    // Only now does a replacement worker's socket listen (see `Engine::accept_connections`).
    let failed = match next {
        _ if threw => Some(WORKER_START_THREW.to_string()),
        Next::Continue => engine.accept_connections().err(),
        _ => None,
    };
    if let Some(why) = failed {
        server.stop_requested.set(true);
        if let Some(ready) = ready {
            ready.report(Err(&why));
        }
        stopping.failed_start = Some(why);
        return (Next::Stop, stopping);
    }
    // The master goes on (a reload stops the next worker) only once this one serves.
    if let (Some(ready), Next::Continue | Next::Stop) = (ready, next) {
        ready.report(Ok(()));
    }
    if next != Next::Continue {
        return (next, stopping);
    }
    // shutdown() may have been called by a start callback already.
    if server.stop_requested.get() {
        return (Next::Continue, stopping);
    }
    let mut next = Next::Continue;
    engine.serve(BATCH, |batch| {
        next = guarded(|| {
            let mut events = batch.drain(..);
            while let Some(event) = events.next() {
                if stopping.out_of_time(engine) {
                    stopping.left.push(event);
                    stopping.left.extend(events);
                    server.stop_requested.set(true);
                    return Next::Continue;
                }
                // A second signal as the first's backlog is served: "now" (its event waits
                // behind the backlog, and the stop watchdog gives it a second).
                if whole && stopping.deadline.is_some() && engine.stop_signal_again() {
                    log::info!(target: "surge", "stop signal received again");
                    return Next::Stop;
                }
                let again = matches!(event, Event::Signal { again: true, .. });
                stopping.signal_told |= matches!(event, Event::Signal { .. });
                match dispatch(server, this, event) {
                    Next::Continue => {}
                    // Both presses of a Ctrl-C pressed twice may come in one batch.
                    Next::Stop if again && whole => return Next::Stop,
                    Next::Stop => server.stop_requested.set(true),
                    end @ (Next::Exit | Next::Fatal) => return end,
                }
            }
            run_deferred(server, engine)
        });
        next == Next::Continue && !server.stop_requested.get()
    });
    (next, stopping)
}

/// After the stop: every client gets 1001, and what arrives meanwhile (messages sent before
/// the signal, close events) is still handed to PHP, until all are gone or the timeout; what
/// is still queued then is dropped (a worker's master kills it 5 s later anyway). After
/// a fatal error (`after` is `Next::Fatal`) every client gets 1011 and nothing reaches PHP.
/// A signal a second or more after the first cuts it short when this process is the `whole`
/// server (see `Event::Signal`); a worker process
/// gets the master's SIGTERM after its own signal (a terminal's Ctrl-C, systemd's stop reach
/// every process), and leaves it to the master to kill it if it takes too long. `after` is
/// `Next::Stop` when that second signal came while serving. `stopping`: see [`Stopping`].
fn drain(
    server: &Server,
    this: &Zval,
    engine: &Engine,
    after: Next,
    whole: bool,
    stopping: Stopping,
) -> Next {
    let fatal = after == Next::Fatal;
    if fatal {
        engine.begin_shutdown(1011, "server error");
    } else {
        engine.begin_shutdown(1001, "server shutting down");
    }
    if after == Next::Stop {
        flush(engine, NOW_FLUSH);
        return stopping_now();
    }
    let deadline = stopping.drain_deadline(engine);
    let cut_short = stopping.cut_short();
    let mut signal_told = stopping.signal_told;
    let mut batch = stopping.left;
    // Messages the stop cut short, counted in a warning at the end: after the signal's own line
    // (its event may be queued behind them).
    let mut dropped = 0;
    // Events the deadline left in their batch.
    let mut late = Vec::new();
    let end = loop {
        let now = Instant::now();
        if now >= deadline {
            break closes_at_deadline(server, this, engine, late, fatal);
        }
        let idle = engine.is_idle();
        let wait = if idle {
            Duration::ZERO
        } else {
            (deadline - now).min(Duration::from_millis(50))
        };
        if batch.is_empty() && !engine.recv(&mut batch, BATCH, Some(wait)) && idle {
            break Next::Continue;
        }
        if fatal {
            batch.clear();
            continue;
        }
        let end = guarded(|| {
            // Checked before each event: a batch of slow callbacks would run past the deadline.
            let mut events = batch.drain(..);
            while Instant::now() < deadline {
                let Some(event) = events.next() else {
                    break;
                };
                if cut_short && matches!(event, Event::Message { .. }) {
                    dropped += 1;
                    continue;
                }
                // The stop under way: a signal cuts it short only a second or more after the
                // first (closer, the same Ctrl-C reached the process twice).
                if let Event::Signal { name, again: false } = event {
                    match std::mem::replace(&mut signal_told, true) {
                        true => {
                            log::info!(target: "surge", "{name} received while stopping: the same stop")
                        }
                        false => log::info!(target: "surge", "{name} received: shutting down"),
                    }
                    continue;
                }
                match dispatch(server, this, event) {
                    Next::Continue => {}
                    Next::Stop if !whole => {}
                    end @ (Next::Stop | Next::Exit | Next::Fatal) => return end,
                }
            }
            late.extend(events);
            match Instant::now() < deadline {
                true => run_deferred(server, engine),
                false => Next::Continue,
            }
        });
        match end {
            Next::Continue => {}
            Next::Stop => break stopping_now(),
            end @ (Next::Exit | Next::Fatal) => break end,
        }
    };
    if dropped > 0 {
        log::warn!(target: "surge", "shutdown_timeout ({:?}) passed since the stop signal with messages that came before it still queued: {dropped} dropped, not handed to PHP", engine.shutdown_timeout());
    }
    end
}

/// How long the `close` callbacks run at the drain's deadline may take in all: the stop
/// watchdog ends PHP 5 s after it.
const CLOSES_AT_DEADLINE: Duration = Duration::from_secs(2);

/// The drain's deadline: the clients that have not answered their close are let go, and each
/// still gets its `close` callback ($reactorId -1), as do those whose close events were still
/// queued (for CLOSES_AT_DEADLINE in all), so that every `open` PHP saw gets its `close` (a
/// Table of users by fd stayed wrong after a stop or a reload that cut clients off); the other
/// events still queued are dropped. `late`: events the deadline left in their batch. After a
/// fatal error (`fatal`) no PHP runs: every event is dropped.
fn closes_at_deadline(
    server: &Server,
    this: &Zval,
    engine: &Engine,
    mut late: Vec<Event>,
    fatal: bool,
) -> Next {
    let open = engine.open_at_stop();
    let until = Instant::now() + CLOSES_AT_DEADLINE;
    let mut closes = engine.cut_off();
    let (mut told, mut dropped) = (0, 0);
    let mut next = Next::Continue;
    loop {
        // The close events still queued, and those of connections that ended meanwhile (on
        // their way while the queue was full): a moment's wait for the latter.
        let wait = match closes.is_empty() && engine.closes_on_the_way() > 0 {
            true => Duration::from_millis(10),
            false => Duration::ZERO,
        };
        if late.is_empty() {
            engine.recv(&mut late, BATCH, Some(wait));
        }
        for event in late.drain(..) {
            match event {
                Event::Close { .. } => closes.push(event),
                _ => dropped += 1,
            }
        }
        let out_of_time = Instant::now() >= until;
        if fatal || out_of_time || (closes.is_empty() && engine.closes_on_the_way() == 0) {
            dropped += closes.len();
            break;
        }
        // A batch of its own: what the drain's last callbacks listed is not this one's.
        engine.batch_done();
        next = guarded(|| {
            for event in closes.drain(..) {
                if Instant::now() >= until {
                    dropped += 1;
                    continue;
                }
                told += 1;
                if let end @ (Next::Exit | Next::Fatal) = dispatch(server, this, event) {
                    return end;
                }
            }
            Next::Continue
        });
        if next != Next::Continue {
            break;
        }
    }
    if open + told + dropped > 0 {
        log::warn!(target: "surge", "shutdown_timeout ({:?}) reached: {open} connections still open are cut off, {told} close callbacks run at that point (theirs and those still queued), {dropped} events for PHP dropped", engine.shutdown_timeout());
    }
    next
}

/// A second signal: the user wants out now.
fn stopping_now() -> Next {
    log::info!(target: "surge", "stopping now, without waiting for the clients' close");
    Next::Continue
}

fn callback(server: &Server, kind: Kind, args: &[&dyn IntoZvalDyn]) -> Outcome {
    match registered(server, kind) {
        Some(cb) => call(&cb, args, kind.name()),
        None => Outcome::Continue,
    }
}

/// The callback registered for `kind`, cloned out of the RefCell so that it may call on()
/// itself.
fn registered(server: &Server, kind: Kind) -> Option<Callable> {
    server.callbacks.borrow().get(kind)
}

/// The body of the 500 that answers a request whose callback ended in a fatal error.
const FATAL_ANSWER: &str = "the callback ended in a fatal error";

/// Who sent `request`, for getClientInfo() of its fd while it is answered.
fn client_of(request: &HttpRequest, websocket_status: i64) -> Client {
    Client {
        remote: request.remote,
        server_port: request.server_port,
        connect_time: request.connect_time,
        last_time: request.time as u64,
        websocket_status,
    }
}

/// Builds a PHP object for an event argument; on failure logs and skips the event.
fn object<T: IntoZval>(value: PhpResult<T>, what: &str) -> Option<Zval> {
    match value.and_then(|v| v.into_zval(false).map_err(Into::into)) {
        Ok(zv) => Some(zv),
        Err(err) => {
            log::error!(target: "surge", "could not build the {what} object: {err:?}");
            None
        }
    }
}

/// Handles a batch of events inside PHP's zend_try. A callback catches its own fatal errors
/// (see `Callable::call`), but PHP also runs outside it: a destructor, when the last reference
/// to an argument or to a one-shot timer's closure goes after the call. A fatal error there
/// would jump over the event loop; caught here, it ends serving as one in a callback does
/// (1011; the rest of the batch is left unhandled).
fn guarded(handle_batch: impl FnOnce() -> Next) -> Next {
    match zend_try(handle_batch) {
        // The callback's own fatal error, logged where it was caught.
        Some(Next::Fatal) => Next::Fatal,
        // Some fatal errors are reported without the jump (see `Callable::call`).
        Some(next) if !unclean_shutdown() => next,
        _ => {
            log::error!(target: "surge", "fatal error outside a callback (in a destructor?): closing every client with 1011 and exiting");
            Next::Fatal
        }
    }
}

fn dispatch(server: &Server, this: &Zval, event: Event) -> Next {
    match event {
        Event::Open { fd: _, request } => match object(Request::from_engine(*request), "request") {
            Some(req) => callback(server, Kind::Engine(Handler::Open), &[this, &req]).into(),
            None => Next::Continue,
        },
        // `held` (the event's share of the inbound budget) is dropped once the callback returns.
        Event::Message {
            fd, data, binary, ..
        } => match object(server.frames.take(fd, &data, binary), "frame") {
            Some(frame) => {
                let outcome = callback(server, Kind::Engine(Handler::Message), &[this, &frame]);
                server.frames.give_back(frame);
                outcome.into()
            }
            None => Next::Continue,
        },
        Event::Close { fd, closed, .. } => {
            // Swoole's third argument, `$reactorId`: negative when the server closed the
            // connection (code tells so by it); a callback taking it would fail without it.
            let reactor_id = match closed.by_server {
                true => -1,
                false => server.worker_id.get().max(0),
            };
            // getClientInfo($fd) and channelsOf($fd) answer for it while its callback runs.
            server.closing.replace(Some((fd, closed)));
            let outcome = callback(
                server,
                Kind::Engine(Handler::Close),
                &[this, &(fd as i64), &reactor_id],
            );
            server.closing.take();
            outcome.into()
        }
        // A client that left while its request waited in the queue: a GET or HEAD (safe: there
        // is nothing to do but answer) or a WebSocket handshake is not handed to PHP, which would
        // answer nobody, ahead of the clients still waiting. Clients that give up and retry
        // (browsers, pusher-js, health checks) made a slow callback's backlog grow with each
        // retry. Other methods still run, for what they change.
        Event::Request { request, reply, .. }
            if reply.is_closed() && matches!(request.method.as_str(), "GET" | "HEAD") =>
        {
            log::debug!(target: "surge", "{} {}: the client left before PHP took the request", request.method, request.path);
            Next::Continue
        }
        Event::Handshake { request, reply, .. } if reply.is_closed() => {
            log::debug!(target: "surge", "handshake of {}: the client left before PHP took it", request.path);
            Next::Continue
        }
        Event::Request { request, reply, .. } => {
            let (fd, client) = (request.fd, client_of(&request, 0));
            let req = object(Request::from_engine(*request), "request");
            let res = object(Ok(Response::new(fd, reply, client)), "response");
            let (Some(req), Some(res)) = (req, res) else {
                return Next::Continue;
            };
            let Some(cb) = registered(server, Kind::Engine(Handler::Request)) else {
                return Next::Continue;
            };
            let (outcome, returned) = call_for_value(&cb, &[&req, &res], "request");
            let why = match (outcome, returned) {
                (Outcome::Fatal, _) => FATAL_ANSWER,
                // Said so: the client read that end() was not called.
                (Outcome::Exit, _) => {
                    "the request callback called exit(): this server process is ending"
                }
                // It threw (logged by the call).
                (Outcome::Continue, None) => {
                    "the request callback failed: the server's log says why"
                }
                (Outcome::Continue, Some(_)) => return Next::Continue,
            };
            Response::after_failure(&res, why);
            outcome.into()
        }
        Event::Handshake {
            request,
            reply,
            admission,
        } => {
            // Swoole's WEBSOCKET_STATUS_CONNECTION: the request asks for an upgrade.
            let (fd, client) = (request.fd, client_of(&request, 1));
            let req = object(Request::from_engine(*request), "request");
            let res = object(
                Ok(Response::for_handshake(fd, reply, client, admission)),
                "response",
            );
            let (Some(req), Some(res)) = (req, res) else {
                return Next::Continue;
            };
            let Some(cb) = registered(server, Kind::Engine(Handler::Handshake)) else {
                // Taken away with on('handshake', null) while this one waited: Surge's own
                // handshake, and so the open callback.
                return match Response::after_handshake(&res, true) {
                    true => callback(server, Kind::Engine(Handler::Open), &[this, &req]).into(),
                    false => Next::Continue,
                };
            };
            let (outcome, returned) = call_for_value(&cb, &[&req, &res], "handshake");
            match outcome {
                Outcome::Fatal => Response::after_failure(&res, FATAL_ANSWER),
                // Swoole's `return true` (a callback returning nothing has answered, or refuses).
                _ => {
                    Response::after_handshake(&res, returned.and_then(|r| r.bool()) == Some(true));
                }
            }
            outcome.into()
        }
        Event::Timer { id } => {
            let fired = server.timers.borrow_mut().fired(id);
            let Some((cb, params, repeat)) = fired else {
                return Next::Continue;
            };
            // A tick is called with its id first, then the parameters; `after` with these only.
            let timer_id = id as i64;
            let args: Vec<&dyn IntoZvalDyn> = repeat
                .then_some(&timer_id as &dyn IntoZvalDyn)
                .into_iter()
                .chain(params.iter().map(|p| p as &dyn IntoZvalDyn))
                .collect();
            let began = Instant::now();
            let next = call(&cb, &args, if repeat { "tick" } else { "after" }).into();
            // The engine sends this tick again only now (no burst after a slow call).
            if let (true, Some(engine)) = (repeat, server.engine()) {
                engine.timer_ran(id, began);
            }
            next
        }
        // Only to have the loop come round (see `run_deferred`).
        Event::Wake => Next::Continue,
        Event::Redis {
            channel, payload, ..
        } => {
            let payload = binary_zval(&payload);
            callback(
                server,
                Kind::Engine(Handler::Redis),
                &[this, &channel, &payload],
            )
            .into()
        }
        Event::Pusher {
            fd,
            app_id,
            channel,
            what,
        } => {
            let fd = fd as i64;
            match what {
                PusherEvent::Subscribe { member } => {
                    let member = match member {
                        Some((user_id, info)) => {
                            let mut m = Assoc::new();
                            let built = m
                                .set("user_id", user_id)
                                .and_then(|_| m.set("user_info", json_zval(&info)));
                            match built {
                                Ok(()) => m.into_zval(),
                                Err(err) => {
                                    log::error!(target: "surge", "could not build the member array: {err:?}");
                                    return Next::Continue;
                                }
                            }
                        }
                        None => Zval::new(),
                    };
                    callback(
                        server,
                        Kind::Engine(Handler::PusherSubscribe),
                        &[this, &fd, &channel, &member, &app_id],
                    )
                    .into()
                }
                PusherEvent::Unsubscribe => callback(
                    server,
                    Kind::Engine(Handler::PusherUnsubscribe),
                    &[this, &fd, &channel, &app_id],
                )
                .into(),
                PusherEvent::ClientEvent { event, data } => {
                    let data = json_zval(&data);
                    callback(
                        server,
                        Kind::Engine(Handler::PusherClientEvent),
                        &[this, &fd, &channel, &event, &data, &app_id],
                    )
                    .into()
                }
            }
        }
        Event::Task(task) => tasks::run(server, this, task).into(),
        Event::Finish { task_id, data, .. } => tasks::finished(server, this, task_id, &data).into(),
        Event::PipeMessage { worker, data, .. } => {
            pipe_message::received(server, this, worker, &data).into()
        }
        Event::Signal { name, again } => {
            match again {
                false => log::info!(target: "surge", "{name} received: shutting down"),
                true => log::info!(target: "surge", "{name} received again"),
            }
            Next::Stop
        }
    }
}
