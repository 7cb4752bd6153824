"""The Swoole-style server API, through a real WebSocket client (Python websockets)."""

import email.utils
import gzip
import http.client
import json
import os
import re
import socket
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from conftest import TIME_FACTOR, close_code, settings_env
from rawws import UPGRADE_REQUEST, status_or_reset


def test_open_message_close_callbacks(php_server):
    srv = php_server("echo.php")
    srv.wait_output("workerStart 0")
    assert f"start {srv.port}" in srv.stdout()
    with connect(srv.url + "/room?name=ann&x=1", user_agent_header="e2e-test") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"
    out = srv.wait_output("close ")
    fd, opened = out.split("open ", 1)[1].splitlines()[0].split(" ", 1)
    assert f"close {fd}" in out
    opened = json.loads(opened)
    assert opened == {"get": {"name": "ann", "x": "1"}, "path": "/room", "ua": "e2e-test"}


def test_fds_are_never_reused(php_server):
    srv = php_server("echo.php")
    fds = []
    for _ in range(3):
        with connect(srv.url) as ws:
            ws.send("cmd:info")
            fds.append(json.loads(ws.recv(timeout=5))["fd"])
    assert fds == sorted(set(fds)) and len(fds) == 3


def test_push_to_closed_fd_is_false_without_warning(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:push:987654")
        assert json.loads(ws.recv(timeout=5)) == [False, False, False]
    assert "Warning" not in srv.stderr()


def test_client_info_connections_and_stats(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as a, connect(srv.url) as b:
        a.send("cmd:info")
        info = json.loads(a.recv(timeout=5))
        assert info["remote_ip"] == "127.0.0.1"
        assert info["server_port"] == srv.port
        assert info["websocket_status"] == 3
        assert abs(info["connect_time"] - time.time()) < 5
        b.send("cmd:conns")
        conns = json.loads(b.recv(timeout=5))
        assert conns["count"] == 2 and len(conns["fds"]) == 2
        b.send("cmd:stats")
        stats = json.loads(b.recv(timeout=5))
        assert stats["connections"] == 2
        assert stats["accepted"] >= 2
        assert stats["messages_in"] >= 3
        assert stats["bytes_in"] > 0


def test_disconnect_sends_code_and_reason(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:disconnect:bye now")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4000
    assert closed.value.rcvd.reason == "bye now"


def test_messages_pushed_by_one_callback_arrive_in_the_order_pushed(php_server):
    # A callback's first push to its own connection may be written at once (worker_threads 0),
    # but never before what was queued for it earlier: here a broadcast, then the answer.
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:broadcast:hello")
        assert [ws.recv(timeout=5), ws.recv(timeout=5)] == ["hello", "1"]
        ws.send("cmd:sequence")
        got = [ws.recv(timeout=5) for _ in range(4)]
    assert got == ["one", "two", "three", "[true,1,true]"]


def test_a_message_pushed_before_disconnect_arrives_before_the_close(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:last-words:goodbye")
        assert ws.recv(timeout=5) == "goodbye"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "said")


def test_each_message_gets_its_own_frame_whatever_the_callback_did_with_the_last(php_server):
    # Frame objects the callback let go are reused; one it kept, even weakly, or added a
    # property to, is not.
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ask = lambda cmd: (ws.send(cmd), json.loads(ws.recv(timeout=5)))[1]
        assert ask("cmd:keep") == 1
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        assert ask("cmd:kept") == ["cmd:keep"]
        assert ask("cmd:weak") is True
        assert ask("cmd:weak-gone") is True
        assert ask("cmd:tag:x") is True
        assert ask("cmd:tagged") is False
        assert ask("cmd:keep") == 2
        assert ask("cmd:kept") == ["cmd:keep", "cmd:keep"]
        fd = ask("cmd:frame")[0]
        assert ask("cmd:frame") == [fd, "cmd:frame", 1, True]
        assert ask("cmd:scribble")[0] == -1
        assert ask("cmd:frame") == [fd, "cmd:frame", 1, True]
        assert ask("cmd:held") == "overwritten", "a reference to a frame's property keeps its value"
        ws.send(b"cmd:frame")
        assert json.loads(ws.recv(timeout=5)) == [fd, "cmd:frame", 2, True]
        assert ask("cmd:vars") == {"fd": fd, "data": "cmd:vars", "opcode": 1, "finish": True}
        assert ask("cmd:frame") == [fd, "cmd:frame", 1, True]


def test_binary_push(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:binary")
        assert ws.recv(timeout=5) == b"\x00\xffraw"


def test_numbers_are_pushed_as_php_prints_them(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:numbers")
        got = [ws.recv(timeout=5) for _ in range(6)]
        assert got == ["42", "1.5", "0.3", "1.0E+20", "-INF", "NAN"]
        assert json.loads(ws.recv(timeout=5)) == [True] * 6


def test_exception_in_callback_is_logged_and_server_keeps_serving(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:throw")
        ws.send("still there?")
        assert ws.recv(timeout=5) == "still there?"
    err = srv.wait_output("RuntimeException", stream="stderr")
    assert "thrown on purpose" in err and "echo.php:" in err


def test_sigterm_closes_clients_with_1001_and_runs_shutdown(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("x")
        ws.recv(timeout=5)
        srv.signal(signal.SIGTERM)
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0
    out = srv.stdout()
    assert "shutdown" in out and "start returned true" in out


def test_shutdown_method_stops_the_server(php_server):
    srv = php_server("echo.php")
    with connect(srv.url) as ws:
        ws.send("cmd:shutdown")
        assert close_code(ws) == 1001
    assert srv.wait(timeout=10) == 0
    assert srv.stdout().rstrip().endswith("start returned true")


def test_plain_http_without_request_callback_gets_426(php_server):
    srv = php_server("echo.php")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(srv.http + "/", timeout=5)
    assert err.value.code == 426
    assert "WebSocket" in err.value.read().decode()


def test_request_callback_serves_http_on_the_same_port(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    req = urllib.request.Request(
        srv.http + "/api/push?page=home&token=1", data=b"a=1&b=two+words", headers={"Cookie": "sid=abc; theme=dark"}
    )
    with urllib.request.urlopen(req, timeout=5) as res:
        assert res.status == 201
        assert res.headers["Content-Type"] == "application/json"
        body = json.loads(res.read())
    assert body["get"] == {"page": "home", "token": "1"}
    assert body["post"] == {"a": "1", "b": "two words"}
    assert body["cookie"] == {"sid": "abc", "theme": "dark"}
    assert body["method"] == body["get_method"] == "POST" and body["uri"] == "/api/push"
    assert body["body"] == "a=1&b=two+words"
    # WebSocket still works on the same port.
    with connect(srv.url) as ws:
        ws.send("same port")
        assert ws.recv(timeout=5) == "same port"


def test_cookies_are_set_and_read_as_php_does(php_server):
    """Response::cookie() writes Set-Cookie as PHP's setcookie() does, a bad name throws;
    rawCookie() as setrawcookie() (the value as given; white space in it throws); Request::$cookie splits on ';' only, URL-decodes, keeps
    the first of a name sent twice (as $_COOKIE)."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/cookie", headers={"Cookie": "q=k%3Dv&w=2; name=J%C3%B6rg+B; q=second"})
    res = conn.getresponse()
    body = json.loads(res.read())
    assert res.status == 201
    assert body["cookie"] == {"q": "k=v&w=2", "name": "Jörg B"}
    assert body["get_method"] == "GET"
    # At most max_input_vars (1000) of them, as in $_COOKIE: their names may all collide in
    # PHP's hash (unseeded), which made a head of 4,096 cost the PHP thread ten times as much.
    conn.request("GET", "/cookie", headers={"Cookie": "; ".join(f"c{i}=v" for i in range(1500))})
    assert len(json.loads(conn.getresponse().read())["cookie"]) == 1000
    assert "more than max_input_vars (1000) cookies" in srv.stderr()
    conn.request("GET", "/cookie", headers={"Cookie": "q=k%3Dv&w=2; name=J%C3%B6rg+B; q=second"})
    res = conn.getresponse()
    body = json.loads(res.read())
    cookies = res.headers.get_all("Set-Cookie")
    assert cookies[:2] == [
        "sid=a%20b%26c; path=/; HttpOnly; SameSite=Lax",
        "gone=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
    ]
    until = cookies[2]
    assert re.fullmatch(
        r"until=v; expires=\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT; Max-Age=(\d+); path=/app; "
        r"domain=example.com; secure",
        until,
    ), until
    expires = email.utils.parsedate_to_datetime(until.split("expires=")[1].split(";")[0])
    assert abs(expires.timestamp() - time.time() - 3600) < 60
    assert 3500 < int(re.search(r"Max-Age=(\d+)", until)[1]) <= 3600
    assert cookies[3] == "token=a%20b=c/d; path=/; HttpOnly"
    assert len(cookies) == 4
    refused = res.headers.get_all("X-Refused")
    assert len(refused) == 3 and "bad;name" in refused[0], refused
    assert refused[1] == "cookie 'raw' has one of ,; or white space or a control character in its raw value", refused
    assert refused[2] == "cookie 'ctl' has one of ,; or white space or a control character in its path", refused


def test_status_takes_a_reason_phrase_and_header_swooles_format_argument(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/reason")
    res = conn.getresponse()
    assert (res.status, res.reason, res.read()) == (299, "Gone Fishing", b"fishing")
    assert res.headers["X-Format"] == "kept" and res.headers["X-Injected"] is None
    # No Content-Type given: Swoole's default.
    assert res.headers["Content-Type"] == "text/html"
    conn.request("GET", "/no-content")
    empty = conn.getresponse()
    assert empty.status == 204 and empty.headers["Content-Type"] is None, "no body, no type"
    empty.read()
    assert res.headers.get_all("X-Refused") == [
        "the reason phrase of status 200 has a control character (a line break?)",
        "status code must be between 200 and 999 (a 1xx is not a final response; 101 only in the handshake callback), got 103",
        "header 'X-Nul' has a control character (a line break?) in its value",
    ]


def test_response_arguments_are_read_as_php_reads_them_and_a_header_set_again_replaces_itself(php_server):
    """Swoole's methods take coercive arguments: status('201'), header('X-Int', 5), a cookie's
    null domain (Symfony's getters give null) threw a TypeError. header() set twice sent both
    (two Content-Types; two Locations after redirect(), which Chrome refuses); an array sends
    one header per element. path_info is URL-decoded, as Swoole's."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/coerced")
    res = conn.getresponse()
    assert (res.status, res.read()) == (201, b"coerced")
    assert res.headers["X-Int"] == "5" and res.headers.get_all("Content-Type") == ["application/json"]
    # cookie()'s and header()'s Set-Cookie apart, as Swoole keeps them; null takes a header away.
    assert res.headers.get_all("Set-Cookie") == ["raw=1", "uid=5; path=/; HttpOnly"] and res.headers["X-Gone"] is None
    conn.request("GET", "/relocated")
    res = conn.getresponse()
    res.read()
    assert (res.status, res.headers.get_all("Location")) == (301, ["/b"])
    conn.request("GET", "/relocated-default")
    res = conn.getresponse()
    res.read()
    assert (res.status, res.headers.get_all("Location")) == (302, ["/c"])
    conn.request("GET", "/status-599")
    res = conn.getresponse()
    res.read()
    assert (res.status, res.reason) == (599, "Unknown")  # was `<none>`, hyper's word for no phrase
    conn.request("GET", "/caf%C3%A9+au%20lait?x=1")
    got = json.loads(conn.getresponse().read())
    assert (got["uri"], got["path_info"]) == ("/caf%C3%A9+au%20lait", "/café au lait")


def test_framing_headers_set_by_php_do_not_break_the_response(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    # Twice on one keep-alive connection: the second response starts where the first ended.
    for _ in range(2):
        conn.request("GET", "/wrong-length")
        res = conn.getresponse()
        assert (res.status, res.headers["Content-Length"], res.headers["Transfer-Encoding"], res.read()) == (200, "5", None, b"hello")
        # Streamed, chunked (hyper cut it off at the wrong length: curl saw nothing at all).
        conn.request("GET", "/wrong-length-stream")
        res = conn.getresponse()
        assert (res.status, res.headers["Content-Length"], res.headers["Transfer-Encoding"], res.read()) == (200, None, "chunked", b"hello")
    # HEAD keeps PHP's Content-Length: the size GET would send.
    conn.request("HEAD", "/wrong-length")
    res = conn.getresponse()
    assert (res.status, res.headers["Content-Length"], res.read()) == (200, "3", b"")


def test_redirect_ends_the_response_with_location(php_server):
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/redirect")
    res = conn.getresponse()
    assert (res.status, res.headers["Location"], res.read()) == (301, "/elsewhere?x=1", b"")


def http_get(srv, path: str):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", path)
    res = conn.getresponse()
    return res.status, res.headers, res.read()


@pytest.mark.parametrize("compression", [None, False])
def test_responses_are_compressed_for_clients_that_accept_gzip(php_server, compression):
    """Swoole's http_compression, on unless set off: a JSON answer goes gzip-compressed to a
    client that accepts it (and says Vary), as it is to one that does not; a stream is never."""
    settings = {} if compression is None else {"http_compression": compression}
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(**settings)})

    def get(path: str, accept: str | None):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("GET", path, headers={"Accept-Encoding": accept} if accept else {})
        res = conn.getresponse()
        return res.headers, res.read()

    path = "/echo?" + urllib.parse.urlencode({"text": "compressible " * 50})
    headers, body = get(path, "br, gzip;q=0.8")
    if compression is None:
        assert (headers["Content-Encoding"], headers["Vary"]) == ("gzip", "Accept-Encoding")
        assert int(headers["Content-Length"]) == len(body) < 300
        body = gzip.decompress(body)
    else:
        assert headers["Content-Encoding"] is None
    assert json.loads(body)["get"]["text"] == "compressible " * 50
    headers, plain = get(path, None)
    assert headers["Content-Encoding"] is None and json.loads(plain)["get"]["text"] == "compressible " * 50
    headers, streamed = get("/stream", "gzip")
    assert headers["Content-Encoding"] is None and streamed.startswith(b"data: 1")


def test_sendfile_sends_a_file_or_a_range_of_it(php_server, tmp_path):
    """sendfile() sends the file (several 64 KiB pieces) with its length and a type from its
    name, or the range asked for; a type set by header() is kept; a missing file, a directory, a
    range past the end or a negative offset throws."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    content = os.urandom(300_000)
    data = tmp_path / "report.json"
    data.write_bytes(content)

    def get(**query):
        return http_get(srv, "/file?" + urllib.parse.urlencode(query))

    status, headers, body = get(path=data)
    assert (status, headers["Content-Type"], headers["Content-Length"]) == (200, "application/json", "300000")
    assert body == content
    assert "sendfile true, again false" in srv.wait_output("sendfile true")
    status, headers, body = get(path=data, offset=1000, length=70_000)
    assert (status, headers["Content-Length"], body) == (200, "70000", content[1000:71_000])
    _, headers, body = get(path=data, offset=299_990, type="text/plain; charset=utf-8")
    assert (headers["Content-Type"], body) == ("text/plain; charset=utf-8", content[299_990:])
    # A name that is not UTF-8 (an upload kept under its GBK name): Linux names are bytes.
    gbk = tmp_path / "caf\udce9.json"
    gbk.write_bytes(b"{}")
    assert http_get(srv, "/file?path=" + urllib.parse.quote(os.fsencode(gbk)))[::2] == (200, b"{}")
    refused = [
        ({"path": tmp_path / "missing.txt"}, "cannot open"),
        ({"path": tmp_path}, "is not a regular file"),
        ({"path": data, "offset": 299_999, "length": 2}, "go past the end"),
        ({"path": data, "offset": -1}, "must not be negative"),
        # A NUL in the path: still a Surge\Exception (not PHP's \Error about the message).
        ({"path": f"{data}\0.png"}, ".png: "),
    ]
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # A FIFO is refused at once, not waited on until a writer comes.
    refused.append(({"path": fifo}, "is not a regular file"))
    for query, why in refused:
        assert get(**query)[::2] == (404, b"no such file")
        assert why in srv.wait_output(why)


def test_a_client_that_stops_reading_a_file_is_dropped_after_send_timeout(php_server, tmp_path):
    """It asked for 64 MiB and reads nothing: after send_timeout without progress the server
    closes the connection and lets go of the file (before, both stayed for ever)."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(send_timeout=1)})
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /file?{urllib.parse.urlencode({'path': big})} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    srv.wait_output("sendfile true")

    def holds_the_file() -> bool:
        fds = Path(f"/proc/{srv.proc.pid}/fd")
        return any(os.readlink(fd) == str(big) for fd in fds.iterdir() if fd.is_symlink())
    deadline = time.monotonic() + 15
    while holds_the_file():
        assert time.monotonic() < deadline, "the file is still open"
        time.sleep(0.1)
    sock.close()
    with urllib.request.urlopen(srv.http + "/fine", timeout=5) as res:
        assert res.status == 201


def curl(srv, path, *args, input=None) -> tuple[int, dict | str]:
    """curl's answer to a request (-F fields make it a multipart form; `input` is its stdin):
    status, JSON or text."""
    out = subprocess.run(["curl", "-sg", "-w", "\n%{http_code}", *args, srv.http + path],
                         capture_output=True, text=True, timeout=30, input=input)
    body, status = out.stdout.rsplit("\n", 1)
    return int(status), json.loads(body) if body.startswith("{") else body


def test_query_and_form_fields_are_parsed_as_php_parses_them(php_server):
    """$request->get and a form's $request->post are what PHP makes of them: brackets nest,
    `.` and spaces in names become `_`, exactly as parse_str() does."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    _, got = curl(srv, "/form?a[]=1&a[]=2&b[x][y]=3&c.d=4&%20e=5&f[=6&g=%26")
    assert got["get"] == {"a": ["1", "2"], "b": {"x": {"y": "3"}}, "c_d": "4", "e": "5", "f_": "6", "g": "&"}
    assert got["get"] == got["parse_str"]
    _, got = curl(srv, "/form", "--data", "x[]=1&x[]=2&y.z=3&k[a]=%3D")
    assert got["post"] == {"x": ["1", "2"], "y_z": "3", "k": {"a": "="}}


def test_a_form_over_post_max_size_is_left_unparsed_as_php_leaves_it(php_server):
    """package_max_length raised for uploads let a 40 MB form field or urlencoded body through,
    and parsing it into $request->post exceeded memory_limit before any code of the app ran: the
    server died. Past post_max_size $request->post stays empty, as PHP leaves $_POST."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(package_max_length=64 << 20)},
                     ini={"memory_limit": "48M", "post_max_size": "8M"})
    big = "a=" + "x" * (40 << 20)
    status, got = curl(srv, "/form", "--data-binary", "@-", input=big)
    assert (status, got["post"]) == (200, []), got if status != 200 else ""
    status, got = curl(srv, "/form", "-F", "a=<-", input="x" * (40 << 20))
    assert (status, got["post"]) == (200, []), got if status != 200 else ""
    assert srv.stderr().count("is over post_max_size (8388608 bytes): $request->post is left empty") == 2
    _, got = curl(srv, "/form", "--data", "a=1")
    assert got["post"] == {"a": "1"}


def test_a_request_with_a_forms_content_type_and_no_body_reaches_php(php_server):
    """An empty POST (or a GET) with a multipart Content-Type got 400 "incomplete multipart
    stream"; PHP runs the script with empty $_POST."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    for method in ["POST", "GET"]:
        status, got = curl(srv, "/form", "-X", method, "-H", "Content-Type: multipart/form-data; boundary=XyZ")
        assert (status, got["post"], got["files"]) == (200, [], []), (method, got)


def test_a_warning_while_the_request_is_made_does_not_skip_the_open_callback(php_server):
    """More query fields than max_input_vars: PHP warns while Surge parses them, and an error
    handler that throws (Laravel's) left an exception pending, so `open` (where an app checks
    its token) never ran and the client stayed connected unchecked."""
    srv = php_server("echo.php", env={"SURGE_THROWING_ERRORS": "1"})
    query = "&".join(f"f{i}={i}" for i in range(1001))
    with connect(f"{srv.url}/?{query}") as ws:
        out = srv.wait_output("open ")
        opened = json.loads(out.split("open ", 1)[1].split(" ", 1)[1].splitlines()[0])
        assert len(opened["get"]) == 1000, "PHP keeps max_input_vars of them"
        ws.send("still served")
        assert ws.recv(timeout=5) == "still served"
    err = srv.stderr()
    assert "uncaught ErrorException while the open callback's arguments were made" in err
    assert "Input variables exceeded 1000" in err


def test_a_multipart_form_gives_post_fields_and_uploaded_files_as_php_does(php_server, tmp_path):
    """A form from curl -F: fields in $request->post (nested), files in $request->files laid out
    as PHP's $_FILES, written under upload_tmp_dir, taken by is_uploaded_file() and
    move_uploaded_file(), and deleted once the request is done unless moved; a body that is
    not valid multipart gets 400."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(upload_tmp_dir=str(uploads))})
    (tmp_path / "report.txt").write_text("numbers")
    (tmp_path / "a.png").write_text("pixels")
    (tmp_path / "b.bin").write_bytes(b"")
    moved = tmp_path / "kept.txt"
    status, got = curl(srv, f"/form?move={moved}", "-F", "title=hello", "-F", "tags[]=x", "-F", "tags[]=y",
                       "-F", f"doc=@{tmp_path / 'report.txt'};type=text/csv",
                       "-F", f"photos[]=@{tmp_path / 'a.png'}", "-F", f"photos[]=@{tmp_path / 'b.bin'}")
    assert status == 200, got
    assert got["post"] == {"title": "hello", "tags": ["x", "y"]}
    doc, photos = got["files"]["doc"], got["files"]["photos"]
    assert {k: v for k, v in doc.items() if k != "tmp_name"} == {
        "name": "report.txt", "full_path": "report.txt", "type": "text/csv", "error": 0, "size": 7}
    assert {k: v for k, v in photos.items() if k != "tmp_name"} == {
        "name": ["a.png", "b.bin"], "full_path": ["a.png", "b.bin"], "type": ["image/png", "application/octet-stream"],
        "error": [0, 0], "size": [6, 0]}
    temporary = [doc["tmp_name"], *photos["tmp_name"]]
    assert all(Path(t).parent == uploads for t in temporary), temporary
    assert got["uploads"] == {doc["tmp_name"]: [True, "numbers"], photos["tmp_name"][0]: [True, "pixels"],
                              photos["tmp_name"][1]: [True, ""]}
    assert got["moved"] is True and moved.read_text() == "numbers"
    deadline = time.monotonic() + 5
    while list(uploads.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(uploads.iterdir()) == []
    status, body = curl(srv, "/form", "-H", "Content-Type: multipart/form-data; boundary=XyZ",
                        "--data-binary", '--XyZ\r\nContent-Disposition: form-data; name="a"\r\n\r\ncut short')
    assert status == 400 and body.startswith("malformed multipart/form-data body"), body


def test_upload_limits_and_types_as_php_has_them(php_server, tmp_path):
    """File inputs left empty do not count against max_file_uploads (20) and files do not count
    against max_input_vars (1000): a form with more of them still keeps the file after them
    (with max_multipart_body_parts raised: by default it bounds the parts of any kind to 1020).
    A file's type is the part's Content-Type as sent without its parameters, and empty for an
    input left empty."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(upload_tmp_dir=str(tmp_path))},
                     ini={"max_multipart_body_parts": "2000"})
    parts = [(f"slot{i}", "", "application/octet-stream", b"") for i in range(20)]
    parts += [(f"field{i}", None, None, b"v") for i in range(1000)]
    parts += [("photo", "me.png", "Image/PNG; charset=binary", b"pixels")]
    boundary = "XyZ"
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        + (f'; filename="{filename}"\r\nContent-Type: {kind}'.encode() if filename is not None else b"")
        + b"\r\n\r\n" + data + b"\r\n"
        for name, filename, kind, data in parts) + f"--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/form", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    got = json.loads(conn.getresponse().read())
    assert len(got["post"]) == 1000
    photo = got["files"]["photo"]
    assert (photo["name"], photo["type"], photo["error"], photo["size"]) == ("me.png", "Image/PNG", 0, 6)
    assert got["files"]["slot0"]["type"] == "" and got["files"]["slot0"]["error"] == 4


def test_a_form_of_more_parts_than_max_multipart_body_parts_keeps_the_first_ones(php_server):
    """PHP's max_multipart_body_parts (max_input_vars + max_file_uploads: 1020 here) bounds the
    parts of a form, file inputs left empty too, and the rest is left out, as PHP leaves it. A
    form of 10,000 empty inputs named `a[][]...[]` made PHP arrays over memory_limit before the
    callback ran: the server ended (255), and every client with it (1011)."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    part = b'--B\r\nContent-Disposition: form-data; name="a' + b"[]" * 60 + b'"; filename=""\r\n\r\n\r\n'
    body = part * 10_000 + b"--B--\r\n"
    with connect(srv.url) as ws:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("POST", "/form", body, {"Content-Type": "multipart/form-data; boundary=B"})
        reply = conn.getresponse()
        assert reply.status == 200, reply.read()
        assert len(json.loads(reply.read())["files"]["a"]["error"]) == 1020
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
    assert "more than max_multipart_body_parts (1020) parts: the rest were left out" in srv.stderr()


def test_a_forms_ini_limits_are_read_as_php_reads_them(php_server, tmp_path):
    """PHP 8.2 reads max_multipart_body_parts and max_file_uploads as C's strtol does: "3K" is
    3 (the suffix was taken for no number, and the default of 1020 applied), "0x2" is 2."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(upload_tmp_dir=str(tmp_path))},
                     ini={"max_multipart_body_parts": "3K", "max_file_uploads": "0x2"})

    def form(parts: list) -> dict:
        body = b"".join(
            f'--B\r\nContent-Disposition: form-data; name="{name}"'.encode()
            + (f'; filename="{name}.txt"'.encode() if file else b"") + b"\r\n\r\nv\r\n"
            for name, file in parts) + b"--B--\r\n"
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/form", body, {"Content-Type": "multipart/form-data; boundary=B"})
        return json.loads(conn.getresponse().read())

    assert sorted(form([(f"field{i}", False) for i in range(5)])["post"]) == ["field0", "field1", "field2"]
    assert sorted(form([(f"file{i}", True) for i in range(3)])["files"]) == ["file0", "file1"]


def test_upload_names_are_taken_as_sent_whatever_their_charset(php_server, tmp_path):
    """A page in GBK sends its file and field names in GBK: they are bytes in $request->files
    and ->post, not dropped or turned into a field (they are not UTF-8); parameter names in any
    case and order, as PHP reads them."""
    script = tmp_path / "names.php"
    script.write_text("""<?php
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'upload_tmp_dir' => getenv('UPLOADS')]);
        $s->on('request', function ($req, $res) {
            $files = [];
            foreach ($req->files as $field => $file) {
                $files[bin2hex($field)] = [bin2hex($file['name']), file_get_contents($file['tmp_name'])];
            }
            $res->end(json_encode(['files' => $files, 'post' => array_map('bin2hex', array_keys($req->post))]));
        });
        $s->start();
    """)
    srv = php_server(script, env={"UPLOADS": str(tmp_path)})
    photo = "照片.jpg".encode("gbk")
    title = "标题".encode("gbk")
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="photo"; filename="' + photo + b'"\r\n\r\npixels\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="' + title + b'"\r\n\r\nhello\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; FileName="a b.txt"; Name="doc"\r\n\r\ntext\r\n'
            b"--XyZ--\r\n")
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("POST", "/", body, {"Content-Type": "multipart/form-data; boundary=XyZ"})
    got = json.loads(conn.getresponse().read())
    assert got["files"] == {b"photo".hex(): [photo.hex(), "pixels"], b"doc".hex(): [b"a b.txt".hex(), "text"]}
    assert got["post"] == [title.hex()]


def test_the_static_handler_serves_files_under_document_root_without_php(php_server, tmp_path):
    """With enable_static_handler, a GET or HEAD for a file under document_root gets the file
    (200, a type from its extension, Last-Modified and ETag, 304 when the client has it, 206 for
    a byte range) and PHP never sees it (its answers are 201), also through a link the root holds
    (Laravel's public/storage) and under .well-known/; other methods, missing files, hidden files
    and paths that climb out of the root go to the request callback; static_handler_locations narrows what
    is served, and http_index_files names what a directory serves (a directory named without its
    trailing slash is first redirected to it)."""
    root = tmp_path / "public"
    (root / "assets").mkdir(parents=True)
    (root / "assets" / "app.js").write_text("console.log(1)")
    (root / "index.html").write_text("<p>hi</p>")
    (tmp_path / "secret.txt").write_text("secret")
    # Laravel's `php artisan storage:link`: public/storage leads to storage/app/public.
    (tmp_path / "storage" / "app" / "public").mkdir(parents=True)
    (tmp_path / "storage" / "app" / "public" / "avatar.png").write_bytes(b"png")
    (root / "storage").symlink_to(tmp_path / "storage" / "app" / "public")
    (root / ".well-known" / "acme-challenge").mkdir(parents=True)
    (root / ".well-known" / "acme-challenge" / "token").write_text("proof")
    (root / ".env").write_text("APP_KEY=secret")
    static = {"SURGE_HTTP": "1", **settings_env(enable_static_handler=True, document_root=str(root))}
    srv = php_server("echo.php", env=static)

    def ask(method, path, headers=None, server=srv):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request(method, path, headers=headers or {})
        res = conn.getresponse()
        return res.status, res.headers, res.read()

    status, headers, body = ask("GET", "/assets/app.js")
    assert (status, body) == (200, b"console.log(1)")
    assert "javascript" in headers["Content-Type"]
    status, _, body = ask("GET", "/assets/app.js", {"If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (304, b"")
    status, again, body = ask("GET", "/assets/app.js", {"If-None-Match": headers["ETag"]})
    assert (status, again["ETag"], body) == (304, headers["ETag"], b"")
    status, _, body = ask("GET", "/assets/app.js", {"If-None-Match": '"older"', "If-Modified-Since": headers["Last-Modified"]})
    assert (status, body) == (200, b"console.log(1)"), "a tag that does not match decides"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = ask("GET", "/assets/app.js", {"Range": "bytes=2-5"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 2-5/14", b"nsol")
    status, headers, _ = ask("GET", "/assets/app.js", {"Range": "bytes=99-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */14")
    status, headers, body = ask("HEAD", "/index.html")
    assert (status, headers["Content-Type"], headers["Content-Length"], body) == (200, "text/html", "9", b"")
    assert ask("GET", "/storage/avatar.png")[::2] == (200, b"png")
    assert ask("GET", "/.well-known/acme-challenge/token")[::2] == (200, b"proof")
    for method, path in [("POST", "/index.html"), ("GET", "/missing.js"), ("GET", "/../secret.txt"), ("GET", "/assets/..%2f..%2fsecret.txt"),
                         ("GET", "/storage/../../secret.txt"), ("GET", "/.env"), ("GET", "/assets")]:
        status, _, body = ask(method, path)
        assert status == 201 and json.loads(body)["uri"] == path, (method, path, body)
    with connect(srv.url) as ws:  # the same port still upgrades
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"

    located = php_server("echo.php", env={**static, **settings_env(enable_static_handler=True, document_root=str(root), static_handler_locations=["/assets"])})
    assert ask("GET", "/assets/app.js", server=located)[0] == 200
    assert ask("GET", "/index.html", server=located)[0] == 201

    indexed = php_server("echo.php", env={**static, **settings_env(enable_static_handler=True, document_root=str(root), http_index_files=["index.htm", "index.html"])})
    assert ask("GET", "/", server=indexed)[::2] == (200, b"<p>hi</p>")
    assert ask("GET", "/assets/", server=indexed)[0] == 201  # no index file there
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<p>docs</p>")
    status, headers, _ = ask("GET", "/docs?page=2", server=indexed)
    assert (status, headers["Location"]) == (301, "/docs/?page=2")  # so relative links resolve in /docs/
    # Not `//docs/`, which a browser takes for the address of a host named docs.
    assert ask("GET", "//docs", server=indexed)[1]["Location"] == "/docs/"
    # Nor `/\evil.example/...`, which a browser reads as `//evil.example/...`.
    assert ask("GET", "/\\evil.example/../docs", server=indexed)[1]["Location"] == "/evil.example/../docs/"
    assert ask("GET", "/docs/?page=2", server=indexed)[::2] == (200, b"<p>docs</p>")
    # A file named as a directory is not one (nginx: 404); a name that is not UTF-8 (an upload
    # kept under its GBK name) is served as it is named.
    assert ask("GET", "/index.html/")[0] == 201
    (root / "caf\udce9.html").write_bytes(b"<p>gbk</p>")
    assert ask("GET", "/caf%E9.html")[::2] == (200, b"<p>gbk</p>")


def test_memory_is_trimmed_once_a_burst_of_http_connections_has_ended(php_server):
    """The heap pages a burst of HTTP connections (downloads, static files, TLS handshakes) left
    free are given back once it is over. Only WebSocket closes counted: the one trim came a
    second after the last connection opened, while all were still open, and none after they
    ended (RSS stayed at the burst's peak: 110 MB against 28 MB idle in the review's run)."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(log_level="debug", max_connection=1000)})
    trims = lambda: srv.stderr().count("returned free heap pages")
    conns = [http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10) for _ in range(300)]
    for conn in conns:
        conn.request("GET", "/burst")
        conn.getresponse().read()
    deadline = time.monotonic() + 5 * TIME_FACTOR
    while trims() < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert trims() == 1, "300 connections opened: trimmed once quiet"
    for conn in conns:
        conn.close()
    deadline = time.monotonic() + 5 * TIME_FACTOR
    while trims() < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert trims() == 2, "the 300 connections ended: trimmed again"


def test_a_burst_of_connections_is_held_to_max_connection(php_server):
    """200 handshakes waiting to be accepted at once (with worker_threads 0, while a callback
    runs): a connection counted against max_connection only once its own task ran, so the accept
    loop let a burst past the limit (at the default limit the process ran out of files and left
    the rest unanswered). Those past it get 503."""
    srv = php_server("echo.php", env=settings_env(max_connection=20, handshake_timeout=10))
    with connect(srv.url) as ws:
        ws.send("cmd:sleep:1000")
        srv.wait_output("message")
        burst = []
        try:
            for _ in range(200):
                sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10 * TIME_FACTOR)
                sock.sendall(UPGRADE_REQUEST)
                burst.append(sock)
            statuses = [status_or_reset(sock) for sock in burst]
        finally:
            for sock in burst:
                sock.close()
        served = statuses.count(b"101")
        assert 1 <= served <= 19 and served + statuses.count(b"503") == 200, statuses
        assert json.loads(ws.recv(timeout=5 * TIME_FACTOR)) >= 1000, "the first client is still served"


def test_the_listen_backlog_is_the_longest_the_kernel_allows(php_server):
    """1024 overflowed when 10k clients came back at once after a restart (each overflow a
    client waiting 1-3 s to send its SYN again): the backlog is net.core.somaxconn's."""
    srv = php_server("echo.php")
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{srv.port}"], capture_output=True, text=True, check=True)
    backlog = int(listening.stdout.split()[2])
    assert backlog == int(Path("/proc/sys/net/core/somaxconn").read_text()), listening.stdout


def out_of_descriptors(php_server, tmp_path, env: dict, settings: str, handler: str):
    """A server limited to 64 open files, with `settings` and `handler` (PHP) as its request
    callback: a first connection it accepted, and 80 more that took its last descriptors (the
    connections alone stay within the max_connection the limit allows: files PHP holds, 30
    here, take the rest)."""
    script = tmp_path / "limited.php"
    script.write_text(f"""<?php
        posix_setrlimit(POSIX_RLIMIT_NOFILE, 64, 64);
        $held = array_map(fn() => fopen('/dev/null', 'r'), range(1, 30));
        $s = new Surge\\WebSocket\\Server('127.0.0.1', (int) getenv('SURGE_PORT'));
        $s->set(['log_level' => 'warn', 'handshake_timeout' => 30, {settings}]);
        $s->on('request', {handler});
        $s->start();
    """)
    srv = php_server(script, env=env, extensions=["posix"])
    first = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    time.sleep(0.2)  # accepted: it holds a descriptor of its own
    fillers = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(80)]
    time.sleep(0.5)  # the server took descriptors until it had none left
    return first, fillers


@pytest.mark.skipif(TIME_FACTOR > 1, reason="under valgrind (memcheck.sh), which keeps descriptors of its own and emulates the open-file limit")
def test_a_static_file_asked_while_out_of_descriptors_gets_503(php_server, tmp_path):
    """The process at its open-file limit (slow downloads, many clients): the static handler
    answers 503 rather than handing the file's URL to the request callback."""
    root = tmp_path / "public"
    root.mkdir()
    (root / "app.js").write_text("console.log(1)")
    first, fillers = out_of_descriptors(php_server, tmp_path, {"ROOT": str(root)},
                                        "'enable_static_handler' => true, 'document_root' => getenv('ROOT')",
                                        "fn($req, $res) => $res->end('from PHP')")
    first.sendall(b"GET /app.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := first.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    for s in [first, *fillers]:
        s.close()


@pytest.mark.skipif(TIME_FACTOR > 1, reason="under valgrind (memcheck.sh), which keeps descriptors of its own and emulates the open-file limit")
def test_an_upload_while_out_of_descriptors_waits_for_one(php_server, tmp_path):
    """The process at its open-file limit (each upload under way holds a file beside its
    connection): an upload waits for a descriptor instead of failing with error 7."""
    first, fillers = out_of_descriptors(php_server, tmp_path, {"UPLOADS": str(tmp_path)},
                                        "'upload_tmp_dir' => getenv('UPLOADS')",
                                        "fn($req, $res) => $res->end(json_encode(array_map("
                                        "fn($file) => [$file['error'], $file['size']], $req->files)))")
    part = b'--XyZ\r\nContent-Disposition: form-data; name="doc"; filename="a.txt"\r\n\r\n' + b"x" * 1000
    first.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                  b"Content-Type: multipart/form-data; boundary=XyZ\r\n"
                  + f"Content-Length: {len(part) + 11}\r\n\r\n".encode() + part)
    time.sleep(0.5)  # the upload found no descriptor for its file
    for filler in fillers:
        filler.close()
    first.sendall(b"\r\n--XyZ--\r\n")
    answer = b""
    while chunk := first.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"doc": [0, 1000]}


def test_a_response_written_in_chunks_streams_server_sent_events(php_server):
    """write() sends the head and a chunk at once, more chunks as PHP writes them (from a timer
    here), end() the last; a client that leaves makes write() false and isWritable() false."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/stream")
    res = conn.getresponse()
    assert res.status == 200 and res.headers["Content-Type"] == "text/event-stream"
    assert res.headers["Transfer-Encoding"] == "chunked"
    assert res.read() == b"data: 1\n\ndata: 2\n\ndata: end\n\n"

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/stream-forever")
    res = conn.getresponse()
    assert res.read1(100).startswith(b"data: 1\n\n")  # the first chunk, before any timer
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    assert "stream write refused, writable false, header false" in srv.wait_output("stream write refused")


def test_a_stream_to_a_slow_reader_is_bounded_and_loses_nothing(php_server):
    """While more than socket_buffer_size bytes wait for a client that does not read, write() is
    false (isWritable() still true); end()'s last chunk is queued anyway; the client then reads
    every byte that write() took."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(socket_buffer_size=1 << 20)})
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"GET /stream-to-slow-client HTTP/1.1\r\nHost: x\r\n\r\n")
    out = srv.wait_output("refused after", timeout=10)
    sent = int(re.search(r"refused after (\d+) bytes, writable true", out)[1])
    assert 1 << 20 <= sent < 64 << 20, sent
    res = http.client.HTTPResponse(sock)
    res.begin()
    assert res.read() == b"x" * sent + b"done"
    sock.close()


def test_a_body_with_a_hole_ends_as_incomplete(php_server):
    """Code that writes on after a refused write() (Swoole adapters stream whole downloads so,
    never looking) leaves data missing from the middle of the body: the client must not take
    it for whole, so the body ends without its last chunk."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1", **settings_env(socket_buffer_size=1 << 20)})
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"GET /write-on-after-refusal HTTP/1.1\r\nHost: x\r\n\r\n")
    srv.wait_output("refused after", timeout=10)
    res = http.client.HTTPResponse(sock)
    res.begin()
    with pytest.raises(http.client.IncompleteRead) as cut:
        res.read()
    assert cut.value.partial.startswith(b"x" * 65536) and cut.value.partial.endswith(b"y" * 1000)
    sock.close()


def test_the_network_work_runs_where_the_mode_says(php_server, io_mode):
    """As shipped the server has its I/O threads (named surge-io); with worker_threads 0, none:
    what every test of this module checks in both modes rests on it."""
    srv = php_server("echo.php")
    tasks = Path(f"/proc/{srv.proc.pid}/task")
    names = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
    assert any(name.startswith("surge-io") for name in names) == (io_mode == "io_threads"), names



@pytest.mark.io_threads_only
def test_a_get_whose_client_left_while_it_waited_is_not_handed_to_php(php_server):
    """While /slow holds PHP (400 ms), five clients ask for /slow and leave at once. A GET whose
    client left has nothing to do but answer nobody: it is not handed to PHP (a slow callback's
    backlog grew with every client that gave up and retried). With worker_threads 0 the engine
    reads that they left only once PHP is free, after it took their requests."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    first = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    first.request("GET", "/slow")
    srv.wait_output("slow request")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", srv.port)) as gone:
            gone.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert first.getresponse().status == 201
    # Answered after those five were taken (in order), whether PHP ran them or not.
    assert urllib.request.urlopen(srv.http + "/", timeout=10).status == 201
    assert srv.stdout().count("slow request") == 1, srv.stdout()
