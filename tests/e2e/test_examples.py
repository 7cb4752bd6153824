"""The two examples in php/examples, run as they ship, with real WebSocket and HTTP clients:
the chat room (seed 003) and push by page (seed 004)."""

import json
import urllib.error
import urllib.request
from contextlib import ExitStack
from urllib.parse import quote

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import ROOT

CHAT = ROOT / "php/examples/chat/server.php"
PUSH = ROOT / "php/examples/push-by-page/server.php"


def recv(ws, timeout=5):
    return json.loads(ws.recv(timeout=timeout))


def http_get(url):
    """(status, content type, body) of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["content-type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read().decode()


# --- the chat room -------------------------------------------------------------------------

def join(stack, srv, name=None):
    """Connects to the chat (asking for `name`); returns the socket and its openSuccess."""
    ws = stack.enter_context(connect(srv.url + "/" + (f"?name={quote(name)}" if name else "")))
    hello = recv(ws)
    assert hello["type"] == "openSuccess"
    return ws, hello


def test_chat_assigns_names_and_announces_newcomers(php_server):
    srv = php_server(CHAT)
    assert f"open http://127.0.0.1:{srv.port}/ " in srv.wait_output("Surge chat room")
    with ExitStack() as stack:
        ann, hello = join(stack, srv, "Ann")
        assert hello["user"]["name"] == "Ann"
        assert hello["all"] == [hello["user"]]

        anon, hello2 = join(stack, srv)
        fd = hello2["user"]["fd"]
        assert hello2["user"] == {"fd": fd, "name": f"S{fd}"}
        assert hello2["all"] == [hello["user"], hello2["user"]]
        joined = recv(ann)
        assert (joined["type"], joined["message"], joined["user"]) == ("open", f"S{fd} joined", hello2["user"])

        # A name that is not plain text is not used: the article's S<fd> is.
        _, hello3 = join(stack, srv, "<i>evil</i>")
        assert hello3["user"]["name"] == f"S{hello3['user']['fd']}"
        assert recv(ann)["message"] == f"{hello3['user']['name']} joined"
        assert recv(anon)["message"] == f"{hello3['user']['name']} joined"


def test_chat_message_reaches_everyone_but_the_sender_escaped(php_server):
    srv = php_server(CHAT)
    with ExitStack() as stack:
        ann, _ = join(stack, srv, "Ann")
        bob, _ = join(stack, srv, "Bob")
        cat, _ = join(stack, srv, "Cat")
        recv(ann), recv(ann), recv(bob)  # the join notices

        ann.send("<script>alert(\"x\")</script> & 'hi'")
        for ws in (bob, cat):
            got = recv(ws)
            assert got["type"] == "message"
            assert got["message"] == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#039;hi&#039;"
            assert got["user"]["name"] == "Ann"
            assert got["datetime"][:2] == "20" and isinstance(got["timestamp"], int)

        ann.send("   ")  # blank: nobody hears it
        bob.send("hello Ann")
        # Ann's next message is Bob's: she was not sent her own, nor the blank one.
        got = recv(ann)
        assert (got["user"]["name"], got["message"]) == ("Bob", "hello Ann")
        assert recv(cat)["message"] == "hello Ann"


def test_chat_runs_unchanged_with_worker_processes(php_server):
    """CHAT_WORKERS=2: sixteen users spread over two processes (fds of worker 0 are odd, of
    worker 1 even; all on one: 1 in 32768) see every join and every message, and the list of
    users in the shared table is everybody's."""
    srv = php_server(CHAT, env={"CHAT_WORKERS": "2"})
    with ExitStack() as stack:
        users = []
        for i in range(16):
            ws, hello = join(stack, srv, f"U{i}")
            assert sorted(u["name"] for u in hello["all"]) == sorted(f"U{j}" for j in range(i + 1))
            for earlier, _ in users:
                assert recv(earlier)["message"] == f"U{i} joined"
            users.append((ws, hello["user"]["fd"]))
        assert {fd % 2 for _, fd in users} == {0, 1}
        users[3][0].send("hello from U3")
        for i, (ws, _) in enumerate(users):
            if i != 3:
                got = recv(ws)
                assert (got["user"]["name"], got["message"]) == ("U3", "hello from U3")


def test_chat_tells_the_others_who_left(php_server):
    srv = php_server(CHAT)
    with ExitStack() as stack:
        ann, _ = join(stack, srv, "Ann")
        with connect(srv.url + "/?name=Bob") as bob:
            bob_user = recv(bob)["user"]
            recv(ann)
        left = recv(ann)
        assert (left["type"], left["message"], left["user"]) == ("close", "Bob left", bob_user)
        _, hello = join(stack, srv, "Cat")
        assert [u["name"] for u in hello["all"]] == ["Ann", "Cat"]


