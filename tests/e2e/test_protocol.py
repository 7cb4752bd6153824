"""Bad input from the network: each gets the answer RFC 6455 (or HTTP) gives for it, and costs
the other clients nothing."""

import http.client
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import assert_serves, close_code, settings_env
from rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawClient, frame

LIMIT = 1024


@pytest.fixture
def echo(php_server):
    """echo.php with a small package_max_length and handshake_timeout, and one client that is
    connected all along, to show that the others' bad input costs it nothing."""
    srv = php_server("echo.php", env=settings_env(package_max_length=LIMIT, handshake_timeout=0.5))
    with connect(srv.url) as bystander:
        srv.bystander = bystander
        yield srv
        assert_serves(srv, bystander)


@pytest.mark.parametrize(
    "message",
    [b"x" * (LIMIT + 1), [b"x" * (LIMIT // 2 + 1)] * 2, b"x" * (LIMIT * 16384)],
    # The last one is still being sent when the server refuses it: the server reads and drops
    # the rest, or closing a socket with unread bytes would reset it and lose the close frame.
    ids=["one frame", "fragments adding up", "far over, still coming"],
)
def test_message_over_package_max_length_is_closed_with_1009(echo, message):
    with connect(echo.url) as ws:
        ws.send(b"x" * LIMIT)
        assert len(ws.recv(timeout=5)) == LIMIT, "a message of exactly the limit is accepted"
        try:
            ws.send(message)
        except ConnectionClosed:
            # The fragments: the server's close can arrive before websockets sends the final,
            # empty fragment it adds after the others, whose send then raises.
            pass
        assert close_code(ws) == 1009


def test_frames_sent_in_the_same_write_as_the_handshake_are_answered(echo):
    with RawClient(echo.port) as raw:
        reply = raw.handshake(then=frame(OP_TEXT, b"first") + frame(OP_BINARY, b"second"))
        assert reply.status == 101
        assert raw.read_frame() == (OP_TEXT, b"first")
        assert raw.read_frame() == (OP_BINARY, b"second")


def test_frame_announcing_too_much_is_closed_with_1009_before_its_payload(echo):
    with RawClient(echo.port) as raw:
        raw.open()
        raw.send(frame(OP_BINARY, length=10 * 1024 * 1024)[:14])
        assert raw.read_close()[0] == 1009


@pytest.mark.parametrize(
    "frames",
    [
        [frame(OP_TEXT, b"ok \xff\xfe")],
        [frame(OP_TEXT, "caf".encode(), fin=False), frame(OP_CONT, b"\xc3\x28")],
        [frame(OP_TEXT, b"\xed\xa0\x80")],  # an encoded UTF-16 surrogate
        [frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye \xff")],
    ],
    ids=["one frame", "in a continuation", "surrogate", "close reason"],
)
def test_invalid_utf8_text_is_closed_with_1007(echo, frames):
    with RawClient(echo.port) as raw:
        raw.open()
        raw.send(b"".join(frames))
        assert raw.read_close()[0] == 1007


def test_utf8_character_split_across_fragments_is_accepted(echo):
    with RawClient(echo.port) as raw:
        raw.open()
        raw.send(frame(OP_TEXT, b"caf\xc3", fin=False) + frame(OP_CONT, b"\xa9!"))
        assert raw.read_frame() == (OP_TEXT, "café!".encode())


@pytest.mark.parametrize(
    "bad",
    [
        frame(OP_TEXT, b"hi", mask=False),
        frame(OP_TEXT, b"hi", rsv=4),
        frame(OP_TEXT, b"hi", rsv=1),
        frame(0x3, b"hi"),
        frame(0xB, b"hi"),
        frame(OP_PING, b"hi", fin=False),
        frame(OP_PING, b"x" * 126),
        frame(OP_CONT, b"hi"),
        frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"),
        frame(OP_CLOSE, b"\x03"),
        frame(OP_CLOSE, struct.pack("!H", 1005)),
        frame(OP_CLOSE, struct.pack("!H", 999)),
    ],
    ids=[
        "unmasked",
        "rsv1 without extension",
        "rsv3",
        "unknown data opcode",
        "unknown control opcode",
        "fragmented ping",
        "ping over 125 bytes",
        "continuation without start",
        "new message inside a fragmented one",
        "one-byte close payload",
        "close code 1005 on the wire",
        "close code 999",
    ],
)
def test_protocol_error_is_closed_with_1002(echo, bad):
    with RawClient(echo.port) as raw:
        raw.open()
        raw.send_frame(OP_TEXT, b"before")
        assert raw.read_frame() == (OP_TEXT, b"before")
        raw.send(bad)
        assert raw.read_close()[0] == 1002
    echo.wait_output("close ")


def test_ping_is_answered_with_its_payload(echo):
    with RawClient(echo.port) as raw:
        raw.open()
        raw.send_frame(OP_PING, b"are you there")
        assert raw.read_frame() == (OP_PONG, b"are you there")


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"], ids=["nothing", "half the headers"])
def test_handshake_that_never_completes_is_dropped_after_handshake_timeout(echo, sent):
    with RawClient(echo.port) as raw:
        raw.send(sent)
        elapsed = raw.wait_eof(timeout=3)
    assert 0.4 <= elapsed < 1.5, elapsed


def assert_nothing_more_is_served(raw):
    """A refused handshake ends its connection: a proxy that opens a tunnel on seeing Upgrade,
    without looking for the 101, must not hand its client a raw connection to the server for
    what follows (WebSocket smuggling; a second request on it was answered)."""
    try:
        raw.send(b"GET /second HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        raw.sock.settimeout(3)
        rest = raw.buf + raw.sock.recv(65536)
    except (BrokenPipeError, ConnectionResetError):
        rest = b""
    assert rest == b"", rest


def test_wrong_websocket_version_gets_426_naming_version_13(echo):
    with RawClient(echo.port) as raw:
        reply = raw.handshake(headers={"Sec-WebSocket-Version": "8"})
        assert_nothing_more_is_served(raw)
    assert reply.status == 426
    assert reply.headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    "headers",
    [{"Sec-WebSocket-Key": None}, {"Sec-WebSocket-Key": "short"}, {"Connection": "keep-alive"}, {"Host": None},
     {"Host": "a\r\nHost: b"}],
    ids=["missing key", "malformed key", "no Connection: Upgrade", "no Host", "two Host headers"],
)
def test_bad_handshake_gets_400(echo, headers):
    with RawClient(echo.port) as raw:
        reply = raw.handshake(headers=headers)
        assert_nothing_more_is_served(raw)
    assert reply.status == 400
    assert "upgrade" not in reply.headers


def test_a_request_names_its_host_once_or_gets_400(php_server):
    """RFC 9112 3.2: an HTTP/1.1 request without Host, or any with two (which a proxy and PHP
    may read differently), is refused, and its connection closed; HTTP/1.0 needs none."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    for head, status in [(b"GET / HTTP/1.1\r\n", 400), (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n", 400),
                         (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n", 400), (b"GET / HTTP/1.0\r\n", 201),
                         (b"GET / HTTP/1.1\r\nHost: a\r\n", 201)]:
        with RawClient(srv.port) as raw:
            raw.send(head + b"\r\n")
            reply = raw.read_http()
            assert reply.status == status, head
            if status == 400:
                assert_nothing_more_is_served(raw)


def test_http_body_over_package_max_length_gets_413(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(package_max_length=LIMIT)})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(srv.http + "/", data=b"x" * (LIMIT + 1)), timeout=5)
    assert err.value.code == 413
    with urllib.request.urlopen(urllib.request.Request(srv.http + "/", data=b"x" * LIMIT), timeout=5) as res:
        assert res.status == 201


@pytest.mark.parametrize("chunked", [False, True])
def test_a_client_that_sends_a_body_over_package_max_length_whole_reads_the_413(php_server, chunked):
    """As nginx in front (and simple clients) do: the whole body is sent before the answer is
    read. Closed at once with the body still arriving, the connection was reset: the client's
    write failed, it never read the 413, and nginx answered 502."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(package_max_length=1 << 20)})
    body = b"x" * (8 << 20)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n".encode())
        sock.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body)
        reply = http.client.HTTPResponse(sock)
        reply.begin()
        assert reply.status == 413 and b"package_max_length" in reply.read()
    assert_serves(srv)


@pytest.mark.parametrize("content_type, part", [
    ("text/plain", b"only part of it"),
    # A form's file is written as it arrives: the pause counts, not the time the whole takes.
    ("multipart/form-data; boundary=XyZ", b'--XyZ\r\nContent-Disposition: form-data; name="doc"; filename="a"\r\n\r\npart'),
])
def test_http_body_that_stops_arriving_gets_408_after_handshake_timeout(php_server, content_type, part):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(handshake_timeout=0.5)})
    with RawClient(srv.port) as raw:
        raw.send(f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n".encode() + part)
        start = time.monotonic()
        reply = raw.read_http()
        assert (reply.status, reply.headers.get("connection")) == (408, "close")
        raw.wait_eof(timeout=1)
        assert 0.4 <= time.monotonic() - start < 1.5
    assert_serves(srv)


def test_http_body_slower_in_all_than_handshake_timeout_but_never_pausing_is_taken(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(handshake_timeout=0.5)})
    with RawClient(srv.port) as raw:
        raw.send(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n")
        # Ten bytes over 1.5 s, three times handshake_timeout: no pause as long as it.
        for _ in range(10):
            time.sleep(0.15)
            raw.send(b"x")
        assert raw.read_http().status == 201


def test_http_body_announced_over_package_max_length_is_refused_before_it_is_sent(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(package_max_length=LIMIT)})
    with RawClient(srv.port) as raw:
        # As curl uploads a large file: it waits for 100 Continue before it sends the body.
        raw.send(f"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {LIMIT + 1}\r\nExpect: 100-continue\r\n\r\n".encode())
        reply = raw.read_http()
        assert reply.status == 413, "not 100 Continue"
        assert b"package_max_length" in reply.body
        assert reply.headers.get("connection") == "close", "the connection is not kept for another request"
    # An HTTP/1.0 client asking for keep-alive is not told both close and keep-alive.
    with RawClient(srv.port) as raw:
        raw.send(f"PUT / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\nContent-Length: {LIMIT + 1}\r\n\r\n".encode())
        reply = raw.read_http()
        assert reply.status == 413 and "keep-alive" not in reply.headers.get("connection", ""), reply.headers
        raw.wait_eof(timeout=5)


def test_past_max_connection_new_connections_get_503_until_one_leaves(php_server):
    srv = php_server("echo.php", env=settings_env(max_connection=2))
    with connect(srv.url) as first:
        with connect(srv.url) as second:
            with RawClient(srv.port) as refused:
                reply = refused.handshake()
                assert reply.status == 503
                assert b"max_connection" in reply.body
                refused.wait_eof(timeout=2)
            with pytest.raises(InvalidStatus) as err:
                connect(srv.url, open_timeout=5)
            assert err.value.response.status_code == 503
            for ws in (first, second):
                ws.send("still here")
                assert ws.recv(timeout=5) == "still here"
        srv.wait_output("close ")
        with connect(srv.url) as third:
            third.send("in")
            assert third.recv(timeout=5) == "in"
