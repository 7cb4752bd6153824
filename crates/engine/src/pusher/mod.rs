//! The Pusher Channels protocol (version 7), so Laravel Echo and pusher-js connect to Surge by
//! changing only host and port: WebSockets at `/app/{key}`, public/private/presence channels
//! with signed subscriptions, client events, cache channels, and the HTTP API under
//! `/apps/{id}/...`.
//!
//! The engine calls in at a few points only: `socket::open` for a handshake on `/app/...`,
//! `socket::receive` for each message of such a connection, `socket::closed` when it ends,
//! `api::serve` for HTTP requests under `/apps/`, `sweep` for the activity timeout and
//! `forward_broadcast` for Laravel broadcasts arriving through the Redis bridge, and
//! `post_webhooks` for the apps' webhooks.

pub mod api;
pub mod auth;
pub mod cache;
pub mod presence;
pub mod socket;
pub mod webhooks;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::channels::Channels;
use crate::config::{ConfigError, Value};
use crate::frame;
use crate::rate_limit::RateLimit;
use crate::registry::Outgoing;
use crate::shared::Shared;
use presence::Presence;
use webhooks::{WebhookConfig, Webhooks};

/// Largest `data` of one event (client event or HTTP API), as Pusher limits it.
pub const MAX_EVENT_DATA: usize = 10 * 1024;
/// Longest event name (client event or HTTP API), as Pusher limits it.
pub const MAX_EVENT_NAME: usize = 200;
/// Longest channel name.
pub const MAX_CHANNEL_NAME: usize = 164;
/// The largest message a Pusher client may send (`package_max_length` if that is less): a
/// client event's [`MAX_EVENT_DATA`], or a presence member's (at most as much JSON), escaped
/// as a string twice over, with room to spare. Past it the connection is closed with 1009 as
/// the message comes: such a message is refused anyway, and was read, inflated and parsed up to
/// `package_max_length` first (compressed, 2 KB of zeros cost 2 MiB of inflating each).
pub const MAX_CLIENT_MESSAGE: usize = 128 * 1024;

/// One app of the `pusher` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct AppConfig {
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// Clients may send `client-*` events on private and presence channels.
    pub client_events: bool,
    /// Client events one connection may send per second (past it: error 4301).
    pub client_event_rate: u32,
    /// Open connections of this app at once; 0: no limit (past it: 4004).
    pub max_connections: usize,
    /// Seconds of silence after which a client is sent `pusher:ping`; told to clients too.
    pub activity_timeout: u64,
    /// Members (users) of one presence channel at most, as Pusher allows; 0: no limit. Each
    /// member's arrival is sent to every other, and each subscription gets the whole list.
    pub presence_max_members: usize,
    /// Bytes of one member's `user_id` and `user_info` (as JSON) at most.
    pub presence_max_member_size: usize,
    /// Channels one connection may be subscribed to at once (Pusher sets no limit; this one
    /// bounds what one client makes the server hold).
    pub max_channels_per_connection: usize,
    /// Where to post what happens on the app's channels (see `webhooks.rs`).
    pub webhooks: Vec<WebhookConfig>,
}

/// An app without id, key nor secret, its options as they are unless set.
impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            app_id: String::new(),
            key: String::new(),
            secret: String::new(),
            client_events: true,
            client_event_rate: 10,
            max_connections: 0,
            activity_timeout: 30,
            presence_max_members: 100,
            presence_max_member_size: 2048,
            max_channels_per_connection: 100,
            webhooks: Vec::new(),
        }
    }
}

pub(crate) const APP_KEYS: &[&str] = &["app_id", "key", "secret", "options", "webhooks"];
pub(crate) const OPTION_KEYS: &[&str] = &[
    "client_events",
    "client_event_rate",
    "max_connections",
    "activity_timeout",
    "presence_max_members",
    "presence_max_member_size",
    "max_channels_per_connection",
];

fn entries<'a>(what: &str, value: &'a Value) -> Result<&'a [(String, Value)], ConfigError> {
    match value {
        Value::Map(entries) => Ok(entries),
        Value::List(list) if list.is_empty() => Ok(&[]),
        other => Err(ConfigError(format!(
            "setting '{what}' must be an array with string keys, got {}",
            other.kind()
        ))),
    }
}

fn text(what: &str, value: &Value) -> Result<String, ConfigError> {
    match value {
        Value::Str(s) if !s.is_empty() => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(ConfigError(format!(
            "setting '{what}' must be a non-empty string, got {}",
            other.kind()
        ))),
    }
}

