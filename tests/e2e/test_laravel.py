"""The Laravel package end to end, in a real Laravel 8 application (tests/laravel, built from
Debian's php-laravel-framework with no Composer): `php artisan surge:serve`, broadcasts from
another artisan process through a real Redis, the default channel protocol, per-connection
state hygiene, and the messages of a broken setup."""

import http.client
import json
import socket
import os
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import ROOT, TIME_FACTOR, extension_args, surge_so

APP = ROOT / "tests" / "laravel"
ARTISAN = APP / "artisan"
# php -n loads no shared extension: these are the ones Laravel (and phpredis) need here.
EXTENSIONS = ["ctype", "mbstring", "tokenizer", "pdo", "pdo_sqlite", "igbinary", "redis", "posix"]


def laravel_env(tmp_path, redis_server, **extra) -> dict:
    """The environment of one app instance: its own storage and SQLite file, the test Redis."""
    return {
        "APP_STORAGE": str(tmp_path / "storage"),
        "REDIS_HOST": redis_server.host,
        "REDIS_PORT": str(redis_server.port),
        "BROADCAST_DRIVER": "redis",
        "REDIS_PREFIX": "surgetest_",  # from database.redis.options.prefix to the bridge
        **extra,
    }


@pytest.fixture
def app_env(tmp_path, redis_server):
    env = laravel_env(tmp_path, redis_server)
    out = artisan("app:setup", "alice", "bob", "carol", env=env)
    assert "users: 3" in out.stdout, out.stdout + out.stderr
    return env


def artisan(*args, env=None, surge=False, timeout=20 * TIME_FACTOR):
    """Runs `php artisan ...` in the test app (without the Surge extension unless surge=True)."""
    cmd = ["php", "-n", *extension_args(EXTENSIONS)]
    if surge:
        cmd += ["-d", f"extension={surge_so()}"]
    return subprocess.run([*cmd, str(ARTISAN), *args], capture_output=True, text=True, cwd=APP,
                          env=dict(os.environ, **(env or {})), timeout=timeout)


def serve(php_server, env, scheme="ws", **extra):
    server = php_server(ARTISAN, env={**env, **extra}, args=["surge:serve"], extensions=EXTENSIONS)
    server.wait_output(f"Surge listening on {scheme}://127.0.0.1:")
    return server


def recv_json(ws, timeout=5):
    return json.loads(ws.recv(timeout=timeout))


def open_client(server, token=None):
    """Connects (as the user of `token`, if given); returns (ws, socket_id, welcome)."""
    ws = connect(server.url + (f"/?token={token}" if token else "/")).__enter__()
    connected = recv_json(ws)
    assert connected["event"] == "surge:connected"
    welcome = recv_json(ws)
    assert welcome["event"] == "welcome"
    return ws, connected["data"]["socket_id"], welcome["data"]


def subscribe(ws, channel):
    ws.send(json.dumps({"subscribe": channel}))
    return recv_json(ws)


def assert_silent(ws, wait=0.3):
    with pytest.raises(TimeoutError):
        ws.recv(timeout=wait)


def test_serve_with_a_certificate_says_wss(php_server, app_env, cert):
    """And the handshake is an https request in onOpen (request()->secure(), url())."""
    import asyncio
    import ssl

    from websockets.asyncio.client import connect as wss_connect

    settings = json.dumps({"ssl_cert_file": str(cert[0]), "ssl_key_file": str(cert[1])})
    server = serve(php_server, app_env, scheme="wss", SURGE_SETTINGS=settings)
    assert f"listen   wss://127.0.0.1:{server.port}" in server.stdout()

    async def welcome():
        async with wss_connect(f"wss://127.0.0.1:{server.port}/", ssl=ssl.create_default_context(cafile=str(cert[0]))) as ws:
            await asyncio.wait_for(ws.recv(), 5)  # surge:connected
            return json.loads(await asyncio.wait_for(ws.recv(), 5))["data"]
    assert asyncio.run(welcome())["secure"] is True


def test_serve_prints_banner_and_runs_the_handlers_chat(php_server, app_env):
    server = serve(php_server, app_env)
    out = server.stdout()
    assert f"listen   ws://127.0.0.1:{server.port}" in out
    assert "handler  App\\WebSocket\\AppHandler" in out
    assert f"redis    on: connection 'default' redis://127.0.0.1:{app_env['REDIS_PORT']}/0, prefix 'surgetest_'" in out
    assert "channels *" in out
    assert "warning" not in out

    alice, _, welcome = open_client(server, "token-alice")
    assert welcome == {"app": "SurgeTestApp", "user": "alice", "secure": False}
    guest, _, welcome = open_client(server)
    assert welcome["user"] is None

    alice.send(json.dumps({"say": "<b>hi</b>"}))
    assert recv_json(guest) == {"event": "chat", "data": {"from": "alice", "text": "&lt;b&gt;hi&lt;/b&gt;"}}
    assert_silent(alice)  # not echoed to the sender

    server.signal(__import__("signal").SIGTERM)
    assert server.wait() == 0
    assert server.stdout().count("Surge stopped.") == 1, server.stdout()


