"""What is particular to `worker_threads` 0, where no I/O threads run and the PHP thread does the
network work itself between callbacks (and answers a message from the task that read it). The
server, channel, lifecycle, TLS, deflate, Pusher, Redis and Autobahn tests run in this mode too
(conftest.py, IN_BOTH_IO_MODES)."""

import pytest

pytestmark = pytest.mark.parametrize("io_mode", ["php_thread"], indirect=True)


def test_a_message_right_behind_the_handshake_still_comes_after_open(php_server):
    # The connection task runs message callbacks itself here, but only when no event waits in
    # the queue: the open event queued by the handshake must come first.
    from rawws import OP_TEXT, RawClient, frame

    srv = php_server("echo.php")
    with RawClient(srv.port) as raw:
        assert raw.handshake(then=frame(OP_TEXT, b"first") + frame(OP_TEXT, b"second")).status == 101
        assert raw.read_frame() == (OP_TEXT, b"first")
        assert raw.read_frame() == (OP_TEXT, b"second")
    events = [line.split(" ")[0] for line in srv.wait_output("message").splitlines() if line.startswith(("open", "message"))]
    assert events == ["open", "message", "message"]


def test_a_client_whose_messages_keep_php_busy_does_not_hold_up_the_others(php_server):
    """One client sends 150 messages of 20 ms each (3 s of PHP) in one go, which its task finds
    already read and runs one after another. It lets the others have a turn every few ms: a new
    client is let in and its ping answered while the burst still runs (the whole burst ran first:
    400 such messages kept every handshake and ping waiting 8 s, and the heartbeat dropped idle
    clients whose pongs waited unread)."""
    from websockets.sync.client import connect

    from rawws import OP_TEXT, RawClient, frame

    srv = php_server("echo.php")
    with RawClient(srv.port) as flood:
        assert flood.handshake().status == 101
        flood.send(b"".join(frame(OP_TEXT, b"cmd:sleep:20") for _ in range(150)))
        srv.wait_output("slept ")
        with connect(srv.url, open_timeout=10) as other:
            assert other.ping().wait(timeout=10)
            ran = srv.stdout().count("slept ")
    assert ran < 100, srv.stdout()


def test_a_push_and_disconnect_to_a_client_that_reads_nothing_ends_soon(php_server, tmp_path):
    """Here the push and the close frame a callback queues go out in one write, which a client
    that reads nothing never lets end: two seconds without progress, and the connection is
    dropped and `close` runs (it waited for the heartbeat: a minute)."""
    from rawws import OP_TEXT, RawClient

    script = tmp_path / "push_and_close.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'worker_threads' => 0]);
        $s->on('message', function ($s, $frame) {
            $s->push($frame->fd, str_repeat('x', 12_000_000));
            $s->disconnect($frame->fd, 4000, 'bye');
        });
        $s->on('close', function ($s, $fd) { echo "close $fd\\n"; });
        $s->start();
    """)
    srv = php_server(script)
    with RawClient(srv.port) as raw:
        raw.open()
        raw.send_frame(OP_TEXT, b"go")
        srv.wait_output("close ", timeout=10)


@pytest.mark.parametrize("answer", ["echo", "pong"])
def test_a_kick_while_an_answer_waits_on_a_client_that_reads_nothing_ends_soon(php_server, tmp_path, answer):
    """Here the task that read a message writes its answer itself (the callback's echo, a pong)
    straight after: a client that sends and reads nothing makes one of those wait for room for
    good. A disconnect() asked meanwhile (from another client's callback) gives up on it after
    two seconds without progress, as behind the outbox's writes, and `close` runs (it waited for
    the heartbeat: a minute)."""
    import socket

    from rawws import OP_PING, OP_TEXT, RawClient, frame

    script = tmp_path / "echo_and_kick.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'worker_threads' => 0]);
        $s->on('open', function ($s, $req) { echo "open {$req->fd}\\n"; });
        $s->on('message', function ($s, $frame) {
            if (str_starts_with($frame->data, 'kick:')) {
                $s->disconnect((int) substr($frame->data, 5), 4009, 'kicked');
                return;
            }
            $s->push($frame->fd, $frame->data);
        });
        $s->on('close', function ($s, $fd) { echo "close $fd\\n"; });
        $s->start();
    """)
    srv = php_server(script)
    one = frame(OP_TEXT, b"x" * 60_000) if answer == "echo" else frame(OP_PING, b"p" * 125)
    with RawClient(srv.port, timeout=3) as flood:
        flood.open()
        fd = srv.wait_output("open ").split()[-1]
        # Until the server stops reading: its answers fill the socket the client does not read.
        with pytest.raises(socket.timeout):
            for _ in range(2_000_000):
                flood.sock.sendall(one)
        with RawClient(srv.port) as kicker:
            kicker.open()
            kicker.send_frame(OP_TEXT, f"kick:{fd}".encode())
            srv.wait_output(f"close {fd}", timeout=10)
