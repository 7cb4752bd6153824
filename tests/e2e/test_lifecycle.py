"""Time and the process: timers, heartbeats, signals, exit(), settings errors, slow callbacks,
very large messages and how connections and HTTP requests end."""

import concurrent.futures
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import SERVERS, accepts, assert_serves, close_code, free_port, run_php, settings_env, surge_exception, surge_so
from fanout_client import eventually
from rawws import OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, UPGRADE_REQUEST, RawClient

NEW_SERVER = "<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);\n"

HEARTBEAT = dict(ping_interval=0.2, heartbeat_idle_time=0.6, heartbeat_check_interval=0.1)


def server_script(tmp_path, name: str, callbacks: str, settings: str = "") -> Path:
    """A PHP script: a server on SURGE_PORT that logs warnings, with `settings` (more entries
    of the set() array) and `callbacks` (PHP statements on `$s`), then start()."""
    script = tmp_path / f"{name}.php"
    script.write_text(
        "<?php\n$s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));\n"
        f"$s->set(['log_level' => 'warn'{settings}]);\n{callbacks}\n$s->start();\n"
    )
    return script


def opened_fds(out: str) -> list[int]:
    return [int(fd) for fd in re.findall(r"^open (\d+)", out, re.M)]


def command(ws, cmd: str):
    """Sends an echo.php command and returns its decoded answer."""
    ws.send(cmd)
    return json.loads(ws.recv(timeout=5))


# --- timers ---------------------------------------------------------------------------------


def test_tick_runs_with_its_id_until_cleared(php_server):
    srv = php_server("timers.php")
    out = srv.wait_output("clear tick true")
    ticks = re.findall(r"^tick (\d+) (\d+) of (\d+)$", out, re.M)
    assert [n for _, n, _ in ticks] == ["1", "2", "3"]
    assert all(given == returned for given, _, returned in ticks), "the callback gets the id tick() returned"
    time.sleep(0.2)  # five more periods of the 40 ms tick
    assert "4 of" not in srv.stdout()


def test_after_runs_once_and_clear_timer_on_unknown_or_fired_ids_is_false(php_server):
    srv = php_server("timers.php")
    srv.wait_output("clear tick true")
    out = srv.stdout()
    assert out.count("after ran with") == 1
    assert "after ran with []" in out
    assert "clear fired after false" in out
    assert "clear unknown false" in out


def test_timers_created_before_start_run_unless_cleared(php_server):
    srv = php_server("timers.php")
    out = srv.wait_output("clear tick true")
    assert out.count("early after ran") == 1
    assert "clear before start true" in out
    assert "cancelled after ran" not in out


def test_timer_pushes_to_a_client(php_server):
    srv = php_server("timers.php")
    with connect(srv.url) as ws:
        assert [ws.recv(timeout=5) for _ in range(3)] == ["tick 1", "tick 2", "tick 3"]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.15)


def test_a_tick_slower_than_its_interval_runs_again_once_not_in_a_burst():
    """A 50 ms tick whose first call takes 1 s: the ticks due meanwhile are not all called, back
    to back, when it returns (they were queued, one per interval); the next runs once, at once
    (as Swoole's: its next time is reckoned from when the call began; Surge waited for the next
    time on the grid, here about 48 ms), then every 50 ms."""
    result = run_php("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['log_level' => 'off']);
        [$calls, $slowEnd] = [[], 0.0];
        $s->on('start', function ($s) use (&$calls, &$slowEnd) {
            $s->tick(50, function ($id) use ($s, &$calls, &$slowEnd) {
                $calls[] = microtime(true);
                if (count($calls) === 1) {
                    usleep(1000000);
                    $slowEnd = microtime(true);
                }
                if (count($calls) === 6) {
                    $s->clearTimer($id);
                    $s->shutdown();
                }
            });
        });
        $s->start();
        echo count($calls), ' ', count(array_filter($calls, fn($t) => $t >= $slowEnd && $t < $slowEnd + 0.03)), "\\n";
        printf("%d\\n", ($calls[1] - $slowEnd) * 1000);
    """, timeout=15)
    counts, gap_ms = result.stdout.splitlines()
    calls, in_30_ms = map(int, counts.split())
    assert calls == 6 and in_30_ms == 1, result.stdout + result.stderr
    assert int(gap_ms) < 25, result.stdout


def test_timers_pass_their_extra_arguments_as_swoole_does():
    """Swoole's tick($ms, $callback, ...$params) calls $callback($timerId, ...$params), and
    after($ms, $callback, ...$params) calls $callback(...$params) (they threw ArgumentCountError);
    defer($callback) runs it after the callback that asked."""
    result = run_php(NEW_SERVER + """
        $s->set(['log_level' => 'off']);
        $s->on('start', function ($s) {
            $s->tick(5, function ($id, $room, $n) use ($s) {
                echo "tick $room $n\n";
                $s->clearTimer($id);
                $s->after(5, function (...$args) use ($s) {
                    echo 'after ', json_encode($args), "\n";
                    $s->defer(function () use ($s) {
                        echo "deferred\n";
                        $s->shutdown();
                    });
                    echo "defer asked\n";
                }, ['a' => 1], null);
            }, 'lobby', 3);
        });
        $s->start();
    """, timeout=15)
    assert result.stdout == 'tick lobby 3\nafter [{"a":1},null]\ndefer asked\ndeferred\n', result.stdout + result.stderr


def test_a_callable_that_defers_itself_lets_the_events_in(php_server, tmp_path):
    """Deferred in turn, it waits for the next turn (as in Swoole): the server still answers
    and stops (it ran in one endless turn: nothing else was served, the stop never came)."""
    script = server_script(tmp_path, "defer_chain", """
        $s->on('workerStart', function ($s) {
            $again = function () use ($s, &$again) { $s->defer($again); };
            $s->defer($again);
        });
        $s->on('message', fn($s, $frame) => $s->push($frame->fd, "echo {$frame->data}"));
        $s->on('shutdown', function () { echo "shutdown\\n"; });
    """, ", 'shutdown_timeout' => 1")
    srv = php_server(script)
    with connect(srv.url) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo hi"
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0
    assert srv.stdout() == "shutdown\n"


def test_a_timer_added_in_the_masters_start_callback_throws():
    """With worker processes the master (start, shutdown) runs no event loop: its timer would
    never run there, only later in every worker forked after a reload or a crash."""
    result = run_php("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['log_level' => 'off', 'worker_num' => 2]);
        $s->on('start', function ($s) {
            foreach ([fn() => $s->tick(10, fn() => 1), fn() => $s->after(10, fn() => 1)] as $add) {
                try {
                    $add();
                    echo "no exception\\n";
                } catch (Surge\\Exception $e) {
                    echo $e->getMessage(), "\\n";
                }
            }
            $s->shutdown();
        });
        $s->start();
    """, timeout=15)
    message = "timers run in workers: the master process (start, shutdown) has none; add them in workerStart"
    assert result.stdout == f"{message}\n{message}\n", result.stdout + result.stderr


