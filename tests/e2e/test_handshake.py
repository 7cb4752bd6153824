"""Swoole's `handshake` callback (tests/e2e/servers/handshake.php): PHP answers the WebSocket
handshake, letting the connection in with a 101 or refusing it with an answer of its own."""

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import settings_env


def refusal(url: str):
    """The HTTP answer that refused a handshake to `url`."""
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=5)
    return refused.value.response


def messages_until(ws, last: str) -> list:
    seen = []
    while not seen or seen[-1] != last:
        seen.append(ws.recv(timeout=5))
    return seen


@pytest.mark.parametrize("settings", [{}, {"worker_num": 2}], ids=["one_process", "worker_num_2"])
def test_a_handshake_callback_written_for_swoole_lets_in_and_refuses(php_server, settings):
    srv = php_server("handshake.php", env={"SURGE_SETTINGS": json.dumps(settings)})
    srv.wait_output("listening")
    with connect(srv.url + "/?token=secret&name=ann", subprotocols=["chat", "other"], open_timeout=5) as ws:
        # The client checked the Accept; PHP's other headers came along.
        assert ws.subprotocol == "chat"
        assert ws.response.headers["X-Handshake"] == "php"
        # Pushed right after end(), then the deferred open: in that order, and no open callback.
        fd = srv.wait_output("handshake ").split("handshake ")[1].split()[0]
        ws.send("hi")
        assert messages_until(ws, f"{fd}: hi") == ["welcome", "deferred open ann", f"{fd}: hi"]
    srv.wait_output(f"close {fd}, rows left 0")

    refused = refusal(srv.url + "/?token=wrong")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Token"
    assert refused.body == b"a token is needed\n"

    refused = refusal(srv.url + "/?token=throw")
    assert refused.status_code == 403
    assert b"refused" in refused.body
    srv.wait_output("uncaught RuntimeException in the handshake callback: no handshake today", stream="stderr")
    # With the stack trace, as PHP prints one: the callback, called from start().
    assert re.search(r"Stack trace:\n#0 \[internal function\]: \{closure\}\(Object\(Surge\\Http\\Request\), Object\(Surge\\Http\\Response\)\)\n"
                     r"#1 \S+/handshake\.php\(\d+\): Surge\\WebSocket\\Server->start\(\)\n#2 \{main\}\n", srv.stderr()), srv.stderr()
    # Still serving.
    with connect(srv.url + "/?token=secret&name=bob", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "welcome"


def test_a_handshake_callback_may_only_return(php_server):
    srv = php_server("handshake.php", env={"SURGE_HANDSHAKE": "return"})
    srv.wait_output("listening")
    with connect(srv.url + "/?token=cookie&name=cy", open_timeout=5) as ws:
        assert ws.response.headers["Set-Cookie"] == "session=abc; path=/"
        assert ws.recv(timeout=5) == "deferred open cy"
    refused = refusal(srv.url + "/?token=no")
    assert refused.status_code == 403
    assert refused.body == b"the handshake callback refused this connection\n"
    with connect(srv.url + "/?token=secret&name=dee", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "deferred open dee"
        ws.send("x")
        assert ws.recv(timeout=5).endswith(": x")
    # close($request->fd) in the callback: the connection ends with no answer, after
    # getClientInfo() said its fd asks for an upgrade (Swoole's WEBSOCKET_STATUS_CONNECTION).
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"GET /?token=close HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert sock.recv(100) == b""
    srv.wait_output("closed handshake: [1,true]\n")


def test_handshakes_waiting_when_the_callback_is_taken_away_get_the_open_callback(php_server):
    srv = php_server("handshake.php", env={"SURGE_HANDSHAKE": "return", "SURGE_SLOW_HANDSHAKE": "300"})
    srv.wait_output("listening")
    with ThreadPoolExecutor(2) as pool:
        last = pool.submit(connect, srv.url + "/?token=last", open_timeout=5)
        srv.wait_output("handshake ")
        waiting = pool.submit(connect, srv.url + "/?token=none", open_timeout=5)
        with last.result(), waiting.result() as ws:
            assert ws.recv(timeout=5) == "open callback ran"
    with connect(srv.url + "/?token=none", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "open callback ran"
    assert srv.stdout().count("handshake ") == 1


def test_a_connection_let_in_by_a_slow_handshake_callback_starts_its_idle_time_when_it_opens(php_server):
    """The callback takes 1.5 s, longer than heartbeat_idle_time (1 s): the connection it lets in
    was dropped at the first sweep after it opened (its idle time counted from its handshake's
    arrival), though its client had been quiet for no time at all."""
    settings = settings_env(heartbeat_idle_time=1, heartbeat_check_interval=0.25)
    srv = php_server("handshake.php", env={"SURGE_HANDSHAKE": "return", "SURGE_SLOW_HANDSHAKE": "1500", **settings})
    srv.wait_output("listening")
    with connect(srv.url + "/?token=secret", open_timeout=10) as ws:
        assert ws.recv(timeout=5) == "deferred open ?"
        time.sleep(0.6)
        ws.send("still here")
        assert ws.recv(timeout=5).endswith(": still here")


def test_a_client_gone_during_the_handshake_callback_is_forgotten(php_server):
    """A client that leaves while PHP decides: no connection is left behind, and the close
    callback undoes what the callback (and its deferred open) did for it, as Swoole's onClose
    would: the table kept their rows."""
    srv = php_server("handshake.php", env={"SURGE_HANDSHAKE": "return", "SURGE_SLOW_HANDSHAKE": "300"})
    srv.wait_output("listening")
    for n in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(
            b"GET /?token=secret&name=gone HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        # Gone while the callback runs (it takes 300 ms).
        deadline = time.monotonic() + 5
        while srv.stdout().count("handshake ") <= n:
            assert time.monotonic() < deadline, srv.stdout()
            time.sleep(0.02)
        s.close()
    deadline = time.monotonic() + 5
    while srv.stdout().count("close ") < 3:
        assert time.monotonic() < deadline, srv.stdout()
        time.sleep(0.02)
    closes = [line for line in srv.stdout().splitlines() if line.startswith("close ")]
    assert closes[-1].endswith("rows left 0"), closes
    with connect(srv.url + "/?token=secret&name=eve", open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "deferred open eve"
        ws.send("count")
        assert ws.recv(timeout=5).endswith(": count 1")


@pytest.mark.io_threads_only
def test_a_handshake_whose_client_left_while_it_waited_is_not_handed_to_php(php_server):
    """While one handshake holds PHP (300 ms), five clients ask to be let in and leave at once:
    the handshake callback does not run for them (it would answer nobody, ahead of the clients
    still waiting). With worker_threads 0 the engine reads that they left only once PHP is
    free, after it took their handshakes."""
    srv = php_server("handshake.php", env={"SURGE_HANDSHAKE": "return", "SURGE_SLOW_HANDSHAKE": "300"})
    srv.wait_output("listening")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(connect, srv.url + "/?token=secret&name=first", open_timeout=10)
        srv.wait_output("handshake ")
        for n in range(5):
            with socket.create_connection(("127.0.0.1", srv.port)) as gone:
                gone.sendall(
                    f"GET /?token=secret&name=gone{n} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n".encode()
                )
        with first.result(timeout=10), connect(srv.url + "/?token=secret&name=last", open_timeout=10) as ws:
            assert ws.recv(timeout=5) == "deferred open last"
    # The first client's and the last's.
    assert srv.stdout().count("handshake ") == 2, srv.stdout()


def test_websocket_subprotocol_is_agreed_when_the_client_asks_for_one_it_lists(php_server):
    """Swoole's `websocket_subprotocol`: a browser that asks for a subprotocol (graphql-ws,
    STOMP, MQTT clients do) fails the connection when the 101 names none."""
    srv = php_server("echo.php", env=settings_env(websocket_subprotocol=["graphql-transport-ws", "chat"]))
    with connect(srv.url, subprotocols=["superchat", "chat"], open_timeout=5) as ws:
        assert ws.subprotocol == "chat"
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
    # Not asked for: not answered (the client would refuse a subprotocol it did not ask for).
    for asked in ([], ["mqtt"]):
        with connect(srv.url, subprotocols=asked or None, open_timeout=5) as ws:
            assert ws.subprotocol is None
