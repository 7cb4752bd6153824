//! `task()`, `finish()` and the `task` and `finish` callbacks (`task_worker_num`, see the
//! engine's `tasks.rs`). A task's data crosses as a string's bytes, or for any other value as
//! PHP's `serialize()` of it, as Swoole does; the task worker gets the same value back.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use ext_php_rs::convert::IntoZval;
use ext_php_rs::exception::PhpResult;
use ext_php_rs::types::{ZendCallable, Zval};
use surge_engine::{Engine, ReplyTo, Task, NO_RESULT};

use crate::callable::Callable;
use crate::callbacks::{call, call_for_value, take_pending, Kind, Outcome};
use crate::convert::binary_zval;
use crate::exception::error;
use crate::server::Server;

/// A result's kind byte: NO_RESULT, which a task that ended without one sends, is shorter.
const STRING: u8 = 0;
const SERIALIZED: u8 = 1;

/// The task a task worker is running.
#[derive(Clone, Copy)]
struct Running {
    task_id: u64,
    reply_to: ReplyTo,
    finished: bool,
}

#[derive(Default)]
pub struct Tasks {
    next_id: Cell<u64>,
    /// The `$finish_callback` given to task(), by task id, until the result comes.
    callbacks: RefCell<HashMap<u64, Callable>>,
    running: Cell<Option<Running>>,
}

impl Tasks {
    /// A worker's next task id (each worker counts from 0, as Swoole's do).
    pub fn next_id(&self, callback: Option<Callable>) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        if let Some(callback) = callback {
            self.callbacks.borrow_mut().insert(id, callback);
        }
        id
    }

    /// The task could not be sent, or it ended without a result: its callback goes, once the
    /// borrow has ended (see `event_loop::release`).
    pub fn forget(&self, task_id: u64) {
        let forgotten = self.callbacks.borrow_mut().remove(&task_id);
        drop(forgotten);
    }

    /// Drops the callables (they may hold the server; see `event_loop::release`).
    pub fn clear(&self) {
        let callbacks = std::mem::take(&mut *self.callbacks.borrow_mut());
        drop(callbacks);
    }
}

/// A task's or a result's data as bytes.
pub fn encode(data: &Zval) -> PhpResult<Vec<u8>> {
    if let Some(s) = data.zend_str() {
        return Ok([&[STRING][..], s.as_bytes()].concat());
    }
    let serialize = ZendCallable::try_from_name("serialize")?;
    let text = serialize.try_call(vec![data])?;
    let bytes = text
        .zend_str()
        .ok_or_else(|| error("serialize() did not return a string"))?;
    Ok([&[SERIALIZED][..], bytes.as_bytes()].concat())
}

/// Data made by `encode`, or why it cannot be had (an exception unserialize() threw, from an
/// object's __wakeup or __unserialize, is taken: it would otherwise stay pending and be
/// reported at the next callback).
pub fn decode(bytes: &[u8]) -> Result<Zval, String> {
    match bytes.split_first() {
        Some((&STRING, rest)) => Ok(binary_zval(rest)),
        Some((&SERIALIZED, rest)) => {
            let unserialize =
                ZendCallable::try_from_name("unserialize").map_err(|e| e.to_string())?;
            (unserialize.try_call(vec![&binary_zval(rest)])).map_err(|e| match take_pending() {
                Some((class, what)) => format!("unserialize() threw {class}: {what}"),
                None => format!("unserialize() failed: {e}"),
            })
        }
        _ => Err("data that cannot be read".into()),
    }
}

/// In a task worker: runs the `task` callback, sends what it returned (unless it called
/// finish()) to the worker that sent the task, then lets the engine hand over the next task.
pub fn run(server: &Server, this: &Zval, task: Task) -> Outcome {
    let outcome = run_callback(server, this, task);
    server.tasks.running.set(None);
    if let Some(engine) = server.engine() {
        engine.task_done();
    }
    outcome
}

fn run_callback(server: &Server, this: &Zval, task: Task) -> Outcome {
    let (task_id, reply_to) = (task.task_id, task.reply_to);
    let outcome = call_task(server, this, task);
    let sent = server.tasks.running.get().is_some_and(|r| r.finished);
    if !sent && (reply_to.callback || reply_to.waited) {
        // No result: the sender lets go of the callback it keeps for one, or stops waiting.
        if let Some(engine) = server.engine() {
            engine.finish(reply_to, task_id, NO_RESULT);
        }
    }
    outcome
}

