"""A client of tests/e2e/servers/fanout.php: calls the server's methods over its WebSocket and
keeps apart the replies and the messages pushed to it (broadcasts, publishes, forwards)."""

import base64
import json
import time
from collections import deque

from websockets.sync.client import connect

FANOUT = "fanout.php"


def start_fanout(php_server, settings=None, subscribe=None, callback=True, callback_sleep_ms=0):
    """Starts fanout.php with these set() settings, channels subscribed before start(), and
    with or without a `redis` callback (that sleeps `callback_sleep_ms` per message)."""
    env = {"SURGE_SETTINGS": json.dumps(settings or {}), "SURGE_REDIS_SLEEP_MS": str(callback_sleep_ms)}
    if subscribe is not None:
        env["SURGE_SUBSCRIBE"] = json.dumps(subscribe)
    if not callback:
        env["SURGE_REDIS_CALLBACK"] = "0"
    srv = php_server(FANOUT, env=env)
    srv.wait_output("start ")
    return srv


class Client:
    def __init__(self, url: str, path: str = "/"):
        self.ws = connect(url + path, max_size=None).__enter__()
        hello = json.loads(self.ws.recv(timeout=5))
        self.fd, self.socket = hello["fd"], hello["socket"]
        self.pushed = deque()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.ws.close()

    def send_call(self, method: str, *args, binary: int | None = None) -> None:
        """Sends a call without waiting for its reply (to pipeline many); `binary` is the index
        of a bytes argument."""
        call = {"call": method, "args": list(args)}
        if binary is not None:
            call["args"][binary] = base64.b64encode(args[binary]).decode()
            call["binary"] = binary
        self.ws.send(json.dumps(call))

    def reply(self, timeout: float = 5):
        """The next reply; pushed messages received before it are kept for recv()."""
        while True:
            message = self.ws.recv(timeout=timeout)
            if isinstance(message, str) and message.startswith(('{"reply":', '{"exception":')):
                answer = json.loads(message)
                if "exception" in answer:
                    raise AssertionError(f"{answer['exception']}: {answer['message']}")
                return answer["reply"]
            self.pushed.append(message)

    def call(self, method: str, *args, binary: int | None = None):
        self.send_call(method, *args, binary=binary)
        return self.reply()

    def call_error(self, method: str, *args) -> dict:
        """Calls a method that must throw; returns {"exception": class, "message": ...}."""
        self.ws.send(json.dumps({"call": method, "args": list(args)}))
        message = json.loads(self.ws.recv(timeout=5))
        assert "exception" in message, f"{method} did not throw: {message}"
        return message

    def recv(self, timeout: float = 5):
        """The next message pushed to this client (not a reply)."""
        if self.pushed:
            return self.pushed.popleft()
        return self.ws.recv(timeout=timeout)

    def recv_json(self, timeout: float = 5):
        return json.loads(self.recv(timeout))

    def assert_nothing_pushed(self) -> None:
        """Nothing was pushed to this client: an echo sent now comes back first."""
        assert not self.pushed, f"unexpected messages: {list(self.pushed)}"
        marker = f"nothing before {time.monotonic()}"
        self.ws.send(marker)
        assert self.ws.recv(timeout=5) == marker


def eventually(check, timeout: float = 5.0, interval: float = 0.02):
    """Calls `check` until it returns something truthy; returns that, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout}s: {check.__doc__ or check}")
        time.sleep(interval)
