"""Fixtures for end-to-end tests: start real PHP scripts with the built extension, on free
loopback ports, and talk to them with real clients."""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[2]
SERVERS = Path(__file__).resolve().parent / "servers"


def surge_so() -> str:
    so = os.environ.get("SURGE_SO")
    if not so:
        target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/surge/target"))
        so = str(Path(target) / "release/libsurge.so")
    if not Path(so).exists():
        pytest.exit(f"the extension is not built: {so} (run scripts/build.sh, or set SURGE_SO)", 2)
    return so


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# Waits made for a machine that runs PHP at full speed are multiplied by SURGE_E2E_TIME_FACTOR
# (memcheck.sh sets 6: under valgrind `php artisan --version` alone takes 10 s). Node scripts the
# tests run read it too.
TIME_FACTOR = float(os.environ.get("SURGE_E2E_TIME_FACTOR", "1"))


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0 * TIME_FACTOR) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            probe = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        except OSError:
            time.sleep(0.05)
            continue
        with probe:
            # The server counts this probe against max_connection until it sees it close:
            # wait (a while at most) until it has closed its side too, so the test's first
            # client finds the place free.
            probe.settimeout(2)
            try:
                probe.shutdown(socket.SHUT_WR)
                probe.recv(1)
            except OSError:
                pass
        return
    raise TimeoutError(f"nothing listens on {port} after {timeout}s")


def extension_args(extensions: list | None) -> list:
    """-d extension=... for PHP's own shared extensions (php -n loads none), in the given order
    (e.g. pdo before pdo_sqlite, igbinary before redis)."""
    return [arg for ext in extensions or [] for arg in ("-d", f"extension={ext}")]


class PhpServer:
    """A PHP script run with the extension; its stdout and stderr go to files we can read."""

    def __init__(
        self,
        script: Path,
        tmp: Path,
        env: dict | None = None,
        args: list | None = None,
        extensions: list | None = None,
        mode_settings: dict | None = None,
        ini: dict | None = None,
    ):
        self.port = free_port()
        self.out_path = tmp / f"{script.stem}.{self.port}.out"
        self.err_path = tmp / f"{script.stem}.{self.port}.err"
        full_env = dict(os.environ, SURGE_PORT=str(self.port), **(env or {}))
        # The mode's settings go under the test's own (SURGE_SETTINGS, which the test servers read).
        if mode_settings:
            own = json.loads(full_env.get("SURGE_SETTINGS") or "{}")
            full_env["SURGE_SETTINGS"] = json.dumps({**mode_settings, **own})
        self.proc = subprocess.Popen(
            ["php", "-n", *extension_args(extensions), "-d", f"extension={surge_so()}", "-d", "display_errors=stderr",
             *(arg for key, value in (ini or {}).items() for arg in ("-d", f"{key}={value}")), str(script), *(args or [])],
            stdout=open(self.out_path, "w"),
            stderr=open(self.err_path, "w"),
            env=full_env,
            cwd=script.parent,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait_output(self, text: str, timeout: float = 5.0, stream: str = "stdout") -> str:
        """Waits until `text` appears in the server's stdout (or stderr); returns the output."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.stdout() if stream == "stdout" else self.stderr()
            if text in out:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in server {stream} after {timeout}s:\n{out}\n--- stderr:\n{self.stderr()}")
            time.sleep(0.02)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# Who does the network work, and the settings that choose it: the I/O threads, as shipped, or
# the PHP thread itself between callbacks (`worker_threads` 0).
IO_MODES = {"io_threads": {}, "php_thread": {"worker_threads": 0}}

# The modules whose server tests run in both modes (test_php_thread_io.py has what is particular
# to the second); elsewhere, and for tests marked io_threads_only, in the first only.
IN_BOTH_IO_MODES = {"test_autobahn", "test_channels", "test_deflate", "test_handshake", "test_hostile_calls", "test_lifecycle", "test_pusher", "test_redis", "test_server", "test_tasks", "test_tls", "test_workers"}


def pytest_configure(config):
    config.addinivalue_line("markers", "io_threads_only: a promise that worker_threads 0 does not keep; runs as shipped only")


def pytest_generate_tests(metafunc):
    if metafunc.module.__name__ in IN_BOTH_IO_MODES and "php_server" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("io_threads_only")
        metafunc.parametrize("io_mode", ["io_threads"] if one else list(IO_MODES), indirect=True)


@pytest.fixture
def io_mode(request) -> str:
    """The mode php_server starts servers in (a key of IO_MODES; io_threads unless parametrized)."""
    return getattr(request, "param", "io_threads")


@pytest.fixture
def php_server(tmp_path, io_mode):
    """php_server("echo.php", env={...}, ini={...}) starts tests/e2e/servers/echo.php (or a path)
    in the test's io_mode, with those php.ini values, and waits until it listens; every server is stopped at the end of the test."""
    started = []

    def start(script, env=None, args=None, wait=True, extensions=None, ini=None):
        path = Path(script)
        if not path.is_absolute():
            path = SERVERS / path
        server = PhpServer(path, tmp_path, env=env, args=args, extensions=extensions, mode_settings=IO_MODES[io_mode], ini=ini)
        started.append(server)
        if wait:
            try:
                wait_for_port(server.port, server.proc)
            except Exception as e:
                raise AssertionError(f"{e}\nstdout:\n{server.stdout()}\nstderr:\n{server.stderr()}")
        return server

    yield start
    for server in started:
        server.stop()


def run_php(code_or_file, env=None, timeout=30, extensions=None):
    """Runs PHP code (a string starting with '<?php') or a file with the extension loaded, after
    PHP's own shared `extensions` (see extension_args)."""
    args = ["php", "-n", *extension_args(extensions), "-d", f"extension={surge_so()}", "-d", "display_errors=stderr"]
    if isinstance(code_or_file, str) and code_or_file.lstrip().startswith("<?php"):
        args += ["-r", code_or_file.lstrip()[5:]]
    else:
        args.append(str(code_or_file))
    return subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=timeout)


