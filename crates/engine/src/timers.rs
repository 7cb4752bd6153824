//! The tasks behind `tick` and `after`: each sends `Event::Timer { id }` when due. The
//! callables stay on the PHP thread; this side only knows ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::events::Event;

/// How late Tokio's timer may wake a task (its wheel counts whole ms, and the wait for the
/// next one rounds up again): a tick that PHP began less than this past its next time on the
/// grid was late by the timer's doing, not PHP's, and its next time stands (at once). Without
/// it a 1 ms tick, woken a ms late each time, found its next time gone and skipped it: it ran
/// about 575 times a second.
const TIMER_LATENESS: Duration = Duration::from_millis(2);

struct Timer {
    task: AbortHandle,
    /// Told when PHP began the tick the task sent last, once it has run it.
    ran: mpsc::Sender<Instant>,
}

#[derive(Clone, Default)]
pub(crate) struct Timers(Arc<Mutex<HashMap<u64, Timer>>>);

impl Timers {
    /// Sends `Timer { id }` after `delay`, then every `every` if given, on a fixed grid from
    /// now (as Swoole's timers: a tick does not drift by the time each takes to be sent). A tick
    /// is sent again only once PHP has run the one before (`ran`), at the first time on the
    /// grid after PHP began that one, as Swoole reckons: a tick whose own call outlasts its
    /// interval runs again at once, one that waited behind other callbacks at its next time;
    /// never a burst of calls to catch up (nor a queue of them growing as long as PHP is slower
    /// than the interval). One exception, for the timer's own lateness: a tick PHP began less
    /// than [`TIMER_LATENESS`] past its next time keeps that time.
    pub(crate) fn add(
        &self,
        runtime: &Handle,
        events: mpsc::Sender<Event>,
        id: u64,
        delay: Duration,
        every: Option<Duration>,
    ) {
        let (ran, mut began) = mpsc::channel(1);
        let mut timers = self.0.lock();
        // Inserted under the lock the task takes to remove itself, so that a timer which
        // fires and ends before the insert does not leave its entry behind.
        let mut due = Instant::now() + delay;
        let task = runtime.spawn({
            let timers = self.clone();
            async move {
                tokio::time::sleep_until(due).await;
                loop {
                    if events.send(Event::Timer { id }).await.is_err() {
                        return;
                    }
                    let Some(every) = every else { break };
                    let Some(began) = began.recv().await else {
                        return;
                    };
                    due += every;
                    if due + TIMER_LATENESS <= began {
                        while due <= began {
                            due += every;
                        }
                    }
                    tokio::time::sleep_until(due).await;
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

    /// PHP has run tick `id`, which it began at `began`: it may be sent again when due.
    pub(crate) fn ran(&self, id: u64, began: std::time::Instant) {
        if let Some(timer) = self.0.lock().get(&id) {
            // Room for one: a tick is sent again only after this.
            let _ = timer.ran.try_send(Instant::from_std(began));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_keep_to_their_grid_and_a_late_one_runs_once() {
        let (tx, mut rx) = mpsc::channel(8);
        let timers = Timers::default();
        let start = Instant::now();
        let every = Duration::from_millis(100);
        timers.add(&Handle::current(), tx, 1, every, Some(every));
        let mut at = Vec::new();
        let tick = |at: &mut Vec<u128>| at.push(start.elapsed().as_millis());
        for _ in 0..4 {
            rx.recv().await.unwrap();
            tick(&mut at);
            timers.ran(1, Instant::now().into_std());
        }
        // Its own call takes 250 ms: it runs again at once, then on its grid.
        rx.recv().await.unwrap();
        tick(&mut at);
        let began = Instant::now().into_std();
        tokio::time::sleep(Duration::from_millis(250)).await;
        timers.ran(1, began);
        rx.recv().await.unwrap();
        tick(&mut at);
        timers.ran(1, Instant::now().into_std());
        // It waits 250 ms behind other callbacks: it runs once when PHP is free, then when next
        // due, not again at once for the times it missed.
        rx.recv().await.unwrap();
        tick(&mut at);
        tokio::time::sleep(Duration::from_millis(250)).await;
        timers.ran(1, Instant::now().into_std());
        rx.recv().await.unwrap();
        tick(&mut at);
        assert_eq!(at, [100, 200, 300, 400, 500, 750, 800, 1100]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tick_woken_late_by_the_timer_keeps_its_next_slot() {
        let (tx, mut rx) = mpsc::channel(8);
        let timers = Timers::default();
        let start = Instant::now();
        let every = Duration::from_millis(1);
        timers.add(&Handle::current(), tx, 1, every, Some(every));
        let mut at = Vec::new();
        for _ in 0..4 {
            rx.recv().await.unwrap();
            at.push(start.elapsed().as_millis());
            // PHP begins each tick 1 ms after its time, as when Tokio's timer wakes it late.
            tokio::time::sleep(every).await;
            timers.ran(1, Instant::now().into_std());
        }
        // Each next slot had just come: sent at once, none skipped (every other one was).
        assert_eq!(at, [1, 2, 3, 4]);
    }
}
