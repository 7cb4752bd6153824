//! The WebSocket side of the Pusher protocol: connection_established, ping/pong,
//! subscriptions (signed for private and presence channels), presence members and client
//! events. Every reply is queued on the connection's outbox like any push.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::webhooks::Kind as Hook;
use super::{auth, event_json, kind, quote, text_frame, valid_channel, App, Kind, Session};
use super::{MAX_EVENT_DATA, MAX_EVENT_NAME};
use crate::events::{Event, HttpRequest, PusherEvent};
use crate::rate_limit::RateLimit;
use crate::registry::Conn;
use crate::shared::Shared;

/// Protocol versions spoken (pusher-js 8 sends 7).
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

fn send(conn: &Conn, shared: &Shared, json: &str) {
    let _ = conn.push(text_frame(json), shared.config.socket_buffer_size);
}

/// Adds `handle` to `channel` and tells it so (`subscription_succeeded` with `data`); on a
/// cache channel then, for a `new` subscription, the kept event or `pusher:cache_miss`.
fn join(handle: &Arc<Conn>, app: &App, shared: &Shared, channel: &str, data: &str, new: bool) {
    let join = || {
        app.channels.join_counted(handle, channel, |members| {
            if members == 1 && app.webhooks.want(Hook::ChannelOccupied) && !is_internal(channel) {
                app.webhooks
                    .send(Hook::ChannelOccupied, json!({"channel": channel}));
            }
        });
        subscription_succeeded(handle, shared, channel, data);
    };
    if !new || !super::cache::is_cache(channel) {
        return join();
    }
    app.cache.subscribe(channel, shared.now_ms(), join, |kept| {
        let event = kept.cloned().unwrap_or_else(|| {
            if app.webhooks.want(Hook::CacheMiss) {
                app.webhooks
                    .send(Hook::CacheMiss, json!({"channel": channel}));
            }
            text_frame(&format!(
                "{{\"event\":\"pusher:cache_miss\",\"channel\":{}}}",
                quote(channel)
            ))
        });
        let _ = handle.push(event, shared.config.socket_buffer_size);
    });
}

/// A user's own channel (`#server-to-user-`): Pusher tells no webhook of it.
fn is_internal(channel: &str) -> bool {
    super::user_channel(channel).is_some()
}

/// `pusher:error`, which leaves the connection open.
fn error(conn: &Conn, shared: &Shared, code: Option<u16>, message: &str) {
    let code = code.map_or("null".to_owned(), |c| c.to_string());
    send(
        conn,
        shared,
        &event_json(
            "pusher:error",
            None,
            &format!("{{\"code\":{code},\"message\":{}}}", quote(message)),
        ),
    );
}

/// `pusher:error` then a close with the same code, as Pusher does for fatal errors.
fn refuse(conn: &Conn, shared: &Shared, code: u16, message: &str) {
    let _ = conn.pusher.set(None);
    log::debug!(target: "surge", "fd {}: pusher error {code}: {message}", conn.fd);
    error(conn, shared, Some(code), message);
    conn.close(code, message);
}

/// `pusher_internal:subscription_succeeded` with `data` (JSON text of a string).
fn subscription_succeeded(conn: &Conn, shared: &Shared, channel: &str, data: &str) {
    let json = event_json(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        data,
    );
    send(conn, shared, &json);
}

fn subscription_error(
    conn: &Conn,
    shared: &Shared,
    channel: &str,
    kind: &str,
    status: u16,
    message: &str,
) {
    let data = serde_json::json!({"type": kind, "error": message, "status": status}).to_string();
    send(
        conn,
        shared,
        &event_json("pusher:subscription_error", Some(channel), &quote(&data)),
    );
}