def test_broadcast_from_another_artisan_process_reaches_subscribers(php_server, app_env):
    server = serve(php_server, app_env)
    a, _, _ = open_client(server)
    b, _, _ = open_client(server)
    assert subscribe(a, "orders") == {"event": "surge:subscribed", "channel": "orders"}
    out = artisan("app:broadcast", "orders", "shipped #1", env=app_env)
    assert out.returncode == 0, out.stderr
    got = recv_json(a)
    assert got["event"] == "App\\Events\\OrderShipped"
    assert got["channel"] == "orders"
    assert got["data"]["message"] == "shipped #1"
    assert_silent(b)  # not subscribed

    # unsubscribe: no more events
    a.send(json.dumps({"unsubscribe": "orders"}))
    assert recv_json(a)["event"] == "surge:unsubscribed"
    artisan("app:broadcast", "orders", "shipped #2", env=app_env)
    assert_silent(a)


def test_private_channels_are_authorised_by_routes_channels(php_server, app_env):
    server = serve(php_server, app_env)
    alice, _, _ = open_client(server, "token-alice")  # user 1
    bob, _, _ = open_client(server, "token-bob")  # user 2
    guest, _, _ = open_client(server)

    assert subscribe(alice, "private-orders.1")["event"] == "surge:subscribed"
    refused = subscribe(bob, "private-orders.1")
    assert refused["event"] == "surge:error" and "not allowed" in refused["data"]["message"]
    assert subscribe(guest, "private-orders.1")["event"] == "surge:error"
    assert subscribe(guest, "presence-room.1")["event"] == "surge:error"
    assert subscribe(guest, "bad channel!")["event"] == "surge:error"
    # A channel for another guard's users: the connection's user is the default guard's.
    assert subscribe(alice, "private-staff")["event"] == "surge:error"

    artisan("app:broadcast", "orders.1", "for alice only", "--private", env=app_env)
    got = recv_json(alice)
    assert (got["channel"], got["data"]["message"]) == ("private-orders.1", "for alice only")
    assert_silent(bob)
    assert_silent(guest, 0.05)

    # alice deleted since her handshake: her connection joins no more private channels (the
    # user kept from the handshake went on being let in).
    with sqlite3.connect(Path(app_env["APP_STORAGE"]) / "app" / "database.sqlite") as db:
        db.execute("delete from users where name = 'alice'")
    assert subscribe(alice, "private-orders.1")["event"] == "surge:error"
    assert subscribe(bob, "private-orders.2")["event"] == "surge:subscribed"


def test_users_of_a_guard_without_a_provider_join_private_channels(php_server, app_env):
    """Auth::viaRequest() guards have no user provider to load the user again from: the user
    user() gave is taken as it is (the reload threw, and the subscription got no answer)."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\ApiGuardHandler")
    alice, _, _ = open_client(server, "token-alice")
    assert subscribe(alice, "private-orders.1")["event"] == "surge:subscribed"
    assert subscribe(alice, "private-orders.2")["event"] == "surge:error"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_handler_may_turn_clients_away_at_the_handshake(php_server, app_env, workers):
    """HandlesHandshake: onHandshake decides with the app booted for the handshake; those it
    lets in get onOpen as usual (with the cookie it set), the others its own answer (a 401)
    or a 403 when it threw."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\HandshakeHandler",
                   SURGE_SETTINGS=json.dumps({"worker_num": workers}))
    ws, _, welcome = open_client(server, "token-alice")
    assert welcome["user"] == "alice"
    assert ws.response.headers["Set-Cookie"] == "seen=yes; path=/"
    assert subscribe(ws, "private-orders.1")["event"] == "surge:subscribed"
    for url, status, body in [("/", 401, b"who are you?"), ("/?token=nobody", 401, b"who are you?"),
                              ("/?token=throw", 403, b"the handshake callback refused this connection\n")]:
        with pytest.raises(InvalidStatus) as refused:
            connect(server.url + url, open_timeout=5)
        assert (refused.value.response.status_code, refused.value.response.body) == (status, body)
    assert "onHandshake failed: RuntimeException: onHandshake failed on purpose" in server.stderr()