def test_subscribe_in_the_masters_start_callback_throws():
    """It reached no worker: only those forked later, to replace one, subscribed (Redis
    review): which clients got the channel hung on the crashes and reloads since."""
    result = run_php("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['log_level' => 'off', 'worker_num' => 2, 'redis' => 'redis://127.0.0.1:1']);
        $s->on('start', function ($s) {
            foreach (['subscribe', 'unsubscribe'] as $call) {
                try {
                    $s->$call('news');
                    echo "no exception\\n";
                } catch (Surge\\Exception $e) {
                    echo $e->getMessage(), "\\n";
                }
            }
            $s->shutdown();
        });
        $s->start();
    """, timeout=15)
    assert result.stdout == (
        "subscribe() in the master process (start, shutdown) reaches no worker: call it before start() or in workerStart\n"
        "unsubscribe() in the master process (start, shutdown) reaches no worker: call it before start() or in workerStart\n"
    ), result.stdout + result.stderr


def test_after_pushes_to_the_client_that_asked(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        timer_id = command(ws, "cmd:after:30")
        assert isinstance(timer_id, int) and timer_id > 0
        assert ws.recv(timeout=5) == "after 30"


# --- heartbeats -----------------------------------------------------------------------------


def test_idle_clients_are_pinged_and_stay_while_they_answer(php_server):
    srv = php_server("echo.php", env=settings_env(**HEARTBEAT))
    # This client sends nothing but the pongs its library answers the server's pings with.
    with connect(srv.url, ping_interval=None) as quiet, RawClient(srv.port) as raw:
        raw.open()
        pings = 0
        deadline = time.monotonic() + 1.4  # more than two heartbeat_idle_time periods
        while time.monotonic() < deadline:
            raw.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                opcode, payload = raw.read_frame()
            except TimeoutError:
                break
            assert opcode == OP_PING
            pings += 1
            raw.send_frame(OP_PONG, payload)
        assert pings >= 4, f"{pings} pings in 1.4 s with ping_interval 0.2"
        assert "close " not in srv.stdout()
        raw.sock.settimeout(5)
        raw.send_frame(OP_TEXT, b"alive")
        assert raw.read_frame() == (OP_TEXT, b"alive")
        assert_serves(srv, quiet)


@pytest.mark.parametrize("idle,ping,check", [(0.8, 0.4, 0.5), (1.0, 0.5, 0.5)])
def test_idle_clients_are_pinged_before_a_short_heartbeat_idle_time_drops_them(php_server, idle, ping, check):
    """heartbeat_idle_time under ping_interval + heartbeat_check_interval (0.8 s against 0.4 +
    0.5, as 8 against Swoole-style 4 + 5), or just at it (10 against 5 + 5, a sweep a moment
    late): a client just short of ping_interval at one sweep was dropped at the next, never
    pinged. Ten idle clients that answer pings, opened 50 ms apart so that some fall there,
    all stay."""
    srv = php_server("echo.php", env=settings_env(heartbeat_idle_time=idle, ping_interval=ping, heartbeat_check_interval=check))
    with contextlib.ExitStack() as stack:
        clients = []
        for _ in range(10):
            clients.append(stack.enter_context(connect(srv.url, ping_interval=None)))
            time.sleep(0.05)
        time.sleep(2.5)
        assert "close " not in srv.stdout(), srv.stdout()
        assert_serves(srv, *clients)


def test_a_heartbeat_check_interval_not_under_the_idle_time_is_warned_of(php_server):
    """No check comes between a client's last ping and its drop: say so at start."""
    srv = php_server("echo.php", env=settings_env(heartbeat_idle_time=1, ping_interval=0.5, heartbeat_check_interval=2))
    srv.wait_output("heartbeat_check_interval (2s) is not shorter than heartbeat_idle_time (1s)", stream="stderr")


def test_client_that_stops_answering_is_dropped_after_heartbeat_idle_time(php_server):
    srv = php_server("echo.php", env=settings_env(**HEARTBEAT))
    with connect(srv.url, ping_interval=None) as healthy, RawClient(srv.port) as dead:
        dead.open()
        # Reads what comes (pings) but never answers.
        elapsed = dead.wait_eof(timeout=3)
        assert 0.5 <= elapsed < 1.2, elapsed
        out = srv.wait_output("close ")
        healthy_fd = command(healthy, "cmd:info")["fd"]
        [dead_fd] = [fd for fd in opened_fds(out) if fd != healthy_fd]
        assert re.findall(r"^close (\d+)", out, re.M) == [str(dead_fd)]
        assert_serves(srv, healthy)


def test_heartbeat_check_interval_alone_drops_after_twice_it_as_swoole_does(php_server):
    """Swoole's heartbeat_idle_time is twice heartbeat_check_interval unless set; ported settings
    often give the interval alone (60 s), and with the idle time at Surge's own 60 s the sweep
    after the one that pinged a client dropped it, pong or not. A client that answers the pings
    stays through many sweeps; one that does not is dropped after about twice the interval."""
    srv = php_server("echo.php", env=settings_env(heartbeat_check_interval=0.5))
    with connect(srv.url, ping_interval=None) as healthy, RawClient(srv.port) as dead:
        dead.open()
        # Reads what comes (pings) but never answers: gone long before Surge's own 60 s.
        dead.wait_eof(timeout=4)
        time.sleep(2.5)  # five more sweeps for the client that answers
        out = srv.wait_output("close ")
        healthy_fd = command(healthy, "cmd:info")["fd"]
        assert [fd for fd in opened_fds(out) if fd != healthy_fd] == [int(fd) for fd in re.findall(r"^close (\d+)", out, re.M)]
        assert_serves(srv, healthy)


def test_the_heartbeats_drops_are_logged_a_line_a_sweep(php_server):
    """Three clients that answer nothing are dropped: the log says so in a line a sweep that
    lists their fds (it wrote a line a client, a steady stream with mobile clients)."""
    srv = php_server("echo.php", env=settings_env(heartbeat_idle_time=1, heartbeat_check_interval=0.25, log_level="info"))
    with contextlib.ExitStack() as stack:
        deaf = [stack.enter_context(RawClient(srv.port)).open() for _ in range(3)]
        for client in deaf:
            client.wait_eof(timeout=5)
    err = srv.stderr()
    lines = re.findall(r"heartbeat: dropped (\d+) connections? that sent nothing for 1s: fds? ([\d, and]+)$", err, re.M)
    listed = sorted(int(fd) for _, fds in lines for fd in re.findall(r"\d+", fds))
    assert listed == sorted(opened_fds(srv.stdout())), err
    assert sum(int(n) for n, _ in lines) == 3 and len(lines) <= 3, err


def test_heartbeat_idle_time_alone_sweeps_often_enough_to_ping_first(php_server):
    """With heartbeat_idle_time alone at 2 s, the sweep ran every 5 s (its default), found every
    client idle past 2 s, and dropped the ones that answer pings before any ping. Now it runs
    every second: a client that answers stays, one that does not is dropped."""
    srv = php_server("echo.php", env=settings_env(heartbeat_idle_time=2))
    with connect(srv.url, ping_interval=None) as healthy, RawClient(srv.port) as dead:
        dead.open()
        dead.wait_eof(timeout=4.5)
        time.sleep(3)  # three more sweeps for the client that answers
        assert_serves(srv, healthy)


# --- signals, exit(), shutdown --------------------------------------------------------------


def test_sigint_closes_every_client_with_1001_runs_shutdown_and_exits_0(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as a, connect(srv.url) as b:
        assert_serves(srv, a, b)
        srv.signal(signal.SIGINT)
        assert close_code(a) == 1001
        assert close_code(b) == 1001
    assert srv.wait(timeout=5) == 0
    out = srv.stdout()
    assert out.index("shutdown") < out.index("start returned true")


def test_messages_sent_just_before_sigterm_reach_the_message_callback(php_server):
    # A one-event queue: what the client sends while PHP sleeps waits in the engine and the
    # socket, not in the queue, when the signal arrives.
    srv = php_server("echo.php", env=settings_env(event_queue_size=1))
    with connect(srv.url) as ws:
        ws.send("cmd:sleep:300")
        srv.wait_output("cmd:sleep:300")
        for i in range(5):
            ws.send(f"last words {i}")
        srv.signal(signal.SIGTERM)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=5) == 0
    out = srv.stdout()
    assert [line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("message ")] == [
        "cmd:sleep:300",
        *[f"last words {i}" for i in range(5)],
    ]
    assert out.index("last words 4") < out.index("shutdown")


def test_the_drain_after_a_stop_ends_at_shutdown_timeout(php_server, tmp_path):
    """39 messages wait while the first one's callback sleeps, then calls shutdown(); each
    takes 100 ms. With shutdown_timeout 1 the drain hands PHP about 10 of them, not all 39
    (4 s)."""
    script = server_script(tmp_path, "drain", """
        $handled = 0;
        $s->on('message', function ($s, $frame) use (&$handled) {
            if ($handled++ === 0) {
                usleep(300000);
                $s->shutdown();
            } else {
                usleep(100000);
            }
        });
        $s->on('shutdown', function () use (&$handled) {
            echo "handled $handled\\n";
        });
    """, ", 'shutdown_timeout' => 1")
    srv = php_server(script)
    with connect(srv.url) as ws:
        ws.send("first")
        time.sleep(0.1)  # the first message is a batch of its own; the others queue
        for i in range(39):
            ws.send(f"queued {i}")
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0
    handled = int(re.search(r"^handled (\d+)$", srv.stdout(), re.M)[1])
    assert 2 <= handled <= 25, srv.stdout()


def test_a_backlog_queued_before_a_stop_signal_is_served_for_shutdown_timeout_at_most(php_server, tmp_path):
    """1000 messages of 20 ms each (20 s) wait when SIGTERM comes. They are still served, and
    their echoes go out, but for shutdown_timeout (1 s) at most; then 1001, the shutdown
    callback, status 0. The whole backlog was served first, and shutdown_timeout + 5 s after
    the signal the stop watchdog ended the process (status 1, no 1001, no shutdown callback)."""
    script = server_script(tmp_path, "backlog", """
        $handled = 0;
        $s->on('message', function ($s, $frame) use (&$handled) {
            $handled++;
            usleep(20000);
            $s->push($frame->fd, "echo {$frame->data}");
        });
        $s->on('shutdown', function () use (&$handled) { echo "handled $handled\\n"; });
    """, ", 'shutdown_timeout' => 1, 'log_level' => 'info'")
    srv = php_server(script)
    with connect(srv.url, max_queue=None) as ws:
        for i in range(1000):
            ws.send(str(i))
        assert ws.recv(timeout=5) == "echo 0"
        srv.signal(signal.SIGTERM)
        echoes = ["echo 0"]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                echoes.append(ws.recv(timeout=10))
    assert closed.value.rcvd.code == 1001
    assert echoes == [f"echo {i}" for i in range(len(echoes))]
    assert srv.wait(timeout=10) == 0, srv.stderr()
    handled = int(re.search(r"^handled (\d+)$", srv.stdout(), re.M)[1])
    assert len(echoes) <= handled < 1000
    log = srv.stderr()
    dropped = re.search(r"still queued: (\d+) dropped, not handed to PHP", log)
    assert dropped and log.index("SIGTERM received: shutting down") < dropped.start(), log
    # All of them, unless some were still in the socket when the stop came (a loaded machine).
    assert 0 < int(dropped[1]) <= 1000 - handled, log
    assert "PHP did not finish" not in log


def test_a_callback_that_outlasts_shutdown_timeout_with_nothing_queued_drops_nothing(php_server, tmp_path):
    """A callback of 2 s runs when SIGINT comes, with shutdown_timeout 1 and nothing else
    queued: its answer goes out, then 1001; the log says the signal came and warns of no
    dropped messages (it did, counting the signal's own event as one)."""
    script = server_script(tmp_path, "one_slow", """
        $s->on('message', function ($s, $frame) {
            usleep(2000000);
            $s->push($frame->fd, "done {$frame->data}");
        });
    """, ", 'shutdown_timeout' => 1, 'log_level' => 'info'")
    srv = php_server(script)
    with connect(srv.url) as ws:
        ws.send("slow")
        time.sleep(0.3)
        srv.signal(signal.SIGINT)
        assert ws.recv(timeout=10) == "done slow"
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0, srv.stderr()
    log = srv.stderr()
    assert "SIGINT received: shutting down" in log, log
    assert "dropped" not in log, log


@pytest.mark.parametrize("ms", [500, 2000])
def test_a_backlog_cut_short_by_shutdown_timeout_still_runs_the_close_callbacks(php_server, tmp_path, ms):
    """Two clients' 10 messages of 0.5 or 2 s each wait when SIGTERM comes. Once shutdown_timeout
    (3 s) has passed since the signal, the messages left are not handed to PHP: the clients'
    closes are, and the process stops with status 0 (the drain spent its time on the messages,
    whose answers could no longer go out, and the close callbacks never ran; with 2 s callbacks
    the stop watchdog ended the process)."""
    script = server_script(tmp_path, "backlog_closes", f"""
        $s->on('message', function ($s, $frame) {{
            usleep({ms} * 1000);
            $s->push($frame->fd, "done {{$frame->data}}");
        }});
        $s->on('close', function ($s, $fd) {{ echo "close $fd\\n"; }});
        $s->on('shutdown', function () {{ echo "shutdown\\n"; }});
    """, ", 'shutdown_timeout' => 3")
    srv = php_server(script)
    with connect(srv.url) as a, connect(srv.url) as b:
        for i in range(10):
            a.send(f"a{i}")
            b.send(f"b{i}")
        time.sleep(0.3)
        srv.signal(signal.SIGTERM)
        assert close_code(a) == 1001
        assert close_code(b) == 1001
    assert srv.wait(timeout=15) == 0, srv.stderr()
    out = srv.stdout()
    assert len(re.findall(r"^close \d+$", out, re.M)) == 2, out
    assert "shutdown" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_does_not_cut_a_running_callback_short(php_server, sig):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:sleep:400")
        srv.wait_output("cmd:sleep:400")
        srv.signal(sig)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=5) == 0
    slept = int(re.search(r"^slept (\d+)$", srv.stdout(), re.M)[1])
    assert slept >= 400