/// A handshake on `/app/{key}?protocol=7`: the connection is attached to its app and told its
/// socket id, or gets the protocol's error and is closed.
pub(crate) fn open(conn: &Arc<Conn>, request: &HttpRequest, shared: &Shared) {
    let key = request.path.strip_prefix("/app/").unwrap_or("");
    let Some(app) = shared.pusher.by_key(key) else {
        return refuse(conn, shared, 4001, &format!("App key {key} does not exist"));
    };
    let Some((_, protocol)) =
        form_urlencoded::parse(request.query.as_bytes()).find(|(k, _)| k == "protocol")
    else {
        return refuse(conn, shared, 4008, "No protocol version supplied");
    };
    if !protocol.parse().is_ok_and(|p: u32| PROTOCOLS.contains(&p)) {
        return refuse(
            conn,
            shared,
            4007,
            "Unsupported protocol version: this server speaks 5 to 7",
        );
    }
    let max = app.config.max_connections;
    if max > 0 && app.connections.fetch_add(1, Relaxed) >= max {
        app.connections.fetch_sub(1, Relaxed);
        return refuse(
            conn,
            shared,
            4004,
            &format!("App is over its connection quota ({max})"),
        );
    } else if max == 0 {
        app.connections.fetch_add(1, Relaxed);
    }
    let session = Session {
        app: app.clone(),
        socket_id: shared.socket_id(conn.fd),
        pinged_at: Default::default(),
        subscriptions: Default::default(),
        rate: Mutex::new(RateLimit::at_least_one(
            app.config.client_event_rate,
            shared.now_ms(),
        )),
        subscribe_rate: Mutex::new(RateLimit::at_least_one(
            (2 * app.config.max_channels_per_connection).min(u32::MAX as usize) as u32,
            shared.now_ms(),
        )),
        user: Default::default(),
        ended: Default::default(),
    };
    let data = format!(
        "{{\"socket_id\":{},\"activity_timeout\":{}}}",
        quote(&session.socket_id),
        app.config.activity_timeout
    );
    if conn.pusher.set(Some(Arc::new(session))).is_err() {
        return;
    }
    send(
        conn,
        shared,
        &event_json("pusher:connection_established", None, &quote(&data)),
    );
}

#[derive(Deserialize)]
struct Incoming<'a> {
    event: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    channel: Option<String>,
}

#[derive(Deserialize)]
struct Subscribe {
    channel: String,
    auth: Option<String>,
    channel_data: Option<String>,
}

#[derive(Deserialize)]
struct Signin {
    auth: String,
    user_data: String,
}

/// `pusher:signin` (pusher-js's `signin()`): with `auth` signed by the app (the server SDKs'
/// `authenticateUser()`), the connection is the user `user_data.id` from then on: it may
/// subscribe to that user's `#server-to-user-` channel, and ending the user's connections
/// (the HTTP API's `terminate_connections`) ends it. A refusal is a `pusher:error` 4009; the
/// connection stays, as it was.
fn signin(session: &Session, conn: &Conn, shared: &Shared, s: Signin) {
    let app = &session.app.config;
    let refuse = |why: &str| error(conn, shared, Some(4009), &format!("signin refused: {why}"));
    if !auth::verify_user_auth(
        &app.key,
        &app.secret,
        &s.auth,
        &session.socket_id,
        &s.user_data,
    ) {
        return refuse("invalid signature for this socket_id and user_data");
    }
    let id = match serde_json::from_str::<Value>(&s.user_data)
        .ok()
        .as_ref()
        .and_then(|d| d.get("id"))
    {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= super::MAX_USER_ID => id.clone(),
        _ => {
            return refuse(&format!(
                "user_data must be JSON with an id, a string of 1 to {} bytes",
                super::MAX_USER_ID
            ))
        }
    };
    if session.user.get_or_init(|| id.clone()) != &id {
        return refuse("this connection is signed in as another user");
    }
    let data = serde_json::json!({"user_data": s.user_data}).to_string();
    send(
        conn,
        shared,
        &event_json("pusher:signin_success", None, &quote(&data)),
    );
}

