//! The two cross-process locks of the table, both single 64-bit words in shared memory.
//! No OS mutex is used: a pthread mutex in shared memory needs PTHREAD_PROCESS_SHARED
//! set up before the fork and a futex per lock, and every critical section here is a few
//! dozen stores that never block, so spinning (and yielding, then sleeping, when that fails)
//! is cheaper.
//!
//! Each lock records the pid of its holder, so that a waiter that has waited long can see
//! that the holder was killed inside its critical section and release the lock in its place
//! (see `process`). The row or chain then keeps what the dead process had written of it.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use crate::process::{self, PID_BITS};

/// Spin a little, then give the CPU away, then sleep. The other lock holder may be a process
/// the scheduler has just preempted; on a small machine spinning on would only delay it.
pub(crate) struct Backoff(u32);

/// Snoozes spent spinning, then yielding; every one after those sleeps SLEEP.
const SPINS: u32 = 6;
const YIELDS: u32 = 100;
const SLEEP: Duration = Duration::from_micros(200);
/// A waiter asks whether the holder still runs once every this many sleeps (about 10 ms).
const SLEEPS_PER_LOOK: u32 = 50;

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(0)
    }

    /// Waits a little longer each time; true when the caller has waited long enough, since it
    /// last heard true, to look at whether the holder of what it waits for is gone.
    /// Whether it has spun and yielded all it will: the next snooze sleeps.
    pub(crate) fn exhausted(&self) -> bool {
        self.0 >= SPINS + YIELDS
    }

    pub(crate) fn snooze(&mut self) -> bool {
        let n = self.0;
        self.0 = n.saturating_add(1);
        if n < SPINS {
            for _ in 0..(1u32 << n) {
                std::hint::spin_loop();
            }
            false
        } else if n < SPINS + YIELDS {
            std::thread::yield_now();
            false
        } else {
            std::thread::sleep(SLEEP);
            (n - SPINS - YIELDS) % SLEEPS_PER_LOOK == SLEEPS_PER_LOOK - 1
        }
    }
}

/// A row's seqlock word: the sequence in the low SEQ_BITS bits, odd while a writer is inside,
/// and the writer's pid above it while it is (0 otherwise, so an even word is the sequence
/// alone). The sequence comes back to a value it had only after 2^41 writes to the row.
const SEQ_BITS: u32 = 64 - PID_BITS;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// The even word that follows a locked (odd) one: what its writer's unlock stores.
fn unlocked_after(locked: u64) -> u64 {
    ((locked & SEQ_MASK) + 1) & SEQ_MASK
}

/// If the writer inside the row (`locked`, the word seen) has died, takes the row over (a
/// compare-exchange: of several waiters that see the death, one does), lets `repair` put right
/// what that death can leave (see the table's `repair_row`), and releases the row as the
/// writer's unlock would have.
#[cold]
#[inline(never)]
fn release_row_of_the_dead(seq: &AtomicU64, locked: u64, repair: impl Fn()) {
    if !process::is_gone((locked >> SEQ_BITS) as u32) {
        return;
    }
    let mine = (locked & SEQ_MASK) | u64::from(process::me()) << SEQ_BITS;
    if seq.compare_exchange(locked, mine, Acquire, Relaxed).is_ok() {
        repair();
        seq.store(unlocked_after(locked), Release);
    }
}

/// A row's seqlock: even = stable, odd = a writer is inside. Writers exclude each other with
/// the odd value; readers copy and check the word did not move (they write only to release
/// the lock of a writer that died, or to take the lock themselves when writers keep the row
/// busy: see `read_stable`).
pub(crate) struct RowGuard<'a> {
    seq: &'a AtomicU64,
    locked: u64,
}

impl<'a> RowGuard<'a> {
    /// `repair`: see `release_row_of_the_dead`.
    pub(crate) fn lock(seq: &'a AtomicU64, repair: impl Fn()) -> RowGuard<'a> {
        let me = u64::from(process::me()) << SEQ_BITS;
        let mut backoff = Backoff::new();
        loop {
            let s = seq.load(Relaxed);
            if s & 1 == 0 {
                // The acquire makes the previous writer's stores (released by its unlock)
                // visible, which incr needs since it reads the value it replaces.
                let locked = (s + 1) | me;
                if seq
                    .compare_exchange_weak(s, locked, Acquire, Relaxed)
                    .is_ok()
                {
                    // The data stores that follow must not become visible before the odd
                    // value: a reader that sees any of them then sees the sequence moved.
                    fence(Release);
                    return RowGuard { seq, locked };
                }
            }
            if backoff.snooze() && s & 1 == 1 {
                release_row_of_the_dead(seq, s, &repair);
            }
        }
    }
}

impl RowGuard<'_> {
    /// The row's (even) sequence when the lock was taken: its version as it now stands.
    fn version(&self) -> u64 {
        (self.locked & SEQ_MASK) - 1
    }
}

impl Drop for RowGuard<'_> {
    fn drop(&mut self) {
        self.seq.store(unlocked_after(self.locked), Release);
    }
}

