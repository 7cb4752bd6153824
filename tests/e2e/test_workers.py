"""worker_num > 1: worker processes on one port, each reaching the others' connections (push,
the PHP loop over connections, channels, disconnect, getClientInfo, stats), the master's
lifecycle (start, shutdown, signals), a dead worker replaced, and what refuses to start."""

import contextlib
import fcntl
import http.client
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from conftest import TIME_FACTOR, accepts, close_code, free_port, run_php, surge_exception, surge_so
from fanout_client import eventually
from rawws import RawClient

CLIENTS = 16


@pytest.fixture
def stack():
    """Clients entered here are closed at the end of the test."""
    with contextlib.ExitStack() as clients:
        yield clients


def ask(ws, cmd: str):
    ws.send(cmd)
    return json.loads(ws.recv(timeout=5))


def start_workers(php_server, tmp_path, **env):
    # A temporary directory of the test's own: the bus's socket directory must be gone after.
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    srv = php_server("workers.php", env={"TMPDIR": str(tmp), **env})
    srv.wait_output("start worker_id=-1")
    return srv


def clients_on_both_workers(srv, stack, n=CLIENTS):
    """At least n clients, more until both workers have one, with what each was told: its worker
    and fd. SO_REUSEPORT spreads them by a hash of the client's port, so n alone can all land on
    one worker (8 did, 1 in 128); 40 all on one worker would be 1 in 2^39."""
    clients, who = [], []
    while len(clients) < n or ({w["worker"] for w in who} != {0, 1} and len(clients) < 40):
        clients.append(stack.enter_context(connect(srv.url, open_timeout=5 * TIME_FACTOR)))
        who.append(ask(clients[-1], "who"))
    assert {w["worker"] for w in who} == {0, 1}, who
    return clients, who


