"""Every public method of the extension called with hostile arguments (servers/hostile_calls.php):
the process must survive every call, each call must return what its method declares or throw,
and the server must go on serving while it happens."""

import socket

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import wait_for_port

PHASES = ["table", "table before create", "unstarted server", "settings", "serving server",
          "connections", "request", "response", "closing"]


def http_get(port: int) -> bytes:
    """The raw response to a GET (a header of hostile size would stop an HTTP library)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"GET /sweep HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_hostile_arguments_never_crash_and_every_return_has_its_declared_type(php_server):
    srv = php_server("hostile_calls.php", wait=False)
    wait_for_port(srv.port, srv.proc, timeout=120)  # the first phases run before start()
    with connect(srv.url, max_size=None, open_timeout=60) as ws:
        srv.wait_output("swept with a client", timeout=120)
        # What the sweep pushed with sane arguments arrived, and the connection still works.
        received = []
        try:
            while True:
                received.append(ws.recv(timeout=5))
        except TimeoutError:
            pass
        assert "hello" in received
        # Whatever message callback the sweep of on() left in place runs on this.
        ws.send("after the sweep")
        response = http_get(srv.port)
        # The closing phase swept disconnect() and close() with this client's fd.
        try:
            while True:
                ws.recv(timeout=30)
        except ConnectionClosed:
            pass
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    out = srv.wait_output("done", timeout=120)
    for phase in PHASES:
        assert f"sweep {phase}: " in out, out
    assert "wrong type" not in out, out
    assert srv.wait(timeout=60) == 0, srv.stderr()
    for crash in ("panicked", "Fatal error", "Segmentation"):
        assert crash not in srv.stderr(), srv.stderr()
