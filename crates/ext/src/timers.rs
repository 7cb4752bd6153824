//! `tick`/`after`/`clearTimer`: the callables live here on the PHP thread; the engine only
//! sends `Timer { id }` events when they are due.

use std::collections::HashMap;
use std::time::Duration;

use surge_engine::Engine;

use crate::callable::Callable;

struct Timer {
    callback: Callable,
    delay: Duration,
    /// Some for `tick`, None for `after`.
    every: Option<Duration>,
}

#[derive(Default)]
pub struct Timers {
    last_id: u64,
    entries: HashMap<u64, Timer>,
}

impl Timers {
    /// Registers a timer and schedules it now if the engine runs, else at `schedule_all`.
    pub fn add(
        &mut self,
        callback: Callable,
        delay: Duration,
        repeat: bool,
        engine: Option<&Engine>,
    ) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        let every = repeat.then_some(delay);
        if let Some(engine) = engine {
            engine.add_timer(id, delay, every);
        }
        self.entries.insert(
            id,
            Timer {
                callback,
                delay,
                every,
            },
        );
        id
    }

    /// Schedules the timers created before `start()`.
    pub fn schedule_all(&self, engine: &Engine) {
        for (id, t) in &self.entries {
            engine.add_timer(*id, t.delay, t.every);
        }
    }

    /// Returns the timer's callable, for the caller to drop once its borrow has ended (see
    /// `event_loop::release`); None if there is no such timer.
    pub fn clear(&mut self, id: u64, engine: Option<&Engine>) -> Option<Callable> {
        if let Some(engine) = engine {
            engine.clear_timer(id);
        }
        self.entries.remove(&id).map(|t| t.callback)
    }

    /// The callable for a timer that fired, and whether it repeats. A one-shot timer is
    /// forgotten here, before its callback runs.
    pub fn fired(&mut self, id: u64) -> Option<(Callable, bool)> {
        let repeat = self.entries.get(&id)?.every.is_some();
        if repeat {
            Some((self.entries[&id].callback.shallow_clone(), true))
        } else {
            self.entries.remove(&id).map(|t| (t.callback, false))
        }
    }

    /// Every timer's callable, for the caller to drop (see `event_loop::release`).
    pub fn take_all(&mut self) -> Vec<Callable> {
        self.entries.drain().map(|(_, t)| t.callback).collect()
    }
}