/// Runs `copy` until it ran on a stable row, and returns that run's result. `copy` may see
/// torn data in runs that are thrown away, so it must stay in bounds whatever it reads. It is
/// given the (even) sequence the row had around it: the row's version in the kept run.
/// A reader that found the row busy through all its spins and yields takes the writers' lock
/// and copies under it: writers that keep a row busy (a loop of set() on it in another
/// process) otherwise starved it, a get() waiting up to seconds. `repair`: see
/// `release_row_of_the_dead`.
pub(crate) fn read_stable<T>(
    seq: &AtomicU64,
    repair: impl Fn(),
    mut copy: impl FnMut(u64) -> T,
) -> T {
    let mut backoff = Backoff::new();
    loop {
        let before = seq.load(Acquire);
        if before & 1 == 0 {
            let result = copy(before);
            // Keeps the copy's loads before the second read of the sequence.
            fence(Acquire);
            if seq.load(Relaxed) == before {
                return result;
            }
        }
        if backoff.exhausted() {
            let guard = RowGuard::lock(seq, &repair);
            return copy(guard.version());
        }
        if backoff.snooze() && before & 1 == 1 {
            release_row_of_the_dead(seq, before, &repair);
        }
    }
}

/// A bucket word: bits 0..32 the first row of the chain plus one (0 = empty chain), bits
/// 32..64 a version bumped by every change to the chain. Its lock is a word of its own (the
/// bucket's `owner`): the pid of the process holding it, 0 when free, so that taking the
/// lock and naming its holder are one step (two steps left a bucket locked for ever by a
/// holder killed between them, about once in 25 kills of a process inserting in a loop).
const VERSION_SHIFT: u32 = 32;

pub(crate) fn chain_head(word: u64) -> u32 {
    word as u32
}

pub(crate) fn chain_version(word: u64) -> u64 {
    word >> VERSION_SHIFT
}

/// Held while a chain is searched for insertion or changed. Dropping it unlocks the bucket
/// without a change; `publish` unlocks it with a new head and a new version.
pub(crate) struct BucketGuard<'a> {
    bucket: &'a AtomicU64,
    owner: &'a AtomicU32,
    word: u64,
}

impl<'a> BucketGuard<'a> {
    /// `deaths` counts the buckets taken over from a dead holder (see `release_of_the_dead`).
    pub(crate) fn lock(
        bucket: &'a AtomicU64,
        owner: &'a AtomicU32,
        deaths: &AtomicU64,
    ) -> BucketGuard<'a> {
        let me = process::me();
        let mut backoff = Backoff::new();
        loop {
            let holder = owner.load(Relaxed);
            // The acquire makes the chain as the last holder left it visible (its unlock
            // stored the bucket word before it freed the owner word).
            if holder == 0 && owner.compare_exchange_weak(0, me, Acquire, Relaxed).is_ok() {
                return BucketGuard {
                    bucket,
                    owner,
                    word: bucket.load(Relaxed),
                };
            }
            if backoff.snooze() && holder != 0 {
                Self::release_of_the_dead(bucket, owner, holder, deaths);
            }
        }
    }

    /// If the holder has died, releases the bucket with its chain as it stands and the
    /// version moved on: a dead delete may have unlinked its row without publishing, and a
    /// lock-free search that overlapped it must search again. Whoever swaps the dead pid for
    /// its own releases (and if it dies doing so, is the dead holder the next one sees). The
    /// death is counted: the holder may have taken or been giving back a row of the table,
    /// which the table then finds again when it is full (see the table's `reclaim`).
    fn release_of_the_dead(bucket: &AtomicU64, owner: &AtomicU32, holder: u32, deaths: &AtomicU64) {
        if process::is_gone(holder)
            && owner
                .compare_exchange(holder, process::me(), Acquire, Relaxed)
                .is_ok()
        {
            deaths.fetch_add(1, Relaxed);
            let word = bucket.load(Relaxed);
            Self::unlock(
                bucket,
                owner,
                chain_version(word).wrapping_add(1),
                chain_head(word),
            );
        }
    }

    fn unlock(bucket: &AtomicU64, owner: &AtomicU32, version: u64, head: u32) {
        bucket.store(version << VERSION_SHIFT | u64::from(head), Release);
        owner.store(0, Release);
    }

    pub(crate) fn head(&self) -> u32 {
        chain_head(self.word)
    }

    /// Makes `head` the chain's first row (plus one) and moves the version on, keeping the
    /// lock: a lock-free search that overlapped the change and found nothing searches again.
    pub(crate) fn move_to(&mut self, head: u32) {
        let version = chain_version(self.word).wrapping_add(1);
        self.word = version << VERSION_SHIFT | u64::from(head);
        self.bucket.store(self.word, Release);
    }

    /// `move_to`, then unlocks.
    pub(crate) fn publish(mut self, head: u32) {
        self.move_to(head);
    }
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        Self::unlock(
            self.bucket,
            self.owner,
            chain_version(self.word),
            self.head(),
        );
    }
}
