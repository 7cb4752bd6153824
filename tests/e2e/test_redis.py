"""The Redis bridge against a real redis-server: Laravel-shaped broadcasts published with
redis-cli and redis-py reach the WebSocket clients in the Surge channel of the same name."""

import json
import os
import signal
import subprocess
import time
from contextlib import ExitStack

import pytest
from redis import ConnectionPool
from redis.client import PubSub

from conftest import RedisServer, free_port, run_php
from fanout_client import FANOUT, Client, eventually, start_fanout

PREFIX = "laravel_database_"


def laravel(event: str, data: dict, socket: str | None = None) -> str:
    """What Laravel's redis broadcaster PUBLISHes (data carries the socket too, as Laravel's does)."""
    return json.dumps({"event": event, "data": {**data, "socket": socket}, "socket": socket})


def forwarded(event: str, channel: str, data: dict, socket: str | None = None) -> dict:
    return {"event": event, "channel": channel, "data": {**data, "socket": socket}}


def wait_subscribed(redis_server, channel: str = None, patterns: int = 0) -> None:
    """Redis itself says the bridge has subscribed `channel` (or `patterns` patterns)."""
    if channel is not None:
        eventually(lambda: dict(redis_server.client.pubsub_numsub(channel))[channel] >= 1, timeout=10)
    if patterns:
        eventually(lambda: redis_server.client.pubsub_numpat() >= patterns, timeout=10)


def redis_stats(client: Client) -> dict:
    return client.call("stats")["redis"]


def redis_lines(srv) -> list:
    """What the `redis` callback got: [channel, payload] pairs."""
    return [json.loads(line[6:]) for line in srv.stdout().splitlines() if line.startswith("redis ")]


def listen(redis_server, channel: str, raw: bool = False):
    """A redis-py subscriber of `channel`, its subscription confirmed; `raw` gives bytes."""
    # On its own pool: a pubsub made by a Redis() object that is then collected gets disconnected.
    listener = PubSub(ConnectionPool(host=redis_server.host, port=redis_server.port, decode_responses=not raw))
    listener.subscribe(channel)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    return listener


def assert_redis_publish(redis_server, client: Client, text: str) -> None:
    """PHP's redisPublish('outbox', text) reaches a redis-py subscriber of the prefixed channel."""
    outbox = listen(redis_server, PREFIX + "outbox")
    assert client.call("redisPublish", "outbox", text) is True
    assert outbox.get_message(timeout=5)["data"] == text
    outbox.close()


def bridge(php_server, redis_server, subscribe, **settings):
    return start_fanout(php_server, {"redis": redis_server.url, **settings}, subscribe=subscribe)


def test_rediss_url_bridges_over_tls(php_server, tmp_path, cert):
    tls_redis = RedisServer(tmp_path, tls=cert)
    tls_redis.start()
    try:
        srv = bridge(php_server, tls_redis, ["orders"])
        with Client(srv.url) as member:
            assert member.call("join", member.fd, "orders")
            wait_subscribed(tls_redis, PREFIX + "orders")
            tls_redis.client.publish(PREFIX + "orders", laravel("App\\Events\\Shipped", {"id": 7}))
            assert member.recv_json() == forwarded("App\\Events\\Shipped", "orders", {"id": 7})
            assert redis_stats(member)["state"] == "connected"
    finally:
        tls_redis.kill()


def test_laravel_broadcasts_reach_the_members_of_the_channel(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["orders"])
    with Client(srv.url) as member, Client(srv.url) as outsider:
        assert member.call("join", member.fd, "orders")
        wait_subscribed(redis_server, PREFIX + "orders")

        payload = laravel("App\\Events\\OrderShipped", {"id": 1})
        subprocess.run(["redis-cli", "-p", str(redis_server.port), "PUBLISH", PREFIX + "orders", payload], check=True, capture_output=True)
        assert member.recv_json() == forwarded("App\\Events\\OrderShipped", "orders", {"id": 1})

        # The seed's payload, with its \u escapes: `data` reaches the client byte for byte.
        seed = '{"event":"App\\\\Events\\\\Message","data":{"data":{"name":"\\u6728\\u5c0f\\u6487"},"socket":null},"socket":null}'
        assert redis_server.client.publish(PREFIX + "orders", seed) == 1
        assert member.recv() == '{"event":"App\\\\Events\\\\Message","channel":"orders","data":{"data":{"name":"\\u6728\\u5c0f\\u6487"},"socket":null}}'
        outsider.assert_nothing_pushed()

        stats = redis_stats(member)
        assert (stats["state"], stats["received"], stats["forwarded"], stats["dropped"], stats["subscriptions"]) == ("connected", 2, 2, 0, 1)
        # The callback got both too, with the prefix stripped.
        eventually(lambda: redis_lines(srv) == [["orders", payload], ["orders", seed]])