def test_an_on_open_that_throws_closes_the_connection(php_server, app_env):
    """onOpen threw (the database down while it checked who connects): the client stayed
    connected and was served as if it had been let in."""
    server = serve(php_server, app_env)
    ws = connect(server.url + "/?fail=1")
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4500, "server error")
    assert "onOpen failed: RuntimeException: onOpen failed on purpose" in server.stderr()


def test_to_others_leaves_out_the_socket_that_made_the_request(php_server, app_env):
    server = serve(php_server, app_env)
    a, a_socket, _ = open_client(server)
    b, _, _ = open_client(server)
    for ws in (a, b):
        assert subscribe(ws, "orders")["event"] == "surge:subscribed"
    artisan("app:broadcast", "orders", "to others", f"--socket={a_socket}", env=app_env)
    assert recv_json(b)["data"]["message"] == "to others"
    assert_silent(a)


def test_no_state_leaks_between_connections(php_server, app_env):
    """Guests and three users, interleaved: each callback sees only its own user, no request of
    another callback, and its own counters in the cache (file store) and SQLite."""
    server = serve(php_server, app_env)
    clients = []
    for i in range(12):
        token = [None, "token-alice", "token-bob", "token-carol"][i % 4]
        ws, _, welcome = open_client(server, token)
        clients.append((ws, welcome["user"]))
    for round_ in range(3):
        for ws, user in clients:
            ws.send(json.dumps({"say": f"round {round_}"}))
            ws.send(json.dumps({"whoami": True}))
    for ws, user in clients:
        mine = [m for m in (recv_json(ws) for _ in range(3 * 11 + 3)) if m["event"] == "whoami"]
        assert [m["data"]["user"] for m in mine] == [user] * 3
        assert all(m["data"]["clean"] for m in mine), mine
    # Each user has 3 connections that said 3 things each: 9, whatever the interleaving.
    alice = clients[1][0]
    alice.send(json.dumps({"whoami": True}))
    assert recv_json(alice)["data"]["said"] == 9


def test_what_one_callback_changes_is_gone_in_the_next(php_server, app_env):
    """A user set on the Guard contract, the locale, a runtime config() change, a scoped
    instance (also through a facade, which kept the first it resolved), URL::defaults() and
    forceRootUrl(), the array cache store, Log::withContext(), a queued cookie, the query log
    and a connection to a tenant's database do not survive into the next callback (another
    client's); url() there is the app's, as in an artisan command. The guards of a signed-in user's callbacks do not pile up
    (each registered itself for the next request, for good: 20,000 messages, 9x slower, then
    out of memory)."""
    server = serve(php_server, {**app_env, "APP_URL": "https://example.com/app"})
    careless, _, _ = open_client(server)
    other, _, _ = open_client(server)
    alice, _, _ = open_client(server, "token-alice")

    def state():
        other.send(json.dumps({"state": True}))
        return recv_json(other)["data"]

    before = state()["request_rebindings"]
    careless.send(json.dumps({"leak": "alice"}))
    assert recv_json(careless)["data"] == {"guard": "alice"}
    for _ in range(20):
        alice.send(json.dumps({"whoami": True}))
        assert recv_json(alice)["data"]["user"] == "alice"
    assert state() == {
        "guard": None, "locale": "en", "name": "SurgeTestApp", "hash": "bcrypt", "scoped": 0,
        "scoped_facade": 0, "url_defaults": [], "array_cache": None,
        "url": "https://example.com/app/orders/1", "secure": True, "log_context": [],
        "queued_cookies": 0, "query_log": 0, "database": "database.sqlite", "users": 3,
        "request_rebindings": before,
    }


def test_a_connection_joins_at_most_100_channels_and_bad_messages_get_an_answer(php_server, app_env):
    """One anonymous client joined 200,000 channels (60 MB more for the server); an unsubscribe
    of a list got no answer and logged a stack trace for every frame."""
    server = serve(php_server, app_env)
    ws, _, _ = open_client(server)
    for i in range(99):  # and "chat", which the app's handler joins on open
        assert subscribe(ws, f"room.{i}")["event"] == "surge:subscribed"
    refused = subscribe(ws, "room.100")
    assert refused["event"] == "surge:error" and refused["data"]["message"] == "a connection may be in at most 100 channels"
    assert subscribe(ws, "room.7")["event"] == "surge:subscribed", "one it is in already"
    ws.send(json.dumps({"unsubscribe": "room.7"}))
    assert recv_json(ws)["event"] == "surge:unsubscribed"
    assert subscribe(ws, "room.100")["event"] == "surge:subscribed"
    ws.send(json.dumps({"unsubscribe": ["room.1"]}))
    assert recv_json(ws) == {"event": "surge:error", "data": {"message": "unsubscribe takes a channel name"}}
    assert "ErrorException" not in server.stderr()