def test_a_callback_that_does_not_return_does_not_keep_a_stopped_server(php_server):
    """The stop waits for a running callback (above), but not for ever: shutdown_timeout and
    5 s after SIGTERM the process ends, status 1, saying why."""
    srv = php_server("echo.php", env=settings_env(shutdown_timeout=1))
    with connect(srv.url) as ws:
        # A child forked by PHP that exits shares the watchdog's pipe: it must not end the watch.
        assert command(ws, "cmd:fork") is True
        ws.send("cmd:sleep:120000")
        srv.wait_output("cmd:sleep:120000")
        srv.signal(signal.SIGTERM)
        assert srv.wait(timeout=30) == 1
    assert "PHP did not finish after the stop signal (1 received" in srv.stderr()
    assert "slept" not in srv.stdout()


def test_a_second_signal_ends_a_server_stuck_in_a_callback_at_once(php_server):
    """With a long shutdown_timeout, Ctrl-C twice: the process ends a second after the second,
    not 65 s after the first."""
    srv = php_server("echo.php", env=settings_env(shutdown_timeout=60))
    with connect(srv.url) as ws:
        ws.send("cmd:sleep:120000")
        srv.wait_output("cmd:sleep:120000")
        srv.signal(signal.SIGINT)
        time.sleep(1.5)  # closer, two signals are one Ctrl-C reaching the group and a wrapper
        srv.signal(signal.SIGINT)
        assert srv.wait(timeout=30) == 1
    assert "PHP did not finish after the stop signal (2 received" in srv.stderr()