def test_forwarding_needs_no_php_callback_and_can_be_turned_off(php_server, redis_server):
    srv = start_fanout(php_server, {"redis": redis_server.url}, subscribe=["news"], callback=False)
    off = start_fanout(php_server, {"redis": redis_server.url, "redis_forward": False}, subscribe=["news"])
    with Client(srv.url) as a, Client(off.url) as b:
        assert a.call("join", a.fd, "news") and b.call("join", b.fd, "news")
        eventually(lambda: dict(redis_server.client.pubsub_numsub(PREFIX + "news"))[PREFIX + "news"] == 2)
        redis_server.client.publish(PREFIX + "news", laravel("Headline", {"n": 1}))
        assert a.recv_json() == forwarded("Headline", "news", {"n": 1})
        eventually(lambda: redis_lines(off))  # the callback got it, the client did not
        b.assert_nothing_pushed()
        assert redis_stats(b)["forwarded"] == 0
    assert "redis " not in srv.stdout()


def test_custom_prefix_is_added_on_subscribe_and_stripped_on_delivery(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["news"], redis_prefix="shop_")
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "news")
        wait_subscribed(redis_server, "shop_news")
        assert redis_server.client.publish(PREFIX + "news", laravel("Wrong", {})) == 0  # not subscribed
        assert redis_server.client.publish("shop_news", laravel("Right", {"x": 1})) == 1
        assert a.recv_json() == forwarded("Right", "news", {"x": 1})
        eventually(lambda: redis_lines(srv) == [["news", laravel("Right", {"x": 1})]])


def test_empty_prefix(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["push:message:1"], redis_prefix="")
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "push:message:1")
        wait_subscribed(redis_server, "push:message:1")
        redis_server.client.publish("push:message:1", laravel("Count", {"cnt": 3}))
        assert a.recv_json() == forwarded("Count", "push:message:1", {"cnt": 3})


def test_pattern_subscription(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["private-*"])
    with Client(srv.url) as one, Client(srv.url) as two:
        assert one.call("join", one.fd, "private-orders.1") and two.call("join", two.fd, "private-orders.2")
        wait_subscribed(redis_server, patterns=1)
        assert redis_server.client.pubsub_channels() == []  # a pattern, not a channel
        redis_server.client.publish(PREFIX + "private-orders.2", laravel("Shipped", {"id": 2}))
        redis_server.client.publish(PREFIX + "public", laravel("NotMatched", {}))
        redis_server.client.publish(PREFIX + "private-orders.1", laravel("Shipped", {"id": 1}))
        assert two.recv_json() == forwarded("Shipped", "private-orders.2", {"id": 2})
        assert one.recv_json() == forwarded("Shipped", "private-orders.1", {"id": 1})
        eventually(lambda: [c for c, _ in redis_lines(srv)] == ["private-orders.2", "private-orders.1"])
        one.assert_nothing_pushed()
        two.assert_nothing_pushed()


def test_a_channel_also_matched_by_star_is_delivered_once(php_server, redis_server):
    # As the Pusher protocol does (it subscribes `*`) beside the channels a script names.
    srv = bridge(php_server, redis_server, ["orders", "private-*", "*"])
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "orders") and a.call("join", a.fd, "private-a")
        wait_subscribed(redis_server, PREFIX + "orders", patterns=2)
        redis_server.client.publish(PREFIX + "orders", laravel("Once", {}))
        redis_server.client.publish(PREFIX + "private-a", laravel("OnceToo", {}))
        assert a.recv_json()["event"] == "Once"
        assert a.recv_json()["event"] == "OnceToo"
        eventually(lambda: [c for c, _ in redis_lines(srv)] == ["orders", "private-a"])
        a.assert_nothing_pushed()
        assert [c for c, _ in redis_lines(srv)] == ["orders", "private-a"]
        assert redis_stats(a)["received"] == 2