fn number(what: &str, value: &Value, min: i64, max: i64) -> Result<i64, ConfigError> {
    match value {
        Value::Int(n) if (min..=max).contains(n) => Ok(*n),
        Value::Int(n) => Err(ConfigError(format!(
            "setting '{what}' must be between {min} and {max}, got {n}"
        ))),
        other => Err(ConfigError(format!(
            "setting '{what}' must be an int, got {}",
            other.kind()
        ))),
    }
}

impl AppConfig {
    /// `pusher` => one app (an array with `app_id`, `key`, `secret`, `options`) or a list of them.
    pub fn parse_all(value: &Value) -> Result<Vec<AppConfig>, ConfigError> {
        let apps = match value {
            Value::Null => Vec::new(),
            Value::Map(_) => vec![AppConfig::parse("pusher", value)?],
            Value::List(list) => list
                .iter()
                .enumerate()
                .map(|(i, app)| AppConfig::parse(&format!("pusher[{i}]"), app))
                .collect::<Result<_, _>>()?,
            other => {
                return Err(ConfigError(format!(
                    "setting 'pusher' must be a list of apps, got {}",
                    other.kind()
                )))
            }
        };
        for (i, a) in apps.iter().enumerate() {
            if apps[..i]
                .iter()
                .any(|b| b.key == a.key || b.app_id == a.app_id)
            {
                return Err(ConfigError(format!(
                    "setting 'pusher[{i}]': app_id '{}' or key '{}' is used by another app",
                    a.app_id, a.key
                )));
            }
        }
        Ok(apps)
    }

    fn parse(what: &str, value: &Value) -> Result<AppConfig, ConfigError> {
        let mut app = AppConfig::default();
        for (k, v) in entries(what, value)? {
            let name = format!("{what}.{k}");
            match k.as_str() {
                "app_id" => app.app_id = text(&name, v)?,
                "key" => app.key = text(&name, v)?,
                "secret" => app.secret = text(&name, v)?,
                "webhooks" => app.webhooks = WebhookConfig::parse_all(&name, v)?,
                "options" => {
                    for (k, v) in entries(&name, v)? {
                        let name = format!("{name}.{k}");
                        match k.as_str() {
                            "client_events" => match v {
                                Value::Bool(b) => app.client_events = *b,
                                other => {
                                    return Err(ConfigError(format!(
                                        "setting '{name}' must be a bool, got {}",
                                        other.kind()
                                    )))
                                }
                            },
                            "client_event_rate" => {
                                app.client_event_rate = number(&name, v, 1, 1_000_000)? as u32
                            }
                            "max_connections" => {
                                app.max_connections = number(&name, v, 0, 100_000_000)? as usize
                            }
                            "activity_timeout" => {
                                app.activity_timeout = number(&name, v, 1, 3600)? as u64
                            }
                            "presence_max_members" => {
                                app.presence_max_members =
                                    number(&name, v, 0, 100_000_000)? as usize
                            }
                            "presence_max_member_size" => {
                                app.presence_max_member_size =
                                    number(&name, v, 2, MAX_EVENT_DATA as i64)? as usize
                            }
                            "max_channels_per_connection" => {
                                app.max_channels_per_connection =
                                    number(&name, v, 1, 1_000_000)? as usize
                            }
                            _ => {
                                return Err(ConfigError(format!(
                                    "unknown setting '{name}'; known options: {}",
                                    OPTION_KEYS.join(", ")
                                )))
                            }
                        }
                    }
                }
                _ => {
                    return Err(ConfigError(format!(
                        "unknown setting '{name}'; an app has {}",
                        APP_KEYS.join(", ")
                    )))
                }
            }
        }
        for (field, v) in [
            ("app_id", &app.app_id),
            ("key", &app.key),
            ("secret", &app.secret),
        ] {
            if v.is_empty() {
                return Err(ConfigError(format!("setting '{what}' has no '{field}'")));
            }
        }
        // Both are URL path segments (/app/{key}, /apps/{app_id}/...), compared as sent.
        for (field, v) in [("key", &app.key), ("app_id", &app.app_id)] {
            if v.contains(['/', '?', '#', '%']) || v.contains(char::is_whitespace) {
                return Err(ConfigError(format!(
                    "setting '{what}.{field}' must not contain '/', '?', '#', '%' or white space"
                )));
            }
        }
        Ok(app)
    }
}

/// One app while the server runs.
pub struct App {
    pub config: AppConfig,
    /// Subscribers of each channel (all kinds).
    pub channels: Channels,
    /// Presence channels' members. Presence changes happen under this lock, so every member
    /// sees joins and leaves in the same order as the snapshots handed to new subscribers.
    presence: Mutex<HashMap<String, Presence>>,
    /// The last event triggered on each cache channel.
    pub cache: cache::Cache,
    connections: AtomicUsize,
    pub webhooks: Webhooks,
}

