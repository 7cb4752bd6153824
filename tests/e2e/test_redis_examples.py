"""The two Redis examples in php/examples, run as they ship against a real redis-server, with
Laravel's publishes made by redis-py: the broadcast proxy (seed 000) and per-user
notifications (seed 001)."""

import json
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import ROOT
from fanout_client import eventually

PROXY = ROOT / "php/examples/laravel-broadcast-proxy/server.php"
NOTIFY = ROOT / "php/examples/user-notifications/server.php"
PREFIX = "laravel_database_"


def start(php_server, script, redis_server, banner):
    srv = php_server(script, env={"SURGE_HOST": "127.0.0.1", "SURGE_REDIS": redis_server.url})
    assert str(srv.port) in srv.wait_output(banner)
    return srv


def numsub(redis_server, channel):
    return dict(redis_server.client.pubsub_numsub(channel))[channel]


def recv(ws):
    return json.loads(ws.recv(timeout=5))


# --- seed 000: the Laravel broadcast proxy -------------------------------------------------

def page(stack, srv, channel):
    """A page as in the article: connects with ?token=, sends {"channel", "event"}."""
    ws = stack.enter_context(connect(srv.url + "/?token=hello"))
    hello = recv(ws)
    assert hello["event"] == "connected"
    ws.send(json.dumps({"channel": channel, "event": "Message"}))
    assert recv(ws) == {"event": "subscribed", "channel": channel}
    return ws, hello["socket_id"]


def test_proxy_forwards_laravel_broadcasts_to_the_pages_of_the_channel(php_server, redis_server):
    srv = start(php_server, PROXY, redis_server, "Laravel broadcast proxy on ws://127.0.0.1:")
    eventually(lambda: redis_server.client.pubsub_numpat() == 1)
    with ExitStack() as stack:
        reader, reader_id = page(stack, srv, "message")
        writer, writer_id = page(stack, srv, "message")
        elsewhere, _ = page(stack, srv, "orders")

        # Exactly what the article's redis-cli PSUBSCRIBE showed Laravel publishing.
        payload = '{"event":"App\\\\Events\\\\Message","data":{"data":{"name":"\\u6728\\u5c0f\\u6487"},"socket":null},"socket":null}'
        assert redis_server.client.publish(PREFIX + "message", payload) == 1
        for ws in (reader, writer):
            assert recv(ws) == {"event": "App\\Events\\Message", "channel": "message", "data": {"data": {"name": "木小撇"}, "socket": None}}

        # broadcast(...)->toOthers() from the writer's request (X-Socket-ID) skips the writer.
        others = {"event": "App\\Events\\Message", "data": {"text": "hi", "socket": writer_id}, "socket": writer_id}
        redis_server.client.publish(PREFIX + "message", json.dumps(others))
        assert recv(reader)["data"] == {"text": "hi", "socket": writer_id}
        redis_server.client.publish(PREFIX + "orders", json.dumps({"event": "Shipped", "data": {"id": 7}, "socket": None}))
        assert recv(elsewhere) == {"event": "Shipped", "channel": "orders", "data": {"id": 7}}

        # Nothing else was pushed: the next thing each page gets is the answer to a bad request.
        for ws in (reader, writer, elsewhere):
            ws.send("not json")
            assert recv(ws)["event"] == "error"
        assert reader_id != writer_id


def test_proxy_keeps_serving_while_redis_is_down(php_server, redis_server):
    srv = start(php_server, PROXY, redis_server, "Laravel broadcast proxy")
    eventually(lambda: redis_server.client.pubsub_numpat() == 1)
    with ExitStack() as stack:
        ws, _ = page(stack, srv, "message")
        redis_server.kill()
        late, _ = page(stack, srv, "message")  # new pages still join
        redis_server.start()
        eventually(lambda: redis_server.client.pubsub_numpat() == 1, timeout=10)
        redis_server.client.publish(PREFIX + "message", json.dumps({"event": "Back", "data": [], "socket": None}))
        assert recv(ws) == recv(late) == {"event": "Back", "channel": "message", "data": []}
    assert srv.stderr().count("redis: connection to") == 1


# --- seed 001: per-user notifications ------------------------------------------------------

def tab(stack, srv, uid):
    return stack.enter_context(connect(f"{srv.url}/?uid={uid}"))


def test_notifications_reach_only_that_users_tabs(php_server, redis_server):
    srv = start(php_server, NOTIFY, redis_server, "User notifications on ws://127.0.0.1:")
    with ExitStack() as stack:
        first, second, other = tab(stack, srv, 1), tab(stack, srv, 1), tab(stack, srv, 2)
        eventually(lambda: numsub(redis_server, PREFIX + "push:message:1") == 1)
        eventually(lambda: numsub(redis_server, PREFIX + "push:message:2") == 1)

        # The article's Redis::publish('push:message:1', json_encode(['cnt' => $cnt])).
        assert redis_server.client.publish(PREFIX + "push:message:1", json.dumps({"cnt": 3})) == 1
        assert recv(first) == recv(second) == {"cnt": 3}
        redis_server.client.publish(PREFIX + "push:message:2", json.dumps({"cnt": 9}))
        assert recv(other) == {"cnt": 9}

        # A Laravel broadcast on the user's channel reaches the tabs as Laravel wrote it.
        event = json.dumps({"event": "App\\Events\\Unread", "data": {"cnt": 4}, "socket": None})
        redis_server.client.publish(PREFIX + "push:message:1", event)
        assert recv(first) == recv(second) == json.loads(event)

        # The article's echo, and nothing else was pushed to user 2.
        other.send("hello")
        assert other.recv(timeout=5) == "welcome, i heard you."
    assert "notify: push:message:1 {\"cnt\": 3}" in srv.stdout()


def test_a_users_channel_is_unsubscribed_when_their_last_tab_closes(php_server, redis_server):
    srv = start(php_server, NOTIFY, redis_server, "User notifications")
    channel = PREFIX + "push:message:5"
    with connect(f"{srv.url}/?uid=5") as first:
        with connect(f"{srv.url}/?uid=5"):
            eventually(lambda: numsub(redis_server, channel) == 1)
        srv.wait_output("closed")
        redis_server.client.publish(channel, '{"cnt":1}')
        assert json.loads(first.recv(timeout=5)) == {"cnt": 1}  # still subscribed for this tab
    eventually(lambda: numsub(redis_server, channel) == 0)


def test_notifications_need_a_uid(php_server, redis_server):
    srv = start(php_server, NOTIFY, redis_server, "User notifications")
    for query in ("", "?uid=", "?uid=abc"):
        with connect(srv.url + "/" + query) as ws:
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        assert ws.close_code == 4001 and "uid" in ws.close_reason
