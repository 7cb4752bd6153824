"""permessage-deflate (RFC 7692) with the websocket_compression setting: negotiated per
connection by real clients (Python websockets offers it by default), compressed both ways, and
a broadcast reaching deflate and plain clients alike. Autobahn's sections 12 and 13 are in
test_autobahn.py."""

import os
import zlib

from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from conftest import assert_serves, close_code, settings_env
from rawws import OP_CLOSE, OP_TEXT, RawClient, frame

ON = settings_env(websocket_compression=True)
RSV1 = 0x40


def deflated(data: bytes) -> bytes:
    """`data` as a client compresses a message: raw deflate, sync-flushed, without the flush's
    last 4 bytes (RFC 7692 7.2.1)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert packed.endswith(b"\x00\x00\xff\xff")
    return packed[:-4]


def deflate_of(ws):
    """The permessage-deflate extension the client negotiated, or None."""
    (ext,) = ws.protocol.extensions or [None]
    return ext


def test_off_by_default_no_extension_is_answered(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        assert deflate_of(ws) is None
        ws.send("x" * 5000)
        assert ws.recv(timeout=5) == "x" * 5000


def test_python_client_negotiates_and_large_text_round_trips(php_server):
    srv = php_server("echo.php", env=ON)
    with connect(srv.url, max_size=None) as ws:
        answer = ws.response.headers["Sec-WebSocket-Extensions"]
        assert answer == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        assert deflate_of(ws).name == "permessage-deflate"
        text = "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n" for i in range(20000))
        for message in [text, "short", text[:300], "é" * 1000]:
            ws.send(message)
            assert ws.recv(timeout=10) == message
        ws.send(text.encode())
        assert ws.recv(timeout=10) == text.encode()


def test_server_frames_are_compressed_on_the_wire(php_server):
    srv = php_server("echo.php", env=ON)
    with RawClient(srv.port) as raw:
        reply = raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=10"})
        assert reply.status == 101
        assert reply.headers["sec-websocket-extensions"].endswith("server_max_window_bits=10")
        # Every message has RSV1; only one of 128 bytes or more that fits the 1024-byte window is
        # compressed, the others are in stored blocks (6 bytes more). One inflate stream reads
        # them all, as a browser's does: each message must end between deflate blocks.
        small, within, beyond = "hi", "abc" * 300, "abc" * 400
        inflate = zlib.decompressobj(-10)
        for text in [small, within, beyond, small]:
            raw.send_frame(OP_TEXT, text.encode())
            first, payload = raw.read_frame_first()
            assert first == 0x80 | RSV1 | OP_TEXT, hex(first)
            assert (len(payload) < 100) if text is within else (len(payload) == len(text) + 6)
            assert inflate.decompress(payload + b"\x00\x00\xff\xff") == text.encode()


def test_broadcast_reaches_deflate_and_plain_clients_with_the_same_text(php_server):
    srv = php_server("echo.php", env=ON)
    text = "news: " + "all the same bytes for everyone " * 100
    with connect(srv.url) as packed, connect(srv.url, compression=None) as plain:
        assert deflate_of(packed) is not None and deflate_of(plain) is None
        packed.send(f"cmd:broadcast:{text}")
        assert packed.recv(timeout=5) == text
        assert packed.recv(timeout=5) == "2", "the command's answer: how many got it"
        assert plain.recv(timeout=5) == text


def test_an_offer_we_cannot_honour_falls_back_to_the_next(php_server):
    srv = php_server("echo.php", env=ON)
    # websockets offers server_max_window_bits=8 then plain permessage-deflate: the first
    # parameter is wrong here (unknown), so the second offer is taken.
    with RawClient(srv.port) as raw:
        reply = raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=12"})
        assert reply.headers["sec-websocket-extensions"].endswith("server_max_window_bits=12")
    with connect(srv.url, extensions=[ClientPerMessageDeflateFactory(server_max_window_bits=9)]) as ws:
        assert deflate_of(ws).remote_max_window_bits == 9
        ws.send("ok" * 2000)
        assert ws.recv(timeout=5) == "ok" * 2000


def test_decompression_bomb_is_closed_with_1009_and_others_are_served(php_server):
    srv = php_server("echo.php", env=settings_env(websocket_compression=True, package_max_length=1 << 20))
    with connect(srv.url) as bystander, connect(srv.url, max_size=None) as bomber:
        # 64 MiB of zeros is about 64 KiB compressed: the server inflates 1 MiB and stops.
        bomber.send(bytes(64 << 20))
        assert close_code(bomber) == 1009
        assert_serves(srv, bystander)


def test_random_bytes_just_under_the_limit_are_accepted_compressed_as_plain(php_server):
    # Deflate makes random bytes larger: websockets (zlib's memLevel 5) by about 0.25%, so 100
    # bytes under package_max_length (2 MiB) is about 5 KiB over it compressed.
    srv = php_server("echo.php", env=ON)
    data = os.urandom((2 << 20) - 100)
    with connect(srv.url, max_size=None) as packed, connect(srv.url, max_size=None, compression=None) as plain:
        assert deflate_of(packed) is not None
        for ws in [packed, plain]:
            ws.send(data)
            assert ws.recv(timeout=10) == data


def test_garbage_in_a_compressed_message_is_closed_with_1007(php_server):
    srv = php_server("echo.php", env=ON)
    with RawClient(srv.port) as raw:
        assert raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"}).status == 101
        raw.send_frame(OP_TEXT, b"\xff" * 32, rsv=4)
        assert raw.read_close() == (1007, "invalid compressed data")


def test_a_message_before_a_bad_compressed_frame_in_the_same_write_is_delivered(php_server):
    srv = php_server("echo.php", env=ON)
    with RawClient(srv.port) as raw:
        assert raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"}).status == 101
        good = frame(OP_TEXT, deflated(b"sent before the bad frame"), rsv=4)
        raw.send(good + frame(OP_TEXT, b"\xff" * 32, rsv=4))
        assert raw.read_close() == (1007, "invalid compressed data")
        srv.wait_output("sent before the bad frame")


def test_a_message_cut_inside_a_deflate_block_is_closed_with_1007(php_server):
    srv = php_server("echo.php", env=ON)
    text = b"hello hello hello, surge deflates messages"
    whole = deflated(text)  # one block of fixed codes
    for cut in [5, 10, 24]:
        # A receiver that only appends 00 00 ff ff inflates these without an error (to the
        # message's start and a stray byte: "hellh" for 5).
        zlib.decompressobj(-15).decompress(whole[:cut] + b"\x00\x00\xff\xff")
        with RawClient(srv.port) as raw:
            assert raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"}).status == 101
            raw.send_frame(OP_TEXT, whole[:cut], rsv=4)
            first, payload = raw.read_frame_first()
            assert (first & 0x0F, payload[:2], payload[2:]) == (OP_CLOSE, (1007).to_bytes(2, "big"), b"invalid compressed data"), cut
    # Whole, it is echoed; so is an empty compressed message, and one with the whole flush.
    with RawClient(srv.port) as raw:
        assert raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"}).status == 101
        for payload, want in [(whole, text), (b"", b""), (whole + b"\x00\x00\xff\xff", text)]:
            raw.send_frame(OP_TEXT, payload, rsv=4)
            first, echoed = raw.read_frame_first()
            assert first == 0x80 | RSV1 | OP_TEXT, hex(first)
            assert zlib.decompressobj(-15).decompress(echoed + b"\x00\x00\xff\xff") == want