def test_socket_id_leaves_out_the_sender(php_server, redis_server):
    """Laravel's toOthers(): the broadcast carries the sender's socket id (X-Socket-ID)."""
    srv = bridge(php_server, redis_server, ["chat"])
    with Client(srv.url) as sender, Client(srv.url) as other:
        prefix = sender.socket.split(".")[0]
        assert (sender.socket, other.socket) == (f"{prefix}.{sender.fd}", f"{prefix}.{other.fd}")
        assert sender.call("socketId", other.fd) == other.socket
        assert sender.call("socketId", 987654) is None
        for c in (sender, other):
            assert c.call("join", c.fd, "chat")
        wait_subscribed(redis_server, PREFIX + "chat")

        redis_server.client.publish(PREFIX + "chat", laravel("Said", {"text": "hi"}, socket=sender.socket))
        assert other.recv_json() == forwarded("Said", "chat", {"text": "hi"}, socket=sender.socket)
        sender.assert_nothing_pushed()

        # Someone else's socket id (another process, or garbage) leaves nobody out.
        for socket in ("1.1", f"{prefix}.abc", "nonsense"):
            redis_server.client.publish(PREFIX + "chat", laravel("Said", {}, socket=socket))
            assert sender.recv_json()["data"]["socket"] == other.recv_json()["data"]["socket"] == socket


def test_invalid_json_is_dropped_but_still_reaches_the_callback(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["orders"])
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "orders")
        wait_subscribed(redis_server, PREFIX + "orders")
        for bad in ("not json {", '{"data": {"no": "event"}}', "[1, 2]"):
            redis_server.client.publish(PREFIX + "orders", bad)
        # A message is counted received before it is looked at, and dropped after.
        eventually(lambda: redis_stats(a)["dropped"] == 3)
        stats = redis_stats(a)
        assert (stats["received"], stats["forwarded"]) == (3, 0)
        a.assert_nothing_pushed()
        eventually(lambda: redis_lines(srv) == [["orders", "not json {"], ["orders", '{"data": {"no": "event"}}'], ["orders", "[1, 2]"]])
        # Said once, not once a message (a plain-JSON feed would fill the log).
        assert srv.stderr().count("is not a Laravel broadcast") == 1
        # The bridge goes on forwarding good ones.
        redis_server.client.publish(PREFIX + "orders", laravel("Fine", {}))
        assert a.recv_json() == forwarded("Fine", "orders", {})


def test_subscribe_and_unsubscribe_after_start(php_server, redis_server):
    srv = bridge(php_server, redis_server, None)
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "late") and a.call("join", a.fd, "later")
        assert redis_stats(a)["subscriptions"] == 0
        assert a.call("subscribe", "late") is True
        assert a.call("subscribe", ["later", "private-*"]) is True
        wait_subscribed(redis_server, PREFIX + "late")
        wait_subscribed(redis_server, PREFIX + "later", patterns=1)
        assert redis_stats(a)["subscriptions"] == 3
        redis_server.client.publish(PREFIX + "later", laravel("Later", {}))
        assert a.recv_json()["event"] == "Later"

        assert a.call("unsubscribe", "late") is True
        assert a.call("unsubscribe", "late") is False
        assert a.call("unsubscribe", ["private-*", "never-subscribed"]) is True
        eventually(lambda: dict(redis_server.client.pubsub_numsub(PREFIX + "late"))[PREFIX + "late"] == 0)
        eventually(lambda: redis_server.client.pubsub_numpat() == 0)
        assert redis_stats(a)["subscriptions"] == 1
        assert redis_server.client.publish(PREFIX + "late", laravel("Gone", {})) == 0
        err = a.call_error("subscribe", 42)
        assert err["exception"] == "Surge\\Exception" and "subscribe" in err["message"]


