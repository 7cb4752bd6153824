//! Pusher webhooks: an app's `webhooks` are told, by an HTTP POST signed as Pusher signs it,
//! when a channel gets its first subscriber or loses its last, a presence member comes or goes,
//! a client event is sent, or a cache channel had nothing kept for a new subscriber.
//!
//! Events are queued where they happen (never waiting: a full queue drops them, counted and
//! logged) and a task of each webhook posts what has queued, in order, up to [`BATCH`] events
//! a request: `{"time_ms":..,"events":[..]}` with `X-Pusher-Key` and `X-Pusher-Signature`
//! (hex HMAC-SHA256 of the body with the app's secret). A request that fails (no connection, no
//! answer within [`TIMEOUT`], a status other than 2xx) is sent again, as Pusher does, with
//! exponential backoff for [`RETRY_FOR`], then given up with a warning; the events behind it
//! wait meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{json, Value as Json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use url::Url;

use crate::config::{ConfigError, Value};

/// Events one request carries at most.
const BATCH: usize = 100;
/// Events that may wait for one webhook; past them new ones are dropped.
const QUEUE: usize = 10_000;
/// How long one request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(5);
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
                            "setting '{what}.url' must be an http:// or https:// URL, got '{s}'"
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

/// One webhook while the server runs: its queue, and what it has dropped.
struct Hook {
    config: WebhookConfig,
    tx: mpsc::Sender<Json>,
    /// Taken by the task that posts (see [`Webhooks::run`]).
    rx: Mutex<Option<mpsc::Receiver<Json>>>,
    /// Events queued or being posted.
    pending: AtomicUsize,
    dropped: AtomicU64,
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
                    config: config.clone(),
                    tx,
                    rx: Mutex::new(Some(rx)),
                    pending: AtomicUsize::new(0),
                    dropped: AtomicU64::new(0),
                })
            })
            .collect();
        Webhooks { hooks }
    }

    /// Whether some webhook wants `kind`: the event is made only then.
    pub fn want(&self, kind: Kind) -> bool {
        self.hooks.iter().any(|h| h.config.kinds & kind.bit() != 0)
    }

    /// Queues the event `kind` with `fields` for the webhooks that want it.
    pub fn send(&self, kind: Kind, fields: Json) {
        let mut event = fields;
        event["name"] = Json::from(kind.name());
        for hook in self
            .hooks
            .iter()
            .filter(|h| h.config.kinds & kind.bit() != 0)
        {
            hook.pending.fetch_add(1, Relaxed);
            if hook.tx.try_send(event.clone()).is_err() {
                hook.pending.fetch_sub(1, Relaxed);
                // Said at the first drop and every 1000th after: a webhook that stays down
                // keeps saying so without flooding the log.
                if hook.dropped.fetch_add(1, Relaxed) % 1000 == 0 {
                    log::warn!(target: "surge", "webhook {}: {QUEUE} events wait for it; new ones are dropped ({} so far)", hook.config.url, hook.dropped.load(Relaxed));
                }
            }
        }
    }

    /// Events queued or being posted, over every webhook.
    pub fn pending(&self) -> usize {
        self.hooks.iter().map(|h| h.pending.load(Relaxed)).sum()
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

async fn post_all(hook: &Hook, mut rx: mpsc::Receiver<Json>, key: &str, secret: &str) {
    let mut events = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut events, BATCH).await > 0 {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let body = json!({"time_ms": time_ms, "events": events}).to_string();
        let signature = super::auth::sign(secret, &body);
        let first_try = tokio::time::Instant::now();
        let mut wait = Duration::from_secs(1);
        loop {
            let outcome = tokio::time::timeout(
                TIMEOUT,
                post(&hook.config.url, key, &signature, body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {TIMEOUT:?}")));
            let Err(why) = outcome else { break };
            if first_try.elapsed() + wait > RETRY_FOR {
                log::warn!(target: "surge", "webhook {}: {why}; gave up on {} events after trying for {RETRY_FOR:?}", hook.config.url, events.len());
                break;
            }
            log::info!(target: "surge", "webhook {}: {why}; trying again in {wait:?}", hook.config.url);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
        hook.pending.fetch_sub(events.len(), Relaxed);
        events.clear();
    }
}

/// One POST of `body`; Ok once the webhook answered 2xx.
async fn post(url: &Url, key: &str, signature: &str, body: String) -> Result<(), String> {
    // An IPv6 address without its brackets, as the resolver and the TLS name take it.
    let host = match url.host() {
        Some(url::Host::Ipv6(address)) => address.to_string(),
        _ => url.host_str().ok_or("no host")?.to_owned(),
    };
    let port = url.port_or_known_default().ok_or("no port")?;
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let request = Request::post(&url[url::Position::BeforePath..url::Position::AfterQuery])
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
        .header("x-pusher-signature", signature)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    let status = if url.scheme() == "https" {
        let tls = crate::tls::connect(&host, tcp).await?;
        exchange(tls, request).await?
    } else {
        exchange(tcp, request).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<hyper::StatusCode, String>
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
        assert_eq!(first, json!({"name": "cache_miss", "channel": "cache-x"}));
    }
}