impl App {
    fn new(config: AppConfig) -> App {
        App {
            webhooks: Webhooks::new(&config.webhooks),
            config,
            channels: Channels::default(),
            presence: Mutex::default(),
            cache: cache::Cache::default(),
            connections: AtomicUsize::new(0),
        }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }
}

/// The Pusher side of the engine: the configured apps (none: the protocol is off).
#[derive(Default)]
pub struct Pusher {
    pub apps: Vec<Arc<App>>,
}

impl Pusher {
    pub fn new(configs: &[AppConfig]) -> Pusher {
        Pusher {
            apps: configs
                .iter()
                .cloned()
                .map(|c| Arc::new(App::new(c)))
                .collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.apps.is_empty()
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.config.key == key)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.apps.iter().find(|a| a.config.app_id == id)
    }

    /// The app `app_id` names, or the only one when None.
    pub fn app(&self, app_id: Option<&str>) -> Result<&Arc<App>, String> {
        match (app_id, self.apps.as_slice()) {
            (_, []) => Err("the Pusher protocol is off (no 'pusher' setting)".into()),
            (None, [only]) => Ok(only),
            (None, _) => Err("several Pusher apps are configured: name one by its app_id".into()),
            (Some(id), _) => self
                .by_id(id)
                .ok_or_else(|| format!("no Pusher app has app_id '{id}'")),
        }
    }

    /// WebSocket handshakes on `/app/...` speak Pusher when apps are configured.
    pub fn is_socket_path(&self, path: &str) -> bool {
        self.enabled() && path.starts_with("/app/")
    }

    /// The app id of a path shaped as an HTTP API call (`/apps/{id}/...`) for an app not
    /// configured here (see `api::unknown_app`).
    pub fn unknown_api_app<'a>(&self, path: &'a str) -> Option<&'a str> {
        let id = api_app_id(path)?;
        (self.enabled() && self.by_id(id).is_none()).then_some(id)
    }

    /// HTTP requests under `/apps/{a configured app_id}/` are the Pusher HTTP API; other paths
    /// under `/apps/` are the application's (its routes, its static files).
    pub fn is_api_path(&self, path: &str) -> bool {
        api_app_id(path).is_some_and(|id| self.by_id(id).is_some())
    }
}

/// The `{id}` of a path shaped as an HTTP API call, `/apps/{id}/...`.
fn api_app_id(path: &str) -> Option<&str> {
    let (id, _) = path.strip_prefix("/apps/")?.split_once('/')?;
    Some(id)
}

/// The Pusher state of one connection (attached to its `Conn`).
pub struct Session {
    pub app: Arc<App>,
    pub socket_id: String,
    /// Engine ms when we sent `pusher:ping` still unanswered; 0: none.
    pinged_at: AtomicU64,
    subscriptions: Mutex<HashSet<String>>,
    /// Client events: at most the app's `client_event_rate` a second.
    rate: Mutex<RateLimit>,
    /// Subscriptions: at most twice `max_channels_per_connection` a second (a page subscribing
    /// to all it may hold, twice over, passes at once). Each answers a presence
    /// subscriber with the member list and tells every member of a new one: a client that
    /// subscribed and unsubscribed in a loop made the server send a hundred times what it sent.
    subscribe_rate: Mutex<RateLimit>,
    /// The user this connection signed in as (`pusher:signin`), once it has.
    user: std::sync::OnceLock<String>,
    /// It has left its channels and its app (see `socket::closed`), which happens once.
    ended: AtomicBool,
}

impl Session {
    pub fn user(&self) -> Option<&str> {
        self.user.get().map(String::as_str)
    }
}

/// The channel of a signed-in user's connections: events sent to the user (the server SDKs'
/// `sendToUser()`) are triggered on it, and only that user's connections may subscribe to it.
pub const SERVER_TO_USER: &str = "#server-to-user-";

/// The user whose channel `channel` is, if it is one (`#server-to-user-{id}`).
pub fn user_channel(channel: &str) -> Option<&str> {
    channel
        .strip_prefix(SERVER_TO_USER)
        .filter(|id| !id.is_empty() && id.len() <= MAX_USER_ID)
}

/// Longest user id a connection may sign in with.
pub const MAX_USER_ID: usize = 200;

/// Kinds of channels, from their name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Public,
    Private,
    Encrypted,
    Presence,
}