def test_a_second_ctrl_c_during_the_backlog_stops_at_once_with_1001(php_server, tmp_path):
    """Ctrl-C while 20 messages of 0.5 s wait, and again 1.5 s later: the second one is "now",
    and the clients get their 1001 (its event waited behind the backlog, and the stop watchdog
    ended the process a second later: status 1, no 1001, no shutdown callback)."""
    script = server_script(tmp_path, "backlog_twice", """
        $s->on('message', function ($s, $frame) { usleep(500000); });
        $s->on('shutdown', function () { echo "shutdown\\n"; });
    """, ", 'shutdown_timeout' => 10")
    srv = php_server(script)
    with connect(srv.url) as ws:
        for i in range(20):
            ws.send(f"m{i}")
        time.sleep(0.3)
        srv.signal(signal.SIGINT)
        time.sleep(1.5)
        srv.signal(signal.SIGINT)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0, srv.stderr()
    assert "shutdown" in srv.stdout()


def test_two_signals_within_a_second_are_one_stop(php_server, tmp_path):
    """One Ctrl-C that reaches the process twice (the terminal's group, then a wrapper such as
    npm forwarding it) does not end a shutdown callback that takes 2.5 s: one stop, not two."""
    script = server_script(tmp_path, "slow_shutdown", """
        $s->on('message', fn() => null);
        $s->on('shutdown', function () { usleep(2500000); echo "shutdown done\\n"; });
    """)
    srv = php_server(script)
    srv.signal(signal.SIGINT)
    time.sleep(0.1)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=30) == 0
    assert "shutdown done" in srv.stdout()


def test_the_close_callback_still_gets_the_client_info_and_channels(php_server, tmp_path):
    """Swoole's onClose idiom: getClientInfo($fd) (remote_ip, websocket_status ...) and the
    channels it was in, for the connection that just closed (they were false and [])."""
    script = server_script(tmp_path, "close_info", """
        $s->on('open', function ($s, $req) { $s->join($req->fd, 'room'); echo "open\\n"; });
        $s->on('message', fn() => null);
        $s->on('close', function ($s, $fd) {
            $info = $s->getClientInfo($fd);
            echo json_encode([$info['remote_ip'], $info['websocket_status'], $info['connect_time'] > 0,
                              $s->channelsOf($fd), $s->exist($fd), $s->getClientInfo($fd + 1)]), "\\n";
        });
    """)
    srv = php_server(script)
    with connect(srv.url):
        srv.wait_output("open")
    out = srv.wait_output("]\n")
    # Closed by the client: Swoole's status is still WEBSOCKET_STATUS_ACTIVE (3) there.
    assert json.loads(out.splitlines()[-1]) == ["127.0.0.1", 3, True, ["room"], False, False]
    with connect(srv.url) as ws:
        deadline = time.monotonic() + 5
        while srv.stdout().count("open\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        srv.signal(signal.SIGTERM)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0
    # Closed by the server (the stop's 1001): WEBSOCKET_STATUS_CLOSING (4).
    assert json.loads(srv.stdout().splitlines()[-1]) == ["127.0.0.1", 4, True, ["room"], False, False]


def test_clients_that_never_answer_the_close_are_cut_off_at_shutdown_timeout_with_their_close_callbacks(php_server, tmp_path):
    """Clients that never answer their 1001 (sleeping phones) are cut off once shutdown_timeout
    is over, with a warning that counts them, and their close callbacks run then, $reactorId
    -1 (they did not: a count of users kept them after every stop or reload that cut clients
    off); a client that answers gets its own, as before."""
    script = server_script(tmp_path, "deaf", """
        $open = 0;
        $s->on('open', function ($s, $req) use (&$open) { $open++; echo "open {$req->fd}\n"; });
        $s->on('message', fn() => null);
        $s->on('close', function ($s, $fd, $reactorId) use (&$open) {
            $open--;
            echo "close $fd $reactorId ", json_encode([$s->exist($fd), $s->getClientInfo($fd)['remote_ip'] ?? null]), "\n";
        });
        $s->on('shutdown', function () use (&$open) { echo "still open: $open\n"; });
    """, ", 'shutdown_timeout' => 0.5")
    srv = php_server(script)
    with RawClient(srv.port) as deaf, RawClient(srv.port) as also_deaf, connect(srv.url) as answering:
        deaf.open()
        also_deaf.open()
        deadline = time.monotonic() + 5
        while len(opened_fds(srv.stdout())) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        srv.signal(signal.SIGTERM)
        assert close_code(answering) == 1001
        assert srv.wait(timeout=30) == 0
    out = srv.stdout()
    closes = re.findall(r"^close (\d+) (-?\d+) (.*)$", out, re.M)
    assert sorted(int(fd) for fd, _, _ in closes) == sorted(opened_fds(out)), out
    assert {(reactor, info) for _, reactor, info in closes} == {("-1", '[false,"127.0.0.1"]')}, out
    assert out.endswith("still open: 0\n"), out
    assert "shutdown_timeout (500ms) reached: 2 connections still open are cut off, 2 close callbacks run at that point" in srv.stderr(), srv.stderr()


def test_timers_added_while_stopping_never_run(php_server, tmp_path):
    """As those added before are cleared at the stop, those a close callback adds during the
    drain never run (they did: a tick ran until the drain ended); defer() still does."""
    script = server_script(tmp_path, "late_timers", """
        $s->on('open', function ($s, $req) { echo "open\\n"; });
        $s->on('message', fn() => null);
        $s->on('close', function ($s, $fd) {
            $s->after(1, function () { echo "after ran\\n"; });
            $s->tick(1, function () { echo "tick ran\\n"; });
            $s->defer(function () { echo "deferred ran\\n"; });
            usleep(100000);
            echo "closed\\n";
        });
    """)
    srv = php_server(script)
    with connect(srv.url) as ws:
        srv.wait_output("open")
        srv.signal(signal.SIGTERM)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=30) == 0
    assert srv.stdout() == "open\nclosed\ndeferred ran\n"


