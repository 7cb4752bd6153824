"""Autobahn|Testsuite conformance: kosoku runs the Autobahn cases of sections 1-10 (framing,
pings and pongs, reserved bits, opcodes, fragmentation, UTF-8, close handling, limits and
performance, the opening handshake) against a minimal echo server built with Surge.

Sections 12 and 13 (permessage-deflate) are not run: Surge does not negotiate compression yet.
"""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}

# Cases that may end NON-STRICT (still conformant: a SHOULD, not a MUST), and why. Any other
# case that is not OK is a regression.
NON_STRICT = {
    # A valid message, then a bad frame (reserved bits, reserved opcode, a continuation with
    # nothing to continue) or a close: the strict result echoes the valid message before the
    # connection ends. The echo is made by PHP, on another thread, and the next frame is
    # usually read (and the connection failed or closed) before the PHP callback has pushed
    # the echo. Whether the echo wins the race is timing.
    **{
        case: "echo made by PHP raced by the frame that follows"
        for case in ("3.2", "3.3", "3.4", "4.1.3", "4.1.4", "4.1.5", "4.2.3", "4.2.4", "4.2.5", "5.15", "7.1.6")
    },
    # One text frame with invalid UTF-8 in its middle, delivered in pieces: the strict result
    # fails the connection as soon as the bad bytes arrive. tungstenite validates UTF-8 per
    # frame (and per fragment of a fragmented message), so the connection is failed with 1007
    # when the frame is complete.
    "6.4.3": "UTF-8 is validated once the frame is complete, not byte by byte",
    "6.4.4": "UTF-8 is validated once the frame is complete, not byte by byte",
}


def test_autobahn_sections_1_to_10(php_server, tmp_path):
    srv = php_server("autobahn.php")
    reports = tmp_path / "autobahn"
    kosoku = Path(sys.executable).with_name("kosoku")
    run = subprocess.run(
        [str(kosoku), srv.url, "-x", "12.*", "-x", "13.*", "-p", "2", "-o", str(reports)],
        capture_output=True, text=True, timeout=240,
    )
    index = reports / "index.json"
    assert index.exists(), f"kosoku wrote no report (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    (cases,) = json.loads(index.read_text()).values()
    assert len(cases) >= 300, f"only {len(cases)} cases ran"
    assert all(case.split(".")[0] in {str(n) for n in range(1, 11)} for case in cases)

    def verdict(case):
        return cases[case]["behavior"], cases[case]["behaviorClose"]

    def why(case):
        detail = json.loads((reports / cases[case]["reportfile"]).read_text())
        return f"{case} {verdict(case)}: {detail['description'].strip()[:200]} -> {detail['result']} {detail['resultClose']}"

    failed = [why(c) for c in cases if not set(verdict(c)) <= ACCEPTED]
    assert not failed, "Autobahn cases failed:\n" + "\n".join(failed) + f"\nserver stderr:\n{srv.stderr()}"
    unexpected = [why(c) for c in cases if "NON-STRICT" in verdict(c) and c not in NON_STRICT]
    assert not unexpected, "cases newly NON-STRICT:\n" + "\n".join(unexpected)
    assert run.returncode == 0, run.stderr
    counts = Counter(cases[c]["behavior"] for c in cases)
    print(f"Autobahn 1-10: {len(cases)} cases, {dict(counts)}")