/// Runs the `task` callback, and sends what it returned unless it called finish().
fn call_task(server: &Server, this: &Zval, task: Task) -> Outcome {
    let Task {
        task_id,
        reply_to,
        data,
    } = task;
    let worker = reply_to.worker;
    let data = match decode(&data) {
        Ok(data) => data,
        Err(e) => {
            log::error!(target: "surge", "task {task_id} of worker {worker} dropped: {e}");
            return Outcome::Continue;
        }
    };
    let Some(callback) = server.callbacks.borrow().get(Kind::Task) else {
        log::error!(target: "surge", "task {task_id} of worker {worker} dropped: no task callback");
        return Outcome::Continue;
    };
    server.tasks.running.set(Some(Running {
        task_id,
        reply_to,
        finished: false,
    }));
    let args: [&dyn ext_php_rs::convert::IntoZvalDyn; 4] =
        [this, &(task_id as i64), &(worker as i64), &data];
    let (outcome, value) = call_for_value(&callback, &args, "task");
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return outcome;
    };
    if server.tasks.running.get().is_some_and(|r| r.finished) {
        log::warn!(target: "surge", "task {task_id} returned a value after finish() sent its result: the value is dropped");
        return outcome;
    }
    match finish(server, &value) {
        Ok(true) => {}
        Ok(false) => {
            log::warn!(target: "surge", "the result of task {task_id} was not handed to worker {worker}: it is gone, or took none for 5 s")
        }
        // serialize() threw (a closure, a __sleep that throws): its exception is taken here,
        // or it would stay pending and fail the next task handed to this worker.
        Err(e) => match take_pending() {
            Some((class, what)) => {
                log::error!(target: "surge", "the result of task {task_id} was not sent: serialize() threw {class}: {what}")
            }
            None => {
                log::error!(target: "surge", "the result of task {task_id} was not sent: {e:?}")
            }
        },
    }
    outcome
}

/// Sends the result of the running task (finish(), or the task callback's return value).
pub fn finish(server: &Server, data: &Zval) -> PhpResult<bool> {
    let Some(mut running) = server.tasks.running.get() else {
        return Err(error(
            "finish() is for the task callback of a task worker, while it runs",
        ));
    };
    if running.finished {
        return Err(error("finish() was called already for this task"));
    }
    let bytes = encode(data)?;
    running.finished = true;
    server.tasks.running.set(Some(running));
    Ok(server
        .engine()
        .is_some_and(|e| e.finish(running.reply_to, running.task_id, &bytes)))
}

/// In a worker: runs the task's own callback (given to task()), else the `finish` callback;
/// for a task that ended without a result, lets go of its own callback.
pub fn finished(server: &Server, this: &Zval, task_id: u64, data: &[u8]) -> Outcome {
    if data == NO_RESULT {
        server.tasks.forget(task_id);
        return Outcome::Continue;
    }
    let data = match decode(data) {
        Ok(data) => data,
        Err(e) => {
            log::error!(target: "surge", "the result of task {task_id} was dropped: {e}");
            server.tasks.forget(task_id);
            return Outcome::Continue;
        }
    };
    let own = server.tasks.callbacks.borrow_mut().remove(&task_id);
    let callback = own.or_else(|| server.callbacks.borrow().get(Kind::Finish));
    match callback {
        Some(callback) => {
            let id = task_id as i64;
            call(&callback, &[this, &id, &data], "finish")
        }
        None => {
            log::warn!(target: "surge", "task {task_id} finished with a result, and there is no finish callback");
            Outcome::Continue
        }
    }
}

/// taskwait() and taskWaitMulti() (`what`): queues `values` as tasks and waits up to `timeout`
/// seconds (default 0.5) for their results, decoded, in their order (None for one that did not
/// come in time); None if one could not be queued (logged).
pub fn wait_for(
    server: &Server,
    engine: &Engine,
    what: &str,
    values: &[&Zval],
    timeout: Option<f64>,
) -> PhpResult<Option<Vec<Option<Zval>>>> {
    let timeout = timeout.unwrap_or(0.5);
    if !(0.0..=86_400.0).contains(&timeout) {
        return Err(error(format!(
            "{what}() takes a timeout from 0 to 86400 seconds, got {timeout}"
        )));
    }
    let tasks = (values.iter())
        .map(|value| Ok((server.tasks.next_id(None), encode(value)?)))
        .collect::<PhpResult<Vec<_>>>()?;
    match engine.task_wait(&tasks, Duration::from_secs_f64(timeout)) {
        Ok(results) => (results.into_iter())
            .map(|result| {
                // A task that ended without a result (or was lost with its task worker): false.
                let result = result.filter(|bytes| bytes != NO_RESULT);
                result
                    .map(|bytes| decode(&bytes).map_err(error))
                    .transpose()
            })
            .collect::<PhpResult<_>>()
            .map(Some),
        Err(e) => {
            log::warn!(target: "surge", "{what}() failed: {e}");
            Ok(None)
        }
    }
}

/// task()'s return value: the task id, or false.
pub fn id_or_false(id: Option<u64>) -> PhpResult<Zval> {
    match id {
        Some(id) => Ok((id as i64).into_zval(false)?),
        None => Ok(false.into_zval(false)?),
    }
}