def test_workers_start_with_their_ids_and_the_master_runs_start(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    out = srv.wait_output("workerStart 1")
    master = int(re.search(r"^start worker_id=-1 master=(\d+) pid=(\d+)$", out, re.M).group(1))
    assert master == srv.proc.pid
    starts = re.findall(r"^workerStart (\d) worker_id=(\d) pid=(\d+) master=(\d+)$", out, re.M)
    assert sorted((s[0], s[1]) for s in starts) == [("0", "0"), ("1", "1")]
    assert len({s[2] for s in starts} | {str(master)}) == 3, "two worker processes besides the master"
    assert {int(s[3]) for s in starts} == {master}
    assert out.count("start worker_id") == 1


@pytest.mark.io_threads_only
@pytest.mark.parametrize("settings", [{}, {"worker_threads": 3}])
def test_the_workers_share_the_cpus_as_network_threads_unless_worker_threads_says(php_server, tmp_path, settings):
    """Unset, worker_threads is the CPUs shared out among the workers, at least one each: with as
    many each as there are CPUs, the two workers' threads wrote each push as it came, and the
    articles' foreach-push loop ran at half the rate (BENCHMARKS.md). Set, it is each worker's."""
    srv = start_workers(php_server, tmp_path, SURGE_SETTINGS=json.dumps(settings))
    srv.wait_output("workerStart 1")
    each = settings.get("worker_threads", max(1, len(os.sched_getaffinity(0)) // 2))
    for pid in worker_pids(srv).values():
        names = [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]
        assert sum(name.startswith("surge-io") for name in names) == each, names


def test_the_workers_run_their_worker_start_side_by_side(php_server, tmp_path):
    srv = start_workers(php_server, tmp_path, SURGE_START_MS="1000")
    out = srv.wait_output("start worker_id=-1")
    # Each began before the other ended.
    for one, other in [(0, 1), (1, 0)]:
        assert out.index(f"workerStart {one} begins") < out.index(f"workerStart {other} worker_id"), out


def test_send_message_from_worker_start_reaches_a_worker_started_before(php_server, tmp_path):
    srv = start_workers(php_server, tmp_path, SURGE_GREET="1", SURGE_WORKERS="3")
    for id in (1, 2):
        srv.wait_output(f"greeted from workerStart {id}: true")
        srv.wait_output(f"pipeMessage in worker 0 from {id}: hello from workerStart {id}")


def test_a_timer_added_before_start_runs_in_every_worker(php_server, tmp_path):
    srv = start_workers(php_server, tmp_path, SURGE_TIMER="1")
    srv.wait_output("timer in worker 0")
    srv.wait_output("timer in worker 1")
    assert "timer in worker -1" not in srv.stdout()


def test_an_fd_names_its_worker_and_a_php_loop_over_connections_reaches_every_client(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack)
    for w in who:
        assert (w["fd"] - 1) % 2 == w["worker"], who
    assert len({w["fd"] for w in who}) == len(clients)
    clients[0].send("chat:hello")
    # The sender is one of the connections: its copy comes before the answer.
    for ws in clients:
        assert ws.recv(timeout=5) == f"chat from {who[0]['fd']}: hello"
    assert json.loads(clients[0].recv(timeout=5)) == {"pushed": len(clients), "count": len(clients)}
    stats = ask(clients[1], "stats")
    assert stats["connection_num"] == len(clients)
    assert stats["messages_in"] >= len(clients) + 2


def test_the_documented_loop_that_checks_each_fd_reaches_every_client_of_both_workers(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack)
    clients[0].send("estchat:hello")
    for ws in clients:
        assert ws.recv(timeout=5) == f"chat from {who[0]['fd']}: hello"
    assert json.loads(clients[0].recv(timeout=5)) == {"pushed": len(clients), "skipped": 0}
    # A connection of the other worker disconnected by this one is no longer established, in
    # the callback that listed it too.
    a = next(i for i, w in enumerate(who) if w["worker"] == 0)
    b = next(i for i, w in enumerate(who) if w["worker"] == 1)
    assert ask(clients[a], f"kickcheck:{who[b]['fd']}") == {"listed": True, "established": False}
    assert close_code(clients[b]) == 4000


def pair_across_workers(srv, stack):
    clients, who = clients_on_both_workers(srv, stack)
    a = next(i for i, w in enumerate(who) if w["worker"] == 0)
    b = next(i for i, w in enumerate(who) if w["worker"] == 1)
    return clients, who, a, b


def test_send_message_reaches_the_other_workers_pipe_message_callback(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    # sendMessage() returns once the other worker's bus took the message, which its PHP may
    # then answer (through the bus) before this worker's own reply reaches the client.
    for ws, to, sender, text in [(clients[a], 1, 0, "hello"), (clients[b], 0, 1, "back")]:
        ws.send(f"send:{to}:{text}")
        got = sorted([ws.recv(timeout=5), ws.recv(timeout=5)])
        assert got == sorted(["true", f"piped to worker {to} from {sender}: {text}"])
    # A string crosses as it is.
    assert ask(clients[a], "sendraw:1:raw \0 text") is True
    srv.wait_output("pipeMessage in worker 1 from 0: raw \0 text")
    assert ask(clients[a], "send:0:me") == "sendMessage() sends to another worker: 0 is this one"
    assert ask(clients[a], "send:2:x") == "sendMessage() sends to a worker or task worker, 0 to 1: got 2"


def test_push_exist_and_client_info_for_a_connection_of_the_other_worker(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    fd_b = who[b]["fd"]
    probe = ask(clients[a], f"probe:{fd_b}")
    assert probe["exist"] is True and probe["established"] is True and probe["push"] is True
    assert probe["info"]["remote_ip"] == "127.0.0.1"
    assert probe["info"]["remote_port"] == clients[b].local_address[1]
    assert probe["info"]["server_port"] == srv.port
    assert probe["info"]["websocket_status"] == 3
    # The table is shared: the other worker's open callback wrote this row.
    assert probe["table"] == 1
    assert clients[b].recv(timeout=5) == f"to {fd_b} from worker 0"
    # An fd of the other worker that never existed (fds of worker 1 are even).
    gone = ask(clients[a], "probe:1000000")
    assert gone["exist"] is False and gone["established"] is False and gone["info"] is False


def test_disconnect_closes_a_connection_of_the_other_worker(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    fd_b = who[b]["fd"]
    assert ask(clients[a], f"kick:{fd_b}") is True
    assert close_code(clients[b]) == 4000
    srv.wait_output(f"close {fd_b} worker 1")
    assert ask(clients[a], f"probe:{fd_b}")["exist"] is False
    assert ask(clients[a], f"kick:{fd_b}") is False


def test_pushes_to_the_other_worker_come_in_order_and_before_a_close_sent_after_them(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    # Pushes to another worker's connection are written in batches: the close must not
    # overtake them.
    clients[a].send(f"pushkick:{who[b]['fd']}:3000")
    got = [clients[b].recv(timeout=5) for _ in range(3000)]
    assert got == [f"push {i}" for i in range(1, 3001)]
    assert close_code(clients[b]) == 4000
    assert json.loads(clients[a].recv(timeout=5)) is True


def test_a_push_to_the_other_worker_goes_out_while_its_callback_still_runs(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    clients[a].send(f"pushwait:{who[b]['fd']}")
    # The callback that pushed waits for this client's word that the push came.
    assert clients[b].recv(timeout=5) == "while you wait"
    clients[b].send("got")
    assert json.loads(clients[b].recv(timeout=5)) is True
    assert json.loads(clients[a].recv(timeout=15)) is True, "the push waited for the callback's end"


def test_channels_span_workers(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    fd_a, fd_b = who[a]["fd"], who[b]["fd"]
    # Worker 0 puts both in the room, one of them a connection of worker 1.
    assert ask(clients[a], f"join:{fd_a}:room") is True
    assert ask(clients[a], f"join:{fd_b}:room") is True
    assert ask(clients[a], f"join:{fd_b}:room") is False
    listed = ask(clients[b], f"channels:room:{fd_b}")
    assert listed == {"all": {"room": 2}, "members": sorted([fd_a, fd_b]), "of": ["room"]}
    # Published from worker 1: both members, on both workers, get it once (the publisher's
    # copy comes before the answer).
    clients[b].send("publish:room:news")
    assert clients[b].recv(timeout=5) == "news"
    assert json.loads(clients[b].recv(timeout=5)) == 2
    assert clients[a].recv(timeout=5) == "news"
    assert ask(clients[b], f"leave:{fd_a}:room") is True
    assert ask(clients[a], "channels:room:0")["members"] == [fd_b]


def test_broadcast_reaches_every_worker_but_the_excluded(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack)
    assert ask(clients[0], "broadcast:all of you") == len(clients) - 1
    for ws in clients[1:]:
        assert ws.recv(timeout=5) == "all of you"


def both_workers_subscribed(redis_server, channel: str):
    """Each worker has its own subscription: waits until Redis counts two."""
    deadline = time.monotonic() + 10
    while dict(redis_server.client.pubsub_numsub(channel))[channel] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_laravel_broadcasts_through_redis_reach_each_member_once(php_server, tmp_path, stack, redis_server):
    settings = json.dumps({"redis": redis_server.url})
    srv = start_workers(php_server, tmp_path, SURGE_SETTINGS=settings, SURGE_SUBSCRIBE="news")
    clients, who, a, b = pair_across_workers(srv, stack)
    for i in (a, b):
        assert ask(clients[i], f"join:{who[i]['fd']}:news") is True
    both_workers_subscribed(redis_server, "laravel_database_news")
    event = {"event": "Shipped", "data": {"id": 1, "socket": None}, "socket": None}
    assert redis_server.client.publish("laravel_database_news", json.dumps(event)) == 2
    expected = {"event": "Shipped", "channel": "news", "data": {"id": 1, "socket": None}}
    for i in (a, b):
        assert json.loads(clients[i].recv(timeout=5)) == expected
    # toOthers(): the socket id of worker 1's client, asked from worker 0, leaves only it out.
    socket_b = ask(clients[a], f"socket:{who[b]['fd']}")
    assert socket_b == ask(clients[b], f"socket:{who[b]['fd']}") and socket_b.endswith(f".{who[b]['fd']}")
    event = {"event": "Said", "data": {"socket": socket_b}, "socket": socket_b}
    redis_server.client.publish("laravel_database_news", json.dumps(event))
    assert json.loads(clients[a].recv(timeout=5))["event"] == "Said"
    with pytest.raises(TimeoutError):
        clients[b].recv(timeout=0.5)


def test_a_push_to_the_other_worker_is_not_overtaken_by_a_redis_publish_made_after_it(php_server, tmp_path, stack, redis_server):
    settings = json.dumps({"redis": redis_server.url})
    srv = start_workers(php_server, tmp_path, SURGE_SETTINGS=settings, SURGE_SUBSCRIBE="news")
    clients, who, a, b = pair_across_workers(srv, stack)
    assert ask(clients[b], f"join:{who[b]['fd']}:news") is True
    both_workers_subscribed(redis_server, "laravel_database_news")
    # Worker 0 pushes to worker 1's client, then publishes through Redis, which worker 1
    # forwards to the same client: the push is held for a batch until then, and the publish
    # must have written it first. Worker 1's bus thread still hands it on after that, the window
    # README leaves, which two busy cores stretched past Redis's round trip once in CI: two in
    # ten are let pass (without the write first, the publish would go first every time).
    overtaken = []
    for i in range(10):
        clients[a].send(f"pushredis:{who[b]['fd']}:news")
        got = [clients[b].recv(timeout=5), clients[b].recv(timeout=5)]
        assert got.count("pushed first") == 1, got
        forwarded = next(m for m in got if m != "pushed first")
        assert json.loads(forwarded) == {"event": "Then", "channel": "news", "data": {"through": "redis"}}
        if got[0] != "pushed first":
            overtaken.append(i)
        assert json.loads(clients[a].recv(timeout=5)) is True
    assert len(overtaken) <= 2, overtaken


def http_connections_to_both_workers(srv):
    """Keep-alive HTTP connections, one served by each worker (by GET /push's answer; fd 0 is
    no connection, so nothing is pushed)."""
    by_worker = {}
    for _ in range(40):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", "/push?fd=0&text=")
        by_worker.setdefault(int(conn.getresponse().read()), conn)
        if len(by_worker) == 2:
            return by_worker[0], by_worker[1]
    raise AssertionError(f"every connection landed on worker {list(by_worker)}")


def test_a_push_to_the_other_worker_is_not_overtaken_by_what_a_client_does_on_the_response(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    to_0, to_1 = http_connections_to_both_workers(srv)
    fd_b = who[b]["fd"]
    # Worker 0 pushes to worker 1's client and answers, then goes on; on the answer, a request
    # to worker 1 pushes to the same client. The first push is held for a batch: the answer's
    # flush must have written it, or the second overtakes it (without the flush, 18 to 19 times
    # in 20 here). Worker 1's bus thread still hands the first push on after it is written, the
    # window README leaves, which two busy cores stretched past the request's way once in CI:
    # two in ten are let pass.
    overtaken = []
    for i in range(10):
        for conn, query, worker in [(to_0, f"text=first{i}&after=100", 0), (to_1, f"text=then{i}", 1)]:
            conn.request("GET", f"/push?fd={fd_b}&{query}")
            assert conn.getresponse().read() == str(worker).encode()
        got = [clients[b].recv(timeout=5), clients[b].recv(timeout=5)]
        assert sorted(got) == [f"first{i}", f"then{i}"]
        if got != [f"first{i}", f"then{i}"]:
            overtaken.append(i)
    assert len(overtaken) <= 2, overtaken
    to_0.close()
    to_1.close()


def test_sigterm_to_the_master_stops_every_worker_then_runs_shutdown_once(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack, 8)
    srv.signal(signal.SIGTERM)
    for ws in clients:
        assert close_code(ws) == 1001
    assert srv.wait(timeout=15) == 0
    out = srv.stdout()
    assert sorted(re.findall(r"^workerStop (\d)$", out, re.M)) == ["0", "1"]
    assert out.count("shutdown in") == 1
    assert f"shutdown in {srv.proc.pid}" in out
    # Only the master goes on after start(): a worker ends there.
    assert re.findall(r"^start\(\) returned in (\d+)$", out, re.M) == [str(srv.proc.pid)]
    assert out.index("workerStop") < out.index("shutdown in")
    # A worker ends as exit(0) would: its shutdown functions run too.
    ended = {int(p) for p in re.findall(r"^shutdown function in (\d+)$", out, re.M)}
    assert ended == {srv.proc.pid, *(int(p) for p in re.findall(r"^workerStart \d worker_id=\d pid=(\d+)", out, re.M))}
    assert not list((tmp_path / "tmp").iterdir()), "the bus's directory is removed"


def test_a_large_message_over_the_bus_leaves_no_buffer_of_its_size_behind(php_server, tmp_path, stack):
    """A 40 MiB publish from worker 0 is read by worker 1 from the bus; worker 1 then holds no
    40 MiB buffer for as long as that link stays idle."""
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack)
    sender = clients[[w["worker"] for w in who].index(0)]
    other = next(w for w in who if w["worker"] == 1)
    before = rss_kib(other["pid"])
    assert ask(sender, "bigpublish:nobody:40") == 0
    # Nothing more on that link: a next message would have freed the buffer.
    assert eventually(lambda: rss_kib(other["pid"]) - before < 20 << 10, timeout=5)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def test_ctrl_c_reaches_every_process_and_each_worker_still_sees_its_clients_close(php_server, tmp_path, stack):
    """A terminal's Ctrl-C signals the whole process group, and the master then sends SIGTERM:
    a worker takes the second signal as the same stop, not as "cut the wait short"."""
    srv = start_workers(php_server, tmp_path)
    clients, who = clients_on_both_workers(srv, stack)
    os.killpg(srv.proc.pid, signal.SIGINT)
    for ws in clients:
        assert close_code(ws) == 1001
    assert srv.wait(timeout=15) == 0
    closed = {int(fd) for fd in re.findall(r"^close (\d+) worker", srv.stdout(), re.M)}
    assert closed == {w["fd"] for w in who}


@pytest.mark.parametrize("again", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_while_stopping_does_not_kill_the_master(php_server, tmp_path, again):
    """A second Ctrl-C (or SIGTERM, or a reload) while the workers stop: the stop goes on, and the
    master still returns from start() and exits 0 (the signal, left pending, used to end it)."""
    srv = start_workers(php_server, tmp_path, SURGE_STOP_MS="1000")
    srv.signal(signal.SIGTERM)
    srv.wait_output("workerStop")
    srv.signal(again)
    assert srv.wait(timeout=15) == 0
    out = srv.stdout()
    assert re.findall(r"^start\(\) returned in (\d+)$", out, re.M) == [str(srv.proc.pid)]
    assert out.count("shutdown in") == 1


def test_the_master_waits_only_for_its_workers(php_server, tmp_path):
    """A process the script started before start() keeps its exit status for proc_close()."""
    srv = start_workers(php_server, tmp_path, SURGE_CHILD="1")
    time.sleep(0.5)  # the child has exited while the master supervises
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0
    assert "child status 7" in srv.stdout()


def test_shutdown_in_a_worker_stops_the_whole_server(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    clients[b].send("shutdown")
    assert close_code(clients[a]) == 1001
    assert srv.wait(timeout=15) == 0
    assert srv.stdout().count("shutdown in") == 1


def test_a_worker_that_exits_is_replaced_and_fds_are_not_reused(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    clients, who, a, b = pair_across_workers(srv, stack)
    old_pid = who[b]["pid"]
    highest = max(w["fd"] for w in who if w["worker"] == 1)
    clients[b].send("exit")
    # Its clients lose their connection; the other worker's stay.
    assert close_code(clients[b]) in (1006, 1011, 1001)
    srv.wait_output("worker 1 exited (status 3); starting another", stream="stderr", timeout=10)
    # The processes share a stderr: each line says which one wrote it, and when.
    stamp = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] "
    err = srv.stderr()
    assert re.search(stamp + rf"surge\[{srv.proc.pid}\] master WARN: worker 1 exited", err, re.M), err
    assert re.search(stamp + rf"surge\[{old_pid}\] worker 1 INFO: listening on ", err, re.M), err
    deadline = time.monotonic() + 10
    while len(new := re.findall(r"^workerStart 1 worker_id=1 pid=(\d+)", srv.stdout(), re.M)) < 2:
        assert time.monotonic() < deadline, srv.stdout()
        time.sleep(0.05)
    assert int(new[1]) != old_pid
    assert ask(clients[a], "who")["worker"] == 0
    # New clients reach the new worker 1 too, with fds it never gave before.
    later, seen = clients_on_both_workers(srv, stack)
    on_new = [w["fd"] for w in seen if w["worker"] == 1]
    assert on_new and min(on_new) > highest, (highest, seen)
    later[0].send("chat:again")
    assert later[0].recv(timeout=5) == f"chat from {seen[0]['fd']}: again"
    survivors = sum(1 for w in who if w["worker"] == 0)
    assert json.loads(later[0].recv(timeout=5))["pushed"] == survivors + len(later)


@pytest.mark.parametrize("broken", ["broken", "broken-slowly"])
def test_while_a_dead_worker_cannot_be_replaced_new_connections_go_to_the_others(php_server, tmp_path, stack, broken):
    """A broken deploy: worker 1 dies and its replacement fails in workerStart, again and again.
    Its listening socket went with it, so the kernel hands every new connection to worker 0 (the
    master kept it open, and half the new clients waited for ever, unanswered). A replacement
    listens only once its workerStart has run: one whose boot takes half a second before it
    fails took its share of the connections meanwhile, and dropped them (1001)."""
    version = tmp_path / "version"
    version.write_text("v1")
    srv = start_workers(php_server, tmp_path, SURGE_VERSION_FILE=str(version))
    clients, who = clients_on_both_workers(srv, stack)
    version.write_text(broken)
    next(ws for ws, w in zip(clients, who) if w["worker"] == 1).send("exit")
    srv.wait_output("worker 1 could not start", stream="stderr", timeout=10 * TIME_FACTOR)
    later = []
    for _ in range(3 * CLIENTS):  # over three attempts at worker 1 or so, for broken-slowly
        later.append(stack.enter_context(connect(srv.url, open_timeout=5 * TIME_FACTOR)))
        time.sleep(0.05)
    assert {ask(ws, "who")["worker"] for ws in later} == {0}
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


def test_a_process_forked_in_worker_start_holds_up_nothing(php_server, tmp_path, stack):
    """A helper forked in workerStart (pcntl_fork, no exec) inherits the pipe its worker tells the
    master it serves on: the master read that pipe to its end, so its start callback, and its
    answer to SIGTERM, waited until the helper ended (here 30 s)."""
    srv = start_workers(php_server, tmp_path, SURGE_HELPER_SECONDS="30")
    clients_on_both_workers(srv, stack)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


def test_a_helper_forked_by_a_dead_worker_takes_no_connections_from_its_replacement(php_server, tmp_path, stack):
    """A helper forked in workerStart outlives its worker: it inherited the worker's listening
    socket, which the kernel went on handing new connections (a third of them here) that
    nobody answered, once the replacement listened on a socket of its own."""
    srv = start_workers(php_server, tmp_path, SURGE_HELPER_SECONDS="30")
    clients, who = clients_on_both_workers(srv, stack)
    next(ws for ws, w in zip(clients, who) if w["worker"] == 1).send("exit")
    eventually(lambda: len(re.findall(r"^workerStart 1 worker_id=1", srv.stdout(), re.M)) == 2, timeout=10 * TIME_FACTOR)
    clients_on_both_workers(srv, stack)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


def test_reload_restarts_the_workers_one_at_a_time_and_they_read_their_code_anew(php_server, tmp_path, stack):
    version = tmp_path / "version"
    version.write_text("v1")
    srv = start_workers(php_server, tmp_path, SURGE_VERSION_FILE=str(version))
    clients, who = clients_on_both_workers(srv, stack)
    assert {w["version"] for w in who} == {"v1"}
    started = ask(clients[0], "stats")["start_time"]
    time.sleep(1.1)  # start_time is in seconds
    version.write_text("v2")
    assert ask(clients[0], "reload") is True
    # Every client is closed as at a stop, worker by worker; the master stays.
    assert all(close_code(ws) == 1001 for ws in clients)
    srv.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    err = srv.stderr()
    stopped = re.findall(r"worker (\d) stopped for the reload \(status 0\); starting another", err)
    assert stopped == ["0", "1"], err
    assert "exited" not in err
    # The master goes on once a new worker serves; its workerStart runs right after.
    eventually(lambda: len(re.findall(r"^workerStart ", srv.stdout(), re.M)) == 4, timeout=10 * TIME_FACTOR)
    out = srv.stdout()
    assert sorted(re.findall(r"^workerStop (\d)$", out, re.M)) == ["0", "1"]
    assert "shutdown in" not in out
    later, seen = clients_on_both_workers(srv, stack)
    assert {w["version"] for w in seen} == {"v2"}
    assert not {w["pid"] for w in seen} & {w["pid"] for w in who}
    # The server's start, not the reload's.
    assert ask(later[0], "stats")["start_time"] == started
    later[0].send("chat:after the reload")
    assert all(ws.recv(timeout=5).endswith("after the reload") for ws in later)
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


def test_a_reload_runs_the_close_callbacks_of_clients_it_cuts_off(php_server, tmp_path, stack):
    """Clients that never answer a reload's 1001 are cut off at shutdown_timeout, and each still
    gets its close callback in the worker that had it (none ran: a table of users by fd kept
    thousands of rows after a reload at 50k connections)."""
    srv = start_workers(php_server, tmp_path, SURGE_SETTINGS=json.dumps({"shutdown_timeout": 0.5}))
    for _ in range(8):
        stack.enter_context(RawClient(srv.port)).open()
    eventually(lambda: len(re.findall(r"^open \d+ worker \d$", srv.stdout(), re.M)) == 8, timeout=5 * TIME_FACTOR)
    os.kill(srv.proc.pid, signal.SIGUSR1)
    srv.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    out = srv.stdout()
    opened = sorted(re.findall(r"^open (\d+ worker \d)$", out, re.M))
    assert sorted(re.findall(r"^close (\d+ worker \d)$", out, re.M)) == opened, out
    cut = re.findall(r"(\d+) close callbacks run at that point", srv.stderr())
    assert sum(map(int, cut)) == 8, srv.stderr()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


@pytest.mark.parametrize("broken, why", [
    ("broken", "it ended before it served"),
    # An exception was only logged: the reload went on, every worker serving without its app.
    ("broken-throws", "the workerStart callback threw (the log says what): not started"),
])
def test_a_reload_stops_no_more_workers_while_a_new_one_fails_in_worker_start(php_server, tmp_path, stack, broken, why):
    """A broken deploy: the new worker 0 dies in workerStart, or throws, again and again. The
    reload waits for it to serve before it stops worker 1, which serves meanwhile; once the code
    is mended, the reload goes on."""
    version = tmp_path / "version"
    version.write_text("v1")
    srv = start_workers(php_server, tmp_path, SURGE_VERSION_FILE=str(version))
    clients, who = clients_on_both_workers(srv, stack)
    on_1 = next(ws for ws, w in zip(clients, who) if w["worker"] == 1)
    version.write_text(broken)
    assert ask(on_1, "reload") is True
    srv.wait_output(f"worker 0 could not start: worker 0: {why}", stream="stderr", timeout=10 * TIME_FACTOR)
    time.sleep(2)  # more attempts at worker 0
    assert "worker 1 stopped for the reload" not in srv.stderr()
    assert ask(on_1, "who")["worker"] == 1, "worker 1 still serves its clients"
    version.write_text("v2")
    srv.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    later, seen = clients_on_both_workers(srv, stack)
    assert {w["version"] for w in seen} == {"v2"}
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


@pytest.mark.parametrize("code, message", [
    ("$s->reload();", "reload() restarts worker processes: set worker_num above 1 or task_worker_num"),
    ("$s->set(['worker_num' => 2]); $s->reload();", "reload() needs a running server: call it from a callback"),
    ("$s->set(['worker_num' => 2]); $s->reload(true);", "reload(true) restarts the task workers: there are none"),
    ("$s->sendMessage('x', 1);", "sendMessage() reaches other worker processes: set worker_num above 1 (or task_worker_num)"),
    ("$s->set(['worker_num' => 2]); $s->sendMessage('x', 1);", "sendMessage() is for workers and task workers: call it from their callbacks"),
])
def test_reload_and_send_message_misuse_throws(code, message):
    assert message in surge_exception(code)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGUSR2])
def test_a_reload_signal_to_a_one_process_server_or_to_a_worker_is_logged_and_ignored(php_server, tmp_path, stack, sig):
    """Their default action would end the process: a deploy script's `kill -USR1` sent to the
    wrong pid must not take the server down."""
    one = php_server("echo.php")
    one.signal(sig)
    one.wait_output(f"{sig.name} ignored: a server of one process has no worker processes to reload", stream="stderr")
    with connect(one.url) as ws:
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
    srv = start_workers(php_server, tmp_path)
    srv.wait_output("workerStart 1")
    pids = worker_pids(srv)
    os.kill(pids[0], sig)
    srv.wait_output(f"{sig.name} ignored: a reload is asked of the master process", stream="stderr")
    clients, who = clients_on_both_workers(srv, stack)
    assert {w["pid"] for w in who} == set(pids.values())
    assert "exited" not in srv.stderr()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0


def worker_pids(srv) -> dict:
    return {int(i): int(p) for i, p in re.findall(r"^workerStart (\d) worker_id=\d pid=(\d+)", srv.stdout(), re.M)}


def test_a_worker_stuck_in_a_callback_neither_holds_up_a_reload_nor_outlives_its_killed_master(php_server, tmp_path, stack):
    """A callback that never returns: a reload ends that worker shutdown_timeout + 5 s after
    asking it to stop and goes on; after the master is killed outright, the stuck worker
    (which the master can no longer kill) ends itself as long after."""
    srv = start_workers(php_server, tmp_path, SURGE_SETTINGS=json.dumps({"shutdown_timeout": 1}))
    clients, who = clients_on_both_workers(srv, stack)
    clients[0].send("hang")
    time.sleep(0.3)  # in its callback
    os.kill(srv.proc.pid, signal.SIGUSR1)
    srv.wait_output("reload done", stream="stderr", timeout=40 * TIME_FACTOR)
    assert re.search(r"worker \d stopped for the reload \(killed by signal 9\)|worker \d stopped for the reload \(status 1\)", srv.stderr()), srv.stderr()
    later, seen = clients_on_both_workers(srv, stack)
    stuck = seen[0]["pid"]
    later[0].send("hang")
    time.sleep(0.3)
    srv.proc.kill()
    srv.proc.wait()
    deadline = time.monotonic() + 40 * TIME_FACTOR
    while running(stuck):
        assert time.monotonic() < deadline, f"stuck worker {stuck} outlived its master"
        time.sleep(0.1)


def test_a_replacement_stuck_in_worker_start_holds_up_neither_the_stop_nor_the_master(php_server, tmp_path, stack):
    """A worker dies and its replacement hangs in workerStart: the master still answers a
    stop at once (it waited up to 30 s per attempt before), and the stuck one is ended."""
    marker = tmp_path / "slow"
    srv = start_workers(php_server, tmp_path, SURGE_SLOW_START_FILE=str(marker), SURGE_SETTINGS=json.dumps({"shutdown_timeout": 1}))
    srv.wait_output("workerStart 1")
    marker.write_text("")
    os.kill(worker_pids(srv)[0], signal.SIGKILL)
    stuck = int(re.search(r"^workerStart 0 stuck pid=(\d+)", srv.wait_output("workerStart 0 stuck", timeout=10), re.M)[1])
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0
    assert not running(stuck)


def test_a_killed_worker_is_replaced_and_a_killed_master_takes_its_workers_along(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    srv.wait_output("workerStart 1")
    first = worker_pids(srv)
    os.kill(first[0], signal.SIGKILL)
    srv.wait_output("worker 0 exited (killed by signal 9); starting another", stream="stderr", timeout=10)
    deadline = time.monotonic() + 10
    while worker_pids(srv)[0] == first[0]:
        assert time.monotonic() < deadline, srv.stdout()
        time.sleep(0.05)
    clients, who = clients_on_both_workers(srv, stack)
    srv.proc.kill()
    srv.proc.wait()
    for ws in clients:
        assert close_code(ws) == 1001
    for pid in worker_pids(srv).values():
        deadline = time.monotonic() + 10
        while running(pid):
            assert time.monotonic() < deadline, f"worker {pid} outlived its master"
            time.sleep(0.05)


def test_a_worker_that_dies_is_told_to_the_masters_worker_error_callback(php_server, tmp_path, stack):
    """Swoole's workerError, in the master: the dead worker ran no close callback, so the rows a
    table kept for its connections are the app's to delete there."""
    srv = start_workers(php_server, tmp_path)
    srv.wait_output("workerStart 1")
    clients, who = clients_on_both_workers(srv, stack)
    pids = worker_pids(srv)
    os.kill(pids[1], signal.SIGKILL)
    left = sum(w["worker"] == 0 for w in who)
    srv.wait_output(f"workerError 1 pid={pids[1]} code=0 signal=9 in {srv.proc.pid}, rows left {left}", timeout=10)
    on_0 = next(ws for ws, w in zip(clients, who) if w["worker"] == 0)
    on_0.send("exit")
    srv.wait_output(f"workerError 0 pid={pids[0]} code=3 signal=0 in {srv.proc.pid}, rows left 0", timeout=10)
    # A reload's stop is no error.
    srv.signal(signal.SIGUSR1)
    srv.wait_output("reload done", stream="stderr", timeout=20)
    assert srv.stdout().count("workerError") == 2


def test_the_directory_of_a_master_killed_outright_is_removed_by_the_next(php_server, tmp_path):
    """A bus directory whose lock nobody holds is a dead master's (with any large task's data):
    removed. One whose lock is held (a live master, maybe in another PID namespace sharing
    /tmp, where its pid means nothing) and one without a lock file (being made) are kept."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    dirs = {name: tmp / f"surge-bus.{name}" for name in ["dead", "live", "new"]}
    for path in dirs.values():
        path.mkdir()
    (dirs["dead"] / "lock").touch()
    (dirs["dead"] / "task-data").write_bytes(b"x" * 1000)
    held = open(dirs["live"] / "lock", "w")
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        srv = start_workers(php_server, tmp_path)
        srv.wait_output("workerStart 1")
        assert not dirs["dead"].exists() and dirs["live"].exists() and dirs["new"].exists()
    finally:
        held.close()


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopted it, maybe never here)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_worker_that_cannot_start_makes_start_throw_and_leaves_no_process(tmp_path):
    # The certificate exists (set() checks that) but is not one: each worker's engine refuses it.
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    script = tmp_path / "bad.php"
    script.write_text(
        "<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);\n"
        f"$s->set(['worker_num' => 2, 'ssl_cert_file' => '{bad}', 'ssl_key_file' => '{bad}']);\n"
        "$s->on('message', fn() => null);\n"
        "try { $s->start(); echo 'started'; } catch (Surge\\Exception $e) { echo 'thrown: ', $e->getMessage(), ' by ', getmypid(); }\n"
    )
    r = run_php(script, timeout=30)
    assert r.returncode == 0, r.stderr
    # The worker's own message, as a single server would throw it.
    assert re.fullmatch(rf"thrown: worker 0: ssl_cert_file '{bad}' holds no certificate \(expected PEM with -----BEGIN CERTIFICATE-----\) by \d+", r.stdout), r.stdout
    pid = r.stdout.rsplit(" ", 1)[1]
    leftover = subprocess.run(["pgrep", "-P", pid], capture_output=True, text=True).stdout
    assert leftover == ""


@pytest.mark.parametrize("helper", [False, True])
def test_a_worker_that_ends_in_worker_start_makes_start_throw(tmp_path, helper):
    """With a helper forked first in workerStart, which keeps the worker's report pipe open,
    the master saw the end only at its 30 s deadline, and said it did not start in time."""
    fork = "if (pcntl_fork() === 0) { fclose(STDOUT); fclose(STDERR); sleep(20); pcntl_exec('/bin/true'); }" if helper else ""
    script = tmp_path / "ends.php"
    script.write_text(
        "<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);\n"
        "$s->set(['worker_num' => 2]);\n"
        f"$s->on('workerStart', function () {{ {fork} exit(3); }});\n"
        "try { $s->start(); echo 'started'; } catch (Surge\\Exception $e) { echo 'thrown: ', $e->getMessage(); }\n"
    )
    r = run_php(script, timeout=20)
    assert r.stdout == "thrown: worker 0: it ended before it served (exit() or a fatal error in workerStart?)", r.stdout + r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_worker_start_that_throws_makes_start_throw(tmp_path, workers):
    """A boot that throws (an app that cannot reach its database) was logged, and the server
    served on without the app. Now start() throws, after the log says what was thrown, with
    no workerStop or shutdown callback for a server that never started."""
    script = tmp_path / "throws.php"
    script.write_text(
        "<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);\n"
        f"$s->set(['worker_num' => {workers}]);\n"
        "$s->on('workerStart', function () { throw new RuntimeException('no database'); });\n"
        "$s->on('workerStop', fn () => print('workerStop '));\n"
        "$s->on('shutdown', fn () => print('shutdown '));\n"
        "try { $s->start(); echo 'started'; } catch (Surge\\Exception $e) { echo 'thrown: ', $e->getMessage(); }\n"
    )
    r = run_php(script, timeout=20)
    why = "the workerStart callback threw \\(the log says what\\): not started"
    # Both workers throw: the master names the one whose report it read first.
    assert re.fullmatch("thrown: " + ("worker [01]: " if workers > 1 else "") + why, r.stdout), r.stdout + r.stderr
    assert "uncaught RuntimeException in the workerStart callback: no database" in r.stderr, r.stderr


def test_port_in_use_throws_before_any_worker_starts(php_server, tmp_path, stack):
    srv = start_workers(php_server, tmp_path)
    r = run_php(f"<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', {srv.port});"
                "$s->set(['worker_num' => 2]); $s->on('workerStart', fn() => print('worker started'));"
                "try { $s->start(); } catch (Surge\\Exception $e) { echo $e->getMessage(); }")
    assert r.returncode == 0, r.stderr
    assert f"cannot listen on 127.0.0.1:{srv.port}" in r.stdout
    assert "worker started" not in r.stdout


def test_without_worker_processes_the_one_process_is_worker_0():
    r = run_php("<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);"
                "$s->on('start', function ($s) { echo \"start {$s->worker_id}\\n\"; $s->shutdown(); });"
                "$s->on('workerStart', fn($s, $id) => print(\"workerStart $id\\n\"));"
                "$s->on('workerStop', fn($s, $id) => print(\"workerStop $id {$s->worker_pid}\\n\"));"
                "$s->on('shutdown', fn($s) => print(\"shutdown {$s->master_pid}\\n\"));"
                "$s->start(); echo 'pid ', getmypid();")
    assert r.returncode == 0, r.stderr
    pid = r.stdout.rsplit(" ", 1)[1]
    assert r.stdout == f"start 0\nworkerStart 0\nworkerStop 0 {pid}\nshutdown {pid}\npid {pid}"


def test_the_pusher_protocol_needs_one_worker():
    r = run_php("<?php $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);"
                "try { $s->set(['worker_num' => 2]); $s->set(['pusher' => ['app_id' => '1', 'key' => 'k', 'secret' => 's']]); $s->start(); }"
                "catch (Surge\\Exception $e) { echo $e->getMessage(); }")
    assert r.returncode == 0, r.stderr
    assert "'pusher' needs 'worker_num' 1" in r.stdout


def test_a_server_started_with_stdout_and_stderr_closed_keeps_its_output_out_of_the_clients(tmp_path):
    """`php server.php >&- 2>&-` (a way to drop a service's output): the first connection a
    worker accepted became its fd 2, so Surge's log lines and PHP's output went into that
    client's stream after the 101."""
    port = free_port()
    script = tmp_path / "closed.php"
    script.write_text(f"""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', {port});
        $s->set(['worker_num' => 2, 'log_level' => 'debug']);
        $s->on('open', function ($s, $req) {{ echo "open $req->fd\\n"; error_log("open $req->fd"); }});
        $s->on('message', fn($s, $frame) => $s->push($frame->fd, $frame->data));
        $s->start();
    """)
    proc = subprocess.Popen(["sh", "-c", f'exec php -n -d extension={surge_so()} "$0" >&- 2>&-', str(script)],
                            stdin=subprocess.DEVNULL)
    try:
        eventually(lambda: accepts(port), timeout=10 * TIME_FACTOR)
        with contextlib.ExitStack() as stack:
            clients = [stack.enter_context(connect(f"ws://127.0.0.1:{port}")) for _ in range(6)]
            for i, ws in enumerate(clients * 3):
                ws.send(f"m{i}")
                assert ws.recv(timeout=5) == f"m{i}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_a_temporary_directory_too_long_for_the_bus_says_what_to_do(tmp_path):
    """The workers' bus is Unix sockets under TMPDIR, whose paths may have 107 bytes: a longer
    TMPDIR made start() throw only "path must be shorter than SUN_LEN"."""
    long_tmp = tmp_path / ("x" * (100 - len(str(tmp_path))))
    long_tmp.mkdir()
    result = run_php("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['worker_num' => 2, 'log_level' => 'off']);
        $s->on('message', fn() => null);
        try { $s->start(); } catch (Surge\\Exception $e) { echo $e->getMessage(); }
    """, env={"TMPDIR": str(long_tmp)}, timeout=30)
    assert "(the bus's directory is under TMPDIR: set it to a shorter path)" in result.stdout, result.stdout + result.stderr
