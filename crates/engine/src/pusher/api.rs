//! The Pusher HTTP API on the server's own port: trigger events (single, multi-channel and
//! batch) and query channels and presence users, every request signed with the app secret.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde::Deserialize;
use serde_json::{json, Value};

use super::presence::Presence;
use super::{
    auth, event_json, kind, quote, text_frame, valid_channel, App, Kind, MAX_EVENT_DATA,
    MAX_EVENT_NAME,
};
use crate::events::HttpResponse;
use crate::listener::{read_body, BodyLimit};
use crate::shared::{unix_ms, Shared};

/// How far `auth_timestamp` may be from the server's clock, in seconds.
const TIMESTAMP_WINDOW: u64 = 600;
/// Channels one event may be triggered on.
const MAX_CHANNELS: usize = 100;
/// Events in one batch.
const MAX_BATCH: usize = 10;

fn json_reply(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        reason: None,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_string()),
    }
}

fn fail(status: u16, message: &str) -> HttpResponse {
    json_reply(status, json!({ "error": message }))
}

/// The answer to `/apps/{id}/...` for an app not configured here, when no request callback
/// takes such paths: a server SDK given another app_id than Surge's (a stale config cache, a
/// second .env) is told so (Laravel shows it in its BroadcastException), not that this is a
/// WebSocket server.
pub(crate) fn unknown_app(shared: &Shared, method: &Method, path: &str) -> Option<HttpResponse> {
    let id = shared.pusher.unknown_api_app(path)?;
    log::info!(target: "surge", "pusher api: {method} {path}: no app has app_id '{id}' here");
    let why = format!("no Pusher app has app_id '{id}' here: the HTTP API takes the app_id of an app in the 'pusher' setting");
    Some(fail(404, &why))
}

/// The largest body the API reads: ten events of 10 KB of data (escaped in JSON, up to six
/// times that) on 100 channels each fit; nothing a signed request sends comes near it.
const API_BODY: BodyLimit = BodyLimit {
    bytes: 1 << 20,
    name: "the Pusher API's limit",
};

/// A request under `/apps/{app_id}/`; Err: refused before its body was read whole. Everything
/// the signature covers (`body_md5` too) is checked before the body is read: a client without
/// the secret gets no `100 Continue` and has nothing read, whatever it sends.
pub(crate) async fn serve(
    req: Request<Incoming>,
    shared: &Shared,
) -> Result<HttpResponse, HttpResponse> {
    let (parts, body) = req.into_parts();
    let (method, path) = (&parts.method, parts.uri.path());
    let Some(app) = app_of(shared, path) else {
        return Ok(fail(404, "no such app"));
    };
    let params = query_params(parts.uri.query());
    if let Err(refused) = signed(app, method, path, &params) {
        return match hyper::body::Body::is_end_stream(&body) {
            true => Ok(refused),
            false => Err(refused),
        };
    }
    let body = match read_body(body, API_BODY, &shared.config).await {
        Ok(body) => body,
        Err((status, message)) => return Err(fail(status, &message)),
    };
    Ok(checked_body(
        app, shared, method, path, &params, &body, true,
    ))
}

/// The whole of `serve` on a request read whole, for fuzzing; `verify` false skips the
/// signature and body checks.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    body: &[u8],
    verify: bool,
) -> HttpResponse {
    let Some(app) = app_of(shared, path) else {
        return fail(404, "no such app");
    };
    let params = query_params(Some(query));
    match signed(app, method, path, &params) {
        Err(refused) if verify => refused,
        _ => checked_body(app, shared, method, path, &params, body, verify),
    }
}

fn app_of<'a>(shared: &'a Shared, path: &str) -> Option<&'a Arc<App>> {
    let id = path.trim_start_matches('/').split('/').nth(1)?;
    shared.pusher.by_id(id)
}

fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// The signature check; a refusal is logged and answered 401.
fn signed(
    app: &App,
    method: &Method,
    path: &str,
    params: &[(String, String)],
) -> Result<(), HttpResponse> {
    check_signature(app, method, path, params).map_err(|why| refused(method, path, why))
}

fn refused(method: &Method, path: &str, why: String) -> HttpResponse {
    log::info!(target: "surge", "pusher api: {method} {path} refused: {why}");
    fail(401, &why)
}