def test_chat_serves_its_page_and_the_admin_page_on_the_same_port(php_server):
    srv = php_server(CHAT)
    status, ctype, body = http_get(srv.http + "/")
    assert status == 200 and ctype.startswith("text/html")
    assert "new WebSocket(" in body and 'id="messages"' in body

    with ExitStack() as stack:
        ann, _ = join(stack, srv, "Ann")
        bob, _ = join(stack, srv, "Bob")
        recv(ann)  # Bob joined
        ann.send("one message")
        # Handled once Bob has it (Ann's "Bob joined" was sent before: with it alone, a loaded
        # machine let the admin page count no message yet).
        assert recv(bob)["message"] == "one message"
        status, ctype, admin = http_get(srv.http + "/admin")
    assert status == 200 and ctype.startswith("text/html")
    assert "Online users (2)" in admin
    assert "<td>Ann</td>" in admin and "<td>Bob</td>" in admin
    assert "<tr><th>connections</th><td>2</td></tr>" in admin
    assert "<tr><th>messages in</th><td>1</td></tr>" in admin

    status, _, body = http_get(srv.http + "/nowhere")
    assert status == 404 and "/admin" in body


# --- push by page --------------------------------------------------------------------------

TOKEN = "123456"


def page_client(stack, srv, page):
    ws = stack.enter_context(connect(f"{srv.url}/?page={page}&token={TOKEN}"))
    assert recv(ws) == {"code": 200, "message": "connected to the push server"}
    return ws


def trigger(srv, func, token=TOKEN):
    status, ctype, body = http_get(f"{srv.http}/?func={func}&token={token}&page=back")
    assert ctype == "application/json"
    return status, json.loads(body)


def assert_nothing_pushed(ws):
    """The next message is the answer to a heartbeat: nothing was pushed before it."""
    ws.send("heartbeat")
    assert recv(ws) == {"code": 204, "message": "heartbeat"}


@pytest.mark.parametrize("query", ["?page=home", "?page=home&token=654321", "?page=home&token="])
def test_push_refuses_connections_without_the_token(php_server, query):
    srv = php_server(PUSH)
    with connect(srv.url + "/" + query) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4001
    assert closed.value.rcvd.reason == "missing or invalid token"
    srv.wait_output("no token" if "token" not in query else "wrong token")


def test_push_reaches_only_the_matching_pages(php_server):
    srv = php_server(PUSH)
    with ExitStack() as stack:
        home1 = page_client(stack, srv, "home")
        home2 = page_client(stack, srv, "home")
        lst = page_client(stack, srv, "list")

        assert trigger(srv, "pushHomeLogic") == (200, {"code": 200, "message": "pushed to 2 connection(s)", "pushed": 2})
        for ws in (home1, home2):
            assert recv(ws) == {"code": 200, "message": "the back end pressed button 1"}

        assert trigger(srv, "pushListLogic")[1]["pushed"] == 1
        # The list page's first push is button 2: button 1 never reached it.
        assert recv(lst) == {"code": 200, "message": "the back end pressed button 2"}
        assert_nothing_pushed(home1)

        home2.close()
        srv.wait_output("closed")
        assert trigger(srv, "pushHomeLogic")[1]["pushed"] == 1
        assert recv(home1)["message"] == "the back end pressed button 1"


def test_push_trigger_needs_the_token_and_a_known_func(php_server):
    srv = php_server(PUSH)
    with ExitStack() as stack:
        home = page_client(stack, srv, "home")
        assert trigger(srv, "pushHomeLogic", token="000000") == (403, {"code": 403, "message": "missing or invalid token"})
        status, _, body = http_get(f"{srv.http}/?func=pushHomeLogic")
        assert status == 403 and json.loads(body)["code"] == 403
        # Only the push methods may be called over HTTP, not any method of the class.
        for func in ("onClose", "handle", "nope"):
            status, reply = trigger(srv, func)
            assert status == 404 and "pushHomeLogic or pushListLogic" in reply["message"]
        assert_nothing_pushed(home)


def test_push_serves_the_home_list_and_back_pages(php_server):
    srv = php_server(PUSH)
    assert f"http://127.0.0.1:{srv.port}/back" in srv.wait_output("push-by-page server started")
    pages = {path: http_get(srv.http + path) for path in ("/home", "/list", "/back", "/", "/style.css", "/nope")}
    for page in ("home", "list"):
        status, ctype, body = pages[f"/{page}"]
        assert status == 200 and ctype.startswith("text/html")
        assert f"/?page={page}&token={TOKEN}" in body and "{{" not in body
    assert pages["/home"][2] != pages["/list"][2]
    status, _, back = pages["/back"]
    assert status == 200 and 'data-func="pushHomeLogic"' in back and 'data-func="pushListLogic"' in back
    assert pages["/"] == pages["/back"]
    assert pages["/style.css"][:2] == (200, "text/css; charset=utf-8")
    assert pages["/nope"][0] == 404
