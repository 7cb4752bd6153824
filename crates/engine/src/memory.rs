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
//! not on every change.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;

/// Connections opened or closed since the last trim that make another worth doing.
const CHURN: u64 = 256;

/// Message bytes received and sent since the last trim that make another worth doing.
const MOVED: u64 = 64 << 20;

/// Channel memberships ended since the last trim that make another worth doing.
const LEFT: u64 = 100_000;

/// With connections or messages coming all the time, trim this often at most.
const STEADY_CHURN_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Plain HTTP (static files, downloads, TLS handshakes) churns as WebSockets do: a burst
    // of it over, the next second without change trims.
    let stats = &shared.stats;
    let now = || {
        let churn = stats.accepted.load(Relaxed)
            + stats.closed.load(Relaxed)
            + shared.http_ended.load(Relaxed);
        (
            churn,
            stats.bytes_in.load(Relaxed) + stats.bytes_out.load(Relaxed),
            shared.channels.left(),
        )
    };
    let (mut trimmed_at, mut last, mut trimmed_when) = (now(), now(), Instant::now());
    loop {
        tick.tick().await;
        let counts = now();
        let (churn, moved, left) = counts;
        // A second without connections opening or closing, nor messages: the burst is over.
        let quiet = counts == last || trimmed_when.elapsed() >= STEADY_CHURN_EVERY;
        let worth = churn - trimmed_at.0 >= CHURN
            || moved - trimmed_at.1 >= MOVED
            || left - trimmed_at.2 >= LEFT;
        if quiet && worth {
            trimmed_when = Instant::now();
            trim();
            log::debug!(target: "surge", "returned free heap pages to the system in {:?}", trimmed_when.elapsed());
            trimmed_at = counts;
        }
        last = counts;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: glibc's malloc_trim takes the heaps' own locks; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
