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