/// Pusher clients send `data` as an object; some send it as a string holding JSON.
fn payload<T: for<'de> Deserialize<'de>>(data: Option<&RawValue>) -> Option<T> {
    let raw = data?.get();
    match serde_json::from_str::<String>(raw) {
        Ok(inner) => serde_json::from_str(&inner).ok(),
        Err(_) => serde_json::from_str(raw).ok(),
    }
}

/// An [`Event::Pusher`] for PHP, if the callback `wanted` is registered.
fn observed(
    wanted: &AtomicBool,
    session: &Session,
    fd: u64,
    channel: &str,
    what: impl FnOnce() -> PusherEvent,
) -> Option<Event> {
    wanted.load(Relaxed).then(|| Event::Pusher {
        fd,
        app_id: session.app.config.app_id.clone(),
        channel: channel.to_owned(),
        what: what(),
    })
}

/// One message from a Pusher client. What PHP observes of it (a subscription, an unsubscription
/// or a client event, when the callback exists) is returned for the caller to send.
pub(crate) fn receive(
    session: &Session,
    conn: &Conn,
    shared: &Shared,
    data: &[u8],
    binary: bool,
) -> Option<Event> {
    session.pinged_at.store(0, Relaxed);
    if binary {
        error(
            conn,
            shared,
            None,
            "binary messages are not part of the Pusher protocol; send JSON text",
        );
        return None;
    }
    let Ok(message) = serde_json::from_slice::<Incoming>(data) else {
        error(
            conn,
            shared,
            None,
            "invalid message: expected JSON {\"event\": ..., \"data\": ...}",
        );
        return None;
    };
    // A connection the server is closing (a kick, the activity timeout, a slow consumer) takes
    // part in nothing more while its close is under way: a subscription announced a member who
    // would hear nothing, and its client events still reached the channel.
    if !conn.is_open() && message.event != "pusher:unsubscribe" {
        return None;
    }
    match message.event.as_str() {
        "pusher:ping" => send(conn, shared, &event_json("pusher:pong", None, "{}")),
        "pusher:pong" => {}
        "pusher:subscribe" => match payload::<Subscribe>(message.data) {
            Some(s) => return subscribe(session, conn, shared, s),
            None => error(
                conn,
                shared,
                None,
                "pusher:subscribe needs data {\"channel\": ...}",
            ),
        },
        "pusher:unsubscribe" => match payload::<Subscribe>(message.data) {
            Some(s) => {
                if session.subscriptions.lock().remove(&s.channel) {
                    leave(&session.app, conn.fd, &s.channel, shared);
                    return observed(
                        &shared.handlers.pusher_unsubscribe,
                        session,
                        conn.fd,
                        &s.channel,
                        || PusherEvent::Unsubscribe,
                    );
                }
            }
            None => error(
                conn,
                shared,
                None,
                "pusher:unsubscribe needs data {\"channel\": ...}",
            ),
        },
        "pusher:signin" => match payload::<Signin>(message.data) {
            Some(s) => signin(session, conn, shared, s),
            None => error(
                conn,
                shared,
                None,
                "pusher:signin needs data {\"auth\": ..., \"user_data\": ...}",
            ),
        },
        event if event.starts_with("client-") => {
            return client_event(session, conn, shared, event, message.channel, message.data)
        }
        event => error(
            conn,
            shared,
            None,
            &format!(
                "unknown event '{}'",
                event.chars().take(64).collect::<String>()
            ),
        ),
    }
    None
}

