//! `worker_num` > 1 or `task_worker_num` > 0: the process that called start() becomes the
//! master. It binds the port, forks the workers (each one serves as a whole single-process
//! server would, on the shared socket, and reaches the others' connections over the engine's
//! bus) and the task workers, runs `start`, forwards SIGINT/SIGTERM to them, starts a new one in
//! place of one that died, restarts them one at a time on SIGUSR1 (the task workers only on
//! SIGUSR2: `reload()`), and runs `shutdown` once they are all gone. The master never starts
//! a runtime or any other thread: it forks again for each restart, and a fork copies only the
//! calling thread.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ext_php_rs::exception::PhpResult;
use ext_php_rs::types::Zval;
use surge_engine::stop_watchdog::STOP_MARGIN;
use surge_engine::{Config, Engine, Pool};

use crate::callbacks::Kind;
use crate::event_loop::{self, Ended};
use crate::exception::error;
use crate::server::Server;

/// How long a worker may take to start its engine, and then to run its `workerStart`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// What a worker writes first, once its engine runs (its bus socket listens, so the workers
/// forked after it can reach it from their `workerStart`), or else why it cannot start.
const ENGINE_STARTED: u8 = b'+';
/// What a worker writes once its `workerStart` has returned: a worker that ends before (a
/// fatal error in it, `exit()`) closes the pipe with nothing more written.
const SERVING: &str = "serving";
/// What ends that report, or an error's text: the master does not wait for the pipe to close,
/// which a process forked in `workerStart` (a helper of the app's) holds open as long as it
/// lives, and the master with it.
const END_OF_REPORT: u8 = 0;
const ENDED: &str = "it ended before it served (exit() or a fatal error in workerStart?)";
/// A worker that died sooner than this after it started is started again only this late, so
/// that one that cannot run does not make the master fork in a tight loop.
const RESTART_DELAY: Duration = Duration::from_secs(1);

extern "C" {
    /// What PHP's `exit` does: unwinds the script, running shutdown functions and destructors.
    fn zend_throw_unwind_exit();
}

/// Ends a worker process the way `exit(0)` would once start() returns.
pub fn exit_worker() {
    // SAFETY: called on the PHP thread from an internal function about to return to PHP.
    unsafe { zend_throw_unwind_exit() }
}

/// A worker's way of telling the master it is serving, or why it cannot.
pub struct Ready(Option<File>);

impl Ready {
    /// Tells the master that the engine runs (see [`ENGINE_STARTED`]).
    pub fn engine_started(&mut self) {
        if let Some(pipe) = &mut self.0 {
            let _ = pipe.write_all(&[ENGINE_STARTED]);
        }
    }

    /// Writes the outcome once: serving, or the error.
    pub fn report(&mut self, outcome: Result<(), &str>) {
        if let Some(mut pipe) = self.0.take() {
            // An error's text never holds the end of the report.
            let text = outcome.err().unwrap_or(SERVING).replace('\0', "?");
            let _ = pipe.write_all(&[text.as_bytes(), &[END_OF_REPORT]].concat());
        }
    }
}

struct Child {
    pid: libc::pid_t,
    started: Instant,
}

enum Forked {
    Master(Starting),
    /// In the forked worker, how it ended; start() returns it.
    Worker(PhpResult<Ended>),
}

