//! `sendMessage()` and the `pipeMessage` callback: a value from one worker (or task worker) to
//! another's PHP, over the engine's bus. It crosses as task data does (see `tasks.rs`).

use ext_php_rs::exception::PhpResult;
use ext_php_rs::types::Zval;

use crate::callbacks::{call, Kind, Outcome};
use crate::exception::error;
use crate::server::Server;
use crate::tasks::{decode, encode};

/// Sends `message` to worker `dst`; true once handed over.
pub fn send(server: &Server, message: &Zval, dst: i64) -> PhpResult<bool> {
    let workers = {
        let config = server.config.borrow();
        if config.worker_num < 2 && config.task_worker_num == 0 {
            return Err(error(
                "sendMessage() reaches other worker processes: set worker_num above 1 (or task_worker_num)",
            ));
        }
        (config.worker_num + config.task_worker_num) as i64
    };
    let me = server.worker_id.get();
    let Some(engine) = server.engine().filter(|_| me >= 0) else {
        return Err(error(
            "sendMessage() is for workers and task workers: call it from their callbacks",
        ));
    };
    if !(0..workers).contains(&dst) {
        return Err(error(format!(
            "sendMessage() sends to a worker or task worker, 0 to {}: got {dst}",
            workers - 1
        )));
    }
    if dst == me {
        return Err(error(format!(
            "sendMessage() sends to another worker: {dst} is this one"
        )));
    }
    Ok(engine.send_message(dst as usize, &encode(message)?))
}

/// Runs the `pipeMessage` callback for what worker `from` sent.
pub fn received(server: &Server, this: &Zval, from: usize, data: &[u8]) -> Outcome {
    let Some(callback) = server.callbacks.borrow().get(Kind::PipeMessage) else {
        log::warn!(target: "surge", "a message from worker {from} was dropped: there is no pipeMessage callback");
        return Outcome::Continue;
    };
    match decode(data) {
        Ok(message) => call(&callback, &[this, &(from as i64), &message], "pipeMessage"),
        Err(e) => {
            log::error!(target: "surge", "a message from worker {from} was dropped: {e}");
            Outcome::Continue
        }
    }
}
