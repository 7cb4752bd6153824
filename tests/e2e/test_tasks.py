"""task_worker_num: task workers beside the workers. A task handed over with task() runs in a
free task worker's `task` callback; its result comes back to the `finish` callback (or the
task's own) in the worker that sent it; a task worker reaches every worker's connections."""

import contextlib
import hashlib
import json
import os
import re
import signal
import threading
import time

import pytest
from websockets.sync.client import connect

from conftest import TIME_FACTOR, close_code, run_php, settings_env, surge_exception
from fanout_client import eventually

CLIENTS = 16


@pytest.fixture
def stack():
    with contextlib.ExitStack() as clients:
        yield clients


def start(php_server, tmp_path, **env):
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    srv = php_server("tasks.php", env={"TMPDIR": str(tmp), **env})
    workers = int(env.get("SURGE_WORKERS", 2)) + int(env.get("SURGE_TASKS", 2))
    for i in range(workers):
        srv.wait_output(f"workerStart {i} ")
    return srv


def recv(ws):
    return json.loads(ws.recv(timeout=5))


def send_task(ws, cmd):
    """Sends a command; returns what task() returned there, with the worker that sent it."""
    ws.send(cmd)
    return recv(ws)


def test_a_task_runs_in_a_task_worker_and_its_result_comes_back_to_its_worker(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    out = srv.stdout()
    pids = dict(re.findall(r"^workerStart (\d) taskworker=\w+ pid=(\d+)$", out, re.M))
    flags = dict(re.findall(r"^workerStart (\d) taskworker=(\w+)", out, re.M))
    assert flags == {"0": "false", "1": "false", "2": "true", "3": "true"}
    assert len(set(pids.values())) == 4
    ws = stack.enter_context(connect(srv.url))
    for _ in range(3):
        sent = send_task(ws, "info")
        assert isinstance(sent["task"], int)
        done = recv(ws)
        assert done["finish"] == sent["task"]
        assert done["worker"] == sent["worker"], "the result comes back to the worker that sent the task"
        result = done["result"]
        assert result["src"] == sent["worker"] and result["task_id"] == sent["task"]
        assert result["taskworker"] is True and result["worker_id"] in (2, 3)
        assert str(result["pid"]) == pids[str(result["worker_id"])]
        assert result["nested"] == {"ü": [1.5, None, True]}, "a value crosses as serialize() keeps it"
    # Each worker counts its task ids from 0.
    assert [send_task(ws, "info")["task"], recv(ws)["finish"]] == [3, 3]


def test_string_data_crosses_as_its_bytes_and_large_data_too(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    sent = send_task(ws, "raw")
    done = recv(ws)
    assert done["result"]["data"] == f"raw\0{done['result']['fd']}" and done["finish"] == sent["task"]
    send_task(ws, "big:abc")
    result = recv(ws)["result"]
    assert result["length"] == 3 << 20
    assert result["md5"] == hashlib.md5(b"abc" * (1 << 20)).hexdigest()
    srv.signal(signal.SIGTERM)
    assert srv.wait(timeout=15) == 0
    assert not list((tmp_path / "tmp").iterdir()), "no task's file is left, nor the bus's directory"


def test_tasks_go_to_a_free_task_worker(php_server, tmp_path, stack):
    """Four slow tasks sent at once to two task workers: each takes one, and the next only once
    it is done, so none waits behind a busy task worker while the other idles."""
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    for _ in range(4):
        ws.send("slow")
    messages = [recv(ws) for _ in range(8)]
    results = [m["result"] for m in messages if "finish" in m]
    assert sorted(r["worker_id"] for r in results) == [2, 2, 3, 3]
    assert {r["worker_id"] for r in results[:2]} == {2, 3}


def test_a_task_worker_pushes_to_every_workers_connections(php_server, tmp_path, stack):
    """The article's onTask: a loop over $server->connections pushing to each, in a task worker."""
    srv = start(php_server, tmp_path)
    clients = [stack.enter_context(connect(srv.url)) for _ in range(CLIENTS)]
    for ws in clients:
        ws.send("info")
    senders = {recv(ws)["worker"] for ws in clients}
    for ws in clients:
        recv(ws)
    assert senders == {0, 1}, "clients on both workers"
    clients[0].send("all:hello")
    for ws in clients[1:]:
        assert ws.recv(timeout=5) == "to all: hello"
    # The sender's three messages: task()'s answer may come before or after the task's push.
    mine = [clients[0].recv(timeout=5) for _ in range(3)]
    assert "to all: hello" in mine
    answers = [json.loads(m) for m in mine if m != "to all: hello"]
    assert [a["result"]["pushed"] for a in answers if "finish" in a] == [CLIENTS]
    assert len([a for a in answers if "task" in a]) == 1


def test_a_push_made_before_a_task_reaches_its_client_before_the_tasks_own(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    clients = [stack.enter_context(connect(srv.url)) for _ in range(CLIENTS)]
    who = [send_task(ws, "who") for ws in clients]
    a = next(i for i, w in enumerate(who) if w["worker"] == 0)
    b = next(i for i, w in enumerate(who) if w["worker"] == 1)
    # Pushes to another worker's client are written in batches: the task must not overtake
    # them (its task worker pushes at once).
    for _ in range(20):
        assert isinstance(send_task(clients[a], f"pushthentask:{who[b]['task']}")["task"], int)
        got = [clients[b].recv(timeout=5) for _ in range(2)]
        assert got == ["before the task", "from the task"]


def test_finish_the_task_own_callback_and_what_is_refused(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    sent = send_task(ws, "own")
    done = recv(ws)
    assert done["own"] == sent["task"] and done["result"]["cmd"] == "own"
    # finish() sends once; what the callback returns after it is not sent again.
    sent = send_task(ws, "finish")
    done = recv(ws)
    assert done["result"]["by"] == "finish()" and done["finish"] == sent["task"]
    srv.wait_output("second finish(): finish() was called already for this task")
    # A task worker sends no tasks; choosing the task worker is not offered.
    send_task(ws, "nested")
    assert recv(ws)["result"]["error"] == "task() is for workers; a task worker cannot send tasks"
    assert send_task(ws, "closure")["task"] == "Exception: Serialization of 'Closure' is not allowed"
    assert send_task(ws, "dst")["task"] == "task() hands a task to the first free task worker: pass -1 as $dst_worker_id"
    # A task that returns nothing sends nothing back; its sender lets go of its own callback.
    send_task(ws, "silent")
    srv.wait_output("silent task")
    send_task(ws, "ownsilent")
    srv.wait_output("the finish callback of a silent task is freed")
    assert "a finish callback ran for a silent task" not in srv.stdout()
    ws.send("info")
    assert "task" in recv(ws) and "finish" in recv(ws)


def test_a_task_whose_data_cannot_be_unserialized_is_dropped_and_its_callback_let_go_of(php_server, tmp_path, stack):
    """__wakeup throws in the task worker: the task is logged with that exception and dropped,
    its sender lets go of its finish callback (it held it for ever), and the exception is not left
    pending to be reported at the next task as uncaught there."""
    srv = start(php_server, tmp_path, SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    task_id = send_task(ws, "unwakeable")["task"]
    srv.wait_output("the finish callback of an unreadable task is freed")
    err = srv.wait_output(f"task {task_id} of worker", stream="stderr")
    assert re.search(rf"task {task_id} of worker \d dropped: unserialize\(\) threw RuntimeException: "
                     r"cannot wake in a task worker in \S+tasks.php:\d+", err), err
    assert send_task(ws, "wait")["task"]["cmd"] == "info"
    assert "uncaught" not in srv.stderr()
    assert "a finish callback ran for an unreadable task" not in srv.stdout()


def test_taskwait_returns_the_result_and_drops_a_late_one(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    answer = send_task(ws, "wait")
    result = answer["task"]
    assert result["taskworker"] is True and result["src"] == answer["worker"]
    assert result["nested"] == {"ü": [1.5, None, True]}
    # A task that takes longer than the wait: false, and its result reaches no callback.
    assert send_task(ws, "waitshort")["task"] is False
    with pytest.raises(TimeoutError):
        ws.recv(timeout=1)
    assert send_task(ws, "wait")["task"]["cmd"] == "info", "the worker goes on"


def test_taskwaitmulti_returns_the_results_that_came_under_their_keys(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    answer = send_task(ws, "multi:2")
    got = answer["task"]
    assert sorted(got) == ["7", "first", "slow"]
    assert got["first"]["cmd"] == "info" and got["first"]["nested"] == {"ü": [1.5, None, True]}
    assert got["7"]["data"] == f"raw\0{got['7']['fd']}" and got["slow"]["cmd"] == "slow"
    assert got["first"]["taskworker"] is True and got["slow"]["src"] == answer["worker"]
    # The slow one (0.5 s) is left out after 0.2 s; its result, when it comes, reaches no callback.
    assert sorted(send_task(ws, "multi:0.2")["task"]) == ["7", "first"]
    assert send_task(ws, "multinone")["task"] == []
    with pytest.raises(TimeoutError):
        ws.recv(timeout=1)


def test_a_task_worker_sends_a_message_to_a_worker(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    sender = send_task(ws, "pipe")["worker"]
    # The message and the task's result, in either order.
    got = sorted((recv(ws), recv(ws)), key=lambda m: "piped" in m)
    assert got[0]["result"]["sent"] is True and got[0]["worker"] == sender
    assert got[1] == {"piped": "from a task worker", "src": got[0]["result"]["worker_id"], "worker": sender}


def test_a_worker_sends_a_message_to_each_task_worker(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    for task_worker in (2, 3):
        ws.send(f"topipe:{task_worker}")
        # sendMessage()'s answer and the task worker's push, in either order.
        got = sorted((recv(ws), recv(ws)), key=lambda m: "piped" in m)
        assert got[0]["task"] is True
        assert got[1] == {"piped": "to a task worker", "src": got[0]["worker"], "worker": task_worker}


def test_a_task_worker_that_exits_is_replaced(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    send_task(ws, "exit")
    srv.wait_output("exited (status 3); starting another", stream="stderr", timeout=10)
    assert re.search(r"worker [23] exited \(status 3\); starting another", srv.stderr())
    for _ in range(4):
        send_task(ws, "info")
        assert recv(ws)["result"]["taskworker"] is True


def test_a_task_lost_with_its_killed_task_worker_lets_its_sender_go(php_server, tmp_path, stack):
    """SIGKILL (the OOM killer, a reload's kill past its time) ends a task worker in the middle
    of a task: the task worker started in its place tells the sender, which lets go of the
    finish callback it kept for it (for ever before), and whose taskwait returns false (it
    waited out its 60 s)."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    never = tmp_path / "never"
    ws = stack.enter_context(connect(srv.url))

    def kill_the_holder(count: int) -> None:
        eventually(lambda: len(re.findall(r"^holding task", srv.stdout(), re.M)) == count, timeout=10)
        os.kill(int(re.findall(r"^holding task \d+ in pid (\d+)", srv.stdout(), re.M)[-1]), signal.SIGKILL)

    task_id = send_task(ws, f"ownhold:{never}")["task"]
    kill_the_holder(1)
    srv.wait_output("the finish callback of a lost task is freed", timeout=10 * TIME_FACTOR)
    assert f"task {task_id} of worker 0 was lost: the task worker running it died" in srv.stderr()
    assert "a finish callback ran for a lost task" not in srv.stdout()
    ws.send(f"waitlong:hold,{never}")
    kill_the_holder(2)
    answer = json.loads(ws.recv(timeout=30))["task"]
    assert answer["result"] is False and answer["seconds"] < 30, answer
    # A task that returns nothing ends a taskwait at once too (false), rather than its timeout.
    ws.send("waitlong:quick")
    answer = json.loads(ws.recv(timeout=30))["task"]
    assert answer["result"] is False and answer["seconds"] < 30, answer


def test_a_result_that_cannot_be_serialized_is_dropped_and_the_next_task_runs(php_server, tmp_path, stack):
    """serialize() threw on a task's result (a closure) and its exception stayed pending in the
    task worker: the next task it took was dropped as if its own data had failed."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    task_id = send_task(ws, "closureresult")["task"]
    srv.wait_output(f"the result of task {task_id} was not sent: serialize() threw Exception: "
                    "Serialization of 'Closure' is not allowed", stream="stderr")
    assert send_task(ws, "wait")["task"]["cmd"] == "info"


def test_a_worker_waiting_for_a_task_when_the_server_stops_stops_too(php_server, tmp_path, stack):
    """taskwait() for a task queued behind a busy one when SIGTERM came: the stop drops the
    queued task, and the worker waited on for its result until it was killed (its clients cut
    off with 1006, no workerStop)."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    done = tmp_path / "done"
    busy = stack.enter_context(connect(srv.url))
    waiting = stack.enter_context(connect(srv.url))
    send_task(busy, f"ownhold:{done}")
    srv.wait_output("holding task")
    waiting.send("waitlong:quick")
    time.sleep(0.3)
    srv.signal(signal.SIGTERM)
    time.sleep(0.3)
    done.touch()  # the busy task ends; the task worker takes no other
    assert close_code(waiting) == 1001
    assert srv.wait(timeout=15) == 0
    assert "workerStop 0" in srv.stdout()


def test_a_task_running_when_the_server_stops_still_answers_its_taskwait(php_server, tmp_path, stack):
    """The stop ends a taskwait() only once it has waited for its clients (shutdown_timeout):
    a task running at the signal still gets its result to the worker waiting for it."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    done = tmp_path / "done"
    ws = stack.enter_context(connect(srv.url))
    ws.send(f"waitlong:hold,{done}")
    srv.wait_output("holding task")
    srv.signal(signal.SIGTERM)
    time.sleep(0.5)
    done.touch()
    assert srv.wait(timeout=15) == 0
    assert "waitlong got a result" in srv.stdout(), srv.stdout()


def test_a_result_for_a_worker_replaced_since_is_dropped(php_server, tmp_path, stack):
    """The worker started in place of one that died counts its task ids from 0 again: the
    result of a task the dead one sent must not pass for the result of one of its own."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    release = tmp_path / "release"
    with connect(srv.url) as ws:
        assert send_task(ws, f"hold:{release}")["task"] == 0
        ws.send("die")
        srv.wait_output("worker 0 exited (status 4); starting another", stream="stderr", timeout=10 * TIME_FACTOR)
    eventually(lambda: srv.stdout().count("workerStart 0 ") == 2, timeout=10 * TIME_FACTOR)
    ws = stack.enter_context(connect(srv.url))
    assert send_task(ws, "info")["task"] == 0
    release.touch()
    done = recv(ws)
    assert (done["finish"], done["result"]["cmd"]) == (0, "info")
    srv.wait_output("the result of task 0 was dropped: the process that sent it has been replaced", stream="stderr")
    assert "finish 0 hold" not in srv.stdout()


def test_sigterm_stops_the_task_workers_too(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    send_task(ws, "info")
    recv(ws)
    srv.signal(signal.SIGTERM)
    assert close_code(ws) == 1001
    assert srv.wait(timeout=15) == 0
    out = srv.stdout()
    assert sorted(re.findall(r"^workerStop (\d)$", out, re.M)) == ["0", "1", "2", "3"]
    assert out.count("shutdown") == 1
    err = srv.stderr()
    assert "2 workers and 2 task workers serving on port" in err
    # Only the workers, which take connections, say so.
    assert len(re.findall(r"listening on ws://", err)) == 2, err
    assert len(re.findall(r"shutting down: closing \d+ connections?", err)) == 2, err


def test_sigusr2_to_the_master_restarts_the_task_workers_only(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path)
    ws = stack.enter_context(connect(srv.url))
    before = dict(re.findall(r"^workerStart (\d) taskworker=\w+ pid=(\d+)$", srv.stdout(), re.M))
    srv.signal(signal.SIGUSR2)
    srv.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    assert re.findall(r"worker (\d) stopped for the reload", srv.stderr()) == ["2", "3"]
    starts = re.findall(r"^workerStart (\d) taskworker=\w+ pid=(\d+)$", srv.stdout(), re.M)
    assert [i for i, _ in starts[4:]] == ["2", "3"], "the workers go on"
    assert {pid for i, pid in starts[4:]}.isdisjoint(before.values())
    sent = send_task(ws, "info")
    assert recv(ws)["result"]["pid"] in {int(pid) for _, pid in starts[4:]}
    assert sent["pid"] == int(before[str(sent["worker"])]), "the client's worker kept its connection"


def test_a_task_worker_takes_no_task_after_the_stop_signal(php_server, tmp_path, stack):
    """SIGTERM while a task runs: that task finishes and no other starts (one more did: PHP
    hears of the signal only after the next task was taken)."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    assert send_task(ws, "slowticks:6")["task"] == list(range(6))
    srv.wait_output("tick 1 ran", timeout=10 * TIME_FACTOR)
    srv.signal(signal.SIGTERM)  # tick 2 runs, for about 500 ms more
    assert srv.wait(timeout=30 * TIME_FACTOR) == 0
    ran = re.findall(r"^tick (\d+) ran", srv.stdout(), re.M)
    assert ran == ["1", "2"], ran


def test_a_reload_loses_no_queued_task(php_server, tmp_path, stack):
    """The one task worker is restarted while tasks wait in the queue: it stops taking them
    once its stop begins, and its replacement runs the rest; each runs once."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    assert send_task(ws, "ticks:40")["task"] == list(range(40))
    srv.wait_output("tick 3 ran")
    srv.signal(signal.SIGUSR2)
    srv.wait_output("reload done", stream="stderr", timeout=15 * TIME_FACTOR)
    eventually(lambda: "tick 40 ran" in srv.stdout(), timeout=10 * TIME_FACTOR)
    ran = re.findall(r"^tick (\d+) ran in pid (\d+)$", srv.stdout(), re.M)
    assert [int(i) for i, _ in ran] == list(range(1, 41)), "every task ran once, in order"
    assert len({pid for _, pid in ran}) == 2, "some ran in the task worker started in its place"


def test_tasks_queued_behind_a_fatal_one_run_in_the_task_worker_started_in_its_place(php_server, tmp_path, stack):
    """A fatal error stops the task worker (its drain hands PHP nothing more) without waiting out
    shutdown_timeout (30 s here); the tasks queued behind it stay in the queue for the next."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1", **settings_env(shutdown_timeout=30))
    ws = stack.enter_context(connect(srv.url))
    assert send_task(ws, "fatal")["task"] == [0, 1, 2, 3]
    srv.wait_output("worker 1 exited (status 255); starting another", stream="stderr", timeout=10 * TIME_FACTOR)
    eventually(lambda: "tick 3 ran" in srv.stdout(), timeout=10 * TIME_FACTOR)
    starts = re.findall(r"^workerStart 1 taskworker=true pid=(\d+)$", srv.stdout(), re.M)
    ran = re.findall(r"^tick (\d+) ran in pid (\d+)$", srv.stdout(), re.M)
    assert ran == [(str(i), starts[1]) for i in (1, 2, 3)], "each ran once, in the new task worker"


def test_a_timer_added_before_start_runs_in_task_workers_too(php_server, tmp_path):
    srv = start(php_server, tmp_path, SURGE_TIMER="1")
    for worker in range(4):
        srv.wait_output(f"timer in worker {worker}")


def test_one_worker_with_a_task_worker(php_server, tmp_path, stack):
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    sent = send_task(ws, "info")
    assert sent["worker"] == 0
    assert recv(ws)["result"]["worker_id"] == 1
    assert "1 worker and 1 task worker serving on port" in srv.stderr()


def test_a_full_queue_makes_task_return_false_and_the_tasks_queued_still_run(php_server, tmp_path, stack):
    """The one task worker is held; the worker queues 8,000-byte tasks until the queue (4 MiB
    of the kernel's socket buffer, or its wmem_max) stays full for 5 s: task() returns false."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="1")
    ws = stack.enter_context(connect(srv.url))
    release = tmp_path / "release"
    ws.send(f"flood:{release}")
    flood = json.loads(ws.recv(timeout=30))["task"]
    assert flood["queued"] > 10 and flood["false_after"] >= 4.9, flood
    srv.wait_output("task() failed: the task queue stayed full for 5s", stream="stderr")
    release.touch()
    assert recv(ws)["result"]["cmd"] == "hold"
    sent = send_task(ws, "info")
    assert recv(ws)["finish"] == sent["task"], "the queued tasks ran, then this one"


def test_a_burst_of_tasks_is_not_held_up_by_its_own_results(php_server, tmp_path, stack):
    """20,000 task() calls in one callback: while the worker waits in task() for room in the
    queue, the task workers must still hand over their results (they waited for that worker's
    PHP, took no more tasks, and task() returned false after 5 s, now and then)."""
    srv = start(php_server, tmp_path, SURGE_WORKERS="1", SURGE_TASKS="2")
    ws = stack.enter_context(connect(srv.url))
    ws.send("burst:20000")
    assert json.loads(ws.recv(timeout=60))["task"] == 0, "no task() returned false"
    assert eventually(lambda: send_task(ws, "burstresults")["task"] == 20000)
    assert "task() failed" not in srv.stderr()


def test_redis_in_task_workers_publishes_but_does_not_subscribe(php_server, tmp_path, stack, redis_server):
    """Subscriptions made before start() are the workers': a task worker has no connections to
    forward to, so it does not subscribe. It can publish."""
    srv = start(php_server, tmp_path, **settings_env(redis=redis_server.url))
    channel = "laravel_database_news"
    eventually(lambda: redis_server.client.pubsub_numsub(channel) == [(channel, 2)])
    ws = stack.enter_context(connect(srv.url))
    send_task(ws, "publish")
    done = recv(ws)["result"]
    assert done["published"] is True and done["taskworker"] is True
    for worker in (0, 1):
        srv.wait_output(f"redis in worker {worker}: news from task worker {done['worker_id']}")
    assert redis_server.client.pubsub_numsub(channel) == [(channel, 2)]
    assert srv.stdout().count("redis in worker") == 2


def test_a_publish_from_a_task_goes_out_while_the_task_works_on(php_server, tmp_path, stack, redis_server):
    """A task worker's PHP thread is busy for the whole task: the Redis bridge must publish
    without it (it went out only once the task ended, and a task over 3 s made it time out)."""
    srv = start(php_server, tmp_path, **settings_env(redis=redis_server.url))
    channel = "laravel_database_news"
    eventually(lambda: redis_server.client.pubsub_numsub(channel) == [(channel, 2)])
    ws = stack.enter_context(connect(srv.url))
    release = tmp_path / "release"
    send_task(ws, f"publish:{release}")
    srv.wait_output("redis in worker 0: news from task worker", timeout=10)
    assert "finish" not in srv.stdout(), "the task still works"
    release.touch()
    assert recv(ws)["result"]["published"] is True


def test_a_task_callback_without_task_workers_is_warned_about():
    """on('task') with task_worker_num 0 never runs, and the task() meant for it throws
    wherever it is (a timer): start() says so once, in the log."""
    out = run_php("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', 0);
        $s->set(['worker_num' => 2]);
        $s->on('task', fn () => null);
        $s->on('workerStart', fn ($s, $id) => $id === 1 ? $s->shutdown() : null);
        $s->start();
    """)
    assert out.returncode == 0, out.stderr
    warning = "a task callback is set but task_worker_num is 0: it never runs, and task() throws"
    assert out.stderr.count(warning) == 1, out.stderr


@pytest.mark.parametrize("code, message", [
    ("$s->set(['task_worker_num' => 2]); $s->start();",
     "task_worker_num needs a task callback: on('task', function ($server, $taskId, $workerId, $data) {...})"),
    ("$s->task('x');", "task() needs task workers: set(['task_worker_num' => 4]) and on('task', ...)"),
    ("$s->set(['task_worker_num' => 1]); $s->task('x');", "task() needs a running server: call it from a callback"),
    ("$s->set(['task_worker_num' => 1]); $s->finish('x');", "finish() is for the task callback of a task worker, while it runs"),
    ("$s->taskwait('x');", "taskwait() needs task workers"),
    ("$s->set(['task_worker_num' => 1]); $s->taskwait('x');", "taskwait() needs a running server: call it from a callback"),
    ("$s->taskWaitMulti(['x']);", "taskWaitMulti() needs task workers"),
    ("$s->set(['task_worker_num' => 257]);", "setting 'task_worker_num'"),
])
def test_misuse_throws(code, message):
    assert message in surge_exception(code)