def test_two_signals_within_a_second_do_not_cut_the_close_handshakes_short(php_server, tmp_path):
    """A client that answers the server's 1001 half a second late (a phone on a slow link) while
    the same Ctrl-C reaches the process twice: its close callback still runs (the second signal
    ended the drain at once, and the callback never ran)."""
    script = server_script(tmp_path, "closes", """
        $s->on('open', function ($s, $req) { echo "open {$req->fd}\\n"; });
        $s->on('message', fn() => null);
        $s->on('close', function ($s, $fd) { echo "close $fd\\n"; });
    """)
    srv = php_server(script)
    with RawClient(srv.port) as slow:
        slow.open()
        srv.wait_output("open ")
        srv.signal(signal.SIGINT)
        time.sleep(0.1)
        srv.signal(signal.SIGTERM)
        assert slow.read_close()[0] == 1001
        time.sleep(0.5)
        slow.send_frame(OP_CLOSE, struct.pack("!H", 1001))
        assert srv.wait(timeout=30) == 0
    assert re.findall(r"^(open|close) \d+$", srv.stdout(), re.M) == ["open", "close"], srv.stdout()


def test_the_same_ctrl_c_twice_while_php_is_behind_is_still_one_stop(php_server, tmp_path):
    """Two signals 20 ms apart while the event queue is full (a slow callback, clients still
    sending): the second was timed only once the first found room in the queue, seconds later,
    and ended the drain, so no close callback ran."""
    script = server_script(tmp_path, "behind", """
        $s->on('open', function ($s, $req) { echo "open\\n"; });
        $s->on('message', function () { usleep(100000); });
        $s->on('close', function ($s, $fd) { echo "close\\n"; });
    """, ", 'event_queue_size' => 2, 'shutdown_timeout' => 30")
    srv = php_server(script)
    clients = [connect(srv.url) for _ in range(15)]
    try:
        deadline = time.monotonic() + 5
        while srv.stdout().count("open\n") < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        for ws in clients:
            for i in range(2):
                ws.send(f"m{i}")
        time.sleep(0.2)  # PHP is behind: 30 messages of 100 ms, the queue full
        srv.signal(signal.SIGINT)
        time.sleep(0.02)
        srv.signal(signal.SIGINT)
        for ws in clients:
            assert close_code(ws) == 1001
    finally:
        for ws in clients:
            ws.close()
    assert srv.wait(timeout=30) == 0
    assert srv.stdout().count("close\n") == 15, srv.stdout()


def test_ctrl_c_pressed_twice_during_a_long_callback_stops_at_once(php_server, tmp_path):
    """Two signals 1.2 s apart while a callback runs: the user wants out now, so once it returns
    the server stops without waiting for a client that never answers its 1001, and runs its
    shutdown callback. Both were seen only after the callback (worker_threads 0), or in one
    batch with the first (I/O threads), and taken as one stop: the drain waited, and the stop
    watchdog ended the process 1 s after the second (exit status 1, no shutdown callback)."""
    script = server_script(tmp_path, "long_callback", """
        $s->on('open', function ($s, $req) { echo "open\\n"; });
        $s->on('message', function () { echo "busy\\n"; usleep(1700000); echo "done\\n"; });
        $s->on('shutdown', function () { echo "shutdown ran\\n"; });
    """, ", 'shutdown_timeout' => 30")
    srv = php_server(script)
    with RawClient(srv.port) as deaf, connect(srv.url) as ws:
        deaf.open()
        srv.wait_output("open\nopen\n")
        ws.send("work")
        srv.wait_output("busy")
        srv.signal(signal.SIGINT)
        time.sleep(1.2)
        srv.signal(signal.SIGINT)
        assert srv.wait(timeout=30) == 0, srv.stderr()
    assert srv.stdout().endswith("busy\ndone\nshutdown ran\n"), srv.stdout()


def test_a_second_server_in_the_same_process_stops_gracefully_on_sigterm(php_server, tmp_path):
    """The first server's end gives the signals their default action back; the second one
    must take them again (it died of its SIGTERM at once: no shutdown callback, status -15)."""
    script = tmp_path / "two_servers.php"
    script.write_text("""<?php
        $first = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $first->set(['log_level' => 'warn']);
        $first->on('start', fn($s) => $s->shutdown());
        $first->start();
        $second = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $second->set(['log_level' => 'warn']);
        $second->on('message', fn() => null);
        $second->on('shutdown', function () { echo "second stopped\\n"; });
        $second->start();
        echo "after the second\\n";
    """)
    srv = php_server(script)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=30) == 0, srv.stderr()
    assert srv.stdout().endswith("second stopped\nafter the second\n"), srv.stdout()


