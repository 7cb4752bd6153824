//! The tasks behind `tick` and `after`: each sends `Event::Timer { id }` when due. The
//! callables stay on the PHP thread; this side only knows ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::events::Event;

struct Timer {
    task: AbortHandle,
    /// Told when PHP has run the tick the task sent last.
    ran: Arc<Notify>,
}

#[derive(Clone, Default)]
pub(crate) struct Timers(Arc<Mutex<HashMap<u64, Timer>>>);

impl Timers {
    /// Sends `Timer { id }` after `delay`, then every `every` if given. A tick is sent again
    /// only once PHP has run the one before (`ran`): a tick whose callback, or anything else
    /// on the PHP thread, takes longer than its interval runs again as soon as it can, once,
    /// never as a burst of calls to catch up (nor a queue of them growing as long as PHP is
    /// slower than the interval).
    pub(crate) fn add(
        &self,
        runtime: &Handle,
        events: mpsc::Sender<Event>,
        id: u64,
        delay: Duration,
        every: Option<Duration>,
    ) {
        let ran = Arc::new(Notify::new());
        let mut timers = self.0.lock();
        // Inserted under the lock the task takes to remove itself, so that a timer which
        // fires and ends before the insert does not leave its entry behind.
        let task = runtime.spawn({
            let ran = ran.clone();
            let timers = self.clone();
            async move {
                tokio::time::sleep(delay).await;
                loop {
                    let sent = Instant::now();
                    if events.send(Event::Timer { id }).await.is_err() {
                        return;
                    }
                    let Some(every) = every else { break };
                    ran.notified().await;
                    tokio::time::sleep_until(sent + every).await;
                }
                timers.0.lock().remove(&id);
            }
        });
        timers.insert(
            id,
            Timer {
                task: task.abort_handle(),
                ran,
            },
        );
    }

    /// PHP has run tick `id` (or found it cleared): it may be sent again when due.
    pub(crate) fn ran(&self, id: u64) {
        if let Some(timer) = self.0.lock().get(&id) {
            timer.ran.notify_one();
        }
    }

    /// Stops a timer; false if it does not exist (or already fired, for a one-shot).
    pub(crate) fn clear(&self, id: u64) -> bool {
        match self.0.lock().remove(&id) {
            Some(timer) => {
                timer.task.abort();
                true
            }
            None => false,
        }
    }

    pub(crate) fn clear_all(&self) {
        for (_, timer) in self.0.lock().drain() {
            timer.task.abort();
        }
    }
}
