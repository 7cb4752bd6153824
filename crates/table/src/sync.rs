//! The two cross-process locks of the table, both single 64-bit words in shared memory.
//! No OS mutex is used: a pthread mutex in shared memory needs PTHREAD_PROCESS_SHARED
//! set up before the fork and a futex per lock, and every critical section here is a few
//! dozen stores that never block, so spinning (and yielding when that fails) is cheaper.

use std::sync::atomic::{fence, AtomicU64, Ordering::*};

/// Spin a little, then give the CPU away. The other lock holder may be a process the
/// scheduler has just preempted; on a small machine spinning on would only delay it.
pub(crate) struct Backoff(u32);

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff(0)
    }

    pub(crate) fn snooze(&mut self) {
        if self.0 < 6 {
            for _ in 0..(1u32 << self.0) {
                std::hint::spin_loop();
            }
            self.0 += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Waits until `word` is `free`, then swaps in `locked(word)` with acquire ordering, and
/// returns the value it replaced. Both locks of the table are this, on different bits.
fn spin_acquire(word: &AtomicU64, free: impl Fn(u64) -> bool, locked: impl Fn(u64) -> u64) -> u64 {
    let mut backoff = Backoff::new();
    loop {
        let w = word.load(Relaxed);
        if free(w)
            && word
                .compare_exchange_weak(w, locked(w), Acquire, Relaxed)
                .is_ok()
        {
            return w;
        }
        backoff.snooze();
    }
}

/// A row's seqlock: even = stable, odd = a writer is inside. Writers exclude each other with
/// the odd value; readers never write, they copy and check the word did not move.
pub(crate) struct RowGuard<'a> {
    seq: &'a AtomicU64,
    odd: u64,
}

impl<'a> RowGuard<'a> {
    pub(crate) fn lock(seq: &'a AtomicU64) -> RowGuard<'a> {
        // The acquire makes the previous writer's stores (released by its unlock) visible,
        // which incr needs since it reads the value it replaces.
        let s = spin_acquire(seq, |s| s & 1 == 0, |s| s + 1);
        // The data stores that follow must not become visible before the odd value: a
        // reader that sees any of them then sees the sequence moved.
        fence(Release);
        RowGuard { seq, odd: s + 1 }
    }
}

impl Drop for RowGuard<'_> {
    fn drop(&mut self) {
        self.seq.store(self.odd + 1, Release);
    }
}

/// Runs `copy` until it ran on a stable row, and returns that run's result. `copy` may see
/// torn data in runs that are thrown away, so it must stay in bounds whatever it reads. It is
/// given the (even) sequence the row had around it: the row's version in the kept run.
pub(crate) fn read_stable<T>(seq: &AtomicU64, mut copy: impl FnMut(u64) -> T) -> T {
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
        backoff.snooze();
    }
}

/// A bucket word: bits 0..32 the first row of the chain plus one (0 = empty chain), bit 32
/// the bucket lock, bits 33..64 a version bumped by every change to the chain.
const BUCKET_LOCK: u64 = 1 << 32;
const VERSION_SHIFT: u32 = 33;

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
    word: u64,
}

impl<'a> BucketGuard<'a> {
    pub(crate) fn lock(bucket: &'a AtomicU64) -> BucketGuard<'a> {
        let word = spin_acquire(bucket, |w| w & BUCKET_LOCK == 0, |w| w | BUCKET_LOCK);
        BucketGuard { bucket, word }
    }

    pub(crate) fn head(&self) -> u32 {
        chain_head(self.word)
    }

    /// Unlocks with `head` as the chain's first row (plus one) and the version moved on, so
    /// a lock-free search that overlapped the change and found nothing searches again.
    pub(crate) fn publish(self, head: u32) {
        let version = chain_version(self.word).wrapping_add(1) << VERSION_SHIFT;
        self.bucket.store(version | head as u64, Release);
        std::mem::forget(self);
    }
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        self.bucket.store(self.word, Release);
    }
}