pub fn kind(channel: &str) -> Kind {
    if channel.starts_with("private-encrypted-") {
        Kind::Encrypted
    } else if channel.starts_with("private-") {
        Kind::Private
    } else if channel.starts_with("presence-") {
        Kind::Presence
    } else {
        Kind::Public
    }
}

/// Pusher's channel names: 1 to 164 of `A-Z a-z 0-9 _ - = @ , . ;`.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// A JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// `{"event":..,"channel":..,"data":..}` with `data` already JSON (often a JSON string
/// literal: Pusher sends event data as a string holding JSON).
pub(crate) fn event_json(event: &str, channel: Option<&str>, data: &str) -> String {
    match channel {
        Some(c) => format!(
            "{{\"event\":{},\"channel\":{},\"data\":{data}}}",
            quote(event),
            quote(c)
        ),
        None => format!("{{\"event\":{},\"data\":{data}}}", quote(event)),
    }
}

pub(crate) fn text_frame(json: &str) -> Outgoing {
    Outgoing::Frame(frame::Encoded::new(frame::OP_TEXT, json.as_bytes()))
}

/// Sends an event (frame encoded once) to the subscribers of `channel` but `except`; how many.
pub(crate) fn publish(
    shared: &Shared,
    app: &App,
    channel: &str,
    json: &str,
    except: &[u64],
) -> usize {
    let limit = shared.config.socket_buffer_size;
    app.channels
        .push(channel, except, limit, || text_frame(json))
}

/// An event the server triggers (HTTP API, Redis): sent as `publish` sends, and kept as the
/// channel's last when it is a cache channel. How many connections got it.
pub(crate) fn trigger(
    shared: &Shared,
    app: &App,
    channel: &str,
    frame: impl FnOnce() -> Outgoing,
    except: &[u64],
) -> usize {
    let limit = shared.config.socket_buffer_size;
    if !cache::is_cache(channel) {
        return app.channels.push(channel, except, limit, frame);
    }
    app.cache
        .keep_and_send(channel, frame(), shared.now_ms(), |frame| {
            app.channels.push(channel, except, limit, || frame.clone())
        })
}

/// A Laravel broadcast from the Redis bridge, for the Pusher subscribers of `channel` in every
/// app, in Pusher's shape (`data` as a JSON string). Returns how many connections got it.
/// Never to an encrypted channel: Laravel's Redis broadcaster does not encrypt, and pusher-js
/// would fail to decrypt the plain text (the pusher broadcaster's HTTP API calls encrypt).
pub(crate) fn forward_broadcast(
    shared: &Shared,
    channel: &str,
    event: &str,
    data: &str,
    except: &[u64],
) -> usize {
    if !shared.pusher.enabled() {
        return 0;
    }
    if kind(channel) == Kind::Encrypted {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Relaxed) {
            log::warn!(target: "surge", "Redis broadcasts on encrypted channels ({channel}) are not sent to Pusher clients: Laravel's redis broadcaster does not encrypt them (use the pusher driver); said once");
        }
        return 0;
    }
    // Encoded once, for the first app with subscribers (or a cache channel to keep it in).
    let mut item = None;
    let mut sent = 0;
    for app in &shared.pusher.apps {
        sent += trigger(
            shared,
            app,
            channel,
            || {
                item.get_or_insert_with(|| {
                    text_frame(&event_json(event, Some(channel), &quote(data)))
                })
                .clone()
            },
            except,
        );
    }
    sent
}

/// Posts every app's webhooks, for as long as the server runs.
pub(crate) async fn post_webhooks(shared: Arc<Shared>) {
    let https = shared.pusher.apps.iter().any(|a| a.webhooks.has_https());
    if let (true, Err(why)) = (https, crate::tls::client_config()) {
        log::warn!(target: "surge", "https:// webhooks cannot be verified: {why}");
    }
    let apps = shared.pusher.apps.iter().map(|app| {
        let config = &app.config;
        app.webhooks.run(&config.key, &config.secret)
    });
    futures_util::future::join_all(apps).await;
}

/// At the stop, once the clients have had their time to close: the Pusher connections still
/// there leave their channels (and presence), so that webhooks hear of the channels the stop
/// empties, also from clients that did not answer their close. Their PHP events are not sent:
/// PHP is done.
pub(crate) fn end_sessions(shared: &Shared) {
    shared.registry.for_each(|conn| {
        if let Some(Some(session)) = conn.pusher.get() {
            let _ = socket::closed(session, conn.fd, shared);
        }
    });
}