fn subscribe(session: &Session, conn: &Conn, shared: &Shared, s: Subscribe) -> Option<Event> {
    let channel = s.channel.as_str();
    if let Some(user) = super::user_channel(channel) {
        if session.user() != Some(user) {
            let why = "only the connections signed in as this user (pusher:signin) may subscribe";
            subscription_error(conn, shared, channel, "AuthError", 401, why);
            return None;
        }
    } else if !valid_channel(channel) {
        subscription_error(
            conn,
            shared,
            channel,
            "InvalidChannel",
            400,
            "channel names are 1 to 164 of A-Z a-z 0-9 _ - = @ , . ;",
        );
        return None;
    }
    if !session.subscribe_rate.lock().take(shared.now_ms()) {
        let most = 2 * session.app.config.max_channels_per_connection;
        let why = format!("at most {most} subscriptions a second");
        subscription_error(conn, shared, channel, "LimitReached", 4301, &why);
        return None;
    }
    // The Channels membership needs the shared handle of this connection.
    let handle = shared.registry.get(conn.fd)?;
    let kind = kind(channel);
    if kind != Kind::Public {
        let app = &session.app.config;
        let signed_with = |data| {
            s.auth.as_deref().is_some_and(|a| {
                auth::verify_channel_auth(
                    &app.key,
                    &app.secret,
                    a,
                    &session.socket_id,
                    channel,
                    data,
                )
            })
        };
        // A private channel's auth signs no channel_data, but the server SDKs' authorizeChannel()
        // signs custom data when given some (pusher-js then sends it): both are taken.
        let data = s.channel_data.as_deref();
        let signed = match kind {
            Kind::Presence => signed_with(data),
            _ => signed_with(None) || (data.is_some() && signed_with(data)),
        };
        if !signed {
            log::debug!(target: "surge", "fd {}: refused subscription to {channel}: bad auth", conn.fd);
            // None at all: pusher-js sends what the auth endpoint answered, and Laravel's redis
            // broadcaster answers without a signature (it was made for laravel-echo-server).
            let why = match s.auth {
                Some(_) => "invalid signature for this socket_id and channel",
                None => "no auth: the auth endpoint answered without a signature (Laravel's redis broadcaster does not sign: authorize with the pusher or reverb one)",
            };
            subscription_error(conn, shared, channel, "AuthError", 401, why);
            return None;
        }
    }
    let new = {
        let mut subs = session.subscriptions.lock();
        let most = session.app.config.max_channels_per_connection;
        if !subs.contains(channel) && subs.len() >= most {
            drop(subs);
            subscription_error(
                conn,
                shared,
                channel,
                "LimitReached",
                429,
                &format!("a connection may be subscribed to at most {most} channels"),
            );
            return None;
        }
        subs.insert(channel.to_owned())
    };
    let app = &session.app;
    // Only a new subscription is reported, not a repeat.
    let wanted = &shared.handlers.pusher_subscribe;
    if kind != Kind::Presence {
        join(&handle, app, shared, channel, "\"{}\"", new);
        return new
            .then(|| {
                observed(wanted, session, conn.fd, channel, || {
                    PusherEvent::Subscribe { member: None }
                })
            })
            .flatten();
    }
    let member: Option<(String, Value)> = s
        .channel_data
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .and_then(|d| {
            let id = match d.get("user_id")? {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => number_id(n),
                _ => return None,
            };
            Some((id, d.get("user_info").cloned().unwrap_or(Value::Null)))
        });
    // A refusal of a repeat leaves the subscription made before as it is (forgetting it here
    // would leave its member behind when the connection goes).
    let refuse = |kind: &str, status: u16, message: &str| {
        if new {
            session.subscriptions.lock().remove(channel);
        }
        subscription_error(conn, shared, channel, kind, status, message);
        None
    };
    let Some((user_id, info)) = member else {
        return refuse(
            "InvalidChannelData",
            400,
            "presence channel_data must be JSON with a user_id",
        );
    };
    let size = user_id.len() + info.to_string().len();
    let max_size = app.config.presence_max_member_size;
    if size > max_size {
        return refuse(
            "LimitReached",
            4301,
            &format!(
                "user_id and user_info are {size} bytes of JSON; a member's are at most {max_size}"
            ),
        );
    }
    let mut presence = app.presence.lock();
    let members = presence.entry(channel.to_owned()).or_default();
    if let Some(was) = members.user_of(conn.fd).filter(|was| *was != user_id) {
        let message = format!("this connection is subscribed as user {was}: unsubscribe first");
        drop(presence);
        return refuse("InvalidChannelData", 400, &message);
    }
    let max = app.config.presence_max_members;
    if max > 0 && members.count() >= max && !members.has_user(&user_id) {
        drop(presence);
        return refuse(
            "LimitReached",
            4100,
            &format!("the presence channel has its most members ({max})"),
        );
    }
    let added = members.join(conn.fd, &user_id, info.clone());
    join(
        &handle,
        app,
        shared,
        channel,
        &quote(&members.snapshot()),
        new,
    );
    if added && app.webhooks.want(Hook::MemberAdded) {
        let fields = json!({"channel": channel, "user_id": user_id});
        app.webhooks.send(Hook::MemberAdded, fields);
    }
    if added {
        let data = serde_json::json!({"user_id": user_id, "user_info": info}).to_string();
        super::publish(
            shared,
            app,
            channel,
            &event_json("pusher_internal:member_added", Some(channel), &quote(&data)),
            &[conn.fd],
        );
    }
    drop(presence);
    let member = Some((user_id, info.to_string()));
    new.then(|| {
        observed(wanted, session, conn.fd, channel, || {
            PusherEvent::Subscribe { member }
        })
    })
    .flatten()
}

