//! Cache channels (`cache-`, `private-cache-`, `private-encrypted-cache-`, `presence-cache-`),
//! as Pusher has them: the last event the server triggered on one (the HTTP API, or a Laravel
//! broadcast through Redis) is kept for 30 minutes and sent to each new subscriber right after
//! its subscription succeeded; a subscriber to one with nothing kept gets `pusher:cache_miss`.
//! Client events and presence notices are not kept.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::registry::Outgoing;

/// How long an event is kept, as Pusher keeps it.
pub const TTL_MS: u64 = 30 * 60 * 1000;

/// Whether `channel` is a cache channel, of any kind.
pub fn is_cache(channel: &str) -> bool {
    ["private-encrypted-", "private-", "presence-"]
        .iter()
        .find_map(|kind| channel.strip_prefix(kind))
        .unwrap_or(channel)
        .starts_with("cache-")
}

struct Kept {
    frame: Outgoing,
    until_ms: u64,
}

/// One app's kept events, by channel. Sending an event to the subscribers and a new subscriber's
/// joining both happen under its lock, so a new subscriber gets the event before a trigger and
/// then the trigger's live, or the trigger's from here: never one twice, never out of order.
#[derive(Default)]
pub struct Cache {
    kept: Mutex<HashMap<String, Kept>>,
}

impl Cache {
    /// Sends `frame` (`send`: to the channel's subscribers) and keeps it as the channel's last.
    pub fn keep_and_send<R>(
        &self,
        channel: &str,
        frame: Outgoing,
        now_ms: u64,
        send: impl FnOnce(&Outgoing) -> R,
    ) -> R {
        let mut kept = self.kept.lock();
        let sent = send(&frame);
        let until_ms = now_ms + TTL_MS;
        kept.insert(channel.to_owned(), Kept { frame, until_ms });
        sent
    }

    /// Runs `join` (which adds the subscriber to the channel and tells it so), then hands
    /// `deliver` the channel's kept event, None when there is none.
    pub fn subscribe(
        &self,
        channel: &str,
        now_ms: u64,
        join: impl FnOnce(),
        deliver: impl FnOnce(Option<&Outgoing>),
    ) {
        let kept = self.kept.lock();
        join();
        deliver(
            kept.get(channel)
                .filter(|k| k.until_ms > now_ms)
                .map(|k| &k.frame),
        );
    }

    /// Forgets the events kept past their time.
    pub fn expire(&self, now_ms: u64) {
        self.kept.lock().retain(|_, k| k.until_ms > now_ms);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.kept.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::text_frame;

    /// The payload of a short text frame (after its 2-byte header).
    fn text(item: &Outgoing) -> String {
        String::from_utf8(item.frame().unwrap().plain()[2..].to_vec()).unwrap()
    }

    fn subscribe(cache: &Cache, channel: &str, now: u64) -> String {
        let mut got = String::new();
        cache.subscribe(
            channel,
            now,
            || {},
            |kept| {
                got = kept.map_or("miss".into(), text);
            },
        );
        got
    }

    #[test]
    fn cache_channels_of_every_kind() {
        for name in [
            "cache-a",
            "private-cache-a",
            "private-encrypted-cache-a",
            "presence-cache-a",
        ] {
            assert!(is_cache(name), "{name}");
        }
        for name in [
            "a",
            "cache",
            "private-a",
            "presence-a-cache-b",
            "private-presence-cache-a",
        ] {
            assert!(!is_cache(name), "{name}");
        }
    }

    #[test]
    fn the_last_event_is_kept_for_its_time() {
        let cache = Cache::default();
        assert_eq!(subscribe(&cache, "cache-a", 0), "miss");
        let sent = cache.keep_and_send("cache-a", text_frame("one"), 1000, text);
        assert_eq!(sent, "one");
        cache.keep_and_send("cache-a", text_frame("two"), 2000, |_| ());
        assert_eq!(subscribe(&cache, "cache-a", 3000), "two");
        assert_eq!(subscribe(&cache, "cache-b", 3000), "miss");
        assert_eq!(
            subscribe(&cache, "cache-a", 2000 + TTL_MS),
            "miss",
            "past its time"
        );
        cache.expire(2000 + TTL_MS - 1);
        assert_eq!(cache.len(), 1);
        cache.expire(2000 + TTL_MS);
        assert_eq!(cache.len(), 0);
    }
}
