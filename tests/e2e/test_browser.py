"""The chat example in a real browser: tests/browser/chat.mjs drives two headless Chromium pages
(playwright-core) against the chat server. No Node or no Chromium is a failure, not a skip."""

import shutil
import subprocess

from conftest import ROOT


def test_chat_in_two_chromium_pages(php_server, tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/install-deps.sh --test installs it)"
    assert (ROOT / "node_modules/playwright-core").is_dir(), "playwright-core is missing: run npm ci in the repo"
    srv = php_server(ROOT / "php/examples/chat/server.php")
    shot = tmp_path / "chat.png"

    run = subprocess.run(
        [node, str(ROOT / "tests/browser/chat.mjs"), srv.http + "/", str(shot)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )

    report = f"exit {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}\nserver stderr:\n{srv.stderr()}"
    assert run.returncode == 0, report
    assert "ok: the HTML in it is escaped" in run.stdout, report
    assert "ok: when Bob leaves" in run.stdout, report
    assert "FAILED" not in run.stdout + run.stderr, report
    assert shot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
