"""Faults with real processes: a slow consumer, clients flooding a blocked PHP thread, SIGTERM
with thousands of busy clients, a PHP warning inside a callback, a burst of connections, large
messages."""

import asyncio
import contextlib
import hashlib
import http.client
import json
import random
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import settings_env
from rawws import OP_BINARY, OP_TEXT, RawClient, frame
from test_deflate import deflated


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def assert_php_wakes_with(control, messages: int, size: int) -> None:
    """slow_php.php's `sleep` (sent on `control`) ends, and PHP then gets `messages` messages of
    `size` bytes, every one."""
    assert control.recv(timeout=30) == "slept"
    expected = f"{messages} {messages * size}"
    deadline = time.monotonic() + 30
    while True:
        control.send("count")
        got = control.recv(timeout=10)
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == expected, "messages lost"


def test_clients_flooding_a_blocked_php_thread_are_held_back_nothing_lost(php_server):
    """PHP sleeps 3 s in a callback while 8 clients send 50 MiB each in 256 KiB messages: the
    messages waiting for PHP stay within the 64 MiB inbound budget (the event queue alone would
    hold 4096 of them, 1 GiB), TCP holds the clients back, and afterwards PHP gets every one."""
    srv = php_server("slow_php.php")
    base = rss_kib(srv.proc.pid)
    clients, count, size = 8, 200, 256 * 1024
    with connect(srv.url) as control:
        control.send("sleep")
        time.sleep(0.2)

        def flood():
            with connect(srv.url, max_size=None, close_timeout=30) as ws:
                for _ in range(count):
                    ws.send(b"x" * size)

        threads = [threading.Thread(target=flood) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a flooding client is stuck"
        assert_php_wakes_with(control, clients * count, size)
    grew = rss_kib(srv.proc.pid, "VmHWM") - base
    assert grew < 192 * 1024, f"peak RSS grew {grew} KiB while PHP was blocked"


def test_clients_whose_messages_wait_for_a_busy_php_still_get_its_pushes(php_server, tmp_path):
    """30 clients send 10 messages each to a callback that takes 2 ms and broadcasts 1 KB; the
    event queue holds 2 events, so most clients' readers wait for room most of the time. Their
    connections still write what PHP pushes: every client reads all 300 broadcasts and stays
    open. (A waiting reader's task wrote nothing, and clients that read everything were closed
    as slow consumers, 1008, once 16 KiB had piled up for them.)"""
    script = tmp_path / "busy_broadcast.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'event_queue_size' => 2, 'socket_buffer_size' => 16384]);
        $s->on('message', function ($s, $frame) {
            usleep(2000);
            $s->broadcast(str_repeat('x', 1000));
        });
        $s->start();
    """)
    srv = php_server(script)
    clients, messages = 30, 10
    everyone = clients * messages

    async def client(ready, go):
        async with aconnect(srv.url, max_queue=None, ping_interval=None) as ws:
            ready.release()
            await go.wait()
            for _ in range(messages):
                await ws.send("m")
            got = 0
            try:
                while got < everyone:
                    await asyncio.wait_for(ws.recv(), 30)
                    got += 1
            except ConnectionClosed as closed:
                return got, closed.rcvd and (closed.rcvd.code, closed.rcvd.reason)
            return got, None

    async def main():
        ready, go = asyncio.Semaphore(0), asyncio.Event()
        tasks = [asyncio.create_task(client(ready, go)) for _ in range(clients)]
        for _ in range(clients):
            await ready.acquire()
        go.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert results == [(everyone, None)] * clients, srv.stderr()[-2000:]
    assert "slow consumer" not in srv.stderr()


def test_the_heartbeat_leaves_clients_whose_messages_wait_for_php(php_server):
    """PHP sleeps 3 s in a callback; meanwhile 6 clients send 3 messages each, and with an event
    queue of 2 most of their readers wait for room, reading nothing more. That wait is the
    server's: the heartbeat (idle time 2 s) dropped those clients as silent, and their messages
    never reached PHP. Now PHP gets all 18 and every client stays."""
    settings = settings_env(event_queue_size=2, heartbeat_idle_time=2, heartbeat_check_interval=0.5)
    srv = php_server("slow_php.php", env=settings)
    with connect(srv.url) as control, contextlib.ExitStack() as stack:
        control.send("sleep")
        time.sleep(0.2)
        clients = [stack.enter_context(connect(srv.url)) for _ in range(6)]
        for ws in clients:
            for _ in range(3):
                ws.send("m")
        assert_php_wakes_with(control, 18, 1)
        for ws in clients:
            ws.send("count")
            assert ws.recv(timeout=10) == "18 18"


def test_compressed_messages_that_inflate_large_wait_in_bounded_memory(php_server):
    """With websocket_compression, 400 clients each send 2 KB that inflate to 2 MiB while PHP
    sleeps 3 s. Each was held inflated while it waited for PHP: 800 MiB, for 800 KB sent. Now a
    message past 64 KiB inflates on only in one of 32 slots, so the peak grows by what the slots
    and the inbound budget hold (128 MiB) and 80 KiB a connection; PHP then gets every one."""
    srv = php_server("slow_php.php", env=settings_env(websocket_compression=True))
    base = rss_kib(srv.proc.pid)
    clients, size = 400, 2 * 1024 * 1024 - 1024
    packed = deflated(bytes(size))
    assert len(packed) < 4096
    with connect(srv.url) as control:
        control.send("sleep")
        time.sleep(0.2)
        raws = [RawClient(srv.port) for _ in range(clients)]
        for raw in raws:
            offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
            assert raw.handshake(headers=offer, then=frame(OP_BINARY, packed, rsv=4)).status == 101
        assert_php_wakes_with(control, clients, size)
        for raw in raws:
            raw.close()
    grew = rss_kib(srv.proc.pid, "VmHWM") - base
    assert grew < 320 * 1024, f"peak RSS grew {grew} KiB"


def test_a_large_compressed_message_that_stops_coming_gives_its_slot_up(php_server):
    """At a package_max_length of 64 MiB there is one slot for compressed messages past 64 KiB:
    a client that sent half of one and stopped held it for ever, and another client's large
    message waited until the heartbeat dropped that client as idle. Now the first is closed
    (1008) 30 s after it took the slot, and the second's message goes through."""
    srv = php_server("echo.php", env=settings_env(websocket_compression=True, package_max_length=64 << 20))
    text = "a" * (1 << 20)
    whole = frame(OP_TEXT, deflated(text.encode()), rsv=4)
    with RawClient(srv.port, timeout=45) as stalled:
        offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
        assert stalled.handshake(headers=offer, then=whole[: len(whole) // 2]).status == 101
        time.sleep(0.5)
        with connect(srv.url, max_size=None, ping_interval=None) as waiting:
            waiting.send(text)
            began = time.monotonic()
            assert waiting.recv(timeout=45) == text
            waited = time.monotonic() - began
        assert stalled.read_close() == (1008, "message too slow")
    assert waited > 20, "the second message waited for the first one's slot"


def test_memory_large_messages_took_is_given_back_once_they_stop(php_server, tmp_path):
    """Four clients stream 2 MB messages for 3 s into a callback that takes 20 ms: once PHP has
    handled them, the server's RSS falls back to near where it started (glibc kept what they
    took in its heaps: 44 MB of 63, with no message or connection left, until 256 connections
    had come or gone)."""
    script = tmp_path / "slow_messages.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn']);
        $s->on('message', function ($s, $frame) {
            if ($frame->data === 'done?') {
                $s->push($frame->fd, 'done');
            } else {
                usleep(20000);
            }
        });
        $s->start();
    """)
    srv = php_server(script)
    time.sleep(0.5)
    base = rss_kib(srv.proc.pid)
    stop = time.monotonic() + 3

    def stream():
        with RawClient(srv.port, timeout=1) as raw:
            raw.open()
            message = frame(0x2, b"y" * 2_000_000)
            while time.monotonic() < stop:
                try:
                    raw.sock.sendall(message)
                except TimeoutError:
                    pass

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    grew = rss_kib(srv.proc.pid) - base
    assert grew > 32 * 1024, f"the messages took only {grew} KiB: the test measures nothing"
    with connect(srv.url, open_timeout=10) as ws:
        ws.send("done?")
        assert ws.recv(timeout=60) == "done"
    deadline = time.monotonic() + 10
    while (kept := rss_kib(srv.proc.pid) - base) > 16 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kept <= 16 * 1024, f"RSS still {kept} KiB above where it started ({grew} KiB at the most)"


def test_memory_large_messages_took_is_given_back_while_a_timer_pushes_on(php_server, tmp_path):
    """Eight clients send 1-2 MB messages for 3 s into a callback that takes 50 ms, then stay,
    while a 500 ms timer pushes to every client: once PHP has answered them all, RSS falls back
    near where it started; twice (the ticks made every second look busy, and often 30 MB
    stayed for a minute)."""
    script = tmp_path / "ticking.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'package_max_length' => 4 << 20]);
        $s->on('workerStart', function ($s) {
            $s->tick(500, function () use ($s) {
                foreach ($s->connections as $fd) {
                    $s->push($fd, 'tick');
                }
            });
        });
        $s->on('message', function ($s, $frame) {
            usleep(50000);
            $s->push($frame->fd, 'ok');
        });
        $s->start();
    """)
    srv = php_server(script)
    time.sleep(0.5)
    base = rss_kib(srv.proc.pid)
    sizes = random.Random(7)

    async def send_then_wait(ws, payload: bytes, until: float):
        sent = 0
        while time.monotonic() < until:
            await ws.send(payload[: sizes.randint(1 << 20, 2 << 20)])
            sent += 1
        while sent:
            sent -= await asyncio.wait_for(ws.recv(), 120) == "ok"

    async def peak(until: float) -> int:
        most = 0
        while time.monotonic() < until:
            most = max(most, rss_kib(srv.proc.pid) - base)
            await asyncio.sleep(0.1)
        return most

    async def run():
        payload = random.Random(1).randbytes(2 << 20)
        # max_queue None: the ticks nobody reads must not stop a client reading its close.
        clients = await asyncio.gather(*(aconnect(srv.url, max_size=None, max_queue=None, ping_interval=None) for _ in range(8)))
        # Twice: glibc sometimes gives such a burst back by itself.
        for burst in (1, 2):
            until = time.monotonic() + 3
            grew, *_ = await asyncio.gather(peak(until), *(send_then_wait(ws, payload, until) for ws in clients))
            assert grew > 32 * 1024, f"the messages took only {grew} KiB: the test measures nothing"
            deadline = time.monotonic() + 10
            while (kept := rss_kib(srv.proc.pid) - base) > 16 * 1024 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert kept <= 16 * 1024, f"burst {burst}: RSS still {kept} KiB above where it started ({grew} KiB at the most)"
        await asyncio.gather(*(ws.close() for ws in clients))

    asyncio.run(run())


def test_memory_a_burst_of_connections_took_is_given_back_after_they_leave(php_server):
    """3000 clients connect at once, stay a moment and leave: the server's RSS falls back to
    near where it started (glibc alone would keep most of it in its heaps)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
    srv = php_server("echo.php", env=settings_env(log_level="info"))
    time.sleep(0.5)
    base = rss_kib(srv.proc.pid)

    async def burst() -> int:
        clients = await asyncio.gather(*(aconnect(srv.url, open_timeout=30) for _ in range(3000)))
        await asyncio.sleep(1)
        connected = rss_kib(srv.proc.pid)
        await asyncio.gather(*(ws.close() for ws in clients))
        return connected

    connected = asyncio.run(burst())
    grew = connected - base
    assert grew > 3000, f"3000 connections took only {grew} KiB: the test measures nothing"
    deadline = time.monotonic() + 10
    while (kept := rss_kib(srv.proc.pid) - base) > grew * 0.35 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kept <= grew * 0.35, f"RSS grew {grew} KiB with 3000 clients and still {kept} KiB after they left"


@pytest.mark.parametrize("compression", [None, "deflate"])
def test_large_messages_do_not_leave_their_connections_holding_their_size(php_server, compression):
    """200 clients each send a 512 KiB message (a text one of 2-, 3- and 4-byte characters for
    every other client) and get it back whole, then stay connected: their connections do not
    keep a buffer the size of the message (tungstenite kept one: 100 MiB here)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    srv = php_server("echo.php", env=settings_env(log_level="info", websocket_compression=compression is not None))
    # Measured: 2.7-3.9 MiB kept, about 2 MiB of it the allocator's whatever the count.
    size, limit = 512 * 1024, 10 * 1024
    text = ("é€😀" * (size // 9 + 1))[: size // 3]

    async def talk() -> int:
        clients = await asyncio.gather(
            *(aconnect(srv.url, max_size=None, open_timeout=30, compression=compression) for _ in range(200))
        )
        await asyncio.sleep(1)
        connected = rss_kib(srv.proc.pid)
        for i, ws in enumerate(clients):
            message = text if i % 2 else bytes([i % 251]) * size
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 30) == message, f"client {i} got another message back"
        deadline = time.monotonic() + 10
        while (kept := rss_kib(srv.proc.pid) - connected) > limit and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.gather(*(ws.close() for ws in clients))
        return kept

    kept = asyncio.run(talk())
    assert kept <= limit, f"200 connections took {kept} KiB more for good after one 512 KiB message each"


def test_a_large_file_is_sent_without_being_held_in_memory(php_server, tmp_path):
    """sendfile() of a 256 MiB file to a client that pauses after the first MiB: the server reads
    the file as the client takes it, so its memory stays where it was, and the client then gets
    every byte."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    size, marks = 256 << 20, {0: b"first", (128 << 20) + 7: b"middle", (256 << 20) - 4: b"last"}
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(size)  # sparse: zeros, but for the marks
        for offset, mark in marks.items():
            f.seek(offset)
            f.write(mark)
    base = rss_kib(srv.proc.pid)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/file?" + urllib.parse.urlencode({"path": big}))
    res = conn.getresponse()
    assert (res.status, res.headers["Content-Length"]) == (200, str(size))
    got = bytearray(res.read(1 << 20))
    time.sleep(1)  # room for a server that would read on without waiting for the client
    assert rss_kib(srv.proc.pid) - base < 32 * 1024
    while piece := res.read(1 << 20):
        got += piece
    assert len(got) == size
    assert all(got[offset:offset + len(mark)] == mark for offset, mark in marks.items())


def test_a_large_upload_goes_to_disk_as_it_arrives(php_server, tmp_path):
    """A 96 MiB file in a multipart form (package_max_length raised to 128 MiB) is written to its
    temporary file as it arrives: the server's peak memory stays where it was, and PHP gets the
    whole file; a form over package_max_length gets 413 and leaves no file behind."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings = settings_env(package_max_length=128 << 20, upload_tmp_dir=str(uploads))
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings})

    def upload(size):
        big = tmp_path / f"big{size}.bin"
        with open(big, "wb") as f:
            f.truncate(size)  # sparse: zeros, but for the marks
            for offset in (0, size // 2, size - 4):
                f.seek(offset)
                f.write(b"mark")
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-F", f"doc=@{big}", srv.http + "/digest"],
                             capture_output=True, text=True, timeout=60)
        body, status = out.stdout.rsplit("\n", 1)
        return int(status), body, hashlib.md5(big.read_bytes()).hexdigest()

    base = rss_kib(srv.proc.pid)
    status, body, md5 = upload(96 << 20)
    assert status == 200, body
    assert json.loads(body) == [96 << 20, md5, ""]
    assert rss_kib(srv.proc.pid, "VmHWM") - base < 32 * 1024
    status, body, _ = upload(130 << 20)
    assert (status, body) == (413, "request body over package_max_length (134217728 bytes)\n")
    assert list(uploads.iterdir()) == []


def test_slow_consumer_is_closed_with_1008_others_unaffected_rss_bounded(php_server):
    limit = 1 << 20
    srv = php_server("faults.php", env=settings_env(socket_buffer_size=limit))
    base = rss_kib(srv.proc.pid)
    slow = RawClient(srv.port, timeout=10).open()
    slow.send_frame(OP_TEXT, b"flood")
    peak = base
    with connect(srv.url) as other:
        worst = 0.0
        deadline = time.monotonic() + 20
        while "flood stopped" not in srv.stdout() and time.monotonic() < deadline:
            start = time.monotonic()
            other.send("ping")
            assert other.recv(timeout=5) == "ping"
            worst = max(worst, time.monotonic() - start)
            peak = max(peak, rss_kib(srv.proc.pid))
            time.sleep(0.02)
        out = srv.stdout()
        assert "flood stopped" in out, out[-500:]
        assert worst < 0.5, f"another client waited {worst:.3f}s for its echo during the flood"
    pushed = int(out.split("flood stopped after ")[1].split()[0])
    assert limit <= pushed <= 64 * limit, pushed
    assert peak - base < 64 * 1024, f"RSS grew {peak - base} KiB during the flood"
    # The slow client now reads: what the kernel held, then the 1008 close (unmasked, from the
    # server: 0x88, length, code) and the end of the connection.
    slow.sock.settimeout(10)
    tail = b""
    while b"\x03\xf0slow consumer" not in tail:
        chunk = slow.sock.recv(1 << 20)
        assert chunk, "the connection ended without the 1008 close"
        tail = (tail + chunk)[-4096:]
    # Our answer to the close; the server then ends the connection.
    slow.send_frame(0x8, (1008).to_bytes(2, "big"))
    start = time.monotonic()
    while slow.sock.recv(1 << 20):
        pass
    assert time.monotonic() - start < 5
    slow.close()


def test_the_articles_loop_queues_one_frame_for_all_its_clients(php_server):
    """`foreach ($server->connections as $fd) $server->push($fd, $message)` of 8 MiB, to 20
    clients that read nothing: a message waits whole for the client until its sockets have
    taken it all (they take about 4 MiB), and each client held a copy of its own (160 MiB).
    Pushes of the same message now share one frame, as broadcast()'s do."""
    srv = php_server("echo.php")
    idle = [RawClient(srv.port).open() for _ in range(20)]
    try:
        with connect(srv.url, max_size=None) as ws:
            before = rss_kib(srv.proc.pid)
            ws.send("cmd:loop:8")
            assert len(ws.recv(timeout=30)) == 8 << 20
            assert json.loads(ws.recv(timeout=10)) == 21
            held = rss_kib(srv.proc.pid) - before
        assert held < 40 << 10, f"the server took {held} KiB more"
    finally:
        for client in idle:
            client.close()


@pytest.mark.parametrize("settings", [
    dict(heartbeat_check_interval=0.2, heartbeat_idle_time=1, ping_interval=0.5),
    {},
], ids=["heartbeat", "closed_with_1008"])
def test_a_client_that_reads_nothing_is_dropped_and_its_close_runs(php_server, settings):
    """The flood fills the socket of a client that reads nothing, and the write waits for room
    that never comes (the task waited on it for ever). The heartbeat's drop (nothing received
    for heartbeat_idle_time) ends the connection; so does its slow consumer's 1008, which waits
    behind that write: two seconds without progress on, the connection is dropped, as for a
    client that does not answer a close frame (it waited for the heartbeat: a minute by default,
    with its Table rows and presence). `close` runs either way."""
    srv = php_server("faults.php", env={**settings_env(socket_buffer_size=1 << 20, **settings), "SURGE_LOG_CLOSE": "1"})
    slow = RawClient(srv.port, timeout=10).open()
    try:
        slow.send_frame(OP_TEXT, b"flood")
        srv.wait_output("flood stopped", timeout=20)
        srv.wait_output("close ", timeout=10)
    finally:
        slow.close()


def test_a_client_that_reads_slowly_gets_all_of_a_large_message_before_its_close(php_server, tmp_path):
    """disconnect() right after a 6 MB push to a client that reads it slowly but steadily (a
    small receive buffer, 64 KiB every 50 ms: about 5 s): the close waits behind the write while
    the write goes on, so the client gets the whole message, then its close frame (a close
    waiting behind a write was given 2 s in all, and the client was cut halfway)."""
    script = tmp_path / "big_then_close.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn']);
        $s->on('message', function ($s, $frame) {
            $s->push($frame->fd, str_repeat('x', 6_000_000));
            $s->after(200, fn () => $s->disconnect($frame->fd, 4000, 'bye'));
        });
        $s->start();
    """)
    srv = php_server(script)
    raw = RawClient(srv.port, timeout=10)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    with raw:
        raw.open()
        raw.send_frame(OP_TEXT, b"go")
        got = b""
        while not got.endswith(b"bye"):
            time.sleep(0.05)
            chunk = raw.sock.recv(64 * 1024)
            assert chunk, f"the connection ended after {len(got)} bytes"
            got += chunk
    # The message (a 10-byte header, its bytes), then the close frame with its code and reason.
    assert len(got) == 10 + 6_000_000 + 2 + 2 + 3
    assert got.endswith(b"\x88\x05" + (4000).to_bytes(2, "big") + b"bye")


def test_a_message_that_takes_longer_than_heartbeat_idle_time_to_come_is_not_dropped(php_server):
    """A large message over a slow uplink: its bytes coming count as activity, so the heartbeat
    does not drop the client halfway (it counted only whole messages)."""
    settings = settings_env(heartbeat_check_interval=0.2, heartbeat_idle_time=1, ping_interval=0.5)
    srv = php_server("faults.php", env=settings)
    payload = b"x" * 32768
    whole = frame(OP_TEXT, payload)
    with RawClient(srv.port, timeout=10) as slow:
        slow.open()
        for i in range(0, len(whole), 1024):  # 32 pieces over 3.2 s
            slow.send(whole[i:i + 1024])
            time.sleep(0.1)
        assert slow.read_frame() == (OP_TEXT, payload)


def test_warning_in_a_callback_is_printed_and_the_server_goes_on(php_server):
    srv = php_server("faults.php")
    with connect(srv.url) as ws:
        ws.send("warn")
        assert ws.recv(timeout=5) == "after warning"
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    assert "undefined_variable" in srv.stderr() + srv.stdout()
    assert srv.proc.poll() is None


def test_sigterm_with_2000_busy_clients_all_get_1001_no_message_lost(php_server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 20000)), hard))
    clients = 2000
    srv = php_server("faults.php", env=settings_env(max_connection=10000, shutdown_timeout=5))

    async def run() -> tuple[list, list, float]:
        sent: list[str] = []
        codes: list = []
        signalled = asyncio.Event()

        async def client(i: int, ready: asyncio.Event) -> None:
            async with aconnect(srv.url, open_timeout=30, max_queue=None) as ws:
                ready.set()
                n = 0
                try:
                    while True:
                        msg = f"busy {i} {n}"
                        await ws.send(msg)
                        # Sent before the signal: it must reach PHP.
                        if not signalled.is_set():
                            sent.append(msg)
                        n += 1
                        await asyncio.sleep(0.5)
                except ConnectionClosed:
                    pass
                try:
                    await asyncio.wait_for(ws.wait_closed(), 15)
                finally:
                    codes.append(ws.close_code)

        readies = [asyncio.Event() for _ in range(clients)]
        tasks = []
        for i in range(clients):
            tasks.append(asyncio.create_task(client(i, readies[i])))
            if i % 100 == 99:
                await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 60)
        await asyncio.sleep(1.5)
        signalled.set()
        srv.signal(signal.SIGTERM)
        t0 = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        return sent, codes, t0

    sent, codes, t0 = asyncio.run(run())
    srv.wait(timeout=5 + 10)
    exited = time.monotonic() - t0
    assert exited < 5 + 5, f"exited {exited:.1f}s after SIGTERM (shutdown_timeout 5)"
    assert len(codes) == clients
    assert codes.count(1001) == clients, {c: codes.count(c) for c in set(codes)}
    received = {line[len("message "):] for line in srv.stdout().splitlines() if line.startswith("message busy")}
    lost = [m for m in sent if m not in received]
    assert len(sent) > clients * 2
    assert not lost, f"{len(lost)} of {len(sent)} messages sent before SIGTERM never reached PHP: {lost[:5]}"