def test_redis_false_in_the_config_turns_the_bridge_off(php_server, app_env):
    """`'redis' => false` was taken for an array with the bridge on."""
    server = serve(php_server, {**app_env, "SURGE_TEST_REDIS_FALSE": "1"})
    assert "redis    off" in server.stdout()


def test_worker_processes_serve_the_app_together(php_server, app_env):
    """worker_num 2: users on both workers chat through one channel, an artisan broadcast reaches
    every subscriber once, and the counters in the cache are the same whichever worker asks."""
    # A Pusher app in config/broadcasting.php is left out (set() would refuse it), with a word.
    pusher = {"PUSHER_APP_KEY": "key", "PUSHER_APP_SECRET": "secret", "PUSHER_APP_ID": "1"}
    # Redis database 3: a connection made again in a worker must select it again.
    server = serve(php_server, {**app_env, "REDIS_DB": "3"}, SURGE_SETTINGS=json.dumps({"worker_num": 2}), **pusher)
    assert "pusher   off: the Pusher protocol needs worker_num 1 (surge.settings)" in server.stdout()
    clients = []
    for i in range(16):
        token = ["token-alice", "token-bob", None, "token-carol"][i % 4]
        ws, socket_id, welcome = open_client(server, token)
        clients.append((ws, socket_id, welcome["user"]))
    # A socket id is "<random>.<fd>", the first part drawn by each process: the clients are on two.
    assert len({socket_id.split(".")[0] for _, socket_id, _ in clients}) == 2
    alice = clients[0][0]
    alice.send(json.dumps({"say": "hi all"}))
    for ws, _, _ in clients[1:]:
        assert recv_json(ws) == {"event": "chat", "data": {"from": "alice", "text": "hi all"}}
    for ws, _, _ in clients:
        assert subscribe(ws, "orders")["event"] == "surge:subscribed"
    out = artisan("app:broadcast", "orders", "to every worker", env=app_env)
    assert out.returncode == 0, out.stderr
    for ws, _, _ in clients:
        assert recv_json(ws)["data"]["message"] == "to every worker"
        assert_silent(ws, 0.05)
    # The handler opened the database and Redis in the command's process; each worker has its own.
    redis_ids, pids = {}, {}
    for ws, socket_id, _ in clients:
        ws.send(json.dumps({"pdo": True}))
        data = recv_json(ws)["data"]
        worker = socket_id.split(".")[0]
        # (The same Redis client object, connected again: the ids below tell its socket.)
        assert data["parents"] is False, data
        # A connection object kept from before the fork works too (its PDO was dropped, not it).
        ws.send(json.dumps({"held": True}))
        assert recv_json(ws) == {"event": "held", "data": {"n": 3}}
        assert pids.setdefault(worker, data["pid"]) == data["pid"]
        redis_ids.setdefault(worker, set()).add(data["redis_id"])
        # A connection object kept from before the fork is the worker's own too (it was the
        # parent's socket, shared by every worker: their replies would cross).
        assert data["held_redis_id"] == data["redis_id"] and data["held_redis_db"] == 3, data
    assert len(set(pids.values())) == 2
    # One Redis connection per worker, each its own (Redis numbers its clients).
    assert [len(ids) for ids in redis_ids.values()] == [1, 1]
    assert len(set.union(*redis_ids.values())) == 2
    # alice has four connections, maybe on both workers: each sees what the other counted.
    alices = [ws for ws, _, user in clients if user == "alice"]
    for ws in alices:
        ws.send(json.dumps({"whoami": True}))
        assert recv_json(ws)["data"]["said"] == 1
    server.signal(__import__("signal").SIGTERM)
    assert server.wait() == 0
    assert server.stdout().count("Surge stopped.") == 1, server.stdout()


def test_task_workers_run_the_handlers_tasks(php_server, app_env):
    """task_worker_num: a handler that implements HandlesTasks runs its tasks in a task worker,
    with the app (Eloquent there too) and no user left signed in; the result comes back to
    onFinish in the worker that sent the task."""
    pusher = {"PUSHER_APP_KEY": "key", "PUSHER_APP_SECRET": "secret", "PUSHER_APP_ID": "1"}
    server = serve(php_server, app_env, SURGE_SETTINGS=json.dumps({"task_worker_num": 2}), **pusher)
    # A Pusher app in config/broadcasting.php is left out (set() would refuse it), with a word.
    assert "pusher   off: the Pusher protocol needs task_worker_num 0 (surge.settings)" in server.stdout()
    for token, name in [("token-alice", "alice"), (None, None), ("token-bob", "bob")]:
        ws, socket_id, _ = open_client(server, token)
        ws.send(json.dumps({"task": "make a report"}))
        data = recv_json(ws)["data"]
        assert (data["user"], data["text_upper"], data["users"]) == (name, "MAKE A REPORT", 3)
        assert data["signed_in"] is False and data["taskworker"] is True
        assert data["pid"] != server.proc.pid
        assert data["worker"] == data["src"] == 0
        ws.close()
    server.signal(__import__("signal").SIGTERM)
    assert server.wait() == 0


