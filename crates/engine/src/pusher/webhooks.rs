//! Pusher webhooks: an app's `webhooks` are told, by an HTTP POST signed as Pusher signs it,
//! when a channel gets its first subscriber or loses its last, a presence member comes or goes,
//! a client event is sent, or a cache channel had nothing kept for a new subscriber.
//!
//! Events are queued where they happen, as JSON text with their time (never waiting: past
//! [`QUEUE`] events or [`QUEUE_BYTES`] the new ones are dropped, counted, and told by the task
//! that posts), and a task of each webhook posts them in order, up to [`BATCH`] events and
//! [`BATCH_BYTES`] a request: `{"time_ms":..,"events":[..]}` with `X-Pusher-Key` and
//! `X-Pusher-Signature` (hex HMAC-SHA256 of the body with the app's secret); `time_ms` is when
//! its first event happened, so a consumer sees how late a request comes. A request that fails
//! (no connection, no answer within [`TIMEOUT`], a 5xx, 408 or 429) is sent again with
//! exponential backoff for [`RETRY_FOR`], as Pusher does, then given up with a warning; the
//! events behind it wait meanwhile. Any other 3xx or 4xx is given up at once: sending the same
//! body again would get the same answer, and hold up every event behind it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value as Json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use url::Url;

use crate::config::{ConfigError, Value};

/// Events one request carries at most.
const BATCH: usize = 100;
/// Bytes of events one request carries at most (but always one event): below the 1 MiB that
/// web servers take by default (nginx's `client_max_body_size`), with client events of 10 KB.
const BATCH_BYTES: usize = 256 * 1024;
/// Events that may wait for one webhook, and their bytes; past either, new ones are dropped.
const QUEUE: usize = 10_000;
const QUEUE_BYTES: usize = 16 << 20;
/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection to one address of several may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a request that fails is tried again: 1 s after the first try, then twice as long
/// each time, up to [`RETRY_MAX`] between tries.
const RETRY_FOR: Duration = Duration::from_secs(300);
const RETRY_MAX: Duration = Duration::from_secs(60);

/// What a webhook may be told of, as Pusher names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
}

const KINDS: [(Kind, &str); 6] = [
    (Kind::ChannelOccupied, "channel_occupied"),
    (Kind::ChannelVacated, "channel_vacated"),
    (Kind::MemberAdded, "member_added"),
    (Kind::MemberRemoved, "member_removed"),
    (Kind::ClientEvent, "client_event"),
    (Kind::CacheMiss, "cache_miss"),
];

impl Kind {
    fn name(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .expect("every kind")
            .1
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// One webhook of an app's `webhooks` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: Url,
    /// The kinds it wants, one bit per [`Kind`].
    kinds: u8,
}

impl WebhookConfig {
    /// `webhooks` => a list of `['url' => 'http(s)://...', 'event_types' => [...]]` (every
    /// kind when `event_types` is left out).
    pub(crate) fn parse_all(what: &str, value: &Value) -> Result<Vec<WebhookConfig>, ConfigError> {
        let Value::List(list) = value else {
            return Err(ConfigError(format!(
                "setting '{what}' must be a list of webhooks (['url' => ..., 'event_types' => [...]]), got {}",
                value.kind()
            )));
        };
        list.iter()
            .enumerate()
            .map(|(i, hook)| WebhookConfig::parse(&format!("{what}[{i}]"), hook))
            .collect()
    }

