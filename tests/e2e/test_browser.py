"""Pages in a real browser, headless Chromium driven by playwright-core: the chat example
(tests/browser/chat.mjs, two pages), server-sent events written by a request callback
(tests/browser/sse.mjs), and a form with files (tests/browser/upload.mjs). No Node or no
Chromium is a failure, not a skip."""

import json
import shutil
import subprocess

from conftest import ROOT


def browser_script(script, srv, *args, timeout=60):
    """Runs tests/browser/<script> with Node: (the finished process, a report to fail with)."""
    node = shutil.which("node")
    assert node, "node is not installed (scripts/install-deps.sh --test installs it)"
    assert (ROOT / "node_modules/playwright-core").is_dir(), "playwright-core is missing: run npm ci in the repo"
    run = subprocess.run([node, str(ROOT / "tests/browser" / script), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}\nserver stderr:\n{srv.stderr()[-3000:]}"
    return run, report


def test_chat_in_two_chromium_pages(php_server, tmp_path):
    srv = php_server(ROOT / "php/examples/chat/server.php")
    shot = tmp_path / "chat.png"
    run, report = browser_script("chat.mjs", srv, srv.http + "/", str(shot), timeout=120)
    assert run.returncode == 0, report
    assert "ok: the HTML in it is escaped" in run.stdout, report
    assert "ok: when Bob leaves" in run.stdout, report
    assert "FAILED" not in run.stdout + run.stderr, report
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"


def test_server_sent_events_from_write_in_chromium(php_server):
    """An EventSource in Chromium reads what a request callback streams with write()."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    run, report = browser_script("sse.mjs", srv, srv.http + "/stream")
    assert run.returncode == 0 and "ok: the page got 1, 2, end" in run.stdout, report


def test_a_form_with_files_from_chromium(php_server):
    """A multipart form as Chromium sends it: the text field in $request->post, the files in
    $request->files as PHP's $_FILES (a `multiple` input's files in lists, an input left empty
    with error 4, UPLOAD_ERR_NO_FILE), each upload readable and known to is_uploaded_file()."""
    srv = php_server("echo.php", env={"SURGE_HTTP": "1"})
    run, report = browser_script("upload.mjs", srv, srv.http + "/upload-form")
    assert run.returncode == 0, report
    got = json.loads(run.stdout)
    assert got["post"] == {"title": "héllo & co"}
    doc, photos, empty = (got["files"][name] for name in ("doc", "photos", "empty"))
    assert (doc["name"], doc["type"], doc["error"], doc["size"]) == ("notes.txt", "text/plain", 0, 9)
    assert (photos["name"], photos["error"], photos["size"]) == (["a.txt", "b.txt"], [0, 0], [5, 6])
    # Chromium sends the input left empty as application/octet-stream; PHP's type is then "".
    assert empty == {"name": "", "full_path": "", "type": "", "tmp_name": "", "error": 4, "size": 0}
    assert got["uploads"] == {doc["tmp_name"]: [True, "the notes"], photos["tmp_name"][0]: [True, "first"],
                              photos["tmp_name"][1]: [True, "second"]}