def test_surge_reload_restarts_the_workers_of_the_running_server(php_server, app_env):
    """A deploy's `php artisan surge:reload`: the running surge:serve (found through
    storage/framework/surge-PORT.json) restarts its workers one at a time; the clients reconnect."""
    server = serve(php_server, app_env, SURGE_SETTINGS=json.dumps({"worker_num": 2}))
    state = Path(app_env["APP_STORAGE"]) / "framework" / f"surge-{server.port}.json"
    assert f"reload   php artisan surge:reload --port={server.port} (restarts" in server.stdout()
    assert json.loads(state.read_text())["pid"] == server.proc.pid
    before = {open_client(server)[1].split(".")[0] for _ in range(8)}
    # The file of a server killed outright (its pid is gone) does not make surge:reload ask which.
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = state.parent / "surge-1.json"
    stale.write_text(json.dumps({"pid": dead.pid, "host": "127.0.0.1", "port": 1, "workers": 2, "task_workers": 0}))
    out = artisan("surge:reload", env=app_env)
    stale.unlink()
    assert out.returncode == 0 and f"Surge (pid {server.proc.pid}) restarts its workers one at a time" in out.stdout, out.stdout + out.stderr
    server.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    ws, socket_id, welcome = open_client(server, "token-alice")
    assert welcome["user"] == "alice" and socket_id.split(".")[0] not in before
    out = artisan("surge:reload", "--tasks", env=app_env)
    assert out.returncode == 1 and "has no task workers" in out.stdout + out.stderr
    server.signal(__import__("signal").SIGTERM)
    assert server.wait() == 0
    assert not state.exists(), "the state goes with the server"
    out = artisan("surge:reload", env=app_env)
    assert out.returncode == 1 and "Surge is not running here" in out.stdout + out.stderr


def test_surge_reload_does_not_signal_a_process_that_is_not_surge_serve(app_env):
    """A file left by a server killed outright: its pid now names another process, which must
    not get SIGUSR1 (its default action would end it)."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        state = Path(app_env["APP_STORAGE"]) / "framework" / "surge-1.json"
        state.write_text(json.dumps({"pid": other.pid, "host": "127.0.0.1", "port": 1, "workers": 2, "task_workers": 0}))
        out = artisan("surge:reload", env=app_env)
        assert out.returncode == 1 and f"pid {other.pid} is not surge:serve" in out.stdout + out.stderr
        time.sleep(0.2)
        assert other.poll() is None, "the other process was left alone"
    finally:
        other.kill()
        other.wait()


def test_surge_reload_asks_which_of_two_servers_and_each_keeps_its_state(php_server, app_env):
    """Two surge:serve of one app on two ports: surge:reload asks for --port; stopping one
    leaves the other's state, and a server that could not start removes nothing."""
    workers = json.dumps({"worker_num": 2})
    first = serve(php_server, app_env, SURGE_SETTINGS=workers)
    second = serve(php_server, app_env, SURGE_SETTINGS=workers)
    out = artisan("surge:reload", env=app_env)
    ports = sorted([first.port, second.port])
    assert out.returncode == 1 and f"Several surge:serve run here (ports {ports[0]}, {ports[1]}): choose one with --port" in out.stdout + out.stderr
    busy = artisan("surge:serve", env={**app_env, "SURGE_PORT": str(first.port)}, surge=True)
    assert busy.returncode == 1 and "Surge could not start" in busy.stdout + busy.stderr
    out = artisan("surge:reload", f"--port={second.port}", env=app_env)
    assert out.returncode == 0 and f"Surge (pid {second.proc.pid}) restarts its workers" in out.stdout, out.stdout + out.stderr
    second.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    assert "reload done" not in first.stderr()
    second.signal(__import__("signal").SIGTERM)
    assert second.wait() == 0
    out = artisan("surge:reload", env=app_env)
    assert out.returncode == 0 and f"Surge (pid {first.proc.pid}) restarts its workers" in out.stdout, out.stdout + out.stderr
    first.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    out = artisan("surge:reload", f"--port={second.port}", env=app_env)
    assert out.returncode == 1 and f"Surge is not running here on port {second.port}" in out.stdout + out.stderr
    for bad in ["http", "70000", "0"]:
        out = artisan("surge:reload", f"--port={bad}", env=app_env)
        assert out.returncode == 1 and f"--port must be a port number from 1 to 65535, got '{bad}'" in out.stdout + out.stderr