/// A signed request with its body: the body checked against the signed `body_md5` (unless
/// `verify` is false), then the endpoint.
fn checked_body(
    app: &App,
    shared: &Shared,
    method: &Method,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    verify: bool,
) -> HttpResponse {
    if let Err(why) = check_body_md5(params, body) {
        if verify {
            return refused(method, path, why);
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let segments: Vec<String> = (path.trim_start_matches('/').split('/').skip(2))
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, segments.as_slice()) {
        (&Method::POST, ["events"]) => trigger(app, shared, body),
        (&Method::POST, ["batch_events"]) => batch(app, shared, body),
        (&Method::GET, ["channels"]) => channels(app, param("filter_by_prefix"), param("info")),
        (&Method::GET, ["channels", name]) => channel(app, name, param("info")),
        (&Method::GET, ["channels", name, "users"]) => users(app, name),
        (&Method::POST, ["users", user, "terminate_connections"]) => {
            // The SDKs put the id in the path as it is: matched as sent and as decoded.
            let raw = path.split('/').nth(4).unwrap_or_default();
            terminate(app, shared, &[raw, user])
        }
        (_, ["events" | "batch_events"] | ["users", _, "terminate_connections"]) => {
            fail(405, "this endpoint takes POST")
        }
        (_, ["channels"] | ["channels", _] | ["channels", _, "users"]) => {
            fail(405, "this endpoint takes GET")
        }
        _ => fail(404, "no such endpoint"),
    }
}

fn percent_decode(s: &str) -> String {
    // form_urlencoded would also turn '+' into a space, which a path does not.
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Pusher's request signature: HMAC-SHA256 of `METHOD\nPATH\nsorted query` (auth_signature
/// left out, keys lowercased, values unescaped; `body_md5` among them), plus key, version and
/// timestamp checks. A signature may be used again within the timestamp window, as Pusher allows:
/// its SDKs sign no nonce, so two identical triggers in one second carry the same signature.
fn check_signature(
    app: &App,
    method: &Method,
    path: &str,
    params: &[(String, String)],
) -> Result<(), String> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let signature = get("auth_signature").ok_or("missing auth_signature")?;
    if get("auth_key") != Some(app.config.key.as_str()) {
        return Err("auth_key is not this app's key".into());
    }
    if get("auth_version") != Some("1.0") {
        return Err("auth_version must be 1.0".into());
    }
    let timestamp: i64 = get("auth_timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or("missing or malformed auth_timestamp")?;
    let now = (unix_ms() / 1000) as i64;
    if now.abs_diff(timestamp) > TIMESTAMP_WINDOW {
        return Err(format!(
            "auth_timestamp is more than {TIMESTAMP_WINDOW} s from the server's time ({now})"
        ));
    }
    let mut signed: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    signed.sort();
    let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let message = format!("{}\n{path}\n{}", method.as_str(), query.join("&"));
    if !auth::verify(&app.config.secret, &message, signature) {
        return Err("invalid auth_signature".into());
    }
    Ok(())
}

/// The body against the `body_md5` that the signature covered.
fn check_body_md5(params: &[(String, String)], body: &[u8]) -> Result<(), String> {
    let md5 = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("body_md5"));
    match md5 {
        Some((_, md5)) if !md5.eq_ignore_ascii_case(&auth::md5_hex(body)) => {
            Err("body_md5 does not match the body".into())
        }
        None if !body.is_empty() => Err("missing body_md5".into()),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
struct Trigger {
    name: String,
    data: Value,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// An event checked and ready to send: nothing is sent before the whole request is checked.
struct Ready {
    name: String,
    data: String,
    channels: Vec<String>,
    except: Vec<u64>,
    info: Option<String>,
}

fn check(t: Trigger, shared: &Shared) -> Result<Ready, (u16, String)> {
    let bad = |why: String| Err((400, why));
    if t.name.is_empty() || t.name.len() > MAX_EVENT_NAME {
        return bad(format!("event name must be 1 to {MAX_EVENT_NAME} bytes"));
    }
    let mut channels = match (t.channel, t.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        _ => return bad("give either channel or channels".into()),
    };
    // A channel named twice (Laravel's broadcastOn() for an owner who is also the assignee)
    // gets the event once.
    let mut named = std::collections::HashSet::new();
    channels.retain(|channel| named.insert(channel.clone()));
    if channels.is_empty() || channels.len() > MAX_CHANNELS {
        return bad(format!("an event goes to 1 to {MAX_CHANNELS} channels"));
    }
    let user_count = t.info.as_deref().is_some_and(|i| i.contains("user_count"));
    if user_count && channels.iter().any(|c| kind(c) != Kind::Presence) {
        return bad("info=user_count is for presence channels only".into());
    }
    // A user's channel (`sendToUser()`) is the server's to send on.
    let valid = |c: &str| valid_channel(c) || super::user_channel(c).is_some();
    if let Some(name) = channels.iter().find(|c| !valid(c)) {
        return Err((
            400,
            format!(
                "invalid channel name '{}'",
                name.chars().take(200).collect::<String>()
            ),
        ));
    }
    // Pusher's data is a string (usually JSON); anything else is sent as its JSON text.
    let data = match t.data {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if data.len() > MAX_EVENT_DATA {
        return Err((413, format!("event data over {MAX_EVENT_DATA} bytes")));
    }
    // Pusher refuses a malformed one: taken as absent, the event would reach the sender that
    // toOthers() meant to leave out.
    if let Some(id) = t.socket_id.as_deref().filter(|id| !is_socket_id(id)) {
        return Err((
            400,
            format!("socket_id '{id}' is not a socket id (digits.digits)"),
        ));
    }
    let except = t
        .socket_id
        .as_deref()
        .and_then(|s| shared.fd_of_socket_id(s))
        .into_iter()
        .collect();
    Ok(Ready {
        name: t.name,
        data,
        channels,
        except,
        info: t.info,
    })
}

/// Pusher's socket id form: `123.456`.
fn is_socket_id(id: &str) -> bool {
    id.split_once('.').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|c| c.is_ascii_digit()))
    })
}

/// Sends it on each of its channels; how many connections got it.
fn send(app: &App, shared: &Shared, ready: &Ready) -> usize {
    let data = quote(&ready.data);
    let mut sent = 0;
    for channel in &ready.channels {
        let json = event_json(&ready.name, Some(channel), &data);
        sent += super::trigger(shared, app, channel, || text_frame(&json), &ready.except);
    }
    sent
}

/// An event triggered by PHP in this process (`pusherTrigger()`): checked as the HTTP API
/// checks a trigger, sent as it sends one. How many connections got it.
pub(crate) fn trigger_from_php(
    shared: &Shared,
    app: &App,
    channels: Vec<String>,
    name: String,
    data: String,
    socket_id: Option<String>,
) -> Result<usize, String> {
    // The SDKs encrypt with the app's encryption master key, which Surge does not have:
    // pusher-js would fail to decrypt the plain text.
    if let Some(channel) = channels.iter().find(|c| kind(c) == Kind::Encrypted) {
        return Err(format!("'{channel}' is an encrypted channel: its events must be encrypted by a Pusher server SDK (Laravel's pusher broadcaster), through the HTTP API"));
    }
    let trigger = Trigger {
        name,
        data: Value::String(data),
        channel: None,
        channels: Some(channels),
        socket_id,
        info: None,
    };
    let ready = check(trigger, shared).map_err(|(_, why)| why)?;
    Ok(send(app, shared, &ready))
}

/// The `info` attributes asked for (subscription_count; user_count for presence channels), of
/// a channel with `subscriptions` connections and, if it is a presence channel, `users` members.
fn attributes(
    subscriptions: usize,
    users: Option<usize>,
    info: Option<&str>,
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for attr in info.unwrap_or("").split(',').map(str::trim) {
        match (attr, users) {
            ("subscription_count", _) => {
                out.insert(attr.into(), json!(subscriptions));
            }
            ("user_count", Some(users)) => {
                out.insert(attr.into(), json!(users));
            }
            _ => {}
        }
    }
    out
}

/// The members of a presence channel (None for other kinds), with `presence` held: presence
/// channels change their subscriptions and their members together under it, so what is read
/// beside it is of the same moment (an answer said `occupied` false with 2 subscriptions).
fn users_of(presence: &HashMap<String, Presence>, channel: &str) -> Option<usize> {
    (kind(channel) == Kind::Presence).then(|| presence.get(channel).map_or(0, |p| p.count()))
}

/// A channel's subscriptions and presence members (see `users_of`), of one moment.
fn counts(app: &App, channel: &str) -> (usize, Option<usize>) {
    let presence = app.presence.lock();
    (
        app.channels.members(channel).len(),
        users_of(&presence, channel),
    )
}

fn trigger(app: &App, shared: &Shared, body: &[u8]) -> HttpResponse {
    let ready = match serde_json::from_slice::<Trigger>(body)
        .map_err(|e| (400, e.to_string()))
        .and_then(|t| check(t, shared))
    {
        Ok(ready) => ready,
        Err((status, why)) => return fail(status, &why),
    };
    send(app, shared, &ready);
    match &ready.info {
        Some(info) => {
            let channels: serde_json::Map<String, Value> = ready
                .channels
                .iter()
                .map(|c| {
                    let (subscriptions, users) = counts(app, c);
                    let attrs = attributes(subscriptions, users, Some(info));
                    (c.clone(), Value::Object(attrs))
                })
                .collect();
            json_reply(200, json!({ "channels": channels }))
        }
        None => json_reply(200, json!({})),
    }
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Trigger>,
}

fn batch(app: &App, shared: &Shared, body: &[u8]) -> HttpResponse {
    let batch = match serde_json::from_slice::<Batch>(body) {
        Ok(b) if b.batch.len() <= MAX_BATCH => b,
        Ok(_) => return fail(400, &format!("a batch holds at most {MAX_BATCH} events")),
        Err(e) => return fail(400, &e.to_string()),
    };
    let mut ready = Vec::with_capacity(batch.batch.len());
    for (i, t) in batch.batch.into_iter().enumerate() {
        match check(t, shared) {
            Ok(r) => ready.push(r),
            Err((status, why)) => return fail(status, &format!("batch[{i}]: {why}")),
        }
    }
    for r in &ready {
        send(app, shared, r);
    }
    if ready.iter().any(|r| r.info.is_some()) {
        let results: Vec<Value> = ready
            .iter()
            .map(|r| {
                let (subscriptions, users) = counts(app, &r.channels[0]);
                Value::Object(attributes(subscriptions, users, r.info.as_deref()))
            })
            .collect();
        return json_reply(200, json!({ "batch": results }));
    }
    json_reply(200, json!({}))
}

/// The server SDKs' `terminateUserConnections()`: every connection signed in as `user` (with
/// `pusher:signin`) gets `pusher:error` 4009 and is closed with 4009, which pusher-js takes as
/// "do not reconnect".
fn terminate(app: &App, shared: &Shared, user: &[&str]) -> HttpResponse {
    let message = "Connection terminated by the server (terminate_connections)";
    let error = text_frame(&event_json(
        "pusher:error",
        None,
        &format!("{{\"code\":4009,\"message\":{}}}", quote(message)),
    ));
    shared.registry.for_each(|conn| {
        let Some(Some(session)) = conn.pusher.get() else {
            return;
        };
        if std::ptr::eq(&*session.app, app) && session.user().is_some_and(|u| user.contains(&u)) {
            let _ = conn.push(error.clone(), shared.config.socket_buffer_size);
            conn.close(4009, message);
        }
    });
    json_reply(200, json!({}))
}

fn channels(app: &App, prefix: Option<&str>, info: Option<&str>) -> HttpResponse {
    let prefix = prefix.unwrap_or("");
    if info.is_some_and(|i| i.contains("user_count")) && !prefix.starts_with("presence-") {
        return fail(400, "info=user_count needs filter_by_prefix=presence-");
    }
    let info = info
        .filter(|i| i.contains("user_count"))
        .map(|_| "user_count");
    let mut out: HashMap<String, Value> = HashMap::new();
    let presence = app.presence.lock();
    for (name, subscriptions) in app.channels.list() {
        // Users' own channels are not the app's to list: they would say who is online.
        if name.starts_with(prefix) && super::user_channel(&name).is_none() {
            let attrs = attributes(subscriptions, users_of(&presence, &name), info);
            out.insert(name, Value::Object(attrs));
        }
    }
    drop(presence);
    json_reply(200, json!({ "channels": out }))
}

fn channel(app: &App, name: &str, info: Option<&str>) -> HttpResponse {
    if !valid_channel(name) {
        return fail(400, "invalid channel name");
    }
    if info.is_some_and(|i| i.contains("user_count")) && kind(name) != Kind::Presence {
        return fail(400, "user_count is only for presence channels");
    }
    let (subscriptions, users) = counts(app, name);
    let mut attrs = attributes(subscriptions, users, info);
    attrs.insert("occupied".into(), json!(subscriptions > 0));
    json_reply(200, Value::Object(attrs))
}

fn users(app: &App, name: &str) -> HttpResponse {
    if !valid_channel(name) {
        return fail(400, "invalid channel name");
    }
    if kind(name) != Kind::Presence {
        return fail(400, "users are only listed for presence channels");
    }
    let users: Vec<Value> = app
        .presence
        .lock()
        .get(name)
        .map(|p| p.ids().map(|id| json!({ "id": id })).collect())
        .unwrap_or_default();
    json_reply(200, json!({ "users": users }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(percent_decode("presence-room%2C1"), "presence-room,1");
        assert_eq!(percent_decode("a+b%"), "a+b%");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