def test_a_channel_redis_refuses_is_dropped_and_the_others_keep_working(php_server, redis_server):
    # An ACL that lets the bridge's user use the "allowed" channels only: any other SUBSCRIBE
    # is refused (NOPERM).
    redis_server.client.execute_command("ACL", "SETUSER", "default", "resetchannels", f"&{PREFIX}allowed*")
    srv = bridge(php_server, redis_server, ["forbidden", "allowed"])
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "allowed")
        wait_subscribed(redis_server, PREFIX + "allowed")
        assert a.call("subscribe", "forbidden-later") is True
        srv.wait_output(f"subscribing {PREFIX}forbidden-later was refused", stream="stderr")
        redis_server.client.publish(PREFIX + "allowed", laravel("Allowed", {}))
        assert a.recv_json()["event"] == "Allowed"
        # Asked again, refused again (it was taken for subscribed, and with `*` every message
        # was then filtered out).
        assert a.call("subscribe", "*") is True
        srv.wait_output(f"subscribing {PREFIX}* was refused", stream="stderr")
        assert a.call("subscribe", "*") is True
        eventually(lambda: srv.stderr().count(f"subscribing {PREFIX}* was refused") == 2)
        redis_server.client.publish(PREFIX + "allowed", laravel("Still", {}))
        assert a.recv_json()["event"] == "Still"
        stats = redis_stats(a)
        assert (stats["state"], stats["reconnects"], stats["subscriptions"]) == ("connected", 0, 1)
    assert f"subscribing {PREFIX}forbidden was refused, it is dropped: NoPerm: this user has no permissions" in srv.stderr()


def test_a_redis_without_psubscribe_drops_the_patterns_and_keeps_the_channels(php_server, tmp_path):
    """A Redis (or a proxy) without PSUBSCRIBE answers "unknown command": the pattern is dropped
    with a warning and the channels keep working (any answer but NOPERM was taken for the
    connection's, and the bridge reconnected every second for ever, delivering nothing)."""
    no_patterns = RedisServer(tmp_path, args=("--rename-command", "PSUBSCRIBE", ""))
    no_patterns.start()
    try:
        srv = bridge(php_server, no_patterns, ["news", "pat*"])
        with Client(srv.url) as a:
            assert a.call("join", a.fd, "news")
            wait_subscribed(no_patterns, PREFIX + "news")
            srv.wait_output(f"subscribing {PREFIX}pat* was refused, it is dropped", stream="stderr")
            no_patterns.client.publish(PREFIX + "news", laravel("News", {}))
            assert a.recv_json()["event"] == "News"
            stats = redis_stats(a)
            assert (stats["state"], stats["reconnects"], stats["subscriptions"]) == ("connected", 0, 1)
    finally:
        no_patterns.kill()


