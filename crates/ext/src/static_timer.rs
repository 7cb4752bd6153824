//! `Surge\Timer`: Swoole's static `Timer::tick()`/`after()`/`clear()`... over the timers of the
//! server serving in this process, so that ported code (`Swoole\Timer::tick` in a
//! `workerStart`) runs with only the namespace renamed. The ids are the server's own:
//! `Timer::clear()` stops a `$server->tick()` and `clearTimer()` a `Timer::tick()`.

use ext_php_rs::prelude::*;
use ext_php_rs::types::Zval;

use crate::convert::Int;
use crate::event_loop::with_serving;
use crate::exception::error;
use crate::server::Server;

#[php_class]
#[php(name = "Surge\\Timer")]
pub struct Timer;

/// `f` with the server serving in this worker process; None in the master of worker
/// processes, whose timers (added before start()) are the workers' it forks, not its own.
fn in_worker<R>(f: impl FnOnce(&Server) -> R) -> Option<R> {
    with_serving(|server| (server.worker_id.get() != -1).then(|| f(server))).flatten()
}

/// `f` with the serving server; adding a timer with none serving throws, as there is no event
/// loop to run it (before start(), `$server->tick()` keeps timers for the workers; the master's
/// tick() says it has none).
fn serving<R>(method: &str, f: impl FnOnce(&Server) -> PhpResult<R>) -> PhpResult<R> {
    with_serving(f).unwrap_or_else(|| {
        Err(error(format!(
            "Surge\\Timer::{method}() needs a serving server: call it from the server's callbacks \
             (workerStart, open, message ...); before start(), use $server->{method}()"
        )))
    })
}

#[php_impl]
impl Timer {
    /// Calls `$callback($timerId, ...$params)` every `$ms` milliseconds; returns the timer id.
    pub fn tick(ms: Int, callback: &Zval, params: &[&Zval]) -> PhpResult<i64> {
        serving("tick", |server| server.tick(ms, callback, params))
    }

    /// Calls `$callback(...$params)` once after `$ms` milliseconds; returns the timer id.
    pub fn after(ms: Int, callback: &Zval, params: &[&Zval]) -> PhpResult<i64> {
        serving("after", |server| server.after(ms, callback, params))
    }

    /// Stops a timer; false if there is no such timer (or no server serves).
    pub fn clear(timer_id: Int) -> bool {
        in_worker(|server| server.clear_timer(timer_id)).unwrap_or(false)
    }

    /// Stops every timer of this process (the server's too).
    pub fn clear_all() -> bool {
        in_worker(Server::clear_all_timers);
        true
    }

    /// Whether the timer is still to run.
    pub fn exists(timer_id: Int) -> bool {
        in_worker(|server| server.timer_exists(timer_id)).unwrap_or(false)
    }

    /// The ids of this process's timers still to run, oldest first.
    pub fn list() -> Vec<i64> {
        in_worker(Server::timer_ids).unwrap_or_default()
    }
}
