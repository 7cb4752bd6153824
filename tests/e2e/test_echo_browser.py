"""Laravel Echo's browser build in headless Chromium: tests/browser/echo.mjs opens the page that
the Laravel test app serves under `surge:serve` (BrowserHandler), which subscribes to a public
and a private channel (authorized by Laravel's routes/channels.php); broadcasts fired by
`artisan app:broadcast` reach it through Redis and Surge's Pusher protocol. No Node or no
Chromium is a failure, not a skip."""

import os
import shutil
import subprocess

from conftest import ROOT
from test_laravel import artisan, laravel_env, serve

APP = {"PUSHER_APP_ID": "4242", "PUSHER_APP_KEY": "browser-key", "PUSHER_APP_SECRET": "browser-secret"}


def test_echo_in_chromium_gets_laravel_broadcasts(php_server, redis_server, tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (scripts/install-deps.sh --test installs it)"
    assert (ROOT / "node_modules/playwright-core").is_dir(), "playwright-core is missing: run npm ci in the repo"
    for bundle in ["laravel-echo/dist/echo.iife.js", "pusher-js/dist/web/pusher.min.js"]:
        assert (ROOT / "node_modules" / bundle).is_file(), f"{bundle} is missing: run npm ci in the repo"
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    assert os.access(chromium, os.X_OK), f"{chromium} is missing (Debian's chromium package)"

    env = laravel_env(tmp_path, redis_server, SURGE_HANDLER="App\\WebSocket\\BrowserHandler", **APP)
    setup = artisan("app:setup", "alice", "bob", env=env)
    assert "users: 2" in setup.stdout, setup.stdout + setup.stderr
    server = serve(php_server, env)
    assert "(and HTTP)" in server.stdout() and "handler  App\\WebSocket\\BrowserHandler" in server.stdout(), server.stdout()
    shot = tmp_path / "echo.png"
    proc = subprocess.Popen(
        [node, str(ROOT / "tests/browser/echo.mjs"), server.http, "token-alice", "1", str(shot)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out = ""
        while not out.startswith("ready ") and proc.poll() is None:
            line = proc.stdout.readline()
            out = line if line.startswith("ready ") else out
            report = line
        assert out.startswith("ready "), f"{report}{proc.stdout.read()}\n--- server:\n{server.stderr()[-3000:]}"
        for args in [("orders.2", "for bob only", "--private"), ("orders", "public from Laravel"), ("orders.1", "private from Laravel", "--private")]:
            done = artisan("app:broadcast", *args, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    report = f"exit {proc.returncode}\n{rest}\n--- server stderr:\n{server.stderr()[-3000:]}"
    assert proc.returncode == 0, report
    for line in ["ok: the public broadcast arrived", "ok: the private broadcast arrived", "ok: nothing else arrived", "ok: no errors in the page", "ok: Laravel refused private-orders.2"]:
        assert line in rest, report
    assert "for bob only" not in rest, report
