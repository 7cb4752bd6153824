"""Code written for Swoole, with only `Swoole\\` renamed to `Surge\\`, runs: Swoole's constructor
arguments and constants, settings Surge does without, numbers given as strings (fds from a
table's keys, a port from the environment), a close callback taking `$reactorId`, push()'s
`$finish` flag, `$server->setting`, getClientList(), ping(), close codes such as 1008, the
table's exist()/delete() and conversions, the static `Timer` and Response::setCookie()
(tests/e2e/servers/swoole_ported.php)."""

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from websockets.sync.client import connect

from conftest import close_code, run_php, surge_exception


def recv_until(ws, text: str) -> list:
    """The messages up to and including `text`."""
    seen = []
    while not seen or seen[-1] != text:
        seen.append(ws.recv(timeout=5))
    return seen


def test_a_chat_written_for_swoole_serves(php_server):
    srv = php_server("swoole_ported.php")
    srv.wait_output("workerStart 0 as worker")
    with connect(srv.url + "/?token=bad") as refused:
        assert close_code(refused) == 1008
    with connect(srv.url + "/?token=secret&name=ann") as ann, connect(srv.url + "/?token=secret&name=bob") as bob:
        # A client's open callback runs before its first message's, not before another's
        # message (its handshake is answered first): each asks once, so that both are in.
        for ws in (ann, bob):
            ws.send("who")
            ws.recv(timeout=5)
        ann.send("who")
        assert json.loads(ann.recv(timeout=5)) == ["ann", "bob"]
        bob.send("hello")
        assert ann.recv(timeout=5) == "bob: hello"
        assert bob.recv(timeout=5) == "bob: hello"
        ann.send("pages")
        pages = json.loads(ann.recv(timeout=5))
        assert [len(p) for p in pages] == [2], pages
        ann.send("where")
        assert json.loads(ann.recv(timeout=5)) == "127.0.0.1"
        ann.send("ping")
        ann.send("stats")
        stats = json.loads(ann.recv(timeout=5))
        # Swoole's request_count counts messages and requests: at least the five messages.
        assert stats["worker_num"] == 1 and stats["task_worker_num"] == 0 and stats["request_count"] >= 5, stats
        # Timer's static API: the workerStart tick beats (every 20 ms), and its ids are the server's.
        deadline = time.monotonic() + 5
        while True:
            ann.send("beats")
            if ann.recv(timeout=5) != "0":
                break
            assert time.monotonic() < deadline, "the tick never ran"
            time.sleep(0.02)
        ann.send("timers")
        assert json.loads(ann.recv(timeout=5)) == {"ticks": 1, "once": True, "cleared": True, "again": False, "left": True}
        assert ann.recv(timeout=5) == "later"
        # The close callback (with Swoole's three parameters) runs and tells the others.
        bob.close()
        assert ann.recv(timeout=5) == "bob left"
        ann.send("who")
        assert json.loads(ann.recv(timeout=5)) == ["ann"]
    with urllib.request.urlopen(srv.http + "/", timeout=5) as answer:
        assert answer.read() == b"cookies"
        assert answer.headers.get_all("Set-Cookie") == ["seen=a%20b; path=/; HttpOnly", "raw=a%20b; path=/"]
    assert "uncaught" not in srv.stderr()