def test_a_redis_busy_with_a_script_keeps_the_subscriptions_asked_meanwhile(php_server, redis_server):
    """Redis answers BUSY while a script runs past busy-reply-threshold: a subscription asked
    then was dropped for ever (the refusal taken for the channel's, as NOPERM is) while stats
    said connected. It is the connection's: the bridge reconnects and subscribes it again."""
    redis_server.client.config_set("busy-reply-threshold", 100)
    srv = bridge(php_server, redis_server, None)
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "during")
        eventually(lambda: redis_stats(a)["state"] == "connected")
        script = subprocess.Popen(["redis-cli", "-p", str(redis_server.port), "eval", "while true do end", "0"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)  # past the threshold: Redis answers BUSY
            assert a.call("subscribe", "during") is True
            srv.wait_output("BUSY", stream="stderr")
        finally:
            subprocess.run(["redis-cli", "-p", str(redis_server.port), "script", "kill"], capture_output=True, timeout=10)
            script.wait(timeout=10)
        wait_subscribed(redis_server, PREFIX + "during")
        redis_server.client.publish(PREFIX + "during", laravel("After", {}))
        assert a.recv_json()["event"] == "After"
        assert redis_stats(a)["subscriptions"] == 1


def test_subscriptions_taken_back_cost_nothing_however_many(php_server, redis_server):
    """A channel subscribed on open and unsubscribed on close, for 100,000 clients: the changes
    that undo each other are not sent (each went to Redis, a round trip each: a subscription
    asked after them waited tens of seconds, and during an outage they piled up in memory)."""
    srv = bridge(php_server, redis_server, subscribe=["news"])
    wait_subscribed(redis_server, PREFIX + "news")
    with Client(srv.url) as client:
        assert client.call("churn", 100_000) is True
        assert client.call("subscribe", "late") is True
        wait_subscribed(redis_server, PREFIX + "late")
        assert redis_server.client.pubsub_numsub(PREFIX + "user.1") == [(PREFIX + "user.1", 0)]
        redis_server.client.publish(PREFIX + "late", laravel("news", {"n": 1}))
        srv.wait_output('redis ["late"')


def test_many_subscriptions_are_restored_after_a_reconnect(php_server, redis_server):
    """1,200 channels and a pattern, all subscribed again (500 to a command) after Redis cut the
    bridge off."""
    names = [f"c{i}" for i in range(1200)]
    srv = bridge(php_server, redis_server, [*names, "p-*"])
    subscribed = lambda: (len(redis_server.client.pubsub_channels(PREFIX + "c*")), redis_server.client.pubsub_numpat())
    with Client(srv.url) as a:
        eventually(lambda: subscribed() == (1200, 1), timeout=10)
        redis_server.client.client_kill_filter(_type="pubsub")
        eventually(lambda: redis_stats(a)["reconnects"] == 1, timeout=10)
        eventually(lambda: subscribed() == (1200, 1), timeout=10)
        assert a.call("join", a.fd, "c1199")
        redis_server.client.publish(PREFIX + "c1199", laravel("Last", {}))
        assert a.recv_json()["event"] == "Last"
    assert "redis: reconnected; 1201 subscriptions restored" in srv.stderr()


def test_redis_publish_loses_nothing_to_a_pause_of_redis(php_server, redis_server):
    """A Redis that pauses under a second (a slow command, a fork for a snapshot): PUBLISH
    waited 500 ms, the redis crate's default, then it and those in the next second were lost."""
    srv = bridge(php_server, redis_server, None)
    listener = listen(redis_server, PREFIX + "outbox")
    spin = "local s = redis.call('TIME') repeat local n = redis.call('TIME') until (n[1] - s[1]) * 1000000 + n[2] - s[2] > 800000"
    with Client(srv.url) as a:
        assert a.call("redisPublish", "outbox", "m0") is True
        assert listener.get_message(timeout=5)["data"] == "m0"
        pause = subprocess.Popen(["redis-cli", "-p", str(redis_server.port), "eval", spin, "0"], stdout=subprocess.DEVNULL)
        time.sleep(0.1)
        for i in range(1, 11):
            assert a.call("redisPublish", "outbox", f"m{i}") is True
        pause.wait(timeout=10)
        got = [listener.get_message(timeout=5) for _ in range(10)]
        assert [m and m["data"] for m in got] == [f"m{i}" for i in range(1, 11)]
        eventually(lambda: (redis_stats(a)["published"], redis_stats(a)["dropped"]) == (11, 0))
    listener.close()


def test_what_close_callbacks_publish_while_the_server_stops_reaches_redis(php_server, redis_server):
    """Apps tell the others "gone offline" from the close callback, which a stop runs for every
    client: those publishes were mostly lost, the runtime going down under them."""
    presence = listen(redis_server, PREFIX + "presence")
    srv = php_server(FANOUT, env={"SURGE_SETTINGS": json.dumps({"redis": redis_server.url}), "SURGE_CLOSE_PUBLISH": "1"})
    srv.wait_output("start ")
    clients = [Client(srv.url) for _ in range(12)]
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0
    left = set()
    while (message := presence.get_message(timeout=2)) is not None:
        left.add(message["data"])
    assert left == {f"left {c.fd}" for c in clients}
    presence.close()


def test_redis_publish_round_trip(php_server, redis_server):
    srv = bridge(php_server, redis_server, None)
    listener = listen(redis_server, PREFIX + "outbox", raw=True)
    with Client(srv.url) as a:
        assert a.call("redisPublish", "outbox", "from php") is True
        assert a.call("redisPublish", "outbox", b"\x00\xffbytes", binary=1) is True
        messages = [listener.get_message(timeout=5) for _ in range(2)]
        assert [(m["channel"], m["data"]) for m in messages] == [
            (PREFIX.encode() + b"outbox", b"from php"),
            (PREFIX.encode() + b"outbox", b"\x00\xffbytes"),
        ]
        eventually(lambda: redis_stats(a)["published"] == 2)
    listener.close()


def test_redis_outage_keeps_clients_and_recovers(php_server, redis_server):
    srv = bridge(php_server, redis_server, ["live"])
    with Client(srv.url) as a, Client(srv.url) as b:
        assert a.call("join", a.fd, "live")
        wait_subscribed(redis_server, PREFIX + "live")
        redis_server.client.publish(PREFIX + "live", laravel("Before", {}))
        assert a.recv_json()["event"] == "Before"
        assert_redis_publish(redis_server, a, "before the outage")

        redis_server.kill()
        eventually(lambda: redis_stats(a)["state"] == "disconnected")
        # Several reconnect attempts fail meanwhile; clients notice nothing. What PHP publishes
        # now is dropped and counted.
        assert a.call("redisPublish", "outbox", "lost in the outage") is True
        eventually(lambda: redis_stats(a)["dropped"] == 1)
        time.sleep(1)
        for c in (a, b):
            c.assert_nothing_pushed()
        with Client(srv.url) as newcomer:
            assert newcomer.call("join", newcomer.fd, "live")
            assert a.call("publish", "live", "native fan-out works without Redis") == 2
            assert newcomer.recv() == a.recv() == "native fan-out works without Redis"

        redis_server.start()
        eventually(lambda: redis_stats(a)["state"] == "connected", timeout=10)
        stats = redis_stats(a)
        assert stats["reconnects"] >= 1 and stats["subscriptions"] == 1
        wait_subscribed(redis_server, PREFIX + "live")
        redis_server.client.publish(PREFIX + "live", laravel("After", {"n": 2}))
        assert a.recv_json() == forwarded("After", "live", {"n": 2})

        # redisPublish works again too, from the first message on.
        assert_redis_publish(redis_server, a, "after the outage")

    log = srv.stderr()
    outage = [line for line in log.splitlines() if "redis:" in line and ("lost" in line or "cannot connect" in line)]
    assert len(outage) == 1, log
    assert "redis: reconnected; 1 subscriptions restored" in log


def test_the_log_says_what_keeps_redis_from_coming_back(php_server, redis_server, tmp_path):
    """Redis restarted asking for a password: the outage was logged once as a lost connection,
    and then nothing told why every reconnection failed."""
    srv = bridge(php_server, redis_server, ["live"])
    wait_subscribed(redis_server, PREFIX + "live")
    redis_server.kill()
    srv.wait_output("redis: connection to", stream="stderr")
    guarded = subprocess.Popen(
        ["redis-server", "--bind", redis_server.host, "--port", str(redis_server.port), "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", "rotated"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        srv.wait_output("NOAUTH", stream="stderr", timeout=10)
    finally:
        guarded.kill()
        guarded.wait()


def test_a_redis_back_with_another_password_is_logged(php_server, tmp_path):
    """Redis restarted with a rotated password while the bridge keeps the old one: the lost
    connection was logged, then nothing (the failed AUTH has no Redis error code, unlike
    NOAUTH), the log's last word "lost; reconnecting" for ever."""
    port = free_port()

    def guarded(password):
        return subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
             "--dir", str(tmp_path), "--requirepass", password],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = guarded("old")
    try:
        time.sleep(0.3)
        srv = start_fanout(php_server, {"redis": f"redis://:old@127.0.0.1:{port}"}, subscribe=["live"])
        srv.wait_output("redis: connected to redis://:***@", stream="stderr", timeout=10)
    finally:
        first.kill()
        first.wait()
    srv.wait_output("redis: connection to", stream="stderr")
    second = guarded("new")
    try:
        srv.wait_output("Password authentication failed", stream="stderr", timeout=10)
    finally:
        second.kill()
        second.wait()
    assert "old" not in srv.stderr()


def test_a_publish_redis_refuses_drops_that_one_only(php_server, redis_server):
    """An ACL user that may not publish to one channel (NOPERM): that publish is dropped, logged,
    and the connection serves on; the publishes after it were dropped for a second, unsaid."""
    redis_server.client.execute_command(
        "ACL", "SETUSER", "limited", "on", ">pw", "+@all", "resetchannels", f"&{PREFIX}orders")
    srv = start_fanout(php_server, {"redis": f"redis://limited:pw@127.0.0.1:{redis_server.port}"})
    orders = listen(redis_server, PREFIX + "orders")
    with Client(srv.url) as client:
        for n in range(3):
            assert client.call("redisPublish", "secret", f"not for you {n}") is True
            assert client.call("redisPublish", "orders", f"shipped {n}") is True
            assert orders.get_message(timeout=5)["data"] == f"shipped {n}"
        # Counted when Redis's reply comes back, which may be after the subscriber has it.
        eventually(lambda: {"published": 3, "dropped": 3}.items() <= redis_stats(client).items())
    orders.close()
    assert srv.stderr().count(f"redis: publish to '{PREFIX}secret' refused by Redis, dropped: NoPerm") == 1, srv.stderr()


def test_a_bridge_with_nothing_subscribed_sees_a_redis_that_refuses_it(php_server, tmp_path):
    """Publish only (no subscription: nothing to ask Redis at connect): a Redis that wants a
    password was said connected, its health PING's error answer taken for an answer."""
    port = free_port()
    guarded = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", "secret"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        srv = start_fanout(php_server, {"redis": f"redis://127.0.0.1:{port}"})
        srv.wait_output("NOAUTH", stream="stderr", timeout=10)
        with Client(srv.url) as client:
            assert redis_stats(client)["state"] != "connected"
    finally:
        guarded.kill()
        guarded.wait()


def test_a_subscriber_redis_drops_again_and_again_is_logged_once(php_server, redis_server):
    """Redis dropping the subscriber right after each resubscribe (one that falls behind under a
    flood; here CLIENT KILL, again and again): that was two log lines and a retry ten times a
    second; the backoff now grows and the outage is logged once."""
    srv = bridge(php_server, redis_server, ["live"])
    wait_subscribed(redis_server, PREFIX + "live")
    kills = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        kills += redis_server.client.client_kill_filter(_type="pubsub")
        time.sleep(0.02)
    assert kills >= 3
    log = srv.stderr()
    assert sum("redis: connection to" in line for line in log.splitlines()) == 1, log
    assert log.count("redis: reconnected") <= 1, log
    wait_subscribed(redis_server, PREFIX + "live")


def test_a_redis_that_stops_answering_is_noticed(php_server, redis_server):
    """A Redis host that vanishes without closing the connection (here: frozen by SIGSTOP) is
    found out by the bridge's PING within seconds, not never."""
    srv = bridge(php_server, redis_server, ["live"])
    with Client(srv.url) as a:
        assert a.call("join", a.fd, "live")
        wait_subscribed(redis_server, PREFIX + "live")
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            eventually(lambda: redis_stats(a)["state"] == "disconnected", timeout=12)
            a.assert_nothing_pushed()
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        eventually(lambda: redis_stats(a)["state"] == "connected", timeout=10)
        wait_subscribed(redis_server, PREFIX + "live")
        redis_server.client.publish(PREFIX + "live", laravel("Thawed", {}))
        assert a.recv_json()["event"] == "Thawed"
    assert srv.stderr().count(f"redis: connection to {redis_server.url} lost") == 1


def test_redis_publish_is_bounded_in_bytes_while_redis_does_not_answer(php_server, redis_server):
    """Redis stopped (SIGSTOP: no answer, no refusal): publishes wait on its timeouts, and the
    queue holds 32 MiB of them at most (it held 10,000 of any size): past that, false."""
    srv = bridge(php_server, redis_server, ["orders"])
    with Client(srv.url) as a:
        assert a.call("redisPublish", "outbox", "first") is True
        os.kill(redis_server.proc.pid, signal.SIGSTOP)
        try:
            results = [a.call("redisPublish", "outbox", "x" * 100_000) for _ in range(400)]
        finally:
            os.kill(redis_server.proc.pid, signal.SIGCONT)
        assert results[0] is True and False in results, results.count(False)


def test_redis_publish_after_an_outage_it_did_not_see(php_server, redis_server):
    """The publishing connection broke while idle: the first publish after Redis is back arrives."""
    srv = bridge(php_server, redis_server, None)
    with Client(srv.url) as a:
        assert_redis_publish(redis_server, a, "one")
        redis_server.kill()
        eventually(lambda: redis_stats(a)["state"] == "disconnected")
        redis_server.start()
        eventually(lambda: redis_stats(a)["state"] == "connected", timeout=10)
        assert_redis_publish(redis_server, a, "two")
        assert redis_stats(a)["dropped"] == 0


def test_unreachable_redis_at_start_still_serves_websocket_clients(php_server):
    url = f"redis://127.0.0.1:{free_port()}"
    srv = start_fanout(php_server, {"redis": url}, subscribe=["news"])
    with Client(srv.url) as a:
        a.assert_nothing_pushed()
        eventually(lambda: redis_stats(a)["state"] == "disconnected")
        assert a.call("subscribe", "more") is True
        assert redis_stats(a)["subscriptions"] == 2
    srv.wait_output(f"redis: cannot connect to {url}", stream="stderr")


@pytest.mark.parametrize("call", ["subscribe('news')", "unsubscribe('news')", "redisPublish('news', 'x')"])
def test_redis_methods_without_the_redis_setting_throw(call):
    res = run_php(f"""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        try {{ $s->{call}; echo "no exception"; }}
        catch (Surge\\Exception $e) {{ echo $e->getMessage(); }}""")
    assert "needs the Redis bridge" in res.stdout and "'redis'" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("value", ["'http://127.0.0.1:6379'", "'127.0.0.1:6379'", "6379", "['host' => 'x']"])
def test_bad_redis_setting_throws_naming_it(value):
    res = run_php(f"""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        try {{ $s->set(['redis' => {value}]); echo "no exception"; }}
        catch (Surge\\Exception $e) {{ echo $e->getMessage(); }}""")
    assert "setting 'redis'" in res.stdout, res.stdout + res.stderr


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def stats_behind_the_callback(client: Client) -> dict:
    """stats()['redis'] from a server whose PHP thread has a slow callback's backlog to get
    through first."""
    client.send_call("stats")
    return client.reply(timeout=30)["redis"]


# With worker_threads 0 a blocking callback stalls the Redis bridge too (and Redis then drops a
# subscriber far behind).
@pytest.mark.io_threads_only
def test_a_slow_redis_callback_under_a_flood_drops_instead_of_growing(php_server, redis_server):
    """The redis crate buffers what the bridge does not take, without a limit: the bridge takes
    every message at once, and what a slow `redis` callback cannot keep up with is dropped and
    counted, so memory stays bounded. Afterwards messages reach the callback again."""
    srv = start_fanout(php_server, {"redis": redis_server.url}, subscribe=["flood"], callback_sleep_ms=100)
    with Client(srv.url) as client:
        def accounted():
            """Every message taken from Redis reached the callback or was counted as dropped."""
            s = stats_behind_the_callback(client)
            return len(redis_lines(srv)) + s["callback_dropped"] + s["overload_dropped"] == s["received"]

        wait_subscribed(redis_server, PREFIX + "flood")
        before = peak_rss_mib(srv.proc.pid)
        # 500 MiB at 40 MiB/s (a debug build reads about that fast; Redis disconnects a
        # subscriber 32 MiB behind) to a callback that takes 10 messages a second: far more than
        # the 32 MiB the callback may have waiting.
        message, flood, rate = laravel("Flood", {"blob": "x" * (1 << 20)}), 500, 40
        started = time.monotonic()
        for i in range(flood):
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
            redis_server.client.publish(PREFIX + "flood", message)
        eventually(accounted, timeout=30)
        grown, took = peak_rss_mib(srv.proc.pid) - before, time.monotonic() - started

        after = laravel("After", {"n": 1})
        redis_server.client.publish(PREFIX + "flood", after)
        eventually(lambda: srv.stdout().endswith(f'redis ["flood",{len(after)}]\n'), timeout=30)
        assert accounted()
        # The budgets (32 MiB to forward, 32 MiB for the callback), copies in flight and what
        # the allocator keeps; without them it grew by most of the flood.
        assert grown < 256, f"peak RSS grew {grown:.0f} MiB during a 500 MiB flood"
        assert stats_behind_the_callback(client)["callback_dropped"] > 0
    # A warning at most every 10 s, not one per message.
    assert 1 <= srv.stderr().count("the redis callback is behind") <= 1 + took // 10, srv.stderr()[-2000:]


def test_forwarding_without_a_callback_keeps_every_message_of_a_flood(php_server, redis_server):
    # The client reads only once the flood is published: room for all of it (8 MiB).
    settings = {"redis": redis_server.url, "socket_buffer_size": 64 << 20}
    srv = start_fanout(php_server, settings, subscribe=["flood"], callback=False)
    with Client(srv.url) as member:
        assert member.call("join", member.fd, "flood")
        wait_subscribed(redis_server, PREFIX + "flood")
        with redis_server.client.pipeline(transaction=False) as pipe:
            for i in range(2000):
                pipe.publish(PREFIX + "flood", laravel("Flood", {"i": i, "blob": "y" * 4096}))
            pipe.execute()
        assert [member.recv_json(timeout=10)["data"]["i"] for _ in range(2000)] == list(range(2000))
        stats = redis_stats(member)
        assert (stats["received"], stats["forwarded"], stats["dropped"]) == (2000, 2000, 0)
        assert (stats["callback_dropped"], stats["overload_dropped"]) == (0, 0)
