//! The Redis pub/sub bridge. Laravel's redis broadcaster PUBLISHes `{"event","data","socket"}`
//! to `<prefix><channel>`; the bridge subscribes, hands each message to PHP's `redis` callback
//! and/or forwards it natively to the members of the Surge channel of the same name. Redis going
//! away never touches WebSocket clients: the bridge logs once, reconnects with backoff and
//! subscribes everything again.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};

use crate::budget_queue::BudgetQueue;
use crate::events::Event;
use crate::frame;
use crate::logging::Throttle;
use crate::registry::Outgoing;
use crate::shared::Shared;
use crate::stats::bump;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Redis pub/sub keeps nothing for a subscriber that is not there: each second of waiting
/// after Redis is back loses what is published meanwhile.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A connection that lived this long ended its outage: the next loss is a new one.
const STABLE: Duration = Duration::from_secs(10);
/// How often the subscription connection is checked with a PING: a Redis host that vanished
/// without closing the TCP connection (crash, network cut) is otherwise never noticed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long Redis may take to connect or to answer a (P)SUBSCRIBE or PING before the
/// connection counts as lost.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// Topics (P)SUBSCRIBEd by one command when all are subscribed again: one at a time, 60,000
/// took 20 s after a reconnect.
const SUBSCRIBE_BATCH: usize = 500;
/// Bytes of messages waiting to be PUBLISHed by `redisPublish` before it returns false.
const PUBLISH_BYTES: usize = 32 << 20;
/// After a PUBLISH failed, how long those queued behind it are dropped without trying: a
/// Redis that does not answer (stopped, cut off) makes each attempt wait out its timeout.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);
/// How often "not a Laravel broadcast" is logged, at most.
const NOT_LARAVEL_WARN_EVERY: Duration = Duration::from_secs(10);
/// How often a PUBLISH Redis refused (NOPERM) is logged, at most.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);
/// Bytes of messages taken from Redis and not yet forwarded, at most: what Redis itself holds
/// for a subscriber before it disconnects it (`client-output-buffer-limit pubsub`, 32 MiB).
pub const INTAKE_BYTES: usize = 32 << 20;
/// Bytes of messages waiting for the `redis` callback, at most.
pub const CALLBACK_BYTES: usize = 32 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeState {
    Connecting = 0,
    Connected = 1,
    Disconnected = 2,
}

#[derive(Debug, Default)]
pub struct BridgeStats {
    state: AtomicU8,
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub published: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSnapshot {
    pub state: BridgeState,
    pub received: u64,
    pub forwarded: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub published: u64,
    /// Messages the `redis` callback did not get because it fell too far behind.
    pub callback_dropped: u64,
    /// Messages neither forwarded nor handed to PHP because forwarding fell too far behind.
    pub overload_dropped: u64,
    pub subscriptions: usize,
}

/// A channel name or (with `*`, `?` or `[`) a pattern, as Redis sees it (prefix included).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Topic {
    name: String,
    pattern: bool,
}

impl Topic {
    fn new(prefix: &str, name: &str) -> Topic {
        let pattern = name.contains(['*', '?', '[']);
        // In a pattern, the prefix is to be matched as it is, glob characters and all.
        let prefix = match pattern {
            true => escape_glob(prefix),
            false => prefix.to_owned(),
        };
        Topic {
            name: format!("{prefix}{name}"),
            pattern,
        }
    }
}

/// `text` as a Redis glob pattern that matches only itself.
fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

enum Change {
    Subscribe(Topic),
    Unsubscribe(Topic),
}

pub struct RedisBridge {
    prefix: String,
    forward: bool,
    /// What should be subscribed: the truth the bridge restores after every reconnect.
    wanted: Mutex<BTreeSet<Topic>>,
    /// `wanted` holds `match_all_pattern`, which matches every channel: see `take`.
    match_all: AtomicBool,
    /// `<prefix>*`.
    match_all_pattern: String,
    /// The topics subscribed or unsubscribed since the connection last caught up with
    /// `wanted`; None while there is no connection (its restore will subscribe what is wanted).
    /// A set, so that a topic subscribed and unsubscribed again and again (a client's channel
    /// taken on open and let go on close) is one entry however often, and costs nothing to
    /// Redis when it ends where it began.
    touched: Mutex<Option<BTreeSet<Topic>>>,
    /// Wakes the subscriber when `touched` has something.
    changed: Notify,
    publishes: BudgetQueue<(String, Bytes, OwnedSemaphorePermit)>,
    /// "Not a Laravel broadcast", said at most every [`NOT_LARAVEL_WARN_EVERY`].
    not_laravel: Throttle,
    /// Messages taken off the Redis connection as they come, to be forwarded and handed on
    /// (see [`crate::budget_queue`] for why).
    intake: BudgetQueue<(redis::Msg, OwnedSemaphorePermit)>,
    /// What the `redis` callback gets, in the order Redis sent it.
    to_php: BudgetQueue<Event>,
    pub stats: BridgeStats,
}