pub fn run(server: &Server, this: &Zval, config: Config) -> PhpResult<Ended> {
    config.validate().map_err(|e| error(e.0))?;
    let pool = Pool::new(&config, &server.get_host(), server.get_port() as u16).map_err(error)?;
    server.set_running(true, Some(pool.local_addr().port()));
    let signals = MasterSignals::block();
    let count = pool.processes();
    let mut starting = Vec::with_capacity(count);
    let mut failure = None;
    for id in 0..count {
        match fork_worker(server, this, &config, &pool, id, &signals) {
            Ok(Forked::Master(worker)) => match worker.engine_started() {
                Ok(worker) => starting.push(worker),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            },
            Ok(Forked::Worker(ended)) => return ended,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // Each forked once the one before runs its engine: their workerStart callbacks (a Laravel
    // app's boot) run side by side.
    let mut children: Vec<Option<Child>> = Vec::with_capacity(count);
    for worker in starting {
        match worker.serving() {
            Ok(child) => children.push(Some(child)),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failure {
        stop_all(&mut children, config.shutdown_timeout);
        event_loop::release(server);
        return Err(error(e));
    }
    let port = pool.local_addr().port();
    let workers = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    match config.task_worker_num {
        0 => log::info!(target: "surge", "{count} workers serving on port {port}"),
        tasks => log::info!(
            target: "surge",
            "{} and {} serving on port {port}",
            workers(config.worker_num, "worker"),
            workers(tasks, "task worker")
        ),
    }
    server.worker_id.set(-1);
    let mut next = event_loop::lifecycle(server, Kind::Start, &[this]);
    if next == Ended::Stopped && !server.stop_requested.get() {
        match supervise(server, this, &config, &pool, &signals, &mut children) {
            Supervised::Master(ended) => next = ended,
            Supervised::Worker(worker_ended) => return worker_ended,
        }
    }
    stop_all(&mut children, config.shutdown_timeout);
    if next == Ended::Stopped {
        next = event_loop::lifecycle(server, Kind::Shutdown, &[this]);
    }
    event_loop::release(server);
    Ok(next)
}

/// How supervising ended.
enum Supervised {
    /// In the master: asked to stop (`Ended::Stopped`), or a workerError callback called exit()
    /// or died of a fatal error.
    Master(Ended),
    /// In a worker forked here as a replacement: how it ended.
    Worker(PhpResult<Ended>),
}

/// Waits for signals and dead workers until asked to stop.
fn supervise(
    server: &Server,
    this: &Zval,
    config: &Config,
    pool: &Pool,
    signals: &MasterSignals,
    children: &mut [Option<Child>],
) -> Supervised {
    let mut due: Vec<(usize, Instant)> = Vec::new();
    // Replacements forked and not yet serving: looked at between two waits for signals, so
    // that one slow (or stuck) in its workerStart holds up neither a stop nor the others.
    let mut starting: Vec<Starting> = Vec::new();
    let mut reload = Reload::default();
    // Stopped, unless a workerError callback ends the script (exit(), a fatal error).
    let mut outcome = Ended::Stopped;
    'supervising: while !server.stop_requested.get() {
        match signals.wait(Duration::from_millis(200)) {
            Some(libc::SIGINT) | Some(libc::SIGTERM) => {
                log::info!(target: "surge", "stop signal received: stopping the workers");
                break;
            }
            Some(libc::SIGUSR1) => reload.ask(0..children.len(), "workers and task workers"),
            Some(libc::SIGUSR2) => reload.ask(config.worker_num..children.len(), "task workers"),
            _ => {}
        }
        for exit in reap(children) {
            let id = exit.id;
            if reload.current == Some(id) {
                log::info!(target: "surge", "worker {id} stopped for the reload ({exit}); starting another");
                due.push((id, Instant::now()));
                continue;
            }
            log::warn!(target: "surge", "worker {id} exited ({exit}); starting another");
            let delay = RESTART_DELAY.saturating_sub(exit.lived);
            due.push((id, Instant::now() + delay));
            // Swoole's workerError, in the master: what the worker's close callbacks would
            // have cleaned up (a table's rows of its connections) is the app's to clean here.
            let (pid, code, signal) = (i64::from(exit.pid), exit.code, exit.signal);
            let ended = event_loop::lifecycle(
                server,
                Kind::WorkerError,
                &[this, &(id as i64), &pid, &code, &signal],
            );
            if ended != Ended::Stopped {
                outcome = ended;
                break 'supervising;
            }
        }
        let now = Instant::now();
        while let Some(i) = due.iter().position(|(_, at)| *at <= now) {
            let (id, _) = due.swap_remove(i);
            // Not forked while it could not serve its certificate: it would take its share of
            // new connections from the kernel, then fail and drop them.
            let ready = match id < config.worker_num {
                true => Engine::check_tls(config),
                false => Ok(()),
            };
            match ready.and_then(|()| fork_worker(server, this, config, pool, id, signals)) {
                Ok(Forked::Master(worker)) => starting.push(worker),
                Ok(Forked::Worker(ended)) => return Supervised::Worker(ended),
                Err(e) => {
                    log::error!(target: "surge", "worker {id} could not start: {e}");
                    due.push((id, now + RESTART_DELAY));
                    break;
                }
            }
        }
        for worker in std::mem::take(&mut starting) {
            let id = worker.id;
            match worker.check() {
                Check::Waiting(worker) => starting.push(worker),
                Check::Serving(child) => {
                    children[id] = Some(child);
                    reload.started(id);
                }
                Check::Failed(e) => {
                    log::error!(target: "surge", "worker {id} could not start: {e}");
                    due.push((id, Instant::now() + RESTART_DELAY));
                }
            }
        }
        reload.next(children, config.shutdown_timeout + STOP_MARGIN, config);
    }
    // Those still starting are stopped with the others.
    for worker in starting {
        children[worker.id] = Some(worker.child);
    }
    Supervised::Master(outcome)
}

/// A rolling restart: one worker at a time is stopped (as at a stop: its clients are closed
/// with 1001, `workerStop` runs) and started again (a new process, forked from the master, which
/// runs `workerStart` anew), so the others serve meanwhile.
#[derive(Default)]
struct Reload {
    /// Ids still to restart, in order.
    waiting: VecDeque<usize>,
    /// The one stopped for it and not yet serving again, and when it was told to stop.
    current: Option<usize>,
    stopped_at: Option<Instant>,
    /// A reload was asked for and is not done.
    underway: bool,
}

impl Reload {
    /// Queues `ids`; during a reload, those not waiting yet, so that every one of them starts
    /// after this request.
    fn ask(&mut self, ids: std::ops::Range<usize>, what: &str) {
        log::info!(target: "surge", "reload: restarting the {what} one at a time");
        self.underway = true;
        for id in ids {
            if !self.waiting.contains(&id) {
                self.waiting.push_back(id);
            }
        }
    }

    fn started(&mut self, id: usize) {
        if self.current == Some(id) {
            self.current = None;
        }
    }

    /// Stops the next one once the last one serves again. One that has not stopped within
    /// `limit` (a callback that does not return) is killed, as at a stop. A worker whose
    /// replacement could not serve the certificate files as they are now is not stopped: the
    /// reload ends there, the workers serving on as they are.
    fn next(&mut self, children: &[Option<Child>], limit: Duration, config: &Config) {
        if let (Some(id), Some(at)) = (self.current, self.stopped_at) {
            if at.elapsed() >= limit {
                if let Some(child) = &children[id] {
                    log::warn!(target: "surge", "worker {id} did not stop for the reload within {limit:?}: killed");
                    // SAFETY: a signal to our own child (reaped by the loop).
                    unsafe { libc::kill(child.pid, libc::SIGKILL) };
                }
                self.stopped_at = None;
            }
        }
        while self.current.is_none() {
            let Some(id) = self.waiting.pop_front() else {
                if std::mem::take(&mut self.underway) {
                    log::info!(target: "surge", "reload done");
                }
                return;
            };
            if id < config.worker_num {
                if let Err(why) = Engine::check_tls(config) {
                    log::error!(target: "surge", "reload stopped before worker {id}, which serves on: {why}");
                    self.waiting.clear();
                    self.underway = false;
                    return;
                }
            }
            // One not running now (it died and waits to be started again) starts anew anyway.
            if let Some(child) = &children[id] {
                // SAFETY: a signal to our own child.
                unsafe { libc::kill(child.pid, libc::SIGTERM) };
                self.current = Some(id);
                self.stopped_at = Some(Instant::now());
            }
        }
    }
}

/// A worker forked and not yet serving.
struct Starting {
    id: usize,
    child: Child,
    /// The read end of the pipe it reports on (see `Ready`), and what it reported after the
    /// engine started, up to END_OF_REPORT.
    report: File,
    text: Vec<u8>,
    /// It reported that its engine runs; `workerStart` is next.
    engine_running: bool,
    /// It reported that its `workerStart` returned.
    serving: bool,
    /// It ended, and was reaped here.
    reaped: bool,
    /// When it has taken too long to report its next step.
    deadline: Instant,
}

/// How a replacement worker is doing (see `Starting::check`).
enum Check {
    Waiting(Starting),
    Serving(Child),
    Failed(String),
}

impl Starting {
    /// Waits until its engine runs.
    fn engine_started(mut self) -> Result<Starting, String> {
        match self.wait_until(|s| s.engine_running) {
            Ok(()) => Ok(self),
            Err(why) => Err(self.failed(why)),
        }
    }

    /// Waits until it serves.
    fn serving(mut self) -> Result<Child, String> {
        match self.wait_until(|s| s.serving) {
            Ok(()) => Ok(self.child),
            Err(why) => Err(self.failed(why)),
        }
    }

    fn wait_until(&mut self, done: impl Fn(&Starting) -> bool) -> Result<(), Vec<u8>> {
        while !done(self) {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(too_long());
            }
            // A look now and then at whether it ended (see `look`).
            self.look(left.min(Duration::from_millis(100)))?;
        }
        Ok(())
    }

    /// Where it is, waiting for nothing: a replacement's start must not hold up the master.
    fn check(mut self) -> Check {
        let step = self.look(Duration::ZERO).and_then(|()| {
            match !self.serving && Instant::now() >= self.deadline {
                true => Err(too_long()),
                false => Ok(()),
            }
        });
        match step {
            Ok(()) if self.serving => Check::Serving(self.child),
            Ok(()) => Check::Waiting(self),
            Err(why) => Check::Failed(self.failed(why)),
        }
    }

    /// Reads its report if it has something to read within `wait`; otherwise, if it has ended,
    /// why. The pipe's end does not tell: a process it forked in `workerStart` (a helper) holds
    /// it open, so a worker that ended there before it reported was seen only at its deadline.
    fn look(&mut self, wait: Duration) -> Result<(), Vec<u8>> {
        if readable(&self.report, wait) {
            return self.advance();
        }
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        self.reaped =
            unsafe { libc::waitpid(self.child.pid, &mut status, libc::WNOHANG) } == self.child.pid;
        match self.reaped {
            // What it wrote just before it ended, if anything.
            true if readable(&self.report, Duration::ZERO) => self.advance().and(Err(ENDED.into())),
            true => Err(ENDED.into()),
            false => Ok(()),
        }
    }

    /// Reads what its report has to read (one read: it does not block): that its engine runs
    /// (its deadline then starts again, for `workerStart`), that it serves, or why it cannot
    /// start.
    fn advance(&mut self) -> Result<(), Vec<u8>> {
        let mut read = [0; 512];
        let n = (&self.report)
            .read(&mut read)
            .map_err(|e| format!("cannot read its report: {e}").into_bytes())?;
        let mut bytes = &read[..n];
        if n == 0 {
            // The pipe closed before the report ended.
            return Err(match std::mem::take(&mut self.text) {
                text if text.is_empty() => ENDED.into(),
                text => text,
            });
        }
        if !self.engine_running && self.text.is_empty() && bytes[0] == ENGINE_STARTED {
            self.engine_running = true;
            self.deadline = Instant::now() + START_TIMEOUT;
            bytes = &bytes[1..];
        }
        self.text.extend_from_slice(bytes);
        let Some(end) = self.text.iter().position(|&b| b == END_OF_REPORT) else {
            return Ok(());
        };
        self.text.truncate(end);
        match std::mem::take(&mut self.text) {
            text if self.engine_running && text == SERVING.as_bytes() => {
                self.serving = true;
                Ok(())
            }
            text => Err(text),
        }
    }

    /// Kills it (it may be stuck); returns the error as start() throws it.
    fn failed(&self, why: Vec<u8>) -> String {
        if !self.reaped {
            // SAFETY: our own child; reaped at once so that it leaves no zombie.
            unsafe {
                libc::kill(self.child.pid, libc::SIGKILL);
                libc::waitpid(self.child.pid, std::ptr::null_mut(), 0);
            }
        }
        format!("worker {}: {}", self.id, String::from_utf8_lossy(&why))
    }
}

fn too_long() -> Vec<u8> {
    format!("did not start within {START_TIMEOUT:?}").into_bytes()
}

/// Forks worker `id`; in the master, returns it starting (see `Starting`).
fn fork_worker(
    server: &Server,
    this: &Zval,
    config: &Config,
    pool: &Pool,
    id: usize,
    signals: &MasterSignals,
) -> Result<Forked, String> {
    let (read, write) = pipe()?;
    pool.prepare(id)?;
    // SAFETY: the master has no other thread (see the module's comment).
    match unsafe { libc::fork() } {
        -1 => {
            let error = std::io::Error::last_os_error();
            // Not left listening with nobody to accept (bound anew at the next try).
            pool.forked(id);
            Err(format!("cannot fork a worker: {error}"))
        }
        0 => {
            drop(read);
            // A master that is killed (SIGKILL, a crash) takes its workers with it: they get
            // SIGTERM and stop as they would at a stop.
            // SAFETY: plain calls on this process.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() as u32 != server.master_pid.get() {
                    libc::_exit(1);
                }
            }
            signals.restore();
            server.worker_id.set(id as i64);
            let mut ready = Ready(Some(File::from(write)));
            let ended = match pool.worker(id) {
                Ok(worker) => {
                    event_loop::serve_worker(server, this, config.clone(), worker, &mut ready)
                }
                Err(e) => {
                    ready.report(Err(&e));
                    Err(error(e))
                }
            };
            if ended.is_err() {
                // The rest of the script is the master's, never a worker's.
                // SAFETY: ends this process at once; nothing of it is shared but the pipe.
                unsafe { libc::_exit(1) };
            }
            Ok(Forked::Worker(ended))
        }
        pid => {
            drop(write);
            pool.forked(id);
            Ok(Forked::Master(Starting {
                id,
                child: Child {
                    pid,
                    started: Instant::now(),
                },
                report: File::from(read),
                text: Vec::new(),
                engine_running: false,
                serving: false,
                reaped: false,
                deadline: Instant::now() + START_TIMEOUT,
            }))
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot make a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: two new descriptors, each owned once.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Whether the worker's report has something to read (or the pipe closed), waiting up to `wait`.
fn readable(report: &File, wait: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: report.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut poll, 1, wait.as_millis() as i32) > 0 }
}

/// Workers that exited: id, how, and how long each had run. Only our workers are waited for
/// (a process the script started itself before start() keeps its exit status).
/// A worker process that ended, as waitpid() told it.
struct Exit {
    id: usize,
    pid: libc::pid_t,
    /// Its exit status, or 0 when a signal ended it.
    code: i64,
    /// The signal that ended it, or 0.
    signal: i64,
    lived: Duration,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.signal {
            0 => write!(f, "status {}", self.code),
            signal => write!(f, "killed by signal {signal}"),
        }
    }
}

