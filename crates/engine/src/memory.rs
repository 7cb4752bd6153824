//! Gives the memory a burst of connections, or of large messages, leaves behind back to the
//! system.
//!
//! A connection's handshake allocates far more (hyper's buffers, the HTTP task) than the open
//! connection keeps, and glibc keeps freed memory in its heaps: after 10,000 clients connected
//! at once, about 0.5 KiB per connection sat in whole free pages (RSS 3.12 KiB per connection,
//! 2.58 after a trim, measured). Large messages do the same (glibc serves them from its heaps
//! once it has freed a few that size): after clients flooded a slow callback with 2 MB
//! messages, 83 MB stayed with no connection left; so do channels (a connection that had
//! joined three million left 1 GB behind it, 0.3 GB with a trim once it had left them).
//! `malloc_trim` hands such pages back
//! (MADV_DONTNEED); it walks the heaps, a few milliseconds, so it runs once a burst is over,
//! not on every change, and once PHP is done with the messages the burst brought: what PHP
//! still holds at a trim is freed after it, into the heaps (a slow callback can work through
//! 64 MB of queued messages for seconds after the network went quiet).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;

/// Connections opened or closed since the last trim that make another worth doing.
const CHURN: u64 = 256;

/// Message bytes received and sent, and no longer held for PHP, since the last trim that make
/// another worth doing.
const MOVED: u64 = 64 << 20;

/// Channel memberships ended since the last trim that make another worth doing.
const LEFT: u64 = 100_000;

/// With connections or messages coming all the time, trim this often at most.
const STEADY_CHURN_EVERY: Duration = Duration::from_secs(60);

/// A second in which less than this share of what makes a trim worth doing happened is quiet:
/// a clock's tick, presence pings or a trickle of chat must not keep a burst's pages from being
/// given back (a 500 ms tick pushing to every client kept 40-121 MB per worker, measured).
const QUIET_SHARE: u64 = 64;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Ticks missed while the thread was held (a callback, with `worker_threads` 0) must not come
    // back to back: two reads of the counts with no time between them would look quiet.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Plain HTTP (static files, downloads, TLS handshakes) churns as WebSockets do: a burst
    // of it over, the next quiet second trims.
    let stats = &shared.stats;
    let now = || Counts {
        churn: stats.accepted.load(Relaxed)
            + stats.closed.load(Relaxed)
            + shared.http_ended.load(Relaxed),
        moved: stats.bytes_in.load(Relaxed) + stats.bytes_out.load(Relaxed),
        left: shared.channels.left(),
        held: shared.inbound_held(),
    };
    let mut trims = Trims::new(now(), Instant::now());
    loop {
        tick.tick().await;
        if trims.due(now(), Instant::now()) {
            let began = Instant::now();
            trim();
            log::debug!(target: "surge", "returned free heap pages to the system in {:?}", began.elapsed());
        }
    }
}

/// What the memory task watches, read once a second.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
struct Counts {
    /// Connections opened and closed, HTTP exchanges ended.
    churn: u64,
    /// Message bytes received and sent.
    moved: u64,
    /// Channel memberships ended.
    left: u64,
    /// Bytes of messages PHP has not finished with: freed as it handles them, which can take
    /// seconds after the network went quiet (a slow callback, a queue of large messages).
    held: u64,
}

impl Counts {
    /// Message bytes received or sent that are no longer held for PHP: what a trim can give back.
    fn freed(&self) -> u64 {
        self.moved.saturating_sub(self.held)
    }

    /// Whether little happened since `was`: see [`QUIET_SHARE`].
    fn calm_since(&self, was: &Counts) -> bool {
        self.churn - was.churn < CHURN / QUIET_SHARE
            && self.moved - was.moved < MOVED / QUIET_SHARE
            && self.left - was.left < LEFT / QUIET_SHARE
            && self.held.abs_diff(was.held) < MOVED / QUIET_SHARE
    }
}

