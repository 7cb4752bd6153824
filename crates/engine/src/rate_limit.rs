//! Message rates: `max_messages_per_second` for every connection, `client_event_rate` for
//! Pusher client events.

/// A token bucket: it holds one second's worth of messages (so a client may send that many at
/// once) and refills at that rate; a message takes a token. Unlike a window counted from its
/// first message, no burst across a window's end lets twice the rate through.
pub(crate) struct RateLimit {
    /// Messages per second, which is also thousandths of a message per millisecond.
    rate: u64,
    /// In thousandths of a message.
    tokens: u64,
    last_ms: u64,
}

impl RateLimit {
    /// None for 0 (no limit).
    pub(crate) fn new(rate: u32, now_ms: u64) -> Option<Self> {
        (rate > 0).then(|| RateLimit::at_least_one(rate, now_ms))
    }

    /// For a rate that is never 0 (`client_event_rate`): 0 would be taken as 1.
    pub(crate) fn at_least_one(rate: u32, now_ms: u64) -> Self {
        let rate = rate.max(1) as u64;
        RateLimit {
            rate,
            tokens: rate * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes the token for one message; false if the client is over the rate.
    pub(crate) fn take(&mut self, now_ms: u64) -> bool {
        let refill = now_ms.saturating_sub(self.last_ms) * self.rate;
        self.tokens = (self.tokens + refill).min(self.rate * 1000);
        self.last_ms = now_ms;
        if self.tokens < 1000 {
            return false;
        }
        self.tokens -= 1000;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn rate_limit_allows_a_burst_of_one_second_then_the_rate() {
        assert!(RateLimit::new(0, 0).is_none(), "0: no limit");
        let mut r = RateLimit::new(10, 1_000).unwrap();
        assert!((0..10).all(|_| r.take(1_000)), "a burst of 10 at once");
        assert!(!r.take(1_000), "the 11th in the same instant is over");
        assert!(!r.take(1_099), "refilled 0.99 of a message");
        assert!(r.take(1_100), "one message per 100 ms");
        assert!(!r.take(1_100));
        // Idle for a long time refills to one second's worth, no more.
        assert!((0..10).all(|_| r.take(60_000)));
        assert!(!r.take(60_000));
        // Steady at the rate is never over it.
        let mut r = RateLimit::new(50, 0).unwrap();
        assert!((1..=1_000).all(|i| r.take(i * 20)));
    }
}