/// The URL for logs and messages: a password (`redis://user:secret@host`, or the `pass` of a
/// `redis+unix://` URL's query, as the Laravel package writes one) is replaced by `***`. In one
/// that does not parse, all before an `@`.
pub(crate) fn redacted(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = (parsed.query_pairs())
            .map(|(k, v)| match k == "pass" || k == "password" {
                true => (k.into_owned(), "***".to_owned()),
                false => (k.into_owned(), v.into_owned()),
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `***` as written, not percent-encoded.
    parsed.as_str().replace("%2A%2A%2A", "***")
}

/// A Laravel broadcast as the redis broadcaster publishes it.
#[derive(Deserialize)]
struct Broadcast<'a> {
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    socket: Option<String>,
}

impl RedisBridge {
    /// Checks the URL and starts the subscriber and publisher tasks on the current runtime.
    pub fn start(
        url: &str,
        prefix: &str,
        forward: bool,
        shared: &Arc<Shared>,
    ) -> Result<Arc<RedisBridge>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("setting 'redis': {e}"))?;
        let (publishes, publishes_rx) =
            BudgetQueue::new(PUBLISH_BYTES, "redisPublish is ahead of Redis");
        let (intake, taken) = BudgetQueue::new(INTAKE_BYTES, "forwarding is behind Redis");
        let (to_php, for_php) = BudgetQueue::new(CALLBACK_BYTES, "the redis callback is behind");
        let bridge = Arc::new(RedisBridge {
            prefix: prefix.to_owned(),
            forward,
            wanted: Mutex::new(BTreeSet::new()),
            match_all: AtomicBool::new(false),
            match_all_pattern: Topic::new(prefix, "*").name,
            touched: Mutex::new(None),
            changed: Notify::new(),
            publishes,
            not_laravel: Throttle::new(NOT_LARAVEL_WARN_EVERY),
            intake,
            to_php,
            stats: BridgeStats::default(),
        });
        tokio::spawn(subscriber(client.clone(), redacted(url), bridge.clone()));
        tokio::spawn(publisher(client, bridge.clone(), publishes_rx));
        tokio::spawn(deliverer(bridge.clone(), taken, shared.clone()));
        tokio::spawn(hand_to_php(for_php, shared.events.clone()));
        Ok(bridge)
    }

    /// Subscribes `name` (prefix added; a pattern if it has `*`, `?` or `[`).
    pub fn subscribe(&self, name: &str) {
        let topic = Topic::new(&self.prefix, name);
        // Noted under the lock: a refusal of `*` (see `apply`) in between would leave the
        // filter on with `*` not subscribed, and every message filtered out.
        let mut wanted = self.wanted.lock();
        if wanted.insert(topic.clone()) {
            self.note_match_all(&topic, true);
            self.touch(topic);
        }
    }

    pub fn unsubscribe(&self, name: &str) -> bool {
        let topic = Topic::new(&self.prefix, name);
        let mut wanted = self.wanted.lock();
        let removed = wanted.remove(&topic);
        if removed {
            self.note_match_all(&topic, false);
            self.touch(topic);
        }
        removed
    }

    /// Tells the connection, if there is one, that `topic` may have to be (un)subscribed.
    fn touch(&self, topic: Topic) {
        if let Some(touched) = self.touched.lock().as_mut() {
            touched.insert(topic);
            self.changed.notify_one();
        }
    }

    /// Queues a PUBLISH to `<prefix><channel>`; false if the queue is full.
    pub fn publish(&self, channel: &str, payload: Bytes) -> bool {
        let channel = format!("{}{channel}", self.prefix);
        self.publishes.offer(channel.len() + payload.len(), |held| {
            (channel, payload, held)
        })
    }

    /// Once every publish queued so far has been sent (or dropped).
    pub(crate) async fn publishes_done(&self) {
        while !self.publishes.is_idle() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn snapshot(&self) -> BridgeSnapshot {
        let s = &self.stats;
        BridgeSnapshot {
            state: match s.state.load(Relaxed) {
                1 => BridgeState::Connected,
                2 => BridgeState::Disconnected,
                _ => BridgeState::Connecting,
            },
            received: s.received.load(Relaxed),
            forwarded: s.forwarded.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            reconnects: s.reconnects.load(Relaxed),
            published: s.published.load(Relaxed),
            callback_dropped: self.to_php.dropped.load(Relaxed),
            overload_dropped: self.intake.dropped.load(Relaxed),
            subscriptions: self.wanted.lock().len(),
        }
    }

    fn set_state(&self, state: BridgeState) {
        self.stats.state.store(state as u8, Relaxed);
    }

    fn strip<'a>(&self, channel: &'a str) -> &'a str {
        channel
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(channel)
    }

    /// Takes a message off the Redis connection without waiting: the redis crate buffers what
    /// is not taken, without a limit.
    fn take(&self, msg: redis::Msg) {
        // With `*` subscribed, Redis sends every message through it, and once more for each
        // other subscription it matches (its channel's own, another pattern: the Pusher
        // protocol subscribes `*` beside the channels a script names): those are the same
        // publish again.
        if self.match_all.load(Relaxed) && !self.is_match_all(&msg) {
            return;
        }
        bump(&self.stats.received, 1);
        let size = msg.get_channel_name().len() + msg.get_payload_bytes().len();
        self.intake.offer(size, |held| (msg, held));
    }

    /// `topic` is now wanted, or no longer: if it is `<prefix>*`, so is the match-all filter.
    /// The filter changes when the (P)SUBSCRIBE is asked, not when Redis has done it: what is
    /// on its way meanwhile may be lost or come twice (a documented limit).
    fn note_match_all(&self, topic: &Topic, wanted: bool) {
        if topic.pattern && topic.name == self.match_all_pattern {
            self.match_all.store(wanted, Relaxed);
        }
    }

    fn is_match_all(&self, msg: &redis::Msg) -> bool {
        msg.from_pattern()
            && msg.get_pattern::<Vec<u8>>().ok().as_deref()
                == Some(self.match_all_pattern.as_bytes())
    }

    /// Forwards one message to the channel's members and queues it for PHP (if it listens).
    fn deliver(&self, shared: &Shared, channel: &str, payload: &[u8]) {
        let name = self.strip(channel);
        if self.forward {
            self.forward(shared, name, payload);
        }
        if shared.handlers.redis.load(Relaxed) {
            self.to_php
                .offer(name.len() + payload.len(), |held| Event::Redis {
                    channel: name.to_owned(),
                    payload: Bytes::copy_from_slice(payload),
                    held,
                });
        }
    }

    fn forward(&self, shared: &Shared, channel: &str, payload: &[u8]) {
        match forward_laravel(shared, channel, payload) {
            Some(sent) => bump(&self.stats.forwarded, sent as u64),
            None => {
                bump(&self.stats.dropped, 1);
                if self.not_laravel.due() {
                    log::warn!(target: "surge", "redis: message on '{channel}' is not a Laravel broadcast (JSON with \"event\"); not forwarded (said at most every {NOT_LARAVEL_WARN_EVERY:?}; redis_forward false turns forwarding off)");
                }
            }
        }
    }
}