def surge_exception(code: str) -> str:
    """Runs `code` with `$s`, a new server on a free port; returns the message of the
    Surge\\Exception it throws, or "no exception"; fails on anything else."""
    out = run_php(f"""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        try {{ {code} echo "no exception"; }} catch (Surge\\Exception $e) {{ echo $e->getMessage(); }}
    """)
    assert out.returncode == 0 and not out.stderr, out.stdout + out.stderr
    return out.stdout


def settings_env(**settings) -> dict:
    """The environment that makes echo.php apply these settings."""
    return {"SURGE_SETTINGS": json.dumps(settings)}


def close_code(ws) -> int:
    """Reads (and drops) messages until the server closes the connection: its close code,
    1006 if it sent no close frame."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    return closed.value.rcvd.code if closed.value.rcvd else 1006


def assert_serves(server: PhpServer, *clients) -> None:
    """The server still serves: each given (open) client and a new one get their echo."""
    with connect(server.url) as fresh:
        for i, ws in enumerate([*clients, fresh]):
            ws.send(f"still served {i}")
            assert ws.recv(timeout=5) == f"still served {i}"


class RedisServer:
    """A real redis-server on a free loopback port, in its own directory, persisting nothing.
    kill() and start() again keep the port, to test an outage."""

    def __init__(self, tmp: Path, tls: tuple | None = None, args: tuple = ()):
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls = tls  # (cert file, key file): TLS only, for rediss://
        self.args = args  # more redis-server arguments
        self.dir = tmp / f"redis.{self.port}"
        self.dir.mkdir()
        self.proc = None
        self.client = None

    @property
    def url(self) -> str:
        # The test certificate is self-signed: '#insecure' tells the bridge not to verify it.
        return f"rediss://{self.host}:{self.port}/#insecure" if self.tls else f"redis://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        import redis  # only the Redis tests need redis-py

        listen = ["--port", str(self.port)]
        ssl = {}
        if self.tls:
            cert, key = self.tls
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert),
                      "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]
            ssl = {"ssl": True, "ssl_cert_reqs": None}
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", self.host, *listen, "--save", "", "--appendonly", "no", "--dir", str(self.dir), *self.args],
            stdout=open(self.dir / "redis.log", "a"),
            stderr=subprocess.STDOUT,
        )
        self.client = redis.Redis(self.host, self.port, decode_responses=True, **ssl)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start:\n{(self.dir / 'redis.log').read_text()}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: connections drop without a goodbye, as when the Redis host dies."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.client:
            self.client.close()


@pytest.fixture
def cert(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert file, key file)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
def redis_server(tmp_path):
    """A started RedisServer: .host, .port, .url, .client (redis-py, decoded), .kill(),
    .start(); stopped at the end of the test."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()