/// When to trim: once a second passed with little change, if enough changed since the last trim.
struct Trims {
    trimmed_at: Counts,
    trimmed_when: Instant,
    last: Counts,
}

impl Trims {
    fn new(counts: Counts, now: Instant) -> Self {
        Trims {
            trimmed_at: counts,
            trimmed_when: now,
            last: counts,
        }
    }

    /// Whether to trim now, given the counts of this second.
    fn due(&mut self, counts: Counts, now: Instant) -> bool {
        let was = std::mem::replace(&mut self.last, counts);
        // A second with (almost) no connections opening or closing, messages, nor PHP handling
        // them: the burst is over.
        let quiet = counts.calm_since(&was) || now - self.trimmed_when >= STEADY_CHURN_EVERY;
        let since = &self.trimmed_at;
        let worth = counts.churn - since.churn >= CHURN
            || counts.freed().saturating_sub(since.freed()) >= MOVED
            || counts.left - since.left >= LEFT;
        if !(quiet && worth) {
            return false;
        }
        self.trimmed_at = counts;
        self.trimmed_when = now;
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: glibc's malloc_trim takes the heaps' own locks; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    /// Feeds `seconds` of counts to a fresh `Trims`; the seconds at which it trimmed.
    fn trims_over(seconds: &[Counts]) -> Vec<usize> {
        let start = Instant::now();
        let mut trims = Trims::new(Counts::default(), start);
        let mut at = Vec::new();
        for (second, &counts) in seconds.iter().enumerate() {
            if trims.due(counts, start + Duration::from_secs(second as u64 + 1)) {
                at.push(second);
            }
        }
        at
    }

    fn moved(moved: u64, held: u64) -> Counts {
        Counts {
            moved,
            held,
            ..Counts::default()
        }
    }

    #[test]
    fn a_burst_is_trimmed_once_the_second_after_it() {
        let burst = [
            moved(40 * MB, 0),
            moved(80 * MB, 0),
            moved(80 * MB, 0),
            moved(80 * MB, 0),
        ];
        assert_eq!(trims_over(&burst), [2]);
    }

    #[test]
    fn a_trickle_after_a_burst_does_not_put_its_trim_off() {
        let ticks = (0..5).map(|s| moved(80 * MB + s * 1000, 0));
        let seconds: Vec<Counts> = [moved(40 * MB, 0)].into_iter().chain(ticks).collect();
        assert_eq!(trims_over(&seconds), [2]);
    }

    #[test]
    fn too_little_moved_is_not_worth_a_trim() {
        assert_eq!(
            trims_over(&[moved(MB, 0), moved(MB, 0), moved(MB, 0)]),
            Vec::<usize>::new()
        );
    }

    /// Seconds in which `total` MB have come and PHP still holds `held` MB of them.
    fn php_holding(total: u64, held: &[u64]) -> Vec<Counts> {
        held.iter()
            .map(|&held| moved(total * MB, held * MB))
            .collect()
    }

    #[test]
    fn nothing_is_trimmed_while_php_works_through_what_it_was_given() {
        // The network quiet from the first second on; PHP frees 20 MB a second.
        let seconds = php_holding(100, &[64, 44, 24, 4, 0, 0]);
        assert_eq!(trims_over(&seconds), [5]);
    }

    #[test]
    fn what_php_holds_counts_once_it_lets_it_go() {
        // A callback holds 64 MB for three seconds with nothing else moving, then lets it go:
        // the 36 MB freed before are not worth a trim, the 100 after are.
        let seconds = php_holding(100, &[64, 64, 64, 0, 0, 0]);
        assert_eq!(trims_over(&seconds), [4]);
    }

    #[test]
    fn steady_traffic_is_trimmed_every_minute() {
        let seconds: Vec<Counts> = (1..=130).map(|s| moved(s * 10 * MB, 0)).collect();
        assert_eq!(trims_over(&seconds), [59, 119]);
    }
}