fn reap(children: &mut [Option<Child>]) -> Vec<Exit> {
    let mut gone = Vec::new();
    for (id, slot) in children.iter_mut().enumerate() {
        let Some(child) = slot else { continue };
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        if unsafe { libc::waitpid(child.pid, &mut status, libc::WNOHANG) } == child.pid {
            let signaled = libc::WIFSIGNALED(status);
            gone.push(Exit {
                id,
                pid: child.pid,
                code: if signaled {
                    0
                } else {
                    i64::from(libc::WEXITSTATUS(status))
                },
                signal: if signaled {
                    i64::from(libc::WTERMSIG(status))
                } else {
                    0
                },
                lived: child.started.elapsed(),
            });
            *slot = None;
        }
    }
    gone
}

/// Sends every worker SIGTERM (each closes its clients with 1001 and finishes as a single
/// server does) and waits for them; those still there after `shutdown_timeout` and a margin
/// are killed.
fn stop_all(children: &mut [Option<Child>], shutdown_timeout: Duration) {
    for child in children.iter().flatten() {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + shutdown_timeout + STOP_MARGIN;
    while children.iter().any(Option::is_some) {
        reap(children);
        if Instant::now() >= deadline {
            for child in children.iter_mut().filter_map(Option::take) {
                log::warn!(target: "surge", "worker pid {} did not stop: killed", child.pid);
                // SAFETY: our own child, reaped at once.
                unsafe {
                    libc::kill(child.pid, libc::SIGKILL);
                    libc::waitpid(child.pid, std::ptr::null_mut(), 0);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The master takes SIGINT, SIGTERM, SIGCHLD, SIGUSR1 and SIGUSR2 by waiting for them (blocked,
/// so that none is lost between two waits); a forked worker gets the mask from before.
struct MasterSignals {
    set: libc::sigset_t,
    previous: libc::sigset_t,
}

impl MasterSignals {
    fn block() -> Self {
        // SAFETY: sets initialised by sigemptyset before use; changes this thread's mask only.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signal in [
                libc::SIGINT,
                libc::SIGTERM,
                libc::SIGCHLD,
                libc::SIGUSR1,
                libc::SIGUSR2,
            ] {
                libc::sigaddset(&mut set, signal);
            }
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            MasterSignals { set, previous }
        }
    }

    /// The signal that came within `timeout`, if any.
    fn wait(&self, timeout: Duration) -> Option<libc::c_int> {
        let timeout = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: a valid set and timeout; no siginfo wanted.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &timeout) };
        (signal > 0).then_some(signal)
    }

    fn restore(&self) {
        // SAFETY: the mask saved by `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

impl Drop for MasterSignals {
    fn drop(&mut self) {
        // What came while stopping (a second Ctrl+C or SIGTERM, a reload) is answered by the
        // stop already done. Left pending, it would be delivered as the mask is restored, with
        // its default action: the master would die before start() returns.
        while let Some(signal) = self.wait(Duration::ZERO) {
            log::debug!(target: "surge", "signal {signal} came while stopping: ignored");
        }
        self.restore();
    }
}