def test_exit_in_a_callback_exits_the_process_with_its_code(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:exit")
        start = time.monotonic()
        assert srv.wait(timeout=5) == 3
        assert time.monotonic() - start < 1.5
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_what_a_callback_sent_before_exit_still_arrives(php_server, tmp_path):
    """push() or end() just before exit(): the message and the answer arrive, then a 1001
    (the engine went at once: an empty reply, or nothing and a reset)."""
    script = server_script(tmp_path, "exit_after_send", """
        $s->on('message', function ($s, $frame) {
            foreach ($s->connections as $fd) {
                $s->push($fd, 'server restarting');
            }
            exit(3);
        });
        $s->on('request', function ($req, $res) {
            if ($req->server['request_uri'] === '/quit') {
                exit(5);
            }
            $res->end('bye');
            exit(4);
        });
    """)
    srv = php_server(script)
    with connect(srv.url) as other, connect(srv.url) as ws:
        ws.send("go")
        for client in (ws, other):
            assert client.recv(timeout=5) == "server restarting"
            assert close_code(client) == 1001
    assert srv.wait(timeout=10) == 3
    srv = php_server(script)
    with urllib.request.urlopen(srv.http + "/", timeout=5) as res:
        assert res.read() == b"bye"
    assert srv.wait(timeout=10) == 4
    # Exited before answering: the 500 says so (it said end() was not called).
    srv = php_server(script)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(srv.http + "/quit", timeout=5)
    assert refused.value.code == 500
    assert refused.value.read() == b"the request callback called exit(): this server process is ending\n"
    assert srv.wait(timeout=10) == 5


@pytest.mark.parametrize("cmd", ["fatal", "oom"])
def test_a_fatal_error_in_a_callback_closes_every_client_with_1011_and_php_ends_with_255(php_server, cmd):
    srv = php_server("echo.php")
    with connect(srv.url) as other, connect(srv.url) as ws:
        ws.send(f"cmd:{cmd}")
        assert_ended_by_a_fatal_error(srv, [ws, other])
    err = srv.stderr()
    assert "Fatal error: " in err and "fatal error in the message callback" in err, err


def test_a_fatal_error_runs_no_close_callback_for_clients_cut_off_after_it(php_server):
    """A client that never answers the 1011 is cut off at shutdown_timeout: no PHP runs for it
    either (the deadline's close callbacks are a stop's, not a fatal error's)."""
    srv = php_server("echo.php", env=settings_env(shutdown_timeout=0.5))
    with RawClient(srv.port) as deaf, connect(srv.url) as ws:
        deaf.open()
        srv.wait_output("open 2")
        ws.send("cmd:fatal")
        assert_ended_by_a_fatal_error(srv, [ws])
    assert "1 connections still open are cut off, 0 close callbacks run" in srv.stderr(), srv.stderr()


def assert_ended_by_a_fatal_error(srv, clients):
    """PHP ended with 255, every client got 1011, and no PHP code ran after the fatal error:
    neither the close nor the shutdown callback, and start() did not return to the script."""
    assert srv.wait(timeout=10) == 255
    for client in clients:
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)
        assert close_code(client) == 1011
    out = srv.stdout()
    assert re.search(r"^(close|shutdown|start returned)", out, re.M) is None, out


@pytest.mark.parametrize("path", ["/fatal", "/oom"])
def test_a_fatal_error_in_the_request_callback_answers_500_before_php_ends(php_server, path):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    with connect(srv.url) as ws:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(srv.http + path, timeout=5)
        assert err.value.code == 500
        assert b"fatal error" in err.value.read()
        assert srv.wait(timeout=10) == 255
        assert close_code(ws) == 1011


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_request_under_way_when_the_server_stops_gets_its_answer(php_server, sig):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    answer = concurrent.futures.ThreadPoolExecutor(1).submit(
        lambda: urllib.request.urlopen(srv.http + "/slow", timeout=5).status
    )
    srv.wait_output("slow request")
    srv.signal(sig)
    assert answer.result(timeout=5) == 201
    assert srv.wait(timeout=5) == 0


def test_a_long_poll_kept_past_the_stop_gets_the_answer_worker_stop_gives(php_server):
    # With worker_threads 0 end() said true and the client got no answer at all: nothing wrote
    # it after the drain.
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(shutdown_timeout=1)})
    answer = concurrent.futures.ThreadPoolExecutor(1).submit(
        lambda: urllib.request.urlopen(srv.http + "/long-poll", timeout=10)
    )
    srv.wait_output("long poll kept")
    srv.signal(signal.SIGTERM)
    with pytest.raises(urllib.error.HTTPError) as refused:
        answer.result(timeout=10)
    assert refused.value.code == 503 and refused.value.read() == b"server stopping\n"
    assert srv.wait(timeout=5) == 0
    assert "long poll answered: true" in srv.stdout()


def test_an_idle_keep_alive_http_client_does_not_hold_up_the_stop(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(shutdown_timeout=30)})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/fine")
    res = conn.getresponse()
    assert res.status == 201 and res.getheader("connection", "keep-alive") != "close"
    res.read()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=5) == 0
    conn.close()


def test_a_stream_under_way_ends_when_the_server_stops(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(shutdown_timeout=30)})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/stream-forever")
    res = conn.getresponse()
    first = res.read1(100)
    assert first.startswith(b"data: 1\n\n")
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=5) == 0
    body = first + res.read()  # IncompleteRead if the body was cut off instead of ended
    assert body.endswith(b"\n\n") and res.isclosed()


# --- settings and events --------------------------------------------------------------------




@pytest.mark.parametrize(
    "call, named",
    [
        ("$s->set(['heartbeat_idel_time' => 3]);", "'heartbeat_idel_time'"),
        ("$s->set(['max_connection' => 'ten']);", "'max_connection'"),
        ("$s->set(['ping_interval' => 'soon']);", "'ping_interval'"),
        ("$s->set(['worker_threads' => -1]);", "'worker_threads'"),
        ("$s->set(['worker_threads' => 257]);", "'worker_threads'"),
        ("$s->set(['worker_num' => 0]);", "'worker_num'"),
        ("$s->set(['task_worker_num' => 257]);", "'task_worker_num'"),
        ("$s->set(['websocket_compression' => 'yes']);", "'websocket_compression'"),
        ("$s->set(['document_root' => '/no/such/directory']);", "'document_root'"),
        ("$s->set(['document_root' => __FILE__]);", "'document_root'"),
        # Settings that go together are checked by start() (set() calls add up).
        ("$s->set(['enable_static_handler' => true]); $s->start();", "'enable_static_handler' needs 'document_root'"),
        ("$s->set(['upload_tmp_dir' => '/no/such/directory']);", "setting 'upload_tmp_dir': /no/such/directory: No such file or directory"),
        # Not writable even by root: the CI runs as root.
        ("$s->set(['upload_tmp_dir' => '/proc']);", "setting 'upload_tmp_dir': cannot write in /proc: "),
        ("$s->set(['static_handler_locations' => 'assets']);", "'static_handler_locations'"),
        ("$s->set(['static_handler_locations' => ['/ok', 'assets']]);", "'static_handler_locations' must list URL paths like ['/assets'], got 'assets'"),
        ("$s->set(['http_index_files' => ['public/index.html']]);", "'http_index_files' must list file names like ['index.html'], got 'public/index.html'"),
        # An array that contains itself: refused, not followed down forever.
        ("$a = ['*']; $a[] = &$a; $s->set(['allowed_origins' => $a]);", "'allowed_origins'"),
        # An object was taken for "none": Redis left off without a word.
        ("$s->set(['redis' => new stdClass]);", "setting 'redis' must be a value such as an int, a string or an array, got object"),
        ("$s->set(['worker_threads' => new stdClass]);", "got object"),
        ("$s->set(['allowed_origins' => [new stdClass]]);", "setting 'allowed_origins' nests arrays too deep (or holds an object)"),
        ("$s->on('mesage', fn() => null);", "'mesage'"),
        ("$s->on('message', 'no_such_function');", "'message'"),
        ("$s->on('open', 42);", "'open'"),
        # Resolved where on() is called: another class's private method is not callable here.
        ("class H { private function hidden() {} } $s->on('close', [new H, 'hidden']);", "'close'"),
        ("$s->tick(10, 'no_such_function');", "timer callback"),
        ("$s->after(10, [new ArrayObject(), 'no_such_method']);", "timer callback"),
    ],
)
def test_bad_setting_or_event_throws_surge_exception_naming_it(call, named):
    r = run_php(NEW_SERVER + "try { " + call + " echo 'no exception'; }\n"
                "catch (Surge\\Exception $e) { echo get_class($e), ': ', $e->getMessage(); }")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Surge\\Exception: "), r.stdout
    assert named in r.stdout