/// A numeric user_id as JavaScript writes it, which pusher-js looks its own member up by: a
/// float with no fraction without its `.0` (PHP's json_encode(1.0) is `1.0`), in digits up to
/// 1e21 as JavaScript writes them.
fn number_id(n: &serde_json::Number) -> String {
    match n.as_f64() {
        Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e21 => (f as i128).to_string(),
        _ => n.to_string(),
    }
}

/// Takes `fd` out of `channel`, telling presence members when a user's last connection left
/// (and the webhooks, in Pusher's order: `member_removed`, then `channel_vacated`).
fn leave(app: &App, fd: u64, channel: &str, shared: &Shared) {
    let leave_channel = || {
        app.channels.leave_counted(fd, channel, |members| {
            if members == 0 && app.webhooks.want(Hook::ChannelVacated) && !is_internal(channel) {
                app.webhooks
                    .send(Hook::ChannelVacated, json!({"channel": channel}));
            }
        })
    };
    if kind(channel) != Kind::Presence {
        leave_channel();
        return;
    }
    let mut presence = app.presence.lock();
    let gone = match presence.get_mut(channel) {
        Some(members) => {
            let gone = members.leave(fd);
            if members.is_empty() {
                presence.remove(channel);
            }
            gone
        }
        None => None,
    };
    if let (Some(user_id), true) = (&gone, app.webhooks.want(Hook::MemberRemoved)) {
        let fields = json!({"channel": channel, "user_id": user_id});
        app.webhooks.send(Hook::MemberRemoved, fields);
    }
    leave_channel();
    if let Some(user_id) = gone {
        let data = serde_json::json!({"user_id": user_id}).to_string();
        super::publish(
            shared,
            app,
            channel,
            &event_json(
                "pusher_internal:member_removed",
                Some(channel),
                &quote(&data),
            ),
            &[],
        );
    }
}

/// The connection ended: it leaves its channels and its app, once (a stop may end it before
/// its task does). Returns the unsubscriptions for PHP (empty without that callback).
pub(crate) fn closed(session: &Session, fd: u64, shared: &Shared) -> Vec<Event> {
    if session.ended.swap(true, Relaxed) {
        return Vec::new();
    }
    let channels: Vec<String> = session.subscriptions.lock().drain().collect();
    let mut events = Vec::new();
    for channel in channels {
        leave(&session.app, fd, &channel, shared);
        events.extend(observed(
            &shared.handlers.pusher_unsubscribe,
            session,
            fd,
            &channel,
            || PusherEvent::Unsubscribe,
        ));
    }
    session.app.channels.leave_all(fd);
    session.app.connections.fetch_sub(1, Relaxed);
    events
}