def test_surge_reload_refuses_a_server_of_one_process(php_server, app_env):
    server = serve(php_server, app_env)
    assert "surge:reload" not in server.stdout()
    out = artisan("surge:reload", env=app_env)
    assert out.returncode == 1 and "runs in one process" in out.stdout + out.stderr
    open_client(server)  # still serving


def test_missing_extension_says_how_to_install_it(app_env):
    out = artisan("surge:serve", env=app_env, surge=False)
    assert out.returncode == 1
    assert "The surge PHP extension is not loaded" in out.stdout
    assert "extension=/path/to/surge/build/surge.so" in out.stdout


@pytest.mark.parametrize("env, message", [
    ({"SURGE_PORT": "70000"}, "surge.port (or --port) must be a port number from 0 to 65535, got '70000'"),
    ({"SURGE_TEST_MISSPELT": "setings"}, "surge.setings is no setting of config/surge.php; it takes host, port, handler, settings, redis, pusher"),
    ({"SURGE_TEST_MISSPELT_REDIS": "enable"}, "surge.redis.enable is no setting of config/surge.php; surge.redis takes enabled, connection, channels"),
    ({"SURGE_SETTINGS": '{"max_conection": 10}'}, "surge.settings:"),
    ({"SURGE_HANDLER": "App\\Nope"}, "surge.handler: class 'App\\\\Nope' does not exist"),
    ({"SURGE_REDIS_CONNECTION": "cache"}, "there is no Redis connection 'cache'"),
    ({"SURGE_SETTINGS": '{"task_worker_num": 1}', "SURGE_HANDLER": "Surge\\Laravel\\ChannelHandler"},
     "surge.settings.task_worker_num: the handler Surge\\Laravel\\ChannelHandler must implement Surge\\Laravel\\Contracts\\HandlesTasks to run tasks"),
])
def test_bad_config_names_the_key(app_env, env, message):
    out = artisan("surge:serve", env={**app_env, **env}, surge=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Surge is misconfigured: " in out.stdout
    assert message in out.stdout


def test_unreachable_redis_is_reported_and_the_server_keeps_serving(php_server, app_env, redis_server):
    redis_server.kill()
    server = serve(php_server, app_env)
    assert f"Redis at redis://127.0.0.1:{redis_server.port}/0 (connection 'default') is unreachable" in server.stdout()
    ws, _, _ = open_client(server)
    assert subscribe(ws, "orders")["event"] == "surge:subscribed"
    # Redis comes back: the bridge reconnects and broadcasts flow.
    redis_server.start()
    deadline = time.monotonic() + 8
    while True:
        artisan("app:broadcast", "orders", "back", env=app_env)
        try:
            assert recv_json(ws, timeout=0.5)["data"]["message"] == "back"
            break
        except TimeoutError:
            assert time.monotonic() < deadline, server.stderr()


def test_a_default_broadcaster_other_than_redis_is_warned_about(php_server, app_env):
    server = serve(php_server, {**app_env, "BROADCAST_DRIVER": "log"})
    assert (
        "warning  the default broadcaster (BROADCAST_DRIVER, or BROADCAST_CONNECTION since Laravel 11)"
        " is 'log', not 'redis'" in server.stdout()
    ), server.stdout()


def test_make_surge_handler_writes_a_handler_that_serves(php_server, app_env, tmp_path):
    target = APP / "app" / "WebSocket" / "GeneratedChat.php"
    try:
        out = artisan("make:surge-handler", "GeneratedChat", env=app_env)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "class GeneratedChat implements Handler" in target.read_text()
        server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\GeneratedChat")
        with connect(server.url + "/?name=ann") as a, connect(server.url) as b:
            assert json.loads(a.recv(timeout=5))["event"] == "welcome"
            assert json.loads(b.recv(timeout=5))["event"] == "welcome"
            a.send("hello")
            assert json.loads(b.recv(timeout=5))["data"] == {"from": "ann", "text": "hello"}
            # Bytes that are not UTF-8 (json_encode() gave false, broadcast() threw).
            a.send(b"\xff\xfe")
            assert json.loads(b.recv(timeout=5))["data"] == {"from": "ann", "text": "\ufffd\ufffd"}
    finally:
        target.unlink(missing_ok=True)


def test_open_transaction_is_rolled_back_and_lost_connection_reconnects(php_server, app_env):
    server = serve(php_server, app_env)
    ws, _, _ = open_client(server)
    ws.send(json.dumps({"begin": "bob"}))
    server.wait_output("a callback left a transaction open on database connection 'sqlite': rolled back", stream="stderr")
    _, _, welcome = open_client(server, "token-bob")  # the rename was rolled back
    assert welcome["user"] == "bob"

    ws.send(json.dumps({"gone": True}))
    server.wait_output("onMessage: the database connection was lost; it reconnects on the next query", stream="stderr")
    _, _, welcome = open_client(server, "token-carol")  # the next query reconnects
    assert welcome["user"] == "carol"
    ws.send(json.dumps({"whoami": True}))  # and the failing connection is still served
    assert recv_json(ws)["event"] == "whoami"
    ws.send(json.dumps({"held": True}))  # as is a connection object kept from before
    assert recv_json(ws)["event"] == "held"


@pytest.mark.parametrize("conf, url", [
    ({"host": "127.0.0.1", "port": "6379", "password": "s3cret"}, "redis://:s3cret@127.0.0.1:6379/0"),
    # phpredis's scheme in the host, as Laravel's own formatHost() writes it.
    ({"host": "tls://redis.example", "port": 6380}, "rediss://redis.example:6380/0"),
    # A socket: no port (0 or -1 in many configs), its password and database in the query.
    ({"host": "/run/redis.sock", "port": 0}, "redis+unix:///run/redis.sock?db=0"),
    ({"host": "/run/redis.sock", "port": -1, "username": "u", "password": "p w", "database": 2},
     "redis+unix:///run/redis.sock?db=2&user=u&pass=p%20w"),
    # predis names the socket by path.
    ({"scheme": "unix", "path": "/run/r.sock"}, "redis+unix:///run/r.sock?db=0"),
    ({"url": "rediss://u:p@h:7000/3"}, "rediss://u:p@h:7000/3"),
    # IPv6, as a URL writes it (parse_url() keeps the brackets) and as a host.
    ({"url": "redis://:s%3Aet@[::1]:7001"}, "redis://:s%3Aet@[::1]:7001/0"),
    ({"host": "::1", "port": 7002}, "redis://[::1]:7002/0"),
    ({"host": "[::1]", "port": 7003}, "redis://[::1]:7003/0"),
])
def test_the_bridge_reads_the_redis_connection_as_laravel_configs_write_it(conf, url):
    code = (f"require '{ROOT}/php/laravel/src/Support/RedisTarget.php';"
            f"echo Surge\\Laravel\\Support\\RedisTarget::fromConfig(['default' => json_decode('{json.dumps(conf)}', true)], 'default')->url;")
    out = subprocess.run(["php", "-n", "-r", code], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, url), out.stderr


def test_a_redis_url_laravel_would_refuse_is_refused_and_ipv6_is_reachable():
    """A malformed url went to 127.0.0.1:6379 unsaid; a Redis that answers on an IPv6 address
    was said unreachable in the banner (tcp://::1:port)."""
    target = f"require '{ROOT}/php/laravel/src/Support/RedisTarget.php'; use Surge\\Laravel\\Support\\RedisTarget;"
    code = target + "try { RedisTarget::fromConfig(['default' => ['url' => 'unix:///tmp/r.sock']], 'default'); } catch (InvalidArgumentException $e) { echo $e->getMessage(); }"
    out = subprocess.run(["php", "-n", "-r", code], capture_output=True, text=True, timeout=30)
    assert "database.redis.default.url is not a URL" in out.stdout, out.stdout + out.stderr
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listening:
        port = listening.getsockname()[1]
        code = target + f"var_export(RedisTarget::fromConfig(['default' => ['host' => '::1', 'port' => {port}]], 'default')->unreachable());"
        out = subprocess.run(["php", "-n", "-r", code], capture_output=True, text=True, timeout=30)
    assert out.stdout == "NULL", out.stdout + out.stderr


def test_broadcast_with_predis_and_redis_url(php_server, app_env, redis_server):
    """The same bridge when the app uses predis and gives Redis as REDIS_URL."""
    env = {**app_env, "REDIS_CLIENT": "predis", "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0", "REDIS_PORT": "1"}
    server = serve(php_server, env)
    assert f"redis://127.0.0.1:{redis_server.port}/0" in server.stdout()
    ws, _, _ = open_client(server)
    assert subscribe(ws, "orders")["event"] == "surge:subscribed"
    out = artisan("app:broadcast", "orders", "via predis", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert recv_json(ws)["data"]["message"] == "via predis"


def test_an_uploaded_file_passes_laravels_validation_and_moves_into_storage(php_server, app_env, tmp_path):
    """A form posted by curl: Laravel sees the file as an upload (its `file` rule asks PHP's
    is_uploaded_file()), its fields nested (tags[]), the query string, and moves the file with
    move_uploaded_file(); a missing file fails validation with 422."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\BrowserHandler")
    doc = tmp_path / "report.txt"
    doc.write_text("quarterly numbers\n")

    def post(*form):
        args = [a for field in form for a in ("-F", field)]
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args, f"{server.http}/upload?q=1"],
                             capture_output=True, text=True, timeout=10)
        body, status = out.stdout.rsplit("\n", 1)
        return int(status), json.loads(body)

    status, body = post(f"doc=@{doc};type=text/csv", "tags[]=a", "tags[]=b")
    assert status == 200, body
    assert body == {"name": "report.txt", "type": "text/csv", "tags": ["a", "b"], "q": "1",
                    "stored": "quarterly numbers\n"}
    assert (Path(app_env["APP_STORAGE"]) / "uploads" / "doc.txt").read_text() == "quarterly numbers\n"
    status, body = post("tags[]=a")
    assert status == 422 and list(body) == ["doc"], body


def test_an_http_route_reaches_the_server_through_the_container(php_server, app_env):
    """onRequest gets no $server, and nothing else gave one: a route could not push, publish or
    hand a task over until a WebSocket client's onOpen had run in that worker."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\BrowserHandler",
                   SURGE_SETTINGS=json.dumps({"worker_num": 2}))
    pids = set()
    for _ in range(8):
        with urllib.request.urlopen(f"{server.http}/server", timeout=10) as res:
            got = json.loads(res.read())
        assert got["connections"] == 0, got
        pids.add(got["pid"])
    assert len(pids) >= 1
    # No Pusher app configured: nothing to say it is off for.
    assert "pusher" not in server.stdout()


def test_the_request_laravel_sees_takes_its_path_and_query_from_the_request_line(php_server, app_env):
    """The Host header is no part of the path: `Host: example.com/admin?role=admin#` made
    request()->path() "admin" and added role=admin to the query."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\BrowserHandler")
    for host in ["example.com/admin?role=admin#", "example.com?role=admin#"]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("GET", "/request?z=1", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        got = json.loads(conn.getresponse().read())
        assert got == {"path": "request", "query": {"z": "1"}, "uri": "/request?z=1"}, (host, got)


def test_a_request_refused_the_laravel_way_is_answered_as_laravel_answers_it(php_server, app_env):
    """abort(403), findOrFail() and a failed validation in onRequest get Laravel's 403, 404 and
    422 (with the errors as JSON), an HttpResponseException its response, and only a real
    failure is reported: all were a 500 with an empty body, each reported as a failure."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\BrowserHandler")

    def get(how):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", f"/refused?how={how}", headers={"Accept": "application/json"})
        res = conn.getresponse()
        return res.status, res.getheader("Location"), res.read()

    status, _, body = get("abort")
    assert status == 403 and json.loads(body)["message"] == "not yours"
    assert get("missing")[0] == 404
    status, _, body = get("invalid")
    assert status == 422 and list(json.loads(body)["errors"]) == ["name"]
    status, location, _ = get("redirect")
    assert status == 302 and location.endswith("/elsewhere")
    assert "onRequest failed" not in server.stderr()
    assert get("broken")[0] == 500
    server.wait_output("broken on purpose", stream="stderr")


def test_a_response_the_handler_keeps_is_ended_when_it_says(php_server, app_env):
    """A stream written in onRequest and ended by a later request (a timer, a task): it was
    ended with the callback, the rest lost."""
    server = serve(php_server, app_env, SURGE_HANDLER="App\\WebSocket\\BrowserHandler")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/stream")
    stream = conn.getresponse()
    assert stream.status == 200 and stream.readline() == b"first\n"
    with urllib.request.urlopen(f"{server.http}/stream-end", timeout=10) as ended:
        assert ended.read() == b"ended"
    assert stream.read() == b"last\n"


def test_a_handshake_with_more_query_variables_than_max_input_vars_still_runs_on_open(php_server, app_env):
    """Laravel parsed the query again, and PHP's warning past max_input_vars (an exception under
    Laravel) skipped onOpen, where a handler checks who connects, and left the client connected."""
    server = serve(php_server, app_env)
    query = "&".join(f"a{i}=1" for i in range(1001))
    ws, _, welcome = open_client(server, f"token-alice&{query}")
    assert welcome["user"] == "alice"
    ws.close()