/// Sends a Laravel broadcast that arrived on `channel` to the channel's native members and its
/// Pusher subscribers: how many it was pushed to, or None if `payload` is no Laravel broadcast.
pub(crate) fn forward_laravel(shared: &Shared, channel: &str, payload: &[u8]) -> Option<usize> {
    let message = laravel_message(channel, payload)?;
    let except: Vec<u64> = message
        .socket
        .as_deref()
        .and_then(|s| shared.fd_of_socket_id(s))
        .into_iter()
        .collect();
    // Pusher-protocol subscribers get the Pusher shape (data as a JSON string), encoded once
    // for all of them; native members get `json`, encoded once too.
    let pusher =
        crate::pusher::forward_broadcast(shared, channel, &message.event, &message.data, &except);
    let limit = shared.config.socket_buffer_size;
    let native = shared.channels.push(channel, &except, limit, || {
        Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, message.json.as_bytes()))
    });
    Some(pusher + native)
}

struct Forwarded {
    /// `{"event": ..., "channel": ..., "data": ...}` for the clients.
    pub json: String,
    /// Laravel's `toOthers()`: the socket id to leave out.
    pub socket: Option<String>,
    /// The event name and `data` as JSON text, for other shapes (the Pusher protocol's).
    pub event: String,
    pub data: String,
}

