"""A WebSocket client on a raw socket, for what a well-behaved client never does: unmasked or
malformed frames, half-sent handshakes, never answering pings. Well-behaved tests use the
`websockets` library instead."""

import base64
import os
import socket
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True, length: int | None = None) -> bytes:
    """Encodes one frame as a client would (masked), or not: `rsv` sets the reserved bits
    (0-7), `mask=False` leaves it unmasked, `length` announces another payload length."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class HttpReply:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body


# An opening handshake to send as it is, on many sockets before any answer is read (a burst).
UPGRADE_REQUEST = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def status_or_reset(sock) -> bytes:
    """The status code of the answer to a request sent on `sock`, or b"reset"."""
    try:
        return sock.recv(12)[9:12] or b"reset"
    except ConnectionResetError:
        return b"reset"


class RawClient:
    """One TCP connection to the server; every read fails after `timeout` seconds."""

    def __init__(self, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("the server closed the connection")
        self.buf += chunk

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_http(self) -> HttpReply:
        """Reads one HTTP response (status line, headers with lowercase names, body by
        content-length)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = self._take(int(headers.get("content-length", 0)))
        return HttpReply(status, headers, body)

    def handshake(self, path: str = "/", headers: dict | None = None, then: bytes = b"") -> HttpReply:
        """Sends an opening handshake (override or drop headers with `headers`, None drops)
        and reads the answer; on 101 the connection speaks WebSocket from then on. `then` goes
        out in the same write, right behind the request (a client's first frames)."""
        all_headers = {
            "Host": "127.0.0.1",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
            "Sec-WebSocket-Version": "13",
        }
        all_headers.update(headers or {})
        lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in all_headers.items() if v is not None]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + then)
        return self.read_http()

    def open(self, path: str = "/") -> "RawClient":
        reply = self.handshake(path)
        assert reply.status == 101, (reply.status, reply.body)
        return self

    def send_frame(self, opcode: int, payload: bytes = b"", **kw) -> None:
        self.send(frame(opcode, payload, **kw))

    def read_frame(self) -> tuple[int, bytes]:
        """Reads one server frame: (opcode, payload)."""
        first, payload = self.read_frame_first()
        return first & 0x0F, payload

    def read_frame_first(self) -> tuple[int, bytes]:
        """Reads one server frame: (its first byte: FIN, RSV bits and opcode, payload)."""
        b0, b1 = self._take(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._take(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._take(8))
        return b0, self._take(n)

    def read_close(self) -> tuple[int, str]:
        """Reads frames until the server's close frame (skipping pings); (code, reason)."""
        while True:
            opcode, payload = self.read_frame()
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                return code, payload[2:].decode()

    def wait_eof(self, timeout: float) -> float:
        """Reads (and drops) everything until the server closes the connection; returns the
        seconds that took. Fails if it is still open after `timeout`."""
        start = time.monotonic()
        try:
            while True:
                left = start + timeout - time.monotonic()
                if left <= 0:
                    raise socket.timeout
                self.sock.settimeout(left)
                if not self.sock.recv(65536):
                    break
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError(f"the server kept the connection open for {timeout}s") from None
        return time.monotonic() - start