/// Webhook events still to post, over every app.
pub(crate) fn webhooks_pending(shared: &Shared) -> usize {
    shared
        .pusher
        .apps
        .iter()
        .map(|a| a.webhooks.pending())
        .sum()
}

/// Every second: a Pusher client silent for its app's `activity_timeout` is sent
/// `pusher:ping`; one that stays silent for as long again (at most 30 s) is closed with 4201.
/// Cache channels' events past their time are forgotten.
pub(crate) async fn sweep(shared: Arc<Shared>) {
    if !shared.pusher.enabled() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ping = text_frame(&event_json("pusher:ping", None, "{}"));
    loop {
        tick.tick().await;
        let now = shared.now_ms();
        for app in &shared.pusher.apps {
            app.cache.expire(now);
        }
        shared.registry.for_each(|conn| {
            let Some(Some(session)) = conn.pusher.get() else { return };
            let timeout = session.app.config.activity_timeout * 1000;
            let pinged = session.pinged_at.load(Relaxed);
            let last = conn.last_active_ms();
            if pinged != 0 && last >= pinged {
                session.pinged_at.store(0, Relaxed);
            } else if pinged != 0 {
                // Said once: a connection already closing stays swept until it is gone.
                if now.saturating_sub(pinged) >= timeout.min(30_000)
                    && conn.close(4201, "Pong reply not received")
                {
                    log::info!(target: "surge", "fd {}: no answer to pusher:ping; closed with 4201", conn.fd);
                }
                return;
            }
            if now.saturating_sub(last) >= timeout {
                session.pinged_at.store(now.max(1), Relaxed);
                let _ = conn.push(ping.clone(), shared.config.socket_buffer_size);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(
            entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn app(id: &str, key: &str) -> Value {
        map(&[
            ("app_id", Value::Str(id.into())),
            ("key", Value::Str(key.into())),
            ("secret", Value::Str("s".into())),
        ])
    }

    #[test]
    fn apps_parse_with_defaults_and_options() {
        let mut one = app("1", "k");
        if let Value::Map(e) = &mut one {
            e.push((
                "options".into(),
                map(&[
                    ("client_events", Value::Bool(false)),
                    ("max_connections", Value::Int(5)),
                    ("activity_timeout", Value::Int(7)),
                ]),
            ));
        }
        let apps = AppConfig::parse_all(&Value::List(vec![one, app("2", "k2")])).unwrap();
        assert_eq!(apps.len(), 2);
        assert!(!apps[0].client_events);
        assert_eq!((apps[0].max_connections, apps[0].activity_timeout), (5, 7));
        assert!(apps[1].client_events);
        assert_eq!(apps[1].activity_timeout, 30);
    }

    #[test]
    fn bad_apps_are_named() {
        let err =
            AppConfig::parse_all(&Value::List(vec![app("1", "k"), app("1", "k")])).unwrap_err();
        assert!(err.0.contains("pusher[1]"), "{err}");
        let err = AppConfig::parse_all(&Value::List(vec![map(&[
            ("app_id", Value::Int(1)),
            ("key", Value::Str("k".into())),
        ])]))
        .unwrap_err();
        assert!(err.0.contains("no 'secret'"), "{err}");
        let err = AppConfig::parse_all(&map(&[
            ("app_id", Value::Int(1)),
            ("sekret", Value::Str("k".into())),
        ]))
        .unwrap_err();
        assert!(err.0.contains("'pusher.sekret'"), "{err}");
        let err = AppConfig::parse_all(&app("a/b", "k")).unwrap_err();
        assert!(
            err.0.contains("'pusher.app_id' must not contain '/'"),
            "{err}"
        );
        let bad = map(&[("options", map(&[("activity_timeout", Value::Int(0))]))]);
        assert!(AppConfig::parse_all(&bad)
            .unwrap_err()
            .0
            .contains("pusher.options.activity_timeout"));
    }

    #[test]
    fn channel_kinds_and_names() {
        assert_eq!(kind("private-encrypted-x"), Kind::Encrypted);
        assert_eq!(kind("private-x"), Kind::Private);
        assert_eq!(kind("presence-x"), Kind::Presence);
        assert_eq!(kind("x"), Kind::Public);
        assert!(valid_channel("private-App.Models.User.1"));
        assert!(!valid_channel("a b"));
        assert!(!valid_channel(""));
        assert!(!valid_channel(&"x".repeat(165)));
    }

    #[test]
    fn events_are_encoded_with_string_data() {
        assert_eq!(
            event_json("App\\E", Some("news"), &quote("{\"a\":1}")),
            r#"{"event":"App\\E","channel":"news","data":"{\"a\":1}"}"#
        );
    }
}
