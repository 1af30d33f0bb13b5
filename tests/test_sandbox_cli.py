"""`python -m tests.sandbox` on a port that is taken: one line saying so and what to do."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.harness import ROOT


def test_port_in_use_gives_one_line_and_the_way_out() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tests.sandbox", "--port", str(port), "--customers", "20"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1
    assert done.stdout == ""  # no SANDBOX_URL= line
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]
    assert "--port 0" in lines[0] and "Traceback" not in done.stderr