def test_a_requests_fd_is_known_until_answered_and_close_refuses_it_without_an_answer(php_server):
    """getClientInfo($request->fd) (Swoole code logs its remote_ip) and exist() answer for an
    HTTP request until its response is sent; close($request->fd) closes the connection with no
    answer at all, as Swoole does (article 004 refuses a request without its token so); a
    callback that throws answers a 500 that says where to look."""
    srv = php_server("swoole_ported.php")
    with urllib.request.urlopen(srv.http + "/who", timeout=5) as answer:
        info, exists, established = json.loads(answer.read())
    assert (exists, established) == (True, False)
    assert info["remote_ip"] == "127.0.0.1" and info["server_port"] == srv.port, info
    assert info["websocket_status"] == 0 and abs(info["last_time"] - time.time()) < 60, info
    assert info["connect_time"] <= info["last_time"], info
    # The whole line: echo writes it in pieces, which valgrind's slower PHP left apart.
    srv.wait_output("after end: [false,false]\n")

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/refuse")
    with pytest.raises(http.client.RemoteDisconnected):
        conn.getresponse()
    conn.close()
    srv.wait_output("closed: [true,false]\n")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/cut")
    answer = conn.getresponse()
    assert answer.status == 200
    with pytest.raises(http.client.IncompleteRead):
        answer.read()
    conn.close()

    # A response kept for later: known while its client waits, not once it has left.
    def held() -> list:
        with urllib.request.urlopen(srv.http + "/held", timeout=5) as answer:
            return json.loads(answer.read())

    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as waiting:
        waiting.sendall(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_output("holding")
        assert held() == [True, True, True]
    deadline = time.monotonic() + 5
    while held() != [False, False, False]:
        assert time.monotonic() < deadline, held()
        time.sleep(0.05)

    with pytest.raises(urllib.error.HTTPError) as failed:
        urllib.request.urlopen(srv.http + "/throw", timeout=5)
    assert failed.value.code == 500
    assert failed.value.read() == b"the request callback failed: the server's log says why\n"
    assert "no such page" in srv.stderr()


def test_timer_needs_a_serving_server_to_add_and_finds_nothing_without_one():
    assert surge_exception("Surge\\Timer::tick(10, fn () => null);") == (
        "Surge\\Timer::tick() needs a serving server: call it from the server's callbacks "
        "(workerStart, open, message ...); before start(), use $server->tick()")
    assert surge_exception("echo json_encode([Surge\\Timer::clear(1), Surge\\Timer::exists(1), Surge\\Timer::list(), "
                           "Surge\\Timer::clearAll()]), ' ';") == "[false,false,[],true] no exception"


def test_timer_reaches_no_server_once_it_has_stopped():
    """A destructor run as the stopped server lets go of its callbacks added a timer to it
    (kept for ever, never run)."""
    assert run_php("""<?php
        class Late { function __destruct() {
            try { Surge\\Timer::tick(10, fn () => null); echo "added "; } catch (Surge\\Exception $e) { echo "refused "; }
            echo json_encode(Surge\\Timer::list()), " "; } }
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $late = new Late;
        $s->on('workerStart', function ($s) use ($late) { $s->tick(1000, fn () => null); echo json_encode(Surge\\Timer::list()), " "; $s->shutdown(); });
        unset($late);
        $s->start();
        echo json_encode(Surge\\Timer::list());
        """).stdout == "[1] refused [] []"


def test_swoole_settings_that_ask_for_what_surge_does_are_taken_the_others_say_how():
    assert surge_exception("$s->set(['daemonize' => 0, 'open_websocket_close_frame' => false, "
                           "'open_http_protocol' => true, 'task_enable_coroutine' => false, 'max_request' => 0]);") == "no exception"
    assert surge_exception("$s->set(['daemonize' => true]);") == (
        "setting 'daemonize' is Swoole's: Surge stays in the foreground: run it under systemd, supervisord or Docker, which keep it running")
    assert surge_exception("$s->set(['reactor_num' => 4]);") == (
        "setting 'reactor_num' is Swoole's: Surge's network threads per worker are 'worker_threads'")
    # Modes 1 and 3 promise nothing about a connection's messages that mode 2 breaks.
    assert surge_exception("$s->set(['dispatch_mode' => 1]); $s->set(['dispatch_mode' => '3']);") == "no exception"
    assert surge_exception("$s->set(['dispatch_mode' => 4]);").startswith("setting 'dispatch_mode' is Swoole's: a connection stays")
    assert surge_exception("$s->set(['log_file' => '/tmp/x.log']);").startswith("setting 'log_file' is Swoole's: Surge logs to stderr")
    # Task workers' own: a bare "unknown setting" before.
    assert surge_exception("$s->set(['task_ipc_mode' => 3, 'task_max_request' => 0]);") == "no exception"
    assert surge_exception("$s->set(['task_max_request' => 1000]);").startswith("setting 'task_max_request' is Swoole's: Surge does not restart a task worker")
    assert surge_exception("$s->set(['task_tmpdir' => '/tmp']);").endswith("set the TMPDIR environment variable")
    # In Swoole's own examples (an unknown setting before).
    assert surge_exception("$s->set(['backlog' => 128]);") == "no exception"
    assert surge_exception("$s->set(['reload_async' => true, 'open_websocket_ping_frame' => false, "
                           "'open_websocket_pong_frame' => 0, 'max_wait_time' => 5]);") == "no exception"
    assert surge_exception("$s->set(['open_websocket_ping_frame' => true]);") == (
        "setting 'open_websocket_ping_frame' is Swoole's: Surge answers pings itself and does not hand them to PHP")
    assert surge_exception("$s->set(['reload_async' => false]);").startswith("setting 'reload_async' is Swoole's: reload() stops each worker as at a stop")
    assert surge_exception("$s->set(['backlog' => 0]);").startswith("setting 'backlog' is Swoole's: Surge listens with the kernel's longest backlog")


def test_settings_read_from_the_environment_as_strings_are_taken():
    assert surge_exception("""$s->set(['worker_num' => '2', 'heartbeat_idle_time' => '30', 'websocket_compression' => 'true',
                              'log_level' => '4', 'max_conn' => '100']);
                              echo json_encode($s->setting), ' ';""") == (
        '{"worker_num":"2","heartbeat_idle_time":"30","websocket_compression":"true","log_level":"4","max_conn":"100",'
        '"task_worker_num":0} no exception')
    assert surge_exception("$s->set(['worker_num' => 'two']);") == "setting 'worker_num' must be an int, got string"
    assert surge_exception("$s->set(['log_level' => 9]);").startswith("setting 'log_level' must be off, error, warn, info or debug")


def test_a_timer_added_after_the_server_stopped_says_so():
    # It said the master process has no timers (worker processes) or was kept unrun.
    assert surge_exception("$s->set(['log_level' => 'off']); $s->on('workerStart', fn ($s) => $s->shutdown()); $s->start(); $s->after(10, fn () => 1);") == (
        "the server has stopped (start() returned): a timer added now would never run")


def test_swooles_other_server_classes_and_pid_getters():
    """Ported code type-hints Swoole\\Server or Swoole\\Http\\Server (a TypeError in every
    callback, logged while the server served on) and asks for the manager's pid."""
    out = surge_exception("""
        function onStart(Surge\\Server $server) { return $server instanceof Surge\\Http\\Server; }
        $http = new Surge\\Http\\Server('127.0.0.1', 0);
        echo json_encode([onStart($s), get_class($http), $s->manager_pid === $s->master_pid,
                          $s->getMasterPid() === getmypid(), $s->getManagerPid() === getmypid(),
                          $s->getWorkerId(), $s->getWorkerPid() === getmypid()]), ' ';""")
    assert out == '[true,"Surge\\\\WebSocket\\\\Server",true,true,true,0,true] no exception', out


def test_swooles_constructor_arguments_are_taken_and_ssl_asks_for_a_certificate():
    assert surge_exception("new Surge\\WebSocket\\Server('127.0.0.1', '0', SWOOLE_BASE, SWOOLE_SOCK_TCP6);") == "no exception"
    assert surge_exception("new Surge\\WebSocket\\Server('127.0.0.1', 0, 3);") == (
        "mode must be SWOOLE_BASE or SWOOLE_PROCESS (both serve alike here), got 3")
    assert surge_exception("(new Surge\\WebSocket\\Server('127.0.0.1', 0, SWOOLE_PROCESS, SWOOLE_SOCK_TCP | SWOOLE_SSL))->start();") == (
        "the server was made with SWOOLE_SSL: set ssl_cert_file and ssl_key_file for its certificate")


def test_push_refuses_a_fragment_and_disconnect_takes_the_rfcs_codes():
    assert surge_exception("$s->push(1, 'x', WEBSOCKET_OPCODE_TEXT, false);") == (
        "push() sends whole messages: a fragment (flags without SWOOLE_WEBSOCKET_FLAG_FIN) cannot be sent")
    assert surge_exception("$s->disconnect('1', WEBSOCKET_CLOSE_SERVER_ERROR); $s->disconnect(1, 1001);") == "no exception"
    for code in (1004, 1005, 1006, 1015, 2000, 5000):
        assert surge_exception(f"$s->disconnect(1, {code});") == f"close code must be 1000-1003, 1007-1014 or 3000-4999, got {code}"
