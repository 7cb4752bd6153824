"""Native fan-out without Redis: broadcast, channels (join/leave/publish), and what a closing
connection leaves behind, through real WebSocket clients."""

import json
from contextlib import ExitStack

from fanout_client import Client, eventually, start_fanout
from rawws import RawClient


def clients(stack, srv, n):
    return [stack.enter_context(Client(srv.url)) for _ in range(n)]


def test_broadcast_counts_skips_except_and_sends_the_same_bytes(php_server):
    srv = start_fanout(php_server)
    with ExitStack() as stack:
        a, b, c = clients(stack, srv, 3)
        assert a.call("broadcast", "hello all") == 3
        assert [x.recv() for x in (a, b, c)] == ["hello all"] * 3

        assert a.call("broadcast", "not for b", [b.fd]) == 2
        assert a.recv() == c.recv() == "not for b"
        b.assert_nothing_pushed()

        assert a.call("broadcast", "only c", [a.fd, b.fd, 987654]) == 1
        assert c.recv() == "only c"
        a.assert_nothing_pushed()
        b.assert_nothing_pushed()

        # A large text (a 64-bit length header) and a binary message arrive whole and identical.
        big = "é" * 100_000
        assert a.call("broadcast", big) == 3
        assert [x.recv() for x in (a, b, c)] == [big] * 3
        raw = bytes(range(256)) * 10
        assert a.call("broadcast", raw, [], 2, binary=0) == 3
        assert [x.recv() for x in (a, b, c)] == [raw] * 3


def test_broadcast_leaves_out_closed_connections(php_server):
    srv = start_fanout(php_server)
    with Client(srv.url) as a:
        gone = Client(srv.url)
        gone.close()
        eventually(lambda: f"close {gone.fd}" in srv.stdout())
        assert a.call("broadcast", "who is there") == 1
        assert a.recv() == "who is there"


def test_bad_broadcast_arguments_throw(php_server):
    srv = start_fanout(php_server)
    with Client(srv.url) as a:
        for method, args in (("broadcast", ["x", [], 7]), ("publish", ["room", "x", [], 8])):
            err = a.call_error(method, *args)
            assert err["exception"] == "Surge\\Exception" and f"opcode {args[-1]}" in err["message"]
        a.assert_nothing_pushed()


def test_join_leave_publish_and_the_lists(php_server):
    srv = start_fanout(php_server)
    with ExitStack() as stack:
        a, b, c = clients(stack, srv, 3)
        assert a.call("join", a.fd, "news") is True
        assert a.call("join", a.fd, "news") is False  # already a member
        assert a.call("join", b.fd, "news") is True
        assert a.call("join", b.fd, "sport") is True
        assert a.call("join", 987654, "news") is False  # no such connection

        assert a.call("channels") == {"news": 2, "sport": 1}
        assert a.call("members", "news") == sorted([a.fd, b.fd])
        assert a.call("members", "nobody-here") == []
        assert a.call("channelsOf", b.fd) == ["news", "sport"]
        assert a.call("channelsOf", c.fd) == []

        assert c.call("publish", "news", "headline") == 2
        assert a.recv() == b.recv() == "headline"
        c.assert_nothing_pushed()
        assert c.call("publish", "news", "for b", [a.fd]) == 1
        assert b.recv() == "for b"
        a.assert_nothing_pushed()
        assert c.call("publish", "sport", b"\x00\x01", [], 2, binary=1) == 1
        assert b.recv() == b"\x00\x01"
        assert c.call("publish", "nobody-here", "lost") == 0

        assert a.call("leave", b.fd, "sport") is True
        assert a.call("leave", b.fd, "sport") is False
        assert a.call("channels") == {"news": 2}  # an empty channel disappears
        assert a.call("leave", a.fd, "news") is True
        assert c.call("publish", "news", "again") == 1
        assert b.recv() == "again"
        a.assert_nothing_pushed()
        assert a.call("channelsOf", a.fd) == []


def test_a_closing_connection_leaves_all_its_channels(php_server):
    srv = start_fanout(php_server)
    with Client(srv.url) as a:
        b = Client(srv.url)
        for name in ("x", "y", "z"):
            assert b.call("join", b.fd, name)
        assert a.call("join", a.fd, "x")
        assert a.call("channels") == {"x": 2, "y": 1, "z": 1}
        b.close()
        eventually(lambda: a.call("channels") == {"x": 1})
        assert a.call("members", "x") == [a.fd]
        assert a.call("channelsOf", b.fd) == []
        assert a.call("publish", "x", "still here") == 1
        assert a.recv() == "still here"


def test_a_connection_is_no_longer_listed_once_it_starts_closing(php_server):
    """disconnect() of a member whose client does not answer the close frame yet: publish()
    leaves it out at once, and so do members(), channels() and channelsOf() (they listed it
    until its close handshake ended, up to 2 s: a kicked player still counted in its room)."""
    srv = start_fanout(php_server)
    with Client(srv.url) as a, RawClient(srv.port) as b:
        b.open()
        b_fd = json.loads(b.read_frame()[1])["fd"]
        for name in ("room", "alone"):
            assert a.call("join", b_fd, name)
        assert a.call("join", a.fd, "room")
        assert a.call("disconnect", b_fd, 4000, "kicked")
        assert a.call("members", "room") == [a.fd]
        assert a.call("channels") == {"room": 1}
        assert a.call("channelsOf", b_fd) == []
        assert a.call("publish", "room", "to a") == 1
        assert a.recv() == "to a"
        assert b.read_close() == (4000, "kicked")


def test_thousands_of_channels_are_left_on_close(php_server):
    srv = start_fanout(php_server)
    names = [f"room.{i}" for i in range(5000)]
    with Client(srv.url) as watcher:
        many = Client(srv.url)
        for name in names:
            many.send_call("join", many.fd, name)
        assert all(many.reply() is True for _ in names)
        assert watcher.call("join", watcher.fd, "room.4999")
        channels = watcher.call("channels")
        assert len(channels) == 5000 and channels["room.0"] == 1 and channels["room.4999"] == 2
        assert len(watcher.call("channelsOf", many.fd)) == 5000
        assert watcher.call("publish", "room.4999", "last room") == 2
        assert many.recv() == watcher.recv() == "last room"

        many.close()
        eventually(lambda: watcher.call("channels") == {"room.4999": 1})
        assert watcher.call("channelsOf", many.fd) == []
        assert watcher.call("leave", watcher.fd, "room.4999")
        assert watcher.call("channels") == []  # PHP's empty array


def test_publish_reaches_all_200_members(php_server):
    srv = start_fanout(php_server)
    with ExitStack() as stack:
        members = clients(stack, srv, 200)
        for m in members:
            m.send_call("join", m.fd, "crowd")
        assert all(m.reply() is True for m in members)
        outsider = stack.enter_context(Client(srv.url))
        assert outsider.call("members", "crowd") == sorted(m.fd for m in members)

        for i in range(3):
            assert outsider.call("publish", "crowd", f"wave {i}") == 200
        for m in members:
            assert [m.recv() for _ in range(3)] == ["wave 0", "wave 1", "wave 2"]
        outsider.assert_nothing_pushed()