/// Decodes a Laravel broadcast and re-encodes it for clients, `data` kept byte for byte.
fn laravel_message(channel: &str, payload: &[u8]) -> Option<Forwarded> {
    let b: Broadcast = serde_json::from_slice(payload).ok()?;
    let data = b.data.map(RawValue::get).unwrap_or("null");
    let json = format!(
        "{{\"event\":{},\"channel\":{},\"data\":{}}}",
        serde_json::to_string(&b.event).ok()?,
        serde_json::to_string(channel).ok()?,
        data
    );
    Some(Forwarded {
        json,
        socket: b.socket,
        data: data.to_owned(),
        event: b.event,
    })
}

async fn subscriber(client: redis::Client, url: String, bridge: Arc<RedisBridge>) {
    let mut backoff = BACKOFF_MIN;
    let mut ever_connected = false;
    // The outage under way, once logged: the reasons it was logged with (see `reason_of`).
    let mut outage: Option<Vec<String>> = None;
    let mut reconnect_said = false;
    let mut up_since: Option<tokio::time::Instant> = None;
    loop {
        let lost = match answered(client.get_async_pubsub()).await {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                // From here changes are noted; those before are in the wanted set restored.
                *bridge.touched.lock() = Some(BTreeSet::new());
                // The commands go out while what Redis sends is taken: the redis crate would
                // hold what is not taken meanwhile, without a limit (1.2 GB seen while 60,000
                // subscriptions were restored under a flood).
                let commands = async {
                    let wanted: Vec<Topic> = bridge.wanted.lock().iter().cloned().collect();
                    restore(&bridge, &mut sink, &wanted).await?;
                    // Less those Redis refused (dropped from the wanted set); one unsubscribed
                    // meanwhile is touched, and `catch_up` unsubscribes it.
                    let mut subscribed: BTreeSet<Topic> = {
                        let still = bridge.wanted.lock();
                        let touched = bridge.touched.lock();
                        let touched = touched.as_ref().expect("set at connect");
                        (wanted.iter())
                            .filter(|t| still.contains(*t) || touched.contains(*t))
                            .cloned()
                            .collect()
                    };
                    // Answered: with nothing to subscribe, nothing else has asked Redis yet (one
                    // that wants a password only says so when asked).
                    ping(&mut sink).await?;
                    bridge.set_state(BridgeState::Connected);
                    up_since = Some(tokio::time::Instant::now());
                    match std::mem::replace(&mut ever_connected, true) {
                        true => {
                            bump(&bridge.stats.reconnects, 1);
                            if !std::mem::replace(&mut reconnect_said, true) {
                                log::info!(target: "surge", "redis: reconnected; {} subscriptions restored", subscribed.len());
                            }
                        }
                        false => log::info!(target: "surge", "redis: connected to {url}"),
                    }
                    let mut health = tokio::time::interval_at(
                        tokio::time::Instant::now() + HEALTH_INTERVAL,
                        HEALTH_INTERVAL,
                    );
                    loop {
                        tokio::select! {
                            () = bridge.changed.notified() => {
                                catch_up(&bridge, &mut sink, &mut subscribed).await?;
                            }
                            _ = health.tick() => ping(&mut sink).await?,
                        }
                    }
                    // Ends only by an error (the task itself, with the runtime).
                    #[allow(unreachable_code)]
                    redis::RedisResult::Ok(())
                };
                let taking = async {
                    while let Some(msg) = stream.next().await {
                        bridge.take(msg);
                    }
                };
                tokio::select! {
                    Err(err) = commands => (format!("connection to {url} lost ({err}); reconnecting"), Some(err)),
                    () = taking => (format!("connection to {url} lost; reconnecting"), None),
                }
            }
            Err(err) => (
                format!("cannot connect to {url}: {err}; retrying"),
                Some(err),
            ),
        };
        let (lost, err) = lost;
        *bridge.touched.lock() = None;
        bridge.set_state(BridgeState::Disconnected);
        // A connection lost soon after it was made belongs to the same outage (Redis dropping
        // the subscriber after each resubscribe, under a flood): not logged again, and the
        // backoff goes on growing.
        if up_since.take().is_some_and(|t| t.elapsed() >= STABLE) {
            outage = None;
            backoff = BACKOFF_MIN;
        }
        // Logged once an outage, and again for each other reason it gives (Redis came back
        // asking for a password, or with another one; a certificate that no longer
        // verifies), so the log says what keeps it down.
        let reason = err.as_ref().and_then(reason_of);
        let first = outage.is_none();
        let logged = outage.get_or_insert_with(Vec::new);
        if first || reason.as_ref().is_some_and(|r| !logged.contains(r)) {
            log::warn!(target: "surge", "redis: {lost}");
            logged.extend(reason);
            reconnect_said = false;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// PINGs Redis; Err if it does not answer in time or answers with an error (NOAUTH).
async fn ping(sink: &mut redis::aio::PubSubSink) -> redis::RedisResult<()> {
    match answered(sink.ping::<redis::Value>()).await? {
        redis::Value::ServerError(err) => Err(err.into()),
        _ => Ok(()),
    }
}

/// What tells one failure to reach Redis from another: the code Redis answered with (NOAUTH,
/// LOADING ...), or what the client found that is more than Redis being away (a password
/// refused, a certificate that does not verify). None for Redis away: a connection refused,
/// dropped or unanswered.
fn reason_of(err: &redis::RedisError) -> Option<String> {
    if let Some(code) = err.code() {
        return Some(code.to_owned());
    }
    let away = err.is_connection_refusal() || err.is_connection_dropped() || err.is_timeout();
    (!away).then(|| err.to_string())
}

/// Subscribes what was subscribed since the last call and unsubscribes what was unsubscribed,
/// as `subscribed` (this connection's) and the wanted set now differ on each topic touched.
async fn catch_up(
    bridge: &RedisBridge,
    sink: &mut redis::aio::PubSubSink,
    subscribed: &mut BTreeSet<Topic>,
) -> redis::RedisResult<()> {
    let touched = (bridge.touched.lock().as_mut()).map_or_else(BTreeSet::new, std::mem::take);
    for topic in touched {
        let wanted = bridge.wanted.lock().contains(&topic);
        if wanted == subscribed.contains(&topic) {
            continue;
        }
        let change = match wanted {
            true => Change::Subscribe(topic),
            false => Change::Unsubscribe(topic),
        };
        // A refused one stays as it was: subscribed again, it is asked again.
        if apply(bridge, sink, &change).await? {
            match change {
                Change::Subscribe(topic) => subscribed.insert(topic),
                Change::Unsubscribe(topic) => subscribed.remove(&topic),
            };
        }
    }
    Ok(())
}

/// (P)SUBSCRIBEs every wanted topic again on a new connection, [`SUBSCRIBE_BATCH`] at a time;
/// a batch Redis refuses (an ACL without one of its channels) is sent again one topic at a
/// time, so that only the refused ones are dropped.
async fn restore(
    bridge: &RedisBridge,
    sink: &mut redis::aio::PubSubSink,
    wanted: &[Topic],
) -> redis::RedisResult<()> {
    for pattern in [false, true] {
        let names: Vec<&Topic> = wanted.iter().filter(|t| t.pattern == pattern).collect();
        for batch in names.chunks(SUBSCRIBE_BATCH) {
            let names: Vec<&str> = batch.iter().map(|t| t.name.as_str()).collect();
            let sent = match pattern {
                false => answered(sink.subscribe(&names)).await,
                true => answered(sink.psubscribe(&names)).await,
            };
            match sent {
                Ok(()) => {}
                Err(err) if refused(&err) => {
                    for topic in batch {
                        apply(bridge, sink, &Change::Subscribe((*topic).clone())).await?;
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

/// Answers that say Redis cannot take commands now, not that it refuses the topic: a script
/// running past busy-reply-threshold, a dataset loading, a password not given yet, a replica
/// without its master, a cluster (behind a proxy) not serving.
const NOT_NOW: [&str; 6] = [
    "BUSY",
    "LOADING",
    "NOAUTH",
    "MASTERDOWN",
    "TRYAGAIN",
    "CLUSTERDOWN",
];

/// An answer that refuses a topic for good (an ACL without that channel: NOPERM; a Redis or
/// proxy without PSUBSCRIBE), not the connection: dropping the topic keeps the others going,
/// where reconnecting would be refused the same way, for ever.
fn refused(err: &redis::RedisError) -> bool {
    err.code().is_some_and(|code| !NOT_NOW.contains(&code))
}

/// Forwards and hands on what the subscriber took, in the order Redis sent it.
async fn deliverer(
    bridge: Arc<RedisBridge>,
    mut taken: mpsc::UnboundedReceiver<(redis::Msg, OwnedSemaphorePermit)>,
    shared: Arc<Shared>,
) {
    while let Some((msg, _held)) = taken.recv().await {
        bridge.deliver(&shared, msg.get_channel_name(), msg.get_payload_bytes());
    }
}

/// Moves the `redis` callback's messages into the PHP thread's event channel, waiting there as
/// connections' events do (each keeps its share of the budget until PHP is done with it).
async fn hand_to_php(mut queued: mpsc::UnboundedReceiver<Event>, events: mpsc::Sender<Event>) {
    while let Some(event) = queued.recv().await {
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// `request`, or an error if Redis does not answer within [`ANSWER_TIMEOUT`].
async fn answered<T>(
    request: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    match tokio::time::timeout(ANSWER_TIMEOUT, request).await {
        Ok(result) => result,
        Err(_) => Err((redis::ErrorKind::Io, "no answer in time").into()),
    }
}

/// Sends a (P)(UN)SUBSCRIBE; Err if the connection failed or Redis cannot take commands now
/// (see [`NOT_NOW`]): the bridge reconnects and subscribes all that is wanted again. A topic
/// Redis refuses (see [`refused`]) is logged and forgotten.
async fn apply(
    bridge: &RedisBridge,
    sink: &mut redis::aio::PubSubSink,
    change: &Change,
) -> redis::RedisResult<bool> {
    let err = match answered(send(sink, change)).await {
        Ok(()) => return Ok(true),
        Err(err) if refused(&err) => err,
        Err(err) => return Err(err),
    };
    match change {
        Change::Subscribe(topic) => {
            log::warn!(target: "surge", "redis: subscribing {} was refused, it is dropped: {err}", topic.name);
            let mut wanted = bridge.wanted.lock();
            if wanted.remove(topic) {
                bridge.note_match_all(topic, false);
            }
        }
        Change::Unsubscribe(topic) => {
            log::warn!(target: "surge", "redis: unsubscribing {} was refused: {err}", topic.name);
        }
    }
    Ok(false)
}

async fn send(sink: &mut redis::aio::PubSubSink, change: &Change) -> redis::RedisResult<()> {
    match change {
        Change::Subscribe(Topic {
            name,
            pattern: false,
        }) => sink.subscribe(name).await,
        Change::Subscribe(Topic {
            name,
            pattern: true,
        }) => sink.psubscribe(name).await,
        Change::Unsubscribe(Topic {
            name,
            pattern: false,
        }) => sink.unsubscribe(name).await,
        Change::Unsubscribe(Topic {
            name,
            pattern: true,
        }) => sink.punsubscribe(name).await,
    }
}

async fn publisher(
    client: redis::Client,
    bridge: Arc<RedisBridge>,
    mut queue: mpsc::UnboundedReceiver<(String, Bytes, OwnedSemaphorePermit)>,
) {
    let mut conn = None;
    // Set by a failure, cleared by a success: failures are logged once per outage.
    let mut failed_at: Option<tokio::time::Instant> = None;
    let refusals = Throttle::new(REFUSED_WARN_EVERY);
    while let Some((channel, payload, _held)) = queue.recv().await {
        if failed_at.is_some_and(|at| at.elapsed() < PUBLISH_RETRY) {
            bump(&bridge.stats.dropped, 1);
            continue;
        }
        match publish(&client, &mut conn, &channel, &payload).await {
            Ok(()) => {
                bump(&bridge.stats.published, 1);
                failed_at = None;
            }
            // Redis answered, refusing this one (an ACL user without that channel: NOPERM):
            // the connection serves on, and so do the publishes after it.
            Err(Failure::Refused(err)) => {
                bump(&bridge.stats.dropped, 1);
                if refusals.due() {
                    log::warn!(target: "surge", "redis: publish to '{channel}' refused by Redis, dropped: {err} (said at most every {REFUSED_WARN_EVERY:?})");
                }
            }
            Err(Failure::Away(err)) => {
                bump(&bridge.stats.dropped, 1);
                if failed_at.is_none() {
                    log::warn!(target: "surge", "redis: publish to '{channel}' dropped: {err}; dropping publishes until Redis is back");
                }
                failed_at = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// Why a PUBLISH did not go out.
enum Failure {
    /// Redis answered it with an error: this message is refused, the connection is fine.
    Refused(redis::RedisError),
    /// Redis could not be reached, or did not answer.
    Away(redis::RedisError),
}

/// PUBLISHes on the kept connection, opening one if there is none. A connection that broke
/// while idle (Redis restarted) only says so when used: then the message goes out on a new one.
async fn publish(
    client: &redis::Client,
    conn: &mut Option<redis::aio::MultiplexedConnection>,
    channel: &str,
    payload: &[u8],
) -> Result<(), Failure> {
    loop {
        let reused = conn.is_some();
        let c = match conn {
            Some(c) => c,
            None => {
                // The crate's default waits 500 ms for an answer: a Redis that pauses longer
                // (a fork for a snapshot) lost the PUBLISH and the second of them after it.
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(ANSWER_TIMEOUT))
                    .set_response_timeout(Some(ANSWER_TIMEOUT));
                conn.insert(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                        .map_err(Failure::Away)?,
                )
            }
        };
        match redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(c)
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) if err.code().is_some() => return Err(Failure::Refused(err)),
            Err(err) => {
                *conn = None;
                if !(reused && err.is_connection_dropped()) {
                    return Err(Failure::Away(err));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laravel_payload_is_reshaped_with_data_verbatim() {
        let payload = br#"{"event":"App\\Events\\OrderShipped","data":{"z":1,"a":[1,2],"socket":null},"socket":"123.45"}"#;
        let m = laravel_message("private-orders.1", payload).unwrap();
        assert_eq!(
            m.json,
            r#"{"event":"App\\Events\\OrderShipped","channel":"private-orders.1","data":{"z":1,"a":[1,2],"socket":null}}"#
        );
        assert_eq!(m.socket.as_deref(), Some("123.45"));
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        for (url, shown) in [
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://app:s3cret@cache:6380",
                "rediss://app:***@cache:6380",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            // A user name alone is no secret; percent-encoded passwords go whole.
            ("redis://app@cache:6379", "redis://app@cache:6379"),
            (
                "redis://:p%40ss%3Aw%2Frd@[::1]:6379/2",
                "redis://:***@[::1]:6379/2",
            ),
            // The Laravel package's URL for a unix socket with a password.
            (
                "redis+unix:///run/redis.sock?db=0&user=app&pass=sekr%3Aet%401",
                "redis+unix:///run/redis.sock?db=0&user=app&pass=***",
            ),
            // Not a URL: what comes before an @ goes.
            ("redis://:sec ret@[bad", "***@[bad"),
            ("127.0.0.1:6379", "127.0.0.1:6379"),
        ] {
            assert_eq!(redacted(url), shown);
        }
    }

    #[test]
    fn non_broadcasts_are_refused() {
        assert!(laravel_message("c", b"not json").is_none());
        assert!(laravel_message("c", br#"{"data":1}"#).is_none());
    }

    #[test]
    fn topics_know_patterns_and_prefix() {
        assert_eq!(
            Topic::new("laravel_database_", "news"),
            Topic {
                name: "laravel_database_news".into(),
                pattern: false
            }
        );
        assert!(Topic::new("", "private-*").pattern);
        // A prefix with glob characters is matched as it is in a pattern, not in a channel.
        assert_eq!(
            Topic::new("app[1]*_", "user.*").name,
            "app\\[1\\]\\*_user.*"
        );
        assert_eq!(Topic::new("app[1]_", "news").name, "app[1]_news");
    }
}
