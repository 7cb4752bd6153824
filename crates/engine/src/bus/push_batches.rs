//! Pushes to other workers' connections, gathered into one write per peer. The articles' loop
//! (`foreach ($server->connections as $fd) $server->push($fd, ...)`) with worker processes
//! pushes mostly to other workers' fds: one write each held the calling PHP about 16 µs a
//! push (3 workers, 15k clients), five times a push to its own connection.
//!
//! The PHP thread adds a push to its peer's batch and writes the batches when it has run a
//! batch of callbacks (`Engine::serve`), when they pass [`HELD`] (it then waits for room as a
//! single push did: a peer that reads slowly holds the pushes back, not memory), and before
//! anything else it sends to a peer (a question, a broadcast, a task result, a
//! `sendMessage()`) or that may reach the same clients another way (a task, a Redis publish, an
//! HTTP response: `Peers::write_pushes`), which thus never overtakes a push made before it. A
//! thread of its own writes what a callback still running pushed [`WRITTEN_WITHIN`] before (a
//! task reporting its progress, a callback that sleeps), so no push waits for the callback's
//! end. A child that a callback forks writes none of them (`Peers::made_in`).

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::links::{Links, Streams};

/// Bytes of pushes held for one peer before the PHP thread writes them.
const HELD: usize = 64 << 10;
/// How long a push waits at most for the PHP thread to write it.
pub(super) const WRITTEN_WITHIN: Duration = Duration::from_millis(1);

pub(super) struct PushBatches {
    shared: Arc<Batches>,
    writer: Option<JoinHandle<()>>,
}

struct Batches {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Per peer, whole messages not written yet.
    batches: Vec<Vec<u8>>,
    /// Bytes in all of them.
    held: usize,
    /// When the first of them was added.
    since: Option<Instant>,
    /// The writer waits for `since` + [`WRITTEN_WITHIN`], not to be woken.
    armed: bool,
    stop: bool,
}

impl PushBatches {
    /// Batches for `links`' peers, written by a thread started here.
    pub(super) fn start(links: Arc<Links>, processes: usize) -> Self {
        let shared = Arc::new(Batches {
            state: Mutex::new(State {
                batches: vec![Vec::new(); processes],
                ..State::default()
            }),
            wake: Condvar::new(),
        });
        let batches = shared.clone();
        let writer = std::thread::Builder::new()
            .name("surge-bus-out".into())
            .spawn(move || write_until_stopped(&batches, &links))
            .map_err(|e| log::warn!(target: "surge", "bus: no thread for pushes ({e}): each is written when made"))
            .ok();
        PushBatches { shared, writer }
    }

    /// Adds `message` (a whole push) to `peer`'s batch; true when the batch is past [`HELD`]
    /// (or no thread writes them), for the caller to write.
    pub(super) fn add(&self, peer: usize, message: &[u8]) -> bool {
        let mut state = self.shared.state.lock();
        if state.since.is_none() {
            state.since = Some(Instant::now());
            if !state.armed {
                self.shared.wake.notify_one();
            }
        }
        state.held += message.len();
        let batch = &mut state.batches[peer];
        batch.extend_from_slice(message);
        batch.len() > HELD || self.writer.is_none()
    }

    /// Whether some push is not written yet.
    pub(super) fn held(&self) -> bool {
        self.shared.state.lock().held > 0
    }

    /// Writes every batch, in `links` (locked by the caller as `streams`).
    pub(super) fn write(&self, links: &Links, streams: &mut Streams) {
        self.shared.write(links, streams);
    }
}

impl Batches {
    fn write(&self, links: &Links, streams: &mut Streams) {
        let taken: Vec<Vec<u8>> = {
            let mut state = self.state.lock();
            if state.held == 0 {
                return;
            }
            state.held = 0;
            state.since = None;
            state.batches.iter_mut().map(std::mem::take).collect()
        };
        for (peer, batch) in taken.iter().enumerate() {
            if !batch.is_empty() && !links.send_on(streams, peer, batch) {
                // push() said true for each: say what became of them.
                log::warn!(target: "surge", "bus: {} pushes to worker {peer}'s connections were dropped: it could not be reached, or read none for {:?}", messages_in(batch), super::links::TIMEOUT);
            }
        }
    }
}

/// How many messages `batch` holds (each a 4-byte length, then that many bytes).
fn messages_in(batch: &[u8]) -> usize {
    let mut rest = batch;
    let mut count = 0;
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        rest = after
            .get(u32::from_be_bytes(*len) as usize..)
            .unwrap_or_default();
        count += 1;
    }
    count
}

/// The writer's thread: writes a batch [`WRITTEN_WITHIN`] after its first push if the PHP
/// thread has not by then; at the stop, whatever is left.
fn write_until_stopped(batches: &Batches, links: &Links) {
    let mut state = batches.state.lock();
    loop {
        let due = state.since.map(|since| since + WRITTEN_WITHIN);
        match due {
            None if state.stop => return,
            None => {
                state.armed = false;
                batches.wake.wait(&mut state);
            }
            Some(due) if Instant::now() < due && !state.stop => {
                state.armed = true;
                batches.wake.wait_until(&mut state, due);
            }
            Some(_) => {
                drop(state);
                batches.write(links, &mut links.lock());
                state = batches.state.lock();
            }
        }
    }
}

impl Drop for PushBatches {
    /// Writes what is left, then ends the thread.
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        let _ = self.writer.take().map(|t| t.join());
    }
}
