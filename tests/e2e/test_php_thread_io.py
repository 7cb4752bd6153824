"""The server, channel, lifecycle, TLS, deflate, Pusher and Redis tests, and Autobahn's sections
1-10 with a sample of 12-13, again with `worker_threads` 0: no I/O threads, the PHP thread does
the network work itself between callbacks (and answers a message from the task that read it)."""

import pytest

from test_autobahn import test_autobahn_permessage_deflate_sections_12_and_13 as autobahn_deflate_cases
from test_autobahn import test_autobahn_sections_1_to_10  # noqa: F401
from test_channels import *  # noqa: F401,F403
from test_deflate import *  # noqa: F401,F403
from test_lifecycle import *  # noqa: F401,F403
from test_pusher import *  # noqa: F401,F403
from test_redis import *  # noqa: F401,F403
from test_server import *  # noqa: F401,F403
from test_tls import *  # noqa: F401,F403

# The one promise this mode does not keep: a blocking callback stalls all network work, every
# connection's and the Redis bridge's (Redis itself then drops a subscriber far behind).
del test_a_blocking_callback_does_not_stop_pings_and_heartbeats_of_others  # noqa: F821
del test_a_slow_redis_callback_under_a_flood_drops_instead_of_growing  # noqa: F821


@pytest.fixture(autouse=True)
def network_work_on_the_php_thread(monkeypatch):
    monkeypatch.setenv("SURGE_TEST_SETTINGS", '{"worker_threads": 0}')


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


def test_autobahn_permessage_deflate_sample(php_server, tmp_path, monkeypatch):
    # The sample of sections 12-13 (every kind of data and every offer): the whole of them
    # runs once, in the default mode (test_autobahn.py).
    monkeypatch.setenv("SURGE_AUTOBAHN_SAMPLE", "1")
    autobahn_deflate_cases(php_server, tmp_path)
