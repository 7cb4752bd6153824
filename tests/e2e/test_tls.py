"""TLS: with ssl_cert_file and ssl_key_file the port speaks wss:// and https://; plain clients
are told what is wrong and cost the others nothing; bad certificate files are named at start.

wss:// clients here are websockets' asyncio client: its threaded sync client reads and writes
one OpenSSL connection from two threads, and now and then loses the handshake request it wrote
while its reader thread takes the server's TLS 1.3 session ticket (about 1 connection in 60)."""

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect as wss_connect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import run_php, settings_env
from fanout_client import eventually
from rawws import OP_CLOSE, OP_TEXT, frame


@pytest.fixture
def tls_server(php_server, cert):
    def start(env=None, **settings):
        srv = php_server("echo.php", env={**settings_env(ssl_cert_file=str(cert[0]), ssl_key_file=str(cert[1]), **settings), **(env or {})})
        srv.wss = f"wss://127.0.0.1:{srv.port}"
        srv.ctx = ssl.create_default_context(cafile=str(cert[0]))
        return srv
    return start


def test_wss_echo_and_https_requests(tls_server):
    srv = tls_server(env={"SURGE_HTTP": "1"})

    async def echo():
        async with wss_connect(srv.wss, ssl=srv.ctx) as ws:
            await ws.send("over TLS")
            assert await asyncio.wait_for(ws.recv(), 5) == "over TLS"
            await ws.send(b"\x00\x01binary")
            assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01binary"
    asyncio.run(echo())
    with urllib.request.urlopen(f"https://127.0.0.1:{srv.port}/page?x=1", context=srv.ctx, timeout=5) as res:
        assert res.status == 201
        assert b'"uri":"\\/page"' in res.read()
    assert "listening on wss://" in srv.stderr()