    fn parse(what: &str, value: &Value) -> Result<WebhookConfig, ConfigError> {
        let Value::Map(entries) = value else {
            return Err(ConfigError(format!(
                "setting '{what}' must be an array with 'url' and 'event_types', got {}",
                value.kind()
            )));
        };
        let mut url = None;
        let mut kinds = KINDS.iter().fold(0, |bits, (k, _)| bits | k.bit());
        for (k, v) in entries {
            match (k.as_str(), v) {
                ("url", Value::Str(s)) => {
                    let parsed = Url::parse(s)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                    url = Some(parsed.ok_or_else(|| {
                        ConfigError(format!(
                            "setting '{what}.url' must be an http:// or https:// URL, got '{}'",
                            redacted_text(s)
                        ))
                    })?);
                }
                ("event_types", Value::List(names)) => {
                    kinds = 0;
                    for name in names {
                        let known = KINDS
                            .iter()
                            .find(|(_, n)| matches!(name, Value::Str(s) if s == n));
                        let Some((kind, _)) = known else {
                            let names: Vec<&str> = KINDS.iter().map(|(_, n)| *n).collect();
                            return Err(ConfigError(format!(
                                "setting '{what}.event_types' holds an unknown event type; known: {}",
                                names.join(", ")
                            )));
                        };
                        kinds |= kind.bit();
                    }
                    if kinds == 0 {
                        return Err(ConfigError(format!(
                            "setting '{what}.event_types' names no event type (leave it out for every one)"
                        )));
                    }
                }
                ("url" | "event_types", other) => {
                    return Err(ConfigError(format!(
                        "setting '{what}.{k}' must be {}, got {}",
                        if k == "url" { "a string" } else { "a list" },
                        other.kind()
                    )))
                }
                _ => {
                    return Err(ConfigError(format!(
                        "unknown setting '{what}.{k}'; a webhook has url, event_types"
                    )))
                }
            }
        }
        let url = url.ok_or_else(|| ConfigError(format!("setting '{what}' has no 'url'")))?;
        Ok(WebhookConfig { url, kinds })
    }
}

/// A URL as logs may show it: its password as `***`.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// As [`redacted`], for a text that may not parse: what comes before an `@` hidden.
fn redacted_text(url: &str) -> String {
    match (Url::parse(url), url.rsplit_once('@')) {
        (Ok(parsed), _) => redacted(&parsed),
        (Err(_), Some((_, host))) => format!("***@{host}"),
        (Err(_), None) => url.to_owned(),
    }
}

/// Where a webhook's requests go: `user:password@` in its URL is sent as Basic authorization.
struct Target {
    url: Url,
    /// The URL for the log.
    shown: String,
    authorization: Option<String>,
}

impl Target {
    fn new(url: &Url) -> Target {
        let decoded = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let pair = format!(
                "{}:{}",
                decoded(url.username()),
                decoded(url.password().unwrap_or(""))
            );
            format!("Basic {}", data_encoding::BASE64.encode(pair.as_bytes()))
        });
        Target {
            url: url.clone(),
            shown: redacted(url),
            authorization,
        }
    }
}

/// An event waiting to be posted: its JSON text, and when it happened (Unix ms).
struct Queued {
    time_ms: u64,
    json: String,
}

/// One webhook while the server runs: its queue, and what it has dropped.
struct Hook {
    target: Target,
    kinds: u8,
    tx: mpsc::Sender<Queued>,
    /// Taken by the task that posts (see [`Webhooks::run`]).
    rx: Mutex<Option<mpsc::Receiver<Queued>>>,
    /// Events queued or being posted, and their bytes.
    pending: AtomicUsize,
    pending_bytes: AtomicUsize,
    dropped: AtomicU64,
}

impl Hook {
    fn wants(&self, kind: Kind) -> bool {
        self.kinds & kind.bit() != 0
    }

