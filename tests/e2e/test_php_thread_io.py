"""The server, channel and lifecycle tests again with `worker_threads` 0: no I/O threads, the
PHP thread does the network work itself between callbacks."""

import pytest

from test_channels import *  # noqa: F401,F403
from test_lifecycle import *  # noqa: F401,F403
from test_server import *  # noqa: F401,F403

# The one promise this mode does not keep: a blocking callback stalls every connection.
del test_a_blocking_callback_does_not_stop_pings_and_heartbeats_of_others  # noqa: F821


@pytest.fixture(autouse=True)
def network_work_on_the_php_thread(monkeypatch):
    monkeypatch.setenv("SURGE_TEST_SETTINGS", '{"worker_threads": 0}')