def test_a_client_offering_only_http_1_0_is_served(tls_server):
    # curl --http1.0 (and PHP's curl asked for HTTP/1.0) offer ALPN http/1.0 alone: refused
    # with a fatal alert, they could not fetch anything.
    srv = tls_server(env={"SURGE_HTTP": "1"})
    srv.ctx.set_alpn_protocols(["http/1.0"])
    with srv.ctx.wrap_socket(socket.create_connection(("127.0.0.1", srv.port), timeout=5), server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.0"
        tls.sendall(b"GET /page HTTP/1.0\r\n\r\n")
        assert read_all(tls).startswith(b"HTTP/1.0 201 ")


def read_all(sock) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_the_certificate_and_its_key_may_come_in_two_set_calls(cert):
    # Swoole merges set() calls: a base configuration, then the TLS files when TLS is on.
    result = run_php(
        """<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['ssl_cert_file' => getenv('CERT')]);
        $s->set(['ssl_key_file' => getenv('KEY')]);
        $s->on('workerStart', fn ($s) => $s->shutdown());
        echo json_encode($s->start());
        """,
        env={"CERT": str(cert[0]), "KEY": str(cert[1])},
    )
    assert result.stdout == "true", result.stdout + result.stderr
    assert "listening on wss://" in result.stderr


def test_a_reload_while_the_key_does_not_load_leaves_the_workers_serving(php_server, cert, tmp_path):
    """A renewal writes the certificate and the key one after the other: a reload in between
    stopped worker 0 before anything read the pair, and its replacement could not serve (with
    one worker the port went dark). Task workers, which take no connection, read neither."""
    live_key = tmp_path / "live-key.pem"
    shutil.copy(cert[1], live_key)
    (tmp_path / "tmp").mkdir()
    srv = php_server("tasks.php", env={"TMPDIR": str(tmp_path / "tmp"), "SURGE_WORKERS": "1", "SURGE_TASKS": "1",
                                       **settings_env(ssl_cert_file=str(cert[0]), ssl_key_file=str(live_key))})
    srv.wait_output("workerStart 1 ")
    live_key.write_text("not written yet\n")
    srv.signal(signal.SIGUSR2)
    srv.wait_output("reload done", stream="stderr", timeout=15)
    srv.signal(signal.SIGUSR1)
    srv.wait_output("reload stopped before worker 0, which serves on: ssl_key_file", stream="stderr", timeout=15)
    ctx = ssl.create_default_context(cafile=str(cert[0]))

    async def task_over_wss():
        async with wss_connect(f"wss://127.0.0.1:{srv.port}", ssl=ctx) as ws:
            await ws.send("wait")
            return json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert asyncio.run(task_over_wss())["task"]["taskworker"] is True
    assert "could not start" not in srv.stderr()
    shutil.copy(cert[1], live_key)
    srv.signal(signal.SIGUSR1)
    eventually(lambda: srv.stderr().count("reload done") == 2, timeout=15)
    assert asyncio.run(task_over_wss())["task"]["taskworker"] is True


def test_a_closed_wss_connection_ends_with_close_notify(tls_server):
    """Both ways of closing end the TLS session as TLS says (close_notify), not with a bare TCP
    FIN, which a strict client (Python's ssl, suppress_ragged_eofs off) takes for a truncation."""
    srv = tls_server()
    for closing in [frame(OP_CLOSE, struct.pack("!H", 1000)), frame(OP_TEXT, b"cmd:disconnect:bye")]:
        raw = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        with srv.ctx.wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as tls:
            key = base64.b64encode(os.urandom(16)).decode()
            tls.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            tls.sendall(closing)
            got = b""
            while chunk := tls.recv(4096):  # raised SSLEOFError without close_notify
                got += chunk
            assert got.startswith(b"HTTP/1.1 101") and b"\x88" in got, got


def test_plain_clients_on_the_tls_port_are_told_and_others_keep_being_served(tls_server):
    srv = tls_server(handshake_timeout=0.5)

    async def scenario():
        async with wss_connect(srv.wss, ssl=srv.ctx) as bystander:
            with pytest.raises(InvalidStatus) as err:
                await asyncio.to_thread(connect, f"ws://127.0.0.1:{srv.port}", open_timeout=5)
            assert err.value.response.status_code == 400
            assert b"wss://" in err.value.response.body
            # A client that connects and says nothing is dropped after handshake_timeout.
            assert await asyncio.to_thread(seconds_until_dropped, srv.port) < 3
            # A TLS client that does not trust the certificate fails its handshake.
            with pytest.raises(ssl.SSLCertVerificationError):
                await wss_connect(srv.wss, ssl=ssl.create_default_context(), open_timeout=5)
            await bystander.send("still here")
            assert await asyncio.wait_for(bystander.recv(), 5) == "still here"
        async with wss_connect(srv.wss, ssl=srv.ctx) as fresh:
            await fresh.send("fresh")
            assert await asyncio.wait_for(fresh.recv(), 5) == "fresh"
    asyncio.run(scenario())


def seconds_until_dropped(port):
    """Connects, says nothing, and times how long until the server closes."""
    with socket.create_connection(("127.0.0.1", port)) as silent:
        silent.settimeout(5)
        started = time.monotonic()
        assert silent.recv(100) == b""
        return time.monotonic() - started


def test_past_max_connection_tls_clients_get_503_over_tls(tls_server):
    srv = tls_server(max_connection=1)

    async def one_too_many():
        async with wss_connect(srv.wss, ssl=srv.ctx):
            with pytest.raises(InvalidStatus) as err:
                await wss_connect(srv.wss, ssl=srv.ctx, open_timeout=5)
            return err.value.response
    refused = asyncio.run(one_too_many())
    assert refused.status_code == 503
    assert b"max_connection" in refused.body


def test_bad_certificate_files_are_named_at_start(cert, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(other / "key.pem"), "-out", str(other / "cert.pem"), "-days", "2", "-subj", "/CN=other"],
        check=True, capture_output=True,
    )
    encrypted = other / "encrypted.pem"
    subprocess.run(["openssl", "pkey", "-in", str(other / "key.pem"), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
                   check=True, capture_output=True)
    # The older encrypted PEM of `openssl genrsa -aes256` (a Proc-Type header), and an X.509 v1
    # certificate (`openssl x509 -req -signkey` without extensions), which rustls cannot read.
    legacy = other / "legacy.pem"
    subprocess.run(["openssl", "ec", "-in", str(cert[1]), "-aes256", "-passout", "pass:secret", "-out", str(legacy)],
                   check=True, capture_output=True)
    v1 = other / "v1.pem"
    csr = subprocess.run(["openssl", "req", "-new", "-key", str(cert[1]), "-subj", "/CN=v1"], check=True, capture_output=True).stdout
    subprocess.run(["openssl", "x509", "-req", "-signkey", str(cert[1]), "-days", "2", "-out", str(v1)],
                   input=csr, check=True, capture_output=True)
    cert_file, key_file = map(str, cert)
    cases = [
        (cert_file, str(encrypted), f"ssl_key_file '{encrypted}' is encrypted with a passphrase"),
        (str(tmp_path / "missing.pem"), key_file, "cannot read ssl_cert_file '" + str(tmp_path / "missing.pem")),
        (str(junk), key_file, f"ssl_cert_file '{junk}' holds no certificate"),
        (cert_file, cert_file, f"ssl_key_file '{cert_file}' holds no private key"),
        (cert_file, str(other / "key.pem"), f"ssl_key_file '{other / 'key.pem'}' cannot serve ssl_cert_file '{cert_file}'"),
        (cert_file, None, "'ssl_cert_file' and 'ssl_key_file' go together"),
        (cert_file, str(legacy), f"ssl_key_file '{legacy}' is encrypted with a passphrase"),
        (str(v1), key_file, f"ssl_cert_file '{v1}' cannot be served: Other(OtherError(UnsupportedCertVersion)) (if it is an X.509 v1"),
    ]
    for cert_arg, key_arg, expected in cases:
        settings = {"ssl_cert_file": cert_arg} | ({"ssl_key_file": key_arg} if key_arg else {})
        result = run_php(
            """<?php
            $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
            try { $s->set(json_decode(getenv('SETTINGS'), true)); $s->start(); echo "started\\n"; } catch (Surge\\Exception $e) { echo $e->getMessage(), "\\n"; }
            """,
            env={"SETTINGS": json.dumps(settings)},
        )
        assert expected in result.stdout, (expected, result.stdout, result.stderr)


def test_a_tls_handshake_under_way_does_not_hold_up_the_stop(tls_server):
    # A client that began its handshake (the first byte of a ClientHello) and stalls: the stop
    # drops it instead of waiting for it as for a request under way.
    srv = tls_server(shutdown_timeout=30, handshake_timeout=30)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as stalled:
        stalled.sendall(b"\x16\x03\x01")
        time.sleep(0.2)
        srv.signal(signal.SIGTERM)
        assert srv.wait(timeout=5) == 0
