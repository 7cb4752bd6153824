//! Gives the memory a burst of connections leaves behind back to the system.
//!
//! A connection's handshake allocates far more (hyper's buffers, the HTTP task) than the open
//! connection keeps, and glibc keeps freed memory in its heaps: after 10,000 clients connected
//! at once, about 0.5 KiB per connection sat in whole free pages (RSS 3.12 KiB per connection,
//! 2.58 after a trim, measured). `malloc_trim` hands such pages back (MADV_DONTNEED); it walks
//! the heaps, a few milliseconds, so it runs once a burst is over, not on every change.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;

/// Connections opened or closed since the last trim that make another worth doing.
const CHURN: u64 = 256;

/// With connections coming and going all the time, trim this often at most.
const STEADY_CHURN_EVERY: Duration = Duration::from_secs(60);

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Plain HTTP (static files, downloads, TLS handshakes) churns as WebSockets do: a burst
    // of it over, the next second without change trims.
    let churn = || {
        shared.stats.accepted.load(Relaxed)
            + shared.stats.closed.load(Relaxed)
            + shared.http_ended.load(Relaxed)
    };
    let (mut trimmed_at, mut last, mut trimmed_when) = (churn(), churn(), Instant::now());
    loop {
        tick.tick().await;
        let now = churn();
        // A second without connections opening or closing: the burst is over.
        let quiet = now == last || trimmed_when.elapsed() >= STEADY_CHURN_EVERY;
        if quiet && now - trimmed_at >= CHURN {
            trimmed_when = Instant::now();
            trim();
            log::debug!(target: "surge", "returned free heap pages to the system in {:?}", trimmed_when.elapsed());
            trimmed_at = now;
        }
        last = now;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: glibc's malloc_trim takes the heaps' own locks; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
