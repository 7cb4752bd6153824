"""The Pusher protocol with real clients: pusher-js 8, laravel-echo 2 and the `pusher` server SDK
(tests/pusher/scenarios.mjs, run with node), plus bad input sent by hand: malformed JSON,
unknown events, oversize payloads, wrong auth, stale HTTP API signatures."""

import contextlib
import hashlib
import hmac
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import ROOT, close_code, settings_env
from fanout_client import Client, start_fanout
from rawws import OP_TEXT, RawClient

APP = {"app_id": "4242", "key": "surge-key", "secret": "surge-secret"}
SCENARIOS = ROOT / "tests/pusher/scenarios.mjs"

pytestmark = pytest.mark.skipif(
    not (ROOT / "node_modules/pusher-js").exists() or not shutil.which("node"),
    reason="node and `npm install` at the repository root are needed",
)


def start(php_server, app=None, **settings):
    return php_server("echo.php", env=settings_env(pusher=[app or APP], **settings))


def node_env(server, app=None) -> dict:
    app = app or APP
    return {"SURGE_PORT": str(server.port), "PUSHER_APP_ID": app["app_id"], "PUSHER_KEY": app["key"], "PUSHER_SECRET": app["secret"]}


def run_scenario(server, name: str) -> None:
    import os

    done = subprocess.run(
        ["node", str(SCENARIOS), name], cwd=ROOT, env=dict(os.environ, **node_env(server)), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and f"ok {name}" in done.stdout, f"{done.stdout}\n{done.stderr}\n--- server:\n{server.stderr()[-3000:]}"


@pytest.mark.parametrize("scenario", ["public", "private", "presence", "whisper", "api", "cache", "user"])
def test_real_clients(php_server, scenario):
    server = start(php_server)
    run_scenario(server, scenario)


def pusher_socket(server, key=APP["key"], protocol=7):
    query = ("" if protocol is None else f"protocol={protocol}&") + "client=js&version=8.6.0"
    ws = connect(f"{server.url}/app/{key}?{query}").__enter__()
    hello = json.loads(ws.recv(timeout=5))
    return ws, hello


def send(ws, event: str, data=None, channel=None) -> None:
    message = {"event": event, "data": data if data is not None else {}}
    if channel:
        message["channel"] = channel
    ws.send(json.dumps(message))


def recv(ws) -> dict:
    return json.loads(ws.recv(timeout=5))


def socket_id(hello) -> str:
    return json.loads(hello["data"])["socket_id"]


def channel_auth(socket: str, channel: str, data: str | None = None, secret=APP["secret"]) -> str:
    text = f"{socket}:{channel}" + (f":{data}" if data is not None else "")
    return APP["key"] + ":" + hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign_in(ws, socket: str, user_data: str, secret=APP["secret"]) -> dict:
    """Sends pusher:signin signed as the SDKs' authenticateUser() signs it; the answer."""
    signature = hmac.new(secret.encode(), f"{socket}::user::{user_data}".encode(), hashlib.sha256).hexdigest()
    send(ws, "pusher:signin", {"auth": f"{APP['key']}:{signature}", "user_data": user_data})
    return recv(ws)


class Webhooks:
    """An HTTP server that takes webhook POSTs, as an application's endpoint would: answers a
    path the `statuses` given for it in turn (then 200), and keeps each request's headers and
    body."""

    def __init__(self, statuses=None, tls=None):
        import http.server
        import threading

        self.requests, self.statuses = [], statuses or {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                waiting = outer.statuses.get(self.path)
                status = waiting.pop(0) if waiting else 200
                outer.requests.append({"path": self.path, "status": status, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body.decode()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls:  # (certificate chain, key) files
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.http.socket = context.wrap_socket(self.http.socket, server_side=True)
            self.scheme = "https"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"{self.scheme}://localhost:{self.http.server_address[1]}{path}"

    def events(self, path: str, count: int, timeout: float = 5) -> list:
        """The events of the 2xx-answered requests to `path`, once there are `count`."""
        deadline = time.monotonic() + timeout
        while True:
            got = [e for r in self.requests if r["path"] == path and r["status"] == 200 for e in json.loads(r["body"])["events"]]
            if len(got) >= count or time.monotonic() > deadline:
                assert len(got) == count, f"expected {count} events at {path}, got {got}"
                return got
            time.sleep(0.02)


def pusher_sdk_reads(requests: list) -> list:
    """What the `pusher` server SDK's webhook() makes of each request: [valid, events]."""
    import os

    script = """
    const Pusher = require('pusher');
    const pusher = new Pusher({appId: process.env.PUSHER_APP_ID, key: process.env.PUSHER_KEY, secret: process.env.PUSHER_SECRET});
    const requests = JSON.parse(require('fs').readFileSync(0, 'utf8'));
    console.log(JSON.stringify(requests.map(r => {
        const hook = pusher.webhook({headers: r.headers, rawBody: r.body});
        return [hook.isValid(), hook.isValid() ? hook.getEvents() : null];
    })));
    """
    env = dict(os.environ, PUSHER_APP_ID=APP["app_id"], PUSHER_KEY=APP["key"], PUSHER_SECRET=APP["secret"])
    done = subprocess.run(["node", "-e", script], cwd=ROOT, input=json.dumps(requests), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_connection_established_and_refusals(php_server):
    server = start(php_server)
    ws, hello = pusher_socket(server)
    assert hello["event"] == "pusher:connection_established"
    data = json.loads(hello["data"])  # data is a JSON string, as the protocol has it
    assert data["activity_timeout"] == 30 and data["socket_id"].split(".")[1].isdigit()
    send(ws, "pusher:ping")
    assert recv(ws) == {"event": "pusher:pong", "data": {}}
    for key, protocol, code in [("nope", 7, 4001), (APP["key"], 4, 4007), (APP["key"], "x", 4007), (APP["key"], None, 4008)]:
        bad, error = pusher_socket(server, key, protocol)
        assert error["event"] == "pusher:error" and error["data"]["code"] == code, error
        assert close_code(bad) == code
    # The connection quota: past max_connections new connections get 4004.
    ws.close()


def test_connection_quota_and_activity_timeout(php_server):
    app = dict(APP, options={"max_connections": 1, "activity_timeout": 1})
    # Surge's own WebSocket pings would count as activity: off, to see pusher:ping alone.
    server = start(php_server, app, ping_interval=0, heartbeat_idle_time=0, heartbeat_check_interval=0)
    ws, hello = pusher_socket(server)
    assert json.loads(hello["data"])["activity_timeout"] == 1
    bad, error = pusher_socket(server)
    assert error["data"]["code"] == 4004 and close_code(bad) == 4004
    # Silent past activity_timeout: pinged; answering keeps it open; silence again: 4201.
    assert recv(ws)["event"] == "pusher:ping"
    send(ws, "pusher:pong")
    assert recv(ws)["event"] == "pusher:ping"
    started = time.monotonic()
    assert close_code(ws) == 4201
    assert time.monotonic() - started < 4
    again, hello = pusher_socket(server)
    assert hello["event"] == "pusher:connection_established", "the quota place is free again"
    again.close()


def test_broadcast_and_connections_leave_pusher_clients_out(php_server):
    """PHP serves only its own connections: a Pusher client is not in `$server->connections`
    and gets nothing of `broadcast()` (raw frames it could not read)."""
    server = start(php_server)
    pusher, _ = pusher_socket(server)
    with connect(server.url) as native:
        native.send("cmd:conns")
        conns = json.loads(native.recv(timeout=5))
        assert conns["count"] == 1 and len(conns["fds"]) == 1
        native.send("cmd:broadcast:hello")
        assert native.recv(timeout=5) == "hello"
        assert json.loads(native.recv(timeout=5)) == 1
        with pytest.raises(TimeoutError):
            pusher.recv(timeout=0.3)
    pusher.close()


def test_bad_messages_get_errors_and_the_connection_stays(php_server):
    app = {**APP, "options": {"max_channels_per_connection": 20}}
    server = start(php_server, app, package_max_length=2 << 20)
    ws, hello = pusher_socket(server)
    other, other_hello = pusher_socket(server)
    sid, other_sid = socket_id(hello), socket_id(other_hello)
    for c, s in [(ws, sid), (other, other_sid)]:
        send(c, "pusher:subscribe", {"channel": "private-room", "auth": channel_auth(s, "private-room")})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
    ws.send("{not json")
    assert recv(ws)["data"]["message"].startswith("invalid message")
    send(ws, "pusher:frobnicate")
    assert recv(ws)["data"]["message"] == "unknown event 'pusher:frobnicate'"
    send(ws, "pusher:subscribe", {"nochannel": 1})
    assert recv(ws)["event"] == "pusher:error"
    # Wrong auth: a signature for another socket, another channel, or with another secret.
    for channel, auth in [
        ("private-a", channel_auth(other_sid, "private-a")),
        ("private-a", channel_auth(sid, "private-b")),
        ("private-a", channel_auth(sid, "private-a", secret="wrong")),
        ("private-a", "garbage"),
        ("presence-a", channel_auth(sid, "presence-a", '{"user_id":1}')),  # signed, but no channel_data sent
    ]:
        send(ws, "pusher:subscribe", {"channel": channel, "auth": auth})
        error = recv(ws)
        assert error["event"] == "pusher:subscription_error" and error["channel"] == channel
        assert json.loads(error["data"])["status"] == 401
        assert json.loads(error["data"])["error"] == "invalid signature for this socket_id and channel"
    # No auth at all (Laravel's redis broadcaster answers pusher-js's auth request unsigned):
    # said so.
    send(ws, "pusher:subscribe", {"channel": "private-a"})
    error = json.loads(recv(ws)["data"])
    assert error["status"] == 401 and error["error"].startswith("no auth: the auth endpoint answered without a signature"), error
    # A private channel's auth with custom data signed too (the SDKs' authorizeChannel($channel,
    # $socketId, $customData)) is taken, as the one without.
    custom = '{"foo":1}'
    send(ws, "pusher:subscribe", {"channel": "private-custom", "auth": channel_auth(sid, "private-custom", custom), "channel_data": custom})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    data = '{"user_info":{}}'
    send(ws, "pusher:subscribe", {"channel": "presence-a", "auth": channel_auth(sid, "presence-a", data), "channel_data": data})
    assert json.loads(recv(ws)["data"])["status"] == 400, "presence needs a user_id"
    send(ws, "pusher:subscribe", {"channel": "bad name!"})
    assert recv(ws)["event"] == "pusher:subscription_error"
    # Client events: oversize, on a public channel, on a channel not subscribed: refused.
    send(ws, "client-big", {"x": "a" * 11_000}, channel="private-room")
    assert "over 10240 bytes" in recv(ws)["data"]["message"]
    send(ws, "client-" + "x" * 100_000, {"ok": 1}, channel="private-room")
    assert "name over 200 bytes" in recv(ws)["data"]["message"]
    send(ws, "client-x", {}, channel="news")
    assert "only allowed on private and presence" in recv(ws)["data"]["message"]
    send(ws, "client-x", {}, channel="private-encrypted-room")
    assert recv(ws)["data"]["message"] == "client events are not allowed on private-encrypted channels"
    send(ws, "client-x", {}, channel="private-elsewhere")
    assert "not subscribed" in recv(ws)["data"]["message"]
    # None of it reached the other member; a valid whisper does.
    send(ws, "client-ok", {"n": 1}, channel="private-room")
    assert recv(other) == {"event": "client-ok", "channel": "private-room", "data": {"n": 1}}
    # Many subscriptions from one connection: past the app's limit each gets an error, nothing
    # breaks.
    for i in range(50):
        send(ws, "pusher:subscribe", {"channel": f"many-{i}"})
    replies = [recv(ws) for _ in range(50)]
    ok = [r for r in replies if r["event"] == "pusher_internal:subscription_succeeded"]
    refused = [r for r in replies if r["event"] == "pusher:subscription_error"]
    assert len(ok) == 20 - 2 and len(refused) == 32, (len(ok), len(refused))
    send(ws, "pusher:ping")
    assert recv(ws)["event"] == "pusher:pong"
    ws.close()
    other.close()


def test_a_message_larger_than_any_pusher_message_closes_the_connection(php_server):
    """A Pusher client's largest message is a client event's 10 KB, escaped: one over 128 KiB is
    refused (1009) as it comes, whatever package_max_length, compressed or not. It was read,
    inflated and parsed, up to package_max_length, to be refused after."""
    server = start(php_server, package_max_length=8 << 20, websocket_compression=True)
    for compression in ["deflate", None]:
        url = f"{server.url}/app/{APP['key']}?protocol=7"
        with connect(url, compression=compression, max_size=None) as ws:
            assert recv(ws)["event"] == "pusher:connection_established"
            send(ws, "pusher:ping", {"padding": "a" * 100_000})
            assert recv(ws)["event"] == "pusher:pong"
            send(ws, "pusher:ping", {"padding": "a" * 140_000})
            assert close_code(ws) == 1009


def test_subscriptions_are_rate_limited(php_server):
    """A client subscribing and unsubscribing in a loop made every member of a presence channel
    hear a join and a leave each time, and got the member list back each time: subscriptions
    are held to twice max_channels_per_connection a second (a whole page's, twice, at once)."""
    app = {**APP, "options": {"max_channels_per_connection": 5}}
    server = start(php_server, app)
    watcher, watcher_hello = pusher_socket(server)
    assert subscribe_presence(watcher, watcher_hello, "presence-room", {"user_id": 1})["event"] == "pusher_internal:subscription_succeeded"
    ws, hello = pusher_socket(server)
    data = json.dumps({"user_id": 2})
    auth = channel_auth(socket_id(hello), "presence-room", data)
    for _ in range(40):
        send(ws, "pusher:subscribe", {"channel": "presence-room", "auth": auth, "channel_data": data})
        send(ws, "pusher:unsubscribe", {"channel": "presence-room"})
    replies = [recv(ws) for _ in range(40)]
    refused = [json.loads(r["data"]) for r in replies if r["event"] == "pusher:subscription_error"]
    assert 20 <= len(refused) <= 30, len(replies)
    assert refused[0] == {"type": "LimitReached", "status": 4301, "error": "at most 10 subscriptions a second"}
    heard = []
    with contextlib.suppress(TimeoutError):
        while True:
            heard.append(recv(watcher)["event"])
    assert heard.count("pusher_internal:member_added") == 40 - len(refused)
    ws.close()
    watcher.close()


def api_request(server, method: str, path: str, body: bytes = b"", params=None, secret=APP["secret"], timestamp=None, md5=None):
    """A signed Pusher HTTP API request; returns (status, json body)."""
    query = {"auth_key": APP["key"], "auth_timestamp": str(int(timestamp if timestamp is not None else time.time())), "auth_version": "1.0", **(params or {})}
    if body:
        query["body_md5"] = md5 or hashlib.md5(body).hexdigest()
    text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["auth_signature"] = hmac.new(secret.encode(), f"{method}\n{path}\n{text}".encode(), hashlib.sha256).hexdigest()
    url = server.http + path + "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(url, data=body or None, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as res:
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_http_api_signatures(php_server):
    server = start(php_server)
    ws, hello = pusher_socket(server)
    send(ws, "pusher:subscribe", {"channel": "news"})
    recv(ws)
    path = f"/apps/{APP['app_id']}/events"
    body = json.dumps({"name": "n", "channel": "news", "data": "{\"i\":1}"}).encode()
    assert api_request(server, "POST", path, body) == (200, {})
    assert recv(ws) == {"event": "n", "channel": "news", "data": "{\"i\":1}"}
    # A channel named twice gets the event once: the next one is the next event.
    twice = json.dumps({"name": "twice", "channels": ["news", "news"], "data": "d"}).encode()
    assert api_request(server, "POST", path, twice) == (200, {})
    assert api_request(server, "POST", path, json.dumps({"name": "after", "channel": "news", "data": "d"}).encode())[0] == 200
    assert [recv(ws)["event"], recv(ws)["event"]] == ["twice", "after"]
    # The same signed request twice in one second (the SDKs sign no nonce: two identical
    # broadcasts) is delivered twice, as Pusher does; stale, future, unsigned and wrong ones are not.
    again = json.dumps({"name": "n", "channel": "news", "data": "again"}).encode()
    fixed = int(time.time())
    assert api_request(server, "POST", path, again, timestamp=fixed) == (200, {})
    assert api_request(server, "POST", path, again, timestamp=fixed) == (200, {})
    assert recv(ws)["data"] == "again"
    assert recv(ws)["data"] == "again"
    for kwargs in [{"timestamp": time.time() - 700}, {"timestamp": time.time() + 700}, {"secret": "wrong"}, {"md5": "0" * 32}]:
        status, error = api_request(server, "POST", path, body, **kwargs)
        assert status == 401, (kwargs, error)
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(urllib.request.Request(server.http + path, data=body, method="POST"), timeout=5)
    assert unsigned.value.code == 401
    # Bad bodies are 400/413 and deliver nothing.
    assert api_request(server, "POST", path, b"{nope")[0] == 400
    big = json.dumps({"name": "n", "channel": "news", "data": "x" * 11_000}).encode()
    assert api_request(server, "POST", path, big)[0] == 413
    batch = json.dumps({"batch": [{"name": "n", "channel": "news", "data": "ok"}, {"name": "n", "channel": "bad name", "data": "x"}]}).encode()
    assert api_request(server, "POST", f"/apps/{APP['app_id']}/batch_events", batch)[0] == 400
    assert api_request(server, "GET", f"/apps/{APP['app_id']}/channels/news/users")[0] == 400
    assert api_request(server, "GET", f"/apps/{APP['app_id']}/channels/presence-a%20b/users")[0] == 400
    assert api_request(server, "GET", path)[0] == 405
    # An SDK given another app id than the server's (a stale config cache) is told so, not that
    # this is a WebSocket server.
    assert api_request(server, "POST", "/apps/999/events", body) == (404, {
        "error": "no Pusher app has app_id '999' here: the HTTP API takes the app_id of an app in the 'pusher' setting"})
    # user_count is for presence channels only, as Pusher has it.
    counted = json.dumps({"name": "n", "channel": "news", "data": "x", "info": "user_count"}).encode()
    assert api_request(server, "POST", path, counted)[0] == 400
    # A malformed socket_id (toOthers() gone wrong) is refused, not taken as none.
    for sid in ["abc", "1.", "1.2.3", ""]:
        bad_sid = json.dumps({"name": "n", "channel": "news", "data": "x", "socket_id": sid}).encode()
        assert api_request(server, "POST", path, bad_sid)[0] == 400, sid
    # Nothing of the refused requests arrived: the next message is the next good one.
    assert api_request(server, "POST", path, json.dumps({"name": "last", "channel": "news", "data": "d"}).encode())[0] == 200
    assert recv(ws)["event"] == "last"
    ws.close()


def test_the_api_takes_its_apps_paths_only_and_reads_no_body_unsigned(php_server):
    server = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(pusher=[APP])})
    # Other paths under /apps/ are the application's: a route of its own, another app id.
    for other in ["/apps/my-dashboard", "/apps/999/channels"]:
        with urllib.request.urlopen(server.http + other, timeout=5) as res:
            assert (res.status, json.loads(res.read())["uri"]) == (201, other)
    # A request the secret did not sign is refused before its body is read: no 100 Continue,
    # nothing of the 2 MB read.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST /apps/{APP['app_id']}/events?auth_key={APP['key']}&auth_signature=x HTTP/1.1\r\n"
                     "Host: x\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n".encode())
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 401 "), head
        assert b"connection: close" in head.lower()
    # A signed body over the API's 1 MiB is refused whatever package_max_length allows.
    big = json.dumps({"name": "n", "channel": "news", "data": "x" * (1 << 20)}).encode()
    assert api_request(server, "POST", f"/apps/{APP['app_id']}/events", big) == (
        413, {"error": "request body over the Pusher API's limit (1048576 bytes)"})


def test_cache_channels_keep_the_last_triggered_event(php_server):
    """A cache channel's new subscriber gets the last event the server triggered on it right
    after subscription_succeeded, or pusher:cache_miss; other channels and client events keep
    nothing."""
    server = start(php_server)
    path = f"/apps/{APP['app_id']}/events"

    def trigger(channel: str, data: str) -> None:
        body = json.dumps({"name": "state", "channel": channel, "data": data}).encode()
        assert api_request(server, "POST", path, body) == (200, {})

    def subscribe(ws, channel: str, **data) -> dict:
        send(ws, "pusher:subscribe", {"channel": channel, **data})
        ok = recv(ws)
        assert ok["event"] == "pusher_internal:subscription_succeeded" and ok["channel"] == channel, ok
        return recv(ws)

    first, _ = pusher_socket(server)
    assert subscribe(first, "cache-score") == {"event": "pusher:cache_miss", "channel": "cache-score"}
    trigger("cache-score", "1-0")
    trigger("cache-score", "2-0")
    assert [recv(first)["data"], recv(first)["data"]] == ["1-0", "2-0"], "live events as on any channel"
    trigger("news", "not kept")
    trigger("private-cache-orders", "shipped")
    trigger("presence-cache-room", "open")

    late, hello = pusher_socket(server)
    sid = socket_id(hello)
    assert subscribe(late, "cache-score") == {"event": "state", "channel": "cache-score", "data": "2-0"}
    assert subscribe(late, "private-cache-orders", auth=channel_auth(sid, "private-cache-orders")) == {
        "event": "state", "channel": "private-cache-orders", "data": "shipped"}
    member = json.dumps({"user_id": "1"})
    assert subscribe(late, "presence-cache-room", auth=channel_auth(sid, "presence-cache-room", member), channel_data=member) == {
        "event": "state", "channel": "presence-cache-room", "data": "open"}
    # Unauthorised, a private cache channel gives away nothing.
    send(first, "pusher:subscribe", {"channel": "private-cache-orders", "auth": APP["key"] + ":" + "0" * 64})
    assert recv(first)["event"] == "pusher:subscription_error"
    # A client event is delivered but not kept.
    send(late, "client-typing", {"who": "late"}, channel="private-cache-orders")
    third, hello = pusher_socket(server)
    assert subscribe(third, "private-cache-orders", auth=channel_auth(socket_id(hello), "private-cache-orders"))["data"] == "shipped"
    # Not a cache channel: nothing follows the subscription.
    send(third, "pusher:subscribe", {"channel": "news"})
    assert recv(third)["event"] == "pusher_internal:subscription_succeeded"
    with pytest.raises(TimeoutError):
        third.recv(timeout=0.3)
    for ws in (first, late, third):
        ws.close()


def test_laravel_serve_reads_the_pusher_app_and_echo_gets_a_broadcast(php_server, redis_server, tmp_path):
    import os

    from test_laravel import artisan, laravel_env, serve

    # The reverb connection holds the same app, as it often does after a switch: served once.
    credentials = {"APP_ID": APP["app_id"], "APP_KEY": APP["key"], "APP_SECRET": APP["secret"]}
    env = laravel_env(tmp_path, redis_server, **{f"{driver}_{name}": value for name, value in credentials.items() for driver in ("PUSHER", "REVERB")})
    # surge.pusher.webhooks: given to the app read from the broadcasting config.
    hooks = Webhooks()
    env["SURGE_TEST_WEBHOOKS"] = json.dumps([{"url": hooks.url("/laravel"), "event_types": ["channel_occupied"]}])
    assert "users: 3" in artisan("app:setup", "alice", "bob", "carol", env=env).stdout
    refused = artisan("surge:serve", env={**env, "REVERB_APP_SECRET": "another"}, surge=True)
    assert "broadcasting.connections.reverb names app 4242 (key surge-key) as another connection does" in refused.stdout + refused.stderr, refused
    server = serve(php_server, env)
    assert f"pusher   app {APP['app_id']} (key {APP['key']}) from broadcasting.connections.pusher" in server.stdout()
    assert f"app {APP['app_id']} from broadcasting.connections.reverb: the same app as above" in server.stdout()
    proc = subprocess.Popen(
        ["node", str(SCENARIOS), "laravel"], cwd=ROOT, env=dict(os.environ, **node_env(server)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), line + proc.stdout.read()
        done = artisan("app:broadcast", "orders", "shipped by Laravel", env=env)
        assert done.returncode == 0, done.stderr
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "ok laravel" in out, out + server.stderr()[-3000:]
    finally:
        proc.kill()
    assert hooks.events("/laravel", 1) == [{"name": "channel_occupied", "channel": "orders"}]


def test_redis_broadcasts_reach_pusher_and_native_clients(php_server, redis_server):
    import os

    server = start_fanout(php_server, {"pusher": [APP], "redis": redis_server.url})
    native = Client(server.url)
    assert native.call("join", native.fd, "news") is True
    proc = subprocess.Popen(
        ["node", str(SCENARIOS), "redis"], cwd=ROOT, env=dict(os.environ, **node_env(server)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), line + proc.stdout.read()
        sid = line.split()[1]
        deadline = time.monotonic() + 10
        while redis_server.client.pubsub_numpat() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)

        def laravel(event, data, socket=None):
            return json.dumps({"event": event, "data": {**data, "socket": socket}, "socket": socket})

        # toOthers() from this very socket: not delivered to it.
        redis_server.client.publish("laravel_database_private-orders.7", laravel("App\\Events\\OrderShipped", {"id": 0}, sid))
        redis_server.client.publish("laravel_database_private-orders.7", laravel("App\\Events\\OrderShipped", {"id": 7}))
        redis_server.client.publish("laravel_database_news", laravel("Headline", {"title": "hi"}))
        out, _ = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "ok redis" in out, out + server.stderr()[-3000:]
        assert json.loads(native.recv()) == {"event": "Headline", "channel": "news", "data": {"title": "hi", "socket": None}}
        # A broadcast on a cache channel is kept for the next subscriber, in Pusher's shape.
        redis_server.client.publish("laravel_database_cache-score", laravel("Score", {"home": 2}))
        deadline = time.monotonic() + 5
        while True:
            late, _ = pusher_socket(server)
            send(late, "pusher:subscribe", {"channel": "cache-score"})
            assert recv(late)["event"] == "pusher_internal:subscription_succeeded"
            kept = recv(late)
            late.close()
            if kept["event"] != "pusher:cache_miss" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert kept["event"] == "Score" and json.loads(kept["data"]) == {"home": 2, "socket": None}, kept
    finally:
        proc.kill()
        native.close()


def hook_lines(server, count: int) -> list:
    """The first `count` lines pusher_hooks.php printed (one a callback), waiting up to 5 s."""
    deadline = time.monotonic() + 5
    while True:
        # Whole lines only: PHP may be writing the last one (under valgrind, it was read half).
        text = server.stdout()
        got = [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.startswith("[")]
        if len(got) >= count or time.monotonic() > deadline:
            assert len(got) == count, f"expected {count} lines, got {got}\n--- stderr:\n{server.stderr()[-3000:]}"
            return got
        time.sleep(0.02)


def test_php_callbacks_observe_subscriptions_and_client_events(php_server):
    """pusherSubscribe, pusherUnsubscribe and pusherClientEvent see what happened (and only
    that: refusals and repeats are not reported); an exception in one is logged, serving goes on."""
    server = php_server("pusher_hooks.php", env=settings_env(pusher=[APP]))

    def lines(count: int) -> list:
        return hook_lines(server, count)

    ws, hello = pusher_socket(server)
    other, other_hello = pusher_socket(server)
    sid, other_sid = socket_id(hello), socket_id(other_hello)
    fd, other_fd = int(sid.split(".")[1]), int(other_sid.split(".")[1])
    app = APP["app_id"]

    send(ws, "pusher:subscribe", {"channel": "news"})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    assert lines(1)[0] == ["subscribe", fd, sid, "news", None, app]
    send(ws, "pusher:subscribe", {"channel": "news"})  # a repeat: answered, not reported
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    send(ws, "pusher:subscribe", {"channel": "private-a", "auth": channel_auth(other_sid, "private-a")})
    assert recv(ws)["event"] == "pusher:subscription_error"
    for c, s, user in [(ws, sid, {"user_id": 7, "user_info": {"name": "Ann"}}), (other, other_sid, {"user_id": "8"})]:
        data = json.dumps(user)
        send(c, "pusher:subscribe", {"channel": "presence-room", "auth": channel_auth(s, "presence-room", data), "channel_data": data})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
    assert recv(ws)["event"] == "pusher_internal:member_added"
    got = lines(3)
    assert got[1] == ["subscribe", fd, sid, "presence-room", {"user_id": "7", "user_info": {"name": "Ann"}}, app], got
    assert got[2] == ["subscribe", other_fd, other_sid, "presence-room", {"user_id": "8", "user_info": None}, app], got

    # Client events: a refused one is not reported, a delivered one is, with its data decoded.
    send(other, "client-typing", {"x": 1}, channel="private-elsewhere")
    assert recv(other)["event"] == "pusher:error"
    send(other, "client-typing", {"text": "héllo", "n": [1, 2]}, channel="presence-room")
    assert recv(ws)["event"] == "client-typing"
    assert lines(4)[3] == ["client", other_fd, "presence-room", "client-typing", {"text": "héllo", "n": [1, 2]}, app]

    # An exception in the callback is logged; the subscription stands and serving goes on.
    data = json.dumps({"user_id": 9})
    send(ws, "pusher:subscribe", {"channel": "presence-throw", "auth": channel_auth(sid, "presence-throw", data), "channel_data": data})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    server.wait_output("thrown on purpose for presence-throw", stream="stderr")

    # Unsubscribing is reported; a connection that ends leaves (and reports) every channel.
    send(ws, "pusher:unsubscribe", {"channel": "news"})
    send(ws, "pusher:unsubscribe", {"channel": "never-subscribed"})
    send(ws, "pusher:ping")
    assert recv(ws)["event"] == "pusher:pong"
    assert lines(5)[4] == ["unsubscribe", fd, "news", app]
    ws.close()
    assert recv(other)["event"] == "pusher_internal:member_removed"
    got = lines(7)
    assert sorted(map(tuple, got[5:])) == [("unsubscribe", fd, "presence-room", app), ("unsubscribe", fd, "presence-throw", app)]
    send(other, "pusher:ping")
    assert recv(other)["event"] == "pusher:pong"
    other.close()
    assert lines(8)[7] == ["unsubscribe", other_fd, "presence-room", app]


def test_socket_ids_name_one_connection_of_one_server_run(php_server):
    """Socket ids were <pid>.<fd>: a server in a container is process 1 at every start and its
    fds start again, so a signature leaked from one run (or replica) subscribed on the next,
    and toOthers() on one server left out a stranger on another. The first part is random."""
    first, second = start(php_server), start(php_server)
    a, a_hello = pusher_socket(first)
    b, b_hello = pusher_socket(second)
    prefix = lambda hello: socket_id(hello).split(".")[0]
    assert prefix(a_hello) != prefix(b_hello) and prefix(a_hello) != str(first.proc.pid)
    # Server B given the signature server A's page got.
    send(b, "pusher:subscribe", {"channel": "private-orders", "auth": channel_auth(socket_id(a_hello), "private-orders")})
    assert recv(b)["event"] == "pusher:subscription_error"
    send(b, "pusher:subscribe", {"channel": "private-orders", "auth": channel_auth(socket_id(b_hello), "private-orders")})
    assert recv(b)["event"] == "pusher_internal:subscription_succeeded"
    a.close()
    b.close()


def test_php_triggers_events_for_pusher_clients(php_server):
    """pusherTrigger() sends as the HTTP API would, from PHP in the process (no HTTP round trip,
    none that waits on the PHP thread): to each channel once, the socket id left out, data as
    its JSON unless a string, kept on cache channels; bad input throws, naming what was wrong."""
    server = php_server("pusher_hooks.php", env=settings_env(pusher=[APP]))
    a, a_hello = pusher_socket(server)
    b, b_hello = pusher_socket(server)
    send(a, "pusher:subscribe", {"channel": "news"})
    send(b, "pusher:subscribe", {"channel": "news"})
    send(b, "pusher:subscribe", {"channel": "private-b", "auth": channel_auth(socket_id(b_hello), "private-b")})
    for ws, count in [(a, 1), (b, 2)]:
        for _ in range(count):
            assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    with connect(server.url) as php:

        def trigger(*args):
            php.send(json.dumps(args))
            return php.recv(timeout=5)

        assert trigger("news", "hi", {"a": 1}) == "2"
        for ws in (a, b):
            assert recv(ws) == {"event": "hi", "channel": "news", "data": '{"a":1}'}
        assert trigger(["news", "private-b", "news"], "plain", "text", socket_id(a_hello)) == "2"
        assert [recv(b), recv(b)] == [{"event": "plain", "channel": c, "data": "text"} for c in ("news", "private-b")]
        assert trigger("cache-last", "kept", [1, 2], None, APP["app_id"]) == "0"
        c, _ = pusher_socket(server)
        send(c, "pusher:subscribe", {"channel": "cache-last"})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
        assert recv(c) == {"event": "kept", "channel": "cache-last", "data": "[1,2]"}
        assert "invalid channel name 'bad name'" in trigger("bad name", "e", "x")
        assert "encrypted channel" in trigger("private-encrypted-x", "e", "x")
        assert "no Pusher app has app_id 'nope'" in trigger("news", "e", "x", None, "nope")
        assert "event name must be 1 to 200 bytes" in trigger("news", "e" * 201, "x")
        assert "could not be encoded as JSON" in trigger("news", "e", "NAN")
        assert "must be UTF-8" in trigger("news", "e", "LATIN1")
        assert "pusherTrigger() takes a channel name or an array of them, got int" in trigger(7, "e", "x")
        assert "is not a socket id" in trigger("news", "e", "x", "12")
        # A user's channel: the connections signed in as that user and subscribed to it.
        assert sign_in(a, socket_id(a_hello), '{"id":"u1"}')["event"] == "pusher:signin_success"
        send(a, "pusher:subscribe", {"channel": "#server-to-user-u1"})
        assert recv(a)["event"] == "pusher_internal:subscription_succeeded"
        assert trigger("#server-to-user-u1", "note", "for u1") == "1"
        assert recv(a) == {"event": "note", "channel": "#server-to-user-u1", "data": "for u1"}
        # Nothing refused reached anybody: the next message each gets is the one after.
        assert trigger("news", "last", "x") == "2"
        for ws in (a, b):
            assert recv(ws)["event"] == "last"
    for ws in (a, b, c):
        ws.close()


def test_pusher_trigger_needs_the_pusher_setting(php_server):
    server = php_server("echo.php")
    with connect(server.url) as ws:
        ws.send("cmd:pusher-trigger:x")
        assert "needs the Pusher protocol" in json.loads(ws.recv(timeout=5))["message"]


def test_presence_channels_hold_at_most_their_members_and_member_size(php_server):
    """presence_max_members 2: a third user is refused (4100) while a second tab of a member is
    not; a user_info over presence_max_member_size is refused (4301). Every refusal leaves the
    members as they were."""
    app = {**APP, "options": {"presence_max_members": 2, "presence_max_member_size": 40}}
    server = start(php_server, app=app)
    clients = [pusher_socket(server) for _ in range(5)]

    def subscribe(i, user):
        ws, hello = clients[i]
        data = json.dumps(user)
        send(ws, "pusher:subscribe", {"channel": "presence-room", "auth": channel_auth(socket_id(hello), "presence-room", data), "channel_data": data})
        return recv(ws)

    assert subscribe(0, {"user_id": 1})["event"] == "pusher_internal:subscription_succeeded"
    assert subscribe(1, {"user_id": 2})["event"] == "pusher_internal:subscription_succeeded"
    refused = subscribe(2, {"user_id": 3})
    assert refused["event"] == "pusher:subscription_error"
    assert json.loads(refused["data"]) == {"type": "LimitReached", "status": 4100, "error": "the presence channel has its most members (2)"}
    # A second connection of user 1 is no new member.
    joined = subscribe(3, {"user_id": 1})
    assert json.loads(joined["data"])["presence"]["count"] == 2
    too_big = subscribe(4, {"user_id": 1, "user_info": {"name": "x" * 40}})
    assert json.loads(too_big["data"])["status"] == 4301
    # Nobody was added or removed by the refusals: user 1's first connection heard only user 2.
    assert json.loads(recv(clients[0][0])["data"]) == {"user_id": "2", "user_info": None}
    with pytest.raises(TimeoutError):
        clients[0][0].recv(timeout=0.3)
    for ws, _ in clients:
        ws.close()


def subscribe_presence(ws, hello, channel: str, member: dict) -> dict:
    data = json.dumps(member)
    send(ws, "pusher:subscribe", {"channel": channel, "auth": channel_auth(socket_id(hello), channel, data), "channel_data": data})
    return recv(ws)


def test_a_client_the_server_is_closing_takes_part_in_nothing_more(php_server):
    """A client kicked by PHP (disconnect()) that does not answer the close frame: what it sends
    during the close wait reaches nobody. Its subscription announced a member who would never
    hear anything (joined, then left 2 s later), and its client events reached the channel."""
    server = start(php_server)
    watcher, hello = pusher_socket(server)
    for channel in ("presence-room", "presence-lobby"):
        assert subscribe_presence(watcher, hello, channel, {"user_id": 1})["event"] == "pusher_internal:subscription_succeeded"
    with RawClient(server.port) as raw, connect(server.url) as admin:
        raw.open(f"/app/{APP['key']}?protocol=7")
        raw_hello = json.loads(raw.read_frame()[1])
        sid = socket_id(raw_hello)
        data = json.dumps({"user_id": 2})
        subscribe = lambda channel: raw.send_frame(OP_TEXT, json.dumps({"event": "pusher:subscribe", "data": {
            "channel": channel, "auth": channel_auth(sid, channel, data), "channel_data": data}}).encode())
        subscribe("presence-room")
        assert json.loads(raw.read_frame()[1])["event"] == "pusher_internal:subscription_succeeded"
        admin.send(f"cmd:kick:{sid.split('.')[1]}")
        assert raw.read_close()[0] == 4009
        subscribe("presence-lobby")
        raw.send_frame(OP_TEXT, json.dumps({"event": "client-typing", "channel": "presence-room", "data": {}}).encode())
        raw.wait_eof(5)
    heard = []
    with contextlib.suppress(TimeoutError):
        while True:
            message = json.loads(watcher.recv(timeout=0.5))
            heard.append((message["event"], message.get("channel"), json.loads(message["data"])))
    assert heard == [
        ("pusher_internal:member_added", "presence-room", {"user_id": "2", "user_info": None}),
        ("pusher_internal:member_removed", "presence-room", {"user_id": "2"}),
    ]
    watcher.close()


def test_presence_user_ids_as_pusher_js_reads_them(php_server):
    """A float id with no fraction (PHP's json_encode(7.0)) is the member "7", which pusher-js
    looks itself up by (it was "7.0": members.me was null); an id counts in the member's size."""
    app = {**APP, "options": {"presence_max_member_size": 40}}
    server = start(php_server, app=app)
    ws, hello = pusher_socket(server)
    joined = subscribe_presence(ws, hello, "presence-room", {"user_id": 7.0})
    assert json.loads(joined["data"])["presence"]["ids"] == ["7"]
    other, other_hello = pusher_socket(server)
    refused = subscribe_presence(other, other_hello, "presence-room", {"user_id": "x" * 40})
    assert json.loads(refused["data"])["status"] == 4301
    ws.close()
    other.close()


def test_a_refused_repeat_of_a_presence_subscription_leaves_the_first_one_standing(php_server):
    server = start(php_server)
    ws, hello = pusher_socket(server)
    other, other_hello = pusher_socket(server)
    sid = socket_id(hello)
    for c, s, user in [(ws, sid, {"user_id": 1}), (other, socket_id(other_hello), {"user_id": 2})]:
        data = json.dumps(user)
        send(c, "pusher:subscribe", {"channel": "presence-room", "auth": channel_auth(s, "presence-room", data), "channel_data": data})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
    assert recv(ws)["event"] == "pusher_internal:member_added"
    # Signed, but without a user_id: refused.
    data = json.dumps({"user_info": {"name": "nobody"}})
    send(ws, "pusher:subscribe", {"channel": "presence-room", "auth": channel_auth(sid, "presence-room", data), "channel_data": data})
    assert recv(ws)["event"] == "pusher:subscription_error"
    # Signed as another user: refused too (it was answered succeeded, as user 1 still).
    refused = subscribe_presence(ws, hello, "presence-room", {"user_id": 3})
    assert refused["event"] == "pusher:subscription_error"
    assert json.loads(refused["data"])["error"] == "this connection is subscribed as user 1: unsubscribe first"
    # The first subscription still stands: leaving it tells the other member.
    send(ws, "pusher:unsubscribe", {"channel": "presence-room"})
    removed = recv(other)
    assert (removed["event"], json.loads(removed["data"])) == ("pusher_internal:member_removed", {"user_id": "1"})


def test_every_client_event_reaches_php_with_its_data_decoded(php_server):
    """pusherClientEvent gets each event's data as json_decode gives it, whatever its length (PHP's
    decoder reads the text where the engine keeps it, not in a PHP string)."""
    server = php_server("pusher_hooks.php", env=settings_env(pusher=[dict(APP, options={"client_event_rate": 10000})]))
    ws, hello = pusher_socket(server)
    other, other_hello = pusher_socket(server)
    for c, s in [(ws, socket_id(hello)), (other, socket_id(other_hello))]:
        send(c, "pusher:subscribe", {"channel": "private-chat", "auth": channel_auth(s, "private-chat")})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
    sent = [{"n": n, "text": "é" * (n % 50)} for n in range(300)]
    for data in sent:
        send(other, "client-typing", data, channel="private-chat")
    for _ in sent:
        assert recv(ws)["event"] == "client-typing"
    events = hook_lines(server, 2 + len(sent))[2:]
    assert [e[4] for e in events] == sent


def test_webhooks_tell_the_application_what_happened_signed_as_pusher_signs(php_server):
    """Channels occupied and vacated, presence members added and removed, client events and
    cache misses reach the app's webhooks in order, signed so that Pusher's own SDK takes them;
    a webhook gets only the kinds it asked for; a request answered 500 is sent again."""
    hooks = Webhooks(statuses={"/all": [500]})
    app = dict(APP, webhooks=[{"url": hooks.url("/all")}, {"url": hooks.url("/members"), "event_types": ["member_added", "member_removed"]}])
    server = start(php_server, app=app)

    ws, hello = pusher_socket(server)
    other, other_hello = pusher_socket(server)
    sid, other_sid = socket_id(hello), socket_id(other_hello)
    for c, s, user in [(ws, sid, {"user_id": 7}), (other, other_sid, {"user_id": "8", "user_info": {"name": "Bo"}})]:
        data = json.dumps(user)
        send(c, "pusher:subscribe", {"channel": "presence-room", "auth": channel_auth(s, "presence-room", data), "channel_data": data})
        assert recv(c)["event"] == "pusher_internal:subscription_succeeded"
    assert recv(ws)["event"] == "pusher_internal:member_added"
    send(other, "client-typing", {"text": "hi"}, channel="presence-room")
    assert recv(ws)["event"] == "client-typing"
    send(ws, "pusher:subscribe", {"channel": "cache-prices"})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    assert recv(ws)["event"] == "pusher:cache_miss"
    send(other, "pusher:subscribe", {"channel": "news"})  # public: occupied, no member
    assert recv(other)["event"] == "pusher_internal:subscription_succeeded"
    ws.close()  # leaves presence-room (member 7 goes) and cache-prices (vacated)
    assert recv(other)["event"] == "pusher_internal:member_removed"
    send(other, "pusher:unsubscribe", {"channel": "presence-room"})
    send(other, "pusher:ping")
    assert recv(other)["event"] == "pusher:pong"
    every = hooks.events("/all", 11)
    assert every[:7] == [
        {"name": "channel_occupied", "channel": "presence-room"},
        {"name": "member_added", "channel": "presence-room", "user_id": "7"},
        {"name": "member_added", "channel": "presence-room", "user_id": "8"},
        {"name": "client_event", "channel": "presence-room", "event": "client-typing", "data": json.dumps({"text": "hi"}), "socket_id": other_sid, "user_id": "8"},
        {"name": "channel_occupied", "channel": "cache-prices"},
        {"name": "cache_miss", "channel": "cache-prices"},
        {"name": "channel_occupied", "channel": "news"},
    ], every
    # The closed connection's two channels, in either order; then the unsubscription's.
    assert sorted(every[7:9], key=json.dumps) == [
        {"name": "channel_vacated", "channel": "cache-prices"},
        {"name": "member_removed", "channel": "presence-room", "user_id": "7"},
    ], every
    assert every[9:] == [
        {"name": "member_removed", "channel": "presence-room", "user_id": "8"},
        {"name": "channel_vacated", "channel": "presence-room"},
    ], every
    assert [e["name"] for e in hooks.events("/members", 4)] == ["member_added", "member_added", "member_removed", "member_removed"]

    # The first request was answered 500 and sent again; every request is Pusher's shape and
    # signature, read by Pusher's SDK.
    sent = [r for r in hooks.requests if r["path"] == "/all"]
    assert sent[0]["status"] == 500 and sent[1]["body"] == sent[0]["body"], sent[:2]
    assert all(r["headers"]["content-type"] == "application/json" and r["headers"]["x-pusher-key"] == APP["key"] for r in sent)
    read = pusher_sdk_reads(hooks.requests)
    assert read == [[True, json.loads(r["body"])["events"]] for r in hooks.requests], read
    assert all(abs(json.loads(r["body"])["time_ms"] / 1000 - time.time()) < 60 for r in hooks.requests)

    # A signature made with another secret is refused by the SDK (the check can fail).
    forged = dict(sent[1], headers=dict(sent[1]["headers"], **{"x-pusher-signature": hmac.new(b"other", sent[1]["body"].encode(), hashlib.sha256).hexdigest()}))
    assert pusher_sdk_reads([forged]) == [[False, None]]
    other.close()


def test_webhooks_hear_of_the_channels_a_stop_empties(php_server):
    """At the stop every client is closed: the channels they leave are told to the webhook
    before the process ends, also those of a client that never answers its close (cut off at
    shutdown_timeout)."""
    hooks = Webhooks()
    app = dict(APP, webhooks=[{"url": hooks.url("/h"), "event_types": ["channel_vacated", "member_removed"]}])
    server = start(php_server, app=app, shutdown_timeout=1)
    ws, _ = pusher_socket(server)
    for channel in ["a", "b"]:
        send(ws, "pusher:subscribe", {"channel": channel})
        assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    rude = RawClient(server.port).open(f"/app/{APP['key']}?protocol=7")
    rude_sid = json.loads(json.loads(rude.read_frame()[1])["data"])["socket_id"]
    data = json.dumps({"user_id": "r"})
    subscription = {"channel": "presence-r", "auth": channel_auth(rude_sid, "presence-r", data), "channel_data": data}
    rude.send_frame(OP_TEXT, json.dumps({"event": "pusher:subscribe", "data": subscription}).encode())
    assert json.loads(rude.read_frame()[1])["event"] == "pusher_internal:subscription_succeeded"
    server.stop()
    got = sorted(json.dumps(e, sort_keys=True) for e in hooks.events("/h", 4, timeout=1))
    assert got == sorted(
        json.dumps(e, sort_keys=True)
        for e in [
            {"name": "channel_vacated", "channel": "a"},
            {"name": "channel_vacated", "channel": "b"},
            {"name": "member_removed", "channel": "presence-r", "user_id": "r"},
            {"name": "channel_vacated", "channel": "presence-r"},
        ]
    ), got
    rude.close()


def test_a_webhook_answered_4xx_is_given_up_at_once_and_url_credentials_go_as_basic_auth(php_server):
    """A 400 would come again for the same body: it is not sent again (the events behind it
    go on), with a warning that hides the URL's password."""
    import base64

    hooks = Webhooks(statuses={"/h": [400]})
    url = hooks.url("/h").replace("://", "://hook:s%40cret@")
    server = start(php_server, app=dict(APP, webhooks=[{"url": url, "event_types": ["channel_occupied"]}]))
    ws, _ = pusher_socket(server)
    send(ws, "pusher:subscribe", {"channel": "first"})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    server.wait_output("answered 400 Bad Request; gave up on 1 events", stream="stderr")
    send(ws, "pusher:subscribe", {"channel": "second"})
    assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
    assert hooks.events("/h", 1) == [{"name": "channel_occupied", "channel": "second"}]
    assert [json.loads(r["body"])["events"][0]["channel"] for r in hooks.requests] == ["first", "second"]
    assert {r["headers"]["authorization"] for r in hooks.requests} == {"Basic " + base64.b64encode(b"hook:s@cret").decode()}
    assert "cret" not in server.stderr() and "hook:***@localhost" in server.stderr()
    ws.close()


def test_a_second_stop_signal_does_not_wait_for_a_silent_webhook(php_server):
    """A stop waits a second at most for webhooks; a second signal ends that wait (the process
    has a second in all then): an endpoint that never answers does not make the stop fail."""
    import signal as signals

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    server = start(php_server, app=dict(APP, webhooks=[{"url": f"http://127.0.0.1:{silent.getsockname()[1]}/h"}]))
    rude = RawClient(server.port).open(f"/app/{APP['key']}?protocol=7")
    rude.read_frame()
    rude.send_frame(OP_TEXT, json.dumps({"event": "pusher:subscribe", "data": {"channel": "a"}}).encode())
    assert json.loads(rude.read_frame()[1])["event"] == "pusher_internal:subscription_succeeded"
    server.signal(signals.SIGTERM)
    time.sleep(1.1)  # the client never answers its close: the second signal cuts the wait short
    server.signal(signals.SIGTERM)
    assert server.wait(10) == 0, server.stderr()[-2000:]
    assert "PHP did not finish" not in server.stderr()
    silent.close()
    rude.close()


def test_https_webhooks_are_verified_against_the_trusted_roots(php_server, tmp_path):
    """An https:// webhook whose certificate a private CA signed: delivered when SSL_CERT_FILE
    names that CA, refused (and logged) against the system's roots."""
    ca, ca_key, cert, key, csr = (tmp_path / f for f in ["ca.pem", "ca.key", "leaf.pem", "leaf.key", "leaf.csr"])
    run = lambda *args: subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)  # noqa: E731
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Surge test CA")
    run("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    extensions = tmp_path / "leaf.ext"
    extensions.write_text("subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", extensions)
    hooks = Webhooks(tls=(cert, key))
    for trusted, path in [(True, "/trusted"), (False, "/untrusted")]:
        app = dict(APP, webhooks=[{"url": hooks.url(path), "event_types": ["channel_occupied"]}])
        env = settings_env(pusher=[app]) | ({"SSL_CERT_FILE": str(ca)} if trusted else {})
        server = php_server("echo.php", env=env)
        ws, _ = pusher_socket(server)
        send(ws, "pusher:subscribe", {"channel": "news"})
        assert recv(ws)["event"] == "pusher_internal:subscription_succeeded"
        if trusted:
            assert hooks.events(path, 1) == [{"name": "channel_occupied", "channel": "news"}]
        else:
            server.wait_output("TLS failed", stream="stderr")
            assert hooks.requests == [r for r in hooks.requests if r["path"] != path]
        ws.close()


def test_signin_is_checked_and_a_user_channel_is_its_users_alone(php_server):
    """pusher:signin with a wrong signature, without an id, or as a second user is refused
    (4009, the connection stays); only the connections signed in as a user may subscribe to
    their #server-to-user- channel."""
    server = start(php_server)
    ws, hello = pusher_socket(server)
    sid = socket_id(hello)

    def signin(user_data: str, secret=APP["secret"]) -> dict:
        return sign_in(ws, sid, user_data, secret)

    def subscribe(channel: str) -> dict:
        send(ws, "pusher:subscribe", {"channel": channel})
        return recv(ws)

    refused = signin('{"id":"u7"}', secret="wrong")
    assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4009, refused
    assert subscribe("#server-to-user-u7")["event"] == "pusher:subscription_error"
    assert signin('{"name":"no id"}')["data"]["code"] == 4009
    assert signin('{"id":7}')["data"]["code"] == 4009  # Pusher's ids are strings
    ok = signin('{"id":"u7","name":"Ann"}')
    assert ok == {"event": "pusher:signin_success", "data": json.dumps({"user_data": '{"id":"u7","name":"Ann"}'}, separators=(",", ":"))}, ok
    assert subscribe("#server-to-user-u8")["event"] == "pusher:subscription_error"
    assert subscribe("#server-to-user-u7") == {"event": "pusher_internal:subscription_succeeded", "channel": "#server-to-user-u7", "data": "{}"}
    assert subscribe("news")["event"] == "pusher_internal:subscription_succeeded"
    # Users' channels are not listed: they would say who is online.
    assert api_request(server, "GET", f"/apps/{APP['app_id']}/channels") == (200, {"channels": {"news": {}}})
    assert signin('{"id":"u8"}')["data"]["message"] == "signin refused: this connection is signed in as another user"
    assert signin('{"id":"u7"}')["event"] == "pusher:signin_success"
    assert subscribe("#server-to-user-")["event"] == "pusher:subscription_error"
    ws.close()


def test_terminate_connections_ends_the_users_connections_alone(php_server):
    """POST /users/{id}/terminate_connections closes the connections signed in as that user
    (with 4009; an id with a %-escape as the SDKs send it, unencoded) and no other."""
    server = start(php_server)

    def signed_in(user_id: str):
        ws, hello = pusher_socket(server)
        assert sign_in(ws, socket_id(hello), json.dumps({"id": user_id}))["event"] == "pusher:signin_success"
        return ws

    odd, plain, other = signed_in("a%2Fb"), signed_in("u7"), signed_in("u8")
    stranger, _ = pusher_socket(server)
    for user_id, ws in [("a%2Fb", odd), ("u7", plain)]:
        assert api_request(server, "POST", f"/apps/{APP['app_id']}/users/{user_id}/terminate_connections", b"{}") == (200, {})
        error = recv(ws)
        assert error["event"] == "pusher:error" and error["data"]["code"] == 4009, error
        assert close_code(ws) == 4009
    assert api_request(server, "POST", f"/apps/{APP['app_id']}/users/nobody/terminate_connections", b"{}") == (200, {})
    for ws in [other, stranger]:
        send(ws, "pusher:ping")
        assert recv(ws)["event"] == "pusher:pong"
        ws.close()


def test_webhook_settings_are_checked():
    from conftest import surge_exception

    def refusal(webhooks) -> str:
        app = dict(APP, webhooks=webhooks)
        return surge_exception(f"$s->set(['pusher' => json_decode('{json.dumps(app)}', true)]);")

    assert "must be an http:// or https:// URL" in refusal([{"url": "ftp://127.0.0.1/"}])
    assert "unknown event type; known: channel_occupied, channel_vacated, member_added, member_removed, client_event, cache_miss" in refusal(
        [{"url": "http://127.0.0.1/", "event_types": ["joined"]}]
    )
    assert "has no 'url'" in refusal([{"event_types": ["cache_miss"]}])
    assert "names no event type" in refusal([{"url": "http://127.0.0.1/", "event_types": []}])
    assert "secret" not in refusal([{"url": "ftp://user:secret@127.0.0.1/"}])
