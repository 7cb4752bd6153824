//! `tick`/`after`/`clearTimer`: the callables live here on the PHP thread; the engine only
//! sends `Timer { id }` events when they are due.

use std::collections::HashMap;
use std::time::Duration;

use ext_php_rs::types::Zval;
use surge_engine::Engine;

use crate::callable::Callable;

/// A timer's callable and the values it is called with after its id (Swoole's
/// `tick($ms, $callback, ...$params)`). Given back by `clear` and `take_all` for the caller to
/// drop (see `event_loop::release`).
pub struct Timer {
    callback: Callable,
    params: Vec<Zval>,
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
        params: Vec<Zval>,
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
                params,
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

    /// Returns the timer, for the caller to drop once its borrow has ended (see
    /// `event_loop::release`); None if there is no such timer.
    pub fn clear(&mut self, id: u64, engine: Option<&Engine>) -> Option<Timer> {
        if let Some(engine) = engine {
            engine.clear_timer(id);
        }
        self.entries.remove(&id)
    }

    /// The callable and parameters of a timer that fired, and whether it repeats. A one-shot
    /// timer is forgotten here, before its callback runs.
    pub fn fired(&mut self, id: u64) -> Option<(Callable, Vec<Zval>, bool)> {
        let timer = self.entries.get(&id)?;
        if timer.every.is_some() {
            let params = timer.params.iter().map(Zval::shallow_clone).collect();
            Some((timer.callback.shallow_clone(), params, true))
        } else {
            self.entries
                .remove(&id)
                .map(|t| (t.callback, t.params, false))
        }
    }

    /// Every timer, stopped in the engine if it runs, for the caller to drop (see
    /// `event_loop::release`).
    pub fn take_all(&mut self, engine: Option<&Engine>) -> Vec<Timer> {
        if let Some(engine) = engine {
            for id in self.entries.keys() {
                engine.clear_timer(*id);
            }
        }
        self.entries.drain().map(|(_, t)| t).collect()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// The ids of the timers still to run, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.entries.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