def test_worker_num_1_and_task_worker_num_0_are_accepted():
    r = run_php(NEW_SERVER + "var_export($s->set(['worker_num' => 1, 'task_worker_num' => 0]));")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "true"


def test_task_workers_and_pusher_do_not_go_together():
    r = run_php(NEW_SERVER + "try { $s->set(['task_worker_num' => 1, 'pusher' => [['app_id' => '1', 'key' => 'k', 'secret' => 's']]]); $s->start(); }"
                " catch (Surge\\Exception $e) { echo $e->getMessage(); }")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "setting 'pusher' needs 'task_worker_num' 0: the Pusher protocol is served by one process"


def test_set_after_start_throws(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        answer = command(ws, 'cmd:set:{"max_connection": 5}')
        assert answer["exception"] == "Surge\\Exception"
        assert "start" in answer["message"]
        assert_serves(srv, ws)


def test_start_from_a_callback_throws_and_the_running_server_goes_on():
    result = run_php("""<?php
        $a = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $a->set(['log_level' => 'off']);
        $a->on('start', fn($a) => $a->after(10, function () use ($a) {
            $b = new Surge\\WebSocket\\Server('127.0.0.1', 0);
            try {
                $b->start();
                echo "started\\n";
            } catch (Surge\\Exception $e) {
                echo $e->getMessage(), "\\n";
            }
            $a->shutdown();
        }));
        var_dump($a->start());
    """, timeout=15)
    assert result.stdout == "start() cannot be called from a callback: a server is already serving in this process\nbool(true)\n", result.stderr


def test_a_server_serves_once_and_start_again_throws():
    # After start() returns, its callbacks are released: a second start() would serve without
    # them, so it throws instead.
    result = run_php(NEW_SERVER + """
        $s->set(['log_level' => 'off']);
        $s->on('start', fn($s) => $s->shutdown());
        var_dump($s->start());
        try {
            $s->start();
            echo "served again\n";
        } catch (Surge\\Exception $e) {
            echo $e->getMessage(), "\n";
        }
    """, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "bool(true)\nthis server has served and stopped: create a new Surge\\WebSocket\\Server to serve again\n"
    ), result.stdout


@pytest.mark.parametrize("call, why", [
    ("$s->defer(fn () => 1);", "a callback deferred now would never run"),
    ("$s->on('message', fn () => 1);", "a callback registered now would never be called"),
])
def test_a_callback_handed_over_after_the_server_stopped_is_refused(call, why):
    # Both said true and kept the callable, unrun, until the script ended (with all it held).
    assert surge_exception("$s->set(['log_level' => 'off']); $s->on('workerStart', fn ($s) => $s->shutdown()); $s->start(); " + call) == (
        "the server has stopped (start() returned): " + why)


# --- slow callbacks -------------------------------------------------------------------------


# With worker_threads 0 a blocking callback stalls all network work, every connection's.
@pytest.mark.io_threads_only
def test_a_blocking_callback_does_not_stop_pings_and_heartbeats_of_others(php_server):
    srv = php_server("echo.php", env=settings_env(**HEARTBEAT))
    with connect(srv.url, ping_interval=None) as sleeper, connect(srv.url, ping_interval=None) as other:
        sleeper.send("cmd:sleep:1000")  # longer than heartbeat_idle_time
        srv.wait_output("cmd:sleep:1000")
        start = time.monotonic()
        assert other.ping(b"during the sleep").wait(timeout=0.5), "the server answers pings while PHP sleeps"
        assert time.monotonic() - start < 0.5
        with pytest.raises(TimeoutError):
            sleeper.recv(timeout=0)  # PHP is still sleeping
        assert int(sleeper.recv(timeout=5)) >= 1000
        assert "close " not in srv.stdout()
        assert_serves(srv, sleeper, other)


# --- large messages -------------------------------------------------------------------------


def test_very_large_messages_arrive_intact(php_server):
    size = 5 * 1024 * 1024
    srv = php_server("echo.php", env=settings_env(package_max_length=8 * 1024 * 1024, socket_buffer_size=8 * 1024 * 1024))
    with connect(srv.url, max_size=size) as ws:
        data = os.urandom(size)
        ws.send(data)
        assert ws.recv(timeout=10) == data
        ws.send(f"cmd:big:{size}")
        pushed = ws.recv(timeout=10)
        assert pushed == b"\xab" * size
        assert ws.recv(timeout=5) == "true"


# --- how connections and requests end ------------------------------------------------------


def test_close_closes_with_1000(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:close")
        assert close_code(ws) == 1000
    srv.wait_output("close ")


@pytest.mark.parametrize("code", [1001, 1008, 1011])
def test_disconnect_with_a_code_of_the_rfc_closes_with_it(php_server, code):
    """WEBSOCKET_CLOSE_POLICY_ERROR (1008) is what an auth check in `open` sends, as in Swoole."""
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send(f"cmd:code:{code}")
        assert close_code(ws) == code


@pytest.mark.parametrize("code", [1005, 1006, 1015, 2999, 5000])
def test_disconnect_with_a_code_a_server_may_not_send_throws(php_server, code):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        answer = command(ws, f"cmd:code:{code}")
        assert answer["exception"] == "Surge\\Exception"
        assert str(code) in answer["message"]
        assert_serves(srv, ws)


@pytest.mark.parametrize("path", ["/forget", "/throw"])
def test_request_callback_that_never_ends_the_response_gives_500(php_server, path):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    start = time.monotonic()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(srv.http + path, timeout=5)
    assert err.value.code == 500
    assert time.monotonic() - start < 1
    with urllib.request.urlopen(srv.http + "/fine", timeout=5) as res:
        assert res.status == 201


@pytest.mark.parametrize("path", ["/write-and-forget", "/write-then-fatal"])
def test_a_streamed_body_ends_when_freed_and_is_cut_short_by_a_fatal_error(php_server, path):
    """After write() the status is sent. A Response freed without end() ends its body, as
    Swoole does; a fatal error closes it without the last chunk, so the client knows it is
    incomplete (a download must not look whole)."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", path)
    res = conn.getresponse()
    assert res.status == 200
    if path == "/write-and-forget":
        assert res.read() == b"part one\n"
        return
    with pytest.raises(http.client.IncompleteRead) as cut:
        res.read()
    assert cut.value.partial == b"part one\n"


# --- callables ------------------------------------------------------------------------------


def test_every_kind_of_php_callable_runs_as_a_callback(php_server):
    # Callables are resolved where on() or after() is called, so a class may register its own
    # private methods; __call and __callStatic trampolines are made anew for every call.
    srv = php_server("callables.php")
    with connect(srv.url) as ws:
        assert ws.recv(timeout=5) == "private method"
        got = []
        for kind in ["call", "invokable", "static-magic", "function", "closure", "caller-this", "call"]:
            ws.send(f"use:{kind}")
            assert ws.recv(timeout=5) == "switched"
            for n in range(2):
                ws.send(f"m{n}")
                got.append(ws.recv(timeout=5))
    assert got == [
        "__call viaCall: m0", "__call viaCall: m1",
        "invokable: m0", "invokable: m1",
        "__callStatic viaCallStatic: m0", "__callStatic viaCallStatic: m1",
        "function name: m0", "function name: m1",
        "closure: m0", "closure: m1",
        # A method named by its class, registered from its own object: called on that object,
        # which the callback keeps alive (its memory freed, another object took it).
        "the caller's $this: m0", "the caller's $this: m1",
        "__call viaCall: m0", "__call viaCall: m1",
    ]
    out = srv.wait_output("static method closed")
    assert "private timer" in out
    assert "not callable" not in srv.stderr() + out


def test_a_fatal_error_in_a_destructor_after_a_callback_closes_every_client_with_1011(php_server):
    # The one-shot timer's closure goes after it ran, outside the callback: its captured
    # object's destructor fails there.
    srv = php_server("echo.php")
    with connect(srv.url) as other, connect(srv.url) as ws:
        ws.send("cmd:fatal-later")
        assert ws.recv(timeout=5) == "true"
        assert_ended_by_a_fatal_error(srv, [ws, other])
    err = srv.stderr()
    assert "Fatal error: fatal in a destructor" in err and "fatal error outside a callback" in err, err


def test_a_destructor_run_as_surge_lets_a_callback_go_may_call_the_server(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        # clearTimer() lets the timer's closure go; its captured object's destructor adds a timer.
        ws.send("cmd:clear-held")
        assert ws.recv(timeout=5) == "true"
        assert ws.recv(timeout=5) == "timer from a destructor"
        # on() replaces the close callback; the old one's captured object sets it again.
        ws.send("cmd:replace-held")
        assert json.loads(ws.recv(timeout=5)) == [True, True]
    srv.wait_output("replaced in a destructor")
    assert "panic" not in srv.stderr().lower(), srv.stderr()


@pytest.mark.io_threads_only
def test_a_stop_signal_frees_the_port_while_a_callback_still_runs(php_server):
    """SIGTERM while a callback takes seconds: the port was held (and new clients taken in, only
    to be closed) until PHP heard of the signal, so the server that replaces it could not
    listen; a worker orphaned by a killed master kept it so. It is let go at once."""
    srv = php_server("echo.php", env=settings_env(shutdown_timeout=10))
    with connect(srv.url) as ws:
        ws.send("cmd:sleep:3000")
        srv.wait_output("message")
        srv.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while True:
            try:
                socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            except ConnectionResetError:
                pass  # in the queue of the listener as it closed: the next is refused
            assert time.monotonic() < deadline, "still accepting 2 s after SIGTERM"
            time.sleep(0.05)
        assert "slept" not in srv.stdout(), "the callback was still running"
        with socket.socket() as replacement:
            # As a server binds (SO_REUSEADDR: the port's connections may stay).
            replacement.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            replacement.bind(("127.0.0.1", srv.port))
            replacement.listen()
        assert close_code(ws) == 1001
    assert srv.wait(timeout=15) == 0


@contextlib.contextmanager
def echo_server_on_pipes(**pipes):
    """echo.php in a process of its own, `pipes` as its stdout or stderr (the php_server fixture
    writes them to files, which never fill): its port and process, killed at the end."""
    port = free_port()
    proc = subprocess.Popen(["php", "-n", "-d", f"extension={surge_so()}", str(SERVERS / "echo.php")],
                            env=dict(os.environ, SURGE_PORT=str(port)), stdin=subprocess.DEVNULL,
                            **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **pipes})
    try:
        eventually(lambda: accepts(port), timeout=10)
        yield port, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_log_reader_that_stops_reading_holds_nothing_up():
    """stderr to a pipe nobody reads any more (`php server.php 2>&1 | shipper`, the shipper
    stuck): once the pipe was full, every network thread waited in its log write (handshakes
    timed out), and so did the stop. Lines are dropped instead, and said once there is room."""
    with echo_server_on_pipes(stderr=subprocess.PIPE) as (port, proc):
        # A debug line or two each: several times the pipe's 64 KiB.
        for _ in range(2000):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(UPGRADE_REQUEST)
                assert sock.recv(12)[9:12] == b"101"
        # The reader comes back: what it missed is said (as soon as a line finds room, which
        # may be while the reader empties the pipe: what it reads then counts too).
        os.set_blocking(proc.stderr.fileno(), False)
        read = b""
        while chunk := proc.stderr.read():
            read += chunk
        with connect(f"ws://127.0.0.1:{port}", open_timeout=5) as ws:
            ws.send("still served")
            assert ws.recv(timeout=5) == "still served"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        os.set_blocking(proc.stderr.fileno(), True)
        read += proc.stderr.read()
        assert re.search(rb"^\[\d{4}-\d\d-\d\d [\d:.]+\] surge\[\d+\] WARN: \d+ log lines dropped: stderr was not being read\n", read, re.M)


@pytest.mark.parametrize("nohup", [False, True])
def test_sighup_stops_the_server_as_sigterm_does_unless_ignored(nohup):
    """A closed terminal (SIGHUP) killed the server outright: no close frames, no close or
    shutdown callbacks. It is a stop now; under nohup, which ignores it, the server serves on."""
    code = """
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['log_level' => 'info']);
        $s->on('start', function ($s) {
            $s->after(100, fn() => exec('kill -HUP ' . getmypid()));
            $s->after(600, function () use ($s) { echo "still serving\\n"; $s->shutdown(); });
        });
        $s->on('shutdown', fn() => print("shutdown\\n"));
        $s->start();
    """
    args = ["php", "-n", "-d", f"extension={surge_so()}", "-r", code]
    result = subprocess.run(["nohup", *args] if nohup else args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    if nohup:
        assert result.stdout == "still serving\nshutdown\n", result.stdout + result.stderr
    else:
        assert result.stdout == "shutdown\n", result.stdout + result.stderr
        # Named as sent (it read SIGTERM, which it is turned into).
        assert "SIGHUP received: shutting down" in result.stderr


def test_a_stdout_reader_that_goes_away_does_not_end_the_server():
    """stdout to a pipe whose reader left (`php server.php | tee log`, tee gone): PHP ends a
    script whose output fails unless ignore_user_abort is on, so the server died at its next
    echo (here the open callback's), its clients cut off."""
    with echo_server_on_pipes(stdout=subprocess.PIPE) as (port, proc):
        proc.stdout.close()
        with connect(f"ws://127.0.0.1:{port}", open_timeout=5) as ws:
            for i in range(3):
                ws.send(f"m{i}")
                assert ws.recv(timeout=5) == f"m{i}"
            proc.send_signal(signal.SIGTERM)
            assert close_code(ws) == 1001
        # PHP's own end of script still fails on the lost output (exit status 255).
        proc.wait(timeout=10)