    fn queue(&self, time_ms: u64, json: &str) {
        let bytes = json.len();
        if self.pending_bytes.fetch_add(bytes, Relaxed) + bytes > QUEUE_BYTES {
            self.pending_bytes.fetch_sub(bytes, Relaxed);
            self.dropped.fetch_add(1, Relaxed);
            return;
        }
        self.pending.fetch_add(1, Relaxed);
        let json = json.to_owned();
        if self.tx.try_send(Queued { time_ms, json }).is_err() {
            self.done(1, bytes);
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    fn done(&self, events: usize, bytes: usize) {
        self.pending_bytes.fetch_sub(bytes, Relaxed);
        self.pending.fetch_sub(events, Relaxed);
    }
}

/// An app's webhooks.
#[derive(Default)]
pub struct Webhooks {
    hooks: Vec<Arc<Hook>>,
}

impl Webhooks {
    pub fn new(configs: &[WebhookConfig]) -> Webhooks {
        let hooks = configs
            .iter()
            .map(|config| {
                let (tx, rx) = mpsc::channel(QUEUE);
                Arc::new(Hook {
                    target: Target::new(&config.url),
                    kinds: config.kinds,
                    tx,
                    rx: Mutex::new(Some(rx)),
                    pending: AtomicUsize::new(0),
                    pending_bytes: AtomicUsize::new(0),
                    dropped: AtomicU64::new(0),
                })
            })
            .collect();
        Webhooks { hooks }
    }

    /// Whether some webhook wants `kind`: the event is made only then.
    pub fn want(&self, kind: Kind) -> bool {
        self.hooks.iter().any(|h| h.wants(kind))
    }

    /// Queues the event `kind` with `fields` for the webhooks that want it. Never waits, and
    /// logs nothing: it is called under the channels' locks.
    pub fn send(&self, kind: Kind, fields: Json) {
        let mut event = fields;
        event["name"] = Json::from(kind.name());
        let json = event.to_string();
        let time_ms = unix_ms();
        for hook in self.hooks.iter().filter(|h| h.wants(kind)) {
            hook.queue(time_ms, &json);
        }
    }

    /// Events queued or being posted, over every webhook.
    pub fn pending(&self) -> usize {
        self.hooks.iter().map(|h| h.pending.load(Relaxed)).sum()
    }

    pub fn has_https(&self) -> bool {
        self.hooks.iter().any(|h| h.target.url.scheme() == "https")
    }

    /// Posts each webhook's events until the queue is gone (spawned once, on the runtime).
    pub async fn run(&self, key: &str, secret: &str) {
        let tasks: Vec<_> = self
            .hooks
            .iter()
            .filter_map(|hook| {
                let rx = hook.rx.lock().take()?;
                let (hook, key, secret) = (hook.clone(), key.to_owned(), secret.to_owned());
                Some(tokio::spawn(async move {
                    post_all(&hook, rx, &key, &secret).await
                }))
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn post_all(hook: &Hook, mut rx: mpsc::Receiver<Queued>, key: &str, secret: &str) {
    let mut waiting = VecDeque::new();
    let mut reported = 0;
    loop {
        if waiting.is_empty() {
            match rx.recv().await {
                Some(first) => waiting.push_back(first),
                None => return,
            }
        }
        while waiting.len() < BATCH {
            match rx.try_recv() {
                Ok(more) => waiting.push_back(more),
                Err(_) => break,
            }
        }
        let (body, events, bytes) = batch(&waiting);
        let signature = super::auth::sign(secret, &body);
        deliver(hook, key, &signature, body, events, &mut reported).await;
        waiting.drain(..events);
        hook.done(events, bytes);
    }
}

/// The body of the next request: the first events waiting, within [`BATCH`] and
/// [`BATCH_BYTES`] (one at least); how many, and their bytes.
fn batch(waiting: &VecDeque<Queued>) -> (String, usize, usize) {
    let mut body = format!("{{\"time_ms\":{},\"events\":[", waiting[0].time_ms);
    let (mut events, mut bytes) = (0, 0);
    for event in waiting.iter().take(BATCH) {
        if events > 0 && body.len() + event.json.len() + 3 > BATCH_BYTES {
            break;
        }
        if events > 0 {
            body.push(',');
        }
        body.push_str(&event.json);
        events += 1;
        bytes += event.json.len();
    }
    body.push_str("]}");
    (body, events, bytes)
}

/// Posts one body until it is taken, refused for good, or [`RETRY_FOR`] has passed.
async fn deliver(
    hook: &Hook,
    key: &str,
    signature: &str,
    body: String,
    events: usize,
    reported: &mut u64,
) {
    let shown = &hook.target.shown;
    let first_try = tokio::time::Instant::now();
    let mut wait = Duration::from_secs(1);
    loop {
        let dropped = hook.dropped.load(Relaxed);
        if dropped > *reported {
            log::warn!(target: "surge", "webhook {shown}: {} events were dropped, {QUEUE} events or {} MiB waiting for it ({dropped} so far)", dropped - *reported, QUEUE_BYTES >> 20);
            *reported = dropped;
        }
        let outcome =
            tokio::time::timeout(TIMEOUT, post(&hook.target, key, signature, body.clone()))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")));
        let why = match outcome {
            Ok(status) if status.is_success() => return,
            Ok(status) if !again_after(status) => {
                log::warn!(target: "surge", "webhook {shown}: answered {status}; gave up on {events} events (not tried again: only failures, 5xx, 408 and 429 are)");
                return;
            }
            Ok(status) => format!("answered {status}"),
            Err(why) => why,
        };
        if first_try.elapsed() + wait > RETRY_FOR {
            log::warn!(target: "surge", "webhook {shown}: {why}; gave up on {events} events after trying for {RETRY_FOR:?}");
            return;
        }
        // The first failure of a run of them is a warning; the tries after it, information.
        if wait == Duration::from_secs(1) {
            log::warn!(target: "surge", "webhook {shown}: {why}; trying again in {wait:?}, then less and less often for {RETRY_FOR:?}");
        } else {
            log::info!(target: "surge", "webhook {shown}: {why}; trying again in {wait:?}");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// Whether a request answered `status` may be taken if sent again.
fn again_after(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// One POST of `body`; the webhook's answer.
async fn post(
    target: &Target,
    key: &str,
    signature: &str,
    body: String,
) -> Result<StatusCode, String> {
    let url = &target.url;
    // An IPv6 address without its brackets, as the resolver and the TLS name take it.
    let host = match url.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        _ => url.host_str().ok_or("no host")?.to_owned(),
    };
    let port = url.port_or_known_default().ok_or("no port")?;
    let tcp = connect(&host, port).await?;
    let _ = tcp.set_nodelay(true);
    let mut request = Request::post(&url[url::Position::BeforePath..url::Position::AfterQuery])
        .header(
            hyper::header::HOST,
            &url[url::Position::BeforeHost..url::Position::AfterPort],
        )
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("Surge/", env!("CARGO_PKG_VERSION")),
        )
        .header("x-pusher-key", key)
        .header("x-pusher-signature", signature);
    if let Some(authorization) = &target.authorization {
        request = request.header(hyper::header::AUTHORIZATION, authorization);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    if url.scheme() == "https" {
        let tls = crate::tls::connect(&host, tcp).await?;
        exchange(tls, request).await
    } else {
        exchange(tcp, request).await
    }
}

/// A connection to one of the addresses `host` has, tried in turn, each for
/// [`CONNECT_TIMEOUT`] but the last: one that drops what is sent to it (an IPv6 address with
/// no route) does not take the whole [`TIMEOUT`] of every try.
async fn connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addresses: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    connect_to_one(&addresses)
        .await
        .map_err(|why| why.unwrap_or_else(|| format!("{host} has no address")))
}

/// The first of `addresses` that takes a connection; else why the last did not (None: none).
async fn connect_to_one(addresses: &[std::net::SocketAddr]) -> Result<TcpStream, Option<String>> {
    let mut why = None;
    for (i, address) in addresses.iter().enumerate() {
        let attempt = TcpStream::connect(address);
        let outcome = if i + 1 < addresses.len() {
            tokio::time::timeout(CONNECT_TIMEOUT, attempt)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        } else {
            attempt.await
        };
        match outcome {
            Ok(tcp) => return Ok(tcp),
            Err(e) => why = Some(format!("cannot connect to {address}: {e}")),
        }
    }
    Err(why)
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<StatusCode, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("cannot speak HTTP: {e}"))?;
    // Driven beside the request; it ends with it (the sender is dropped on return).
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    Ok(response.status())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hook(entries: &[(&str, Value)]) -> Value {
        Value::List(vec![Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )])
    }

    /// One webhook at `url`, for every kind.
    fn every_kind_to(url: &str) -> Webhooks {
        let config = hook(&[("url", Value::Str(url.into()))]);
        Webhooks::new(&WebhookConfig::parse_all("w", &config).unwrap())
    }

    #[test]
    fn webhooks_parse_with_every_kind_unless_named() {
        let hooks = every_kind_to("http://127.0.0.1:8000/hook");
        assert!(KINDS.iter().all(|(k, _)| hooks.want(*k)));
        let some = WebhookConfig::parse_all(
            "w",
            &hook(&[
                ("url", Value::Str("https://example.com/pusher".into())),
                (
                    "event_types",
                    Value::List(vec![Value::Str("member_added".into())]),
                ),
            ]),
        )
        .unwrap();
        let hooks = Webhooks::new(&some);
        assert!(hooks.want(Kind::MemberAdded));
        assert!(!hooks.want(Kind::ChannelOccupied));
    }

    #[test]
    fn bad_webhooks_are_named() {
        let err = |v: Value| {
            WebhookConfig::parse_all("pusher.webhooks", &v)
                .unwrap_err()
                .0
        };
        assert!(err(hook(&[("url", Value::Str("ftp://x/".into()))])).contains("http://"));
        assert!(err(hook(&[])).contains("has no 'url'"));
        let unknown = hook(&[
            ("url", Value::Str("http://x/".into())),
            (
                "event_types",
                Value::List(vec![Value::Str("joined".into())]),
            ),
        ]);
        assert!(err(unknown).contains("channel_occupied, channel_vacated"));
        assert!(err(hook(&[("uri", Value::Null)])).contains("'pusher.webhooks[0].uri'"));
        assert!(err(Value::Str("http://x/".into())).contains("must be a list"));
        let none = hook(&[
            ("url", Value::Str("http://x/".into())),
            ("event_types", Value::List(vec![])),
        ]);
        assert!(err(none).contains("names no event type"));
        let secret = hook(&[("url", Value::Str("ftp://u:secret@x/".into()))]);
        assert!(!err(secret).contains("secret"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let hooks = every_kind_to("http://127.0.0.1:9/");
        for _ in 0..QUEUE + 3 {
            hooks.send(Kind::CacheMiss, json!({"channel": "cache-x"}));
        }
        assert_eq!(hooks.pending(), QUEUE);
        assert_eq!(hooks.hooks[0].dropped.load(Relaxed), 3);
        let first = hooks.hooks[0]
            .rx
            .lock()
            .as_mut()
            .unwrap()
            .try_recv()
            .unwrap();
        assert_eq!(first.json, r#"{"channel":"cache-x","name":"cache_miss"}"#);
        // Bytes too: large client events fill the queue long before 10,000 of them.
        let hooks = every_kind_to("http://127.0.0.1:9/");
        let data = "x".repeat(10_000);
        for _ in 0..2000 {
            hooks.send(Kind::ClientEvent, json!({"data": data}));
        }
        let held = hooks.pending();
        assert!(
            held * 10_000 <= QUEUE_BYTES && held * 10_050 > QUEUE_BYTES - 20_000,
            "{held}"
        );
    }

    #[test]
    fn a_request_carries_at_most_its_bytes_but_always_one_event() {
        let event = |time_ms, size: usize| Queued {
            time_ms,
            json: format!(r#"{{"data":"{}"}}"#, "x".repeat(size)),
        };
        let waiting: VecDeque<Queued> = (0..40).map(|i| event(1000 + i, 20_000)).collect();
        let (body, events, bytes) = batch(&waiting);
        assert_eq!(events, 13, "13 events of 20 KB fit in 256 KiB");
        assert!(body.len() <= BATCH_BYTES && bytes == 13 * 20_011);
        let parsed: Json = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["time_ms"], 1000, "the time of the first event");
        assert_eq!(parsed["events"].as_array().unwrap().len(), 13);
        let huge: VecDeque<Queued> = [event(1, 300_000), event(2, 10)].into();
        assert_eq!(batch(&huge).1, 1);
        let small: VecDeque<Queued> = (0..150).map(|i| event(i, 10)).collect();
        assert_eq!(batch(&small).1, BATCH);
    }

    #[test]
    fn credentials_in_the_url_are_sent_as_basic_authorization_and_never_shown() {
        let target =
            Target::new(&Url::parse("https://hook%20user:p%40ss@example.com/w?x=1").unwrap());
        assert_eq!(
            target.authorization.as_deref(),
            Some("Basic aG9vayB1c2VyOnBAc3M=")
        );
        assert_eq!(target.shown, "https://hook%20user:***@example.com/w?x=1");
        assert_eq!(
            Target::new(&Url::parse("http://a/").unwrap()).authorization,
            None
        );
        assert!(!redacted_text("http://u:secret@").contains("secret"));
    }

    #[tokio::test]
    async fn an_address_that_takes_no_connection_gives_way_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let refusing = closed.local_addr().unwrap();
        drop(closed);
        // 192.0.2.1 (TEST-NET-1) goes nowhere: dropped, or unreachable at once.
        let nowhere = "192.0.2.1:80".parse().unwrap();
        let began = std::time::Instant::now();
        let addresses = [nowhere, refusing, listener.local_addr().unwrap()];
        let tcp = connect_to_one(&addresses).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), listener.local_addr().unwrap());
        assert!(began.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1));
        let why = connect_to_one(&[refusing]).await.unwrap_err().unwrap();
        assert!(why.contains("cannot connect to 127.0.0.1"), "{why}");
        assert!(connect_to_one(&[]).await.unwrap_err().is_none());
    }

    #[test]
    fn only_failures_that_may_pass_are_tried_again() {
        for (status, again) in [
            (500, true),
            (503, true),
            (408, true),
            (429, true),
            (400, false),
            (401, false),
            (413, false),
            (301, false),
        ] {
            assert_eq!(
                again_after(StatusCode::from_u16(status).unwrap()),
                again,
                "{status}"
            );
        }
    }
}