fn client_event(
    session: &Session,
    conn: &Conn,
    shared: &Shared,
    event: &str,
    channel: Option<String>,
    data: Option<&RawValue>,
) -> Option<Event> {
    let app = &session.app;
    let Some(channel) = channel else {
        error(conn, shared, None, "a client event needs a channel");
        return None;
    };
    if !app.config.client_events {
        error(
            conn,
            shared,
            None,
            "client events are not enabled for this app",
        );
        return None;
    }
    let kind = kind(&channel);
    if !matches!(kind, Kind::Private | Kind::Presence) {
        // pusher-js refuses them on encrypted channels itself (it could not encrypt them).
        let why = match kind {
            Kind::Encrypted => "client events are not allowed on private-encrypted channels",
            _ => "client events are only allowed on private and presence channels",
        };
        error(conn, shared, None, why);
        return None;
    }
    if !session.subscriptions.lock().contains(&channel) {
        error(
            conn,
            shared,
            None,
            &format!("client event on '{channel}' refused: not subscribed to it"),
        );
        return None;
    }
    if event.len() > MAX_EVENT_NAME {
        error(
            conn,
            shared,
            None,
            &format!("client event refused: name over {MAX_EVENT_NAME} bytes"),
        );
        return None;
    }
    let data = data.map_or("null", RawValue::get);
    if data.len() > MAX_EVENT_DATA {
        error(
            conn,
            shared,
            None,
            &format!("client event refused: data over {MAX_EVENT_DATA} bytes"),
        );
        return None;
    }
    {
        let allowed = session.rate.lock().take(shared.now_ms());
        if !allowed {
            error(
                conn,
                shared,
                Some(4301),
                "Client event rejected due to rate limit",
            );
            return None;
        }
    }
    let mut json = format!(
        "{{\"event\":{},\"channel\":{},\"data\":{data}",
        quote(event),
        quote(&channel)
    );
    let user_id = (kind == Kind::Presence)
        .then(|| {
            let presence = app.presence.lock();
            presence.get(&channel)?.user_of(conn.fd).map(str::to_owned)
        })
        .flatten();
    if let Some(user_id) = &user_id {
        json.push_str(&format!(",\"user_id\":{}", quote(user_id)));
    }
    json.push('}');
    // Queued before it is sent: what its receivers do about it comes after it.
    if app.webhooks.want(Hook::ClientEvent) {
        client_event_webhook(session, &channel, event, data, user_id);
    }
    super::publish(shared, app, &channel, &json, &[conn.fd]);
    observed(
        &shared.handlers.pusher_client_event,
        session,
        conn.fd,
        &channel,
        || PusherEvent::ClientEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        },
    )
}

/// The `client_event` webhook: `data` as Pusher gives it, a string (a JSON string's text, any
/// other JSON as written), and the sender's `user_id` on a presence channel.
fn client_event_webhook(
    session: &Session,
    channel: &str,
    event: &str,
    data: &str,
    user_id: Option<String>,
) {
    let data = serde_json::from_str::<String>(data).unwrap_or_else(|_| data.to_owned());
    let mut fields =
        json!({"channel": channel, "event": event, "data": data, "socket_id": session.socket_id});
    if let Some(user_id) = user_id {
        fields["user_id"] = Value::from(user_id);
    }
    session.app.webhooks.send(Hook::ClientEvent, fields);
}

#[cfg(test)]
mod tests {
    #[test]
    fn numeric_user_ids_are_written_as_javascript_writes_them() {
        let id = |json: &str| super::number_id(&serde_json::from_str(json).unwrap());
        for (json, js) in [
            ("7", "7"),
            ("7.0", "7"),
            ("-3.0", "-3"),
            ("1.5", "1.5"),
            ("9007199254740993", "9007199254740993"),
            ("1e20", "100000000000000000000"),
        ] {
            assert_eq!(id(json), js, "{json}");
        }
    }
}
