"""SIGINT and SIGTERM end a real tap process with 130 / 143 and one "interrupted" line; what it
wrote before stays valid, and a full-table stream sends no ACTIVATE_VERSION."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tap_custobar.interrupts import Interrupted, OutputGuard
from tests.harness import ROOT, run_tap_cli, sandbox_config
from tests.leaks import check_no_token

SLOW_SECONDS = 6.0  # the third page of customers answers this late


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_sync_ends_the_run_honestly(sandbox, tmp_path: Path, signum: int) -> None:
    # customers and events complete; products (full table) answers its first page, then
    # its second page is slow: the signal lands while the tap waits for it.
    sandbox.inject("slow", stream="products", after=1, times=None, seconds=SLOW_SECONDS)
    config = sandbox_config(sandbox, page_size=20, event_types=["BROWSE"])
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    argv = [sys.executable, "-m", "tap_custobar", "--config", str(tmp_path / "config.json")]
    lines: list[str] = []
    with (
        (tmp_path / "stderr.txt").open("w", encoding="utf-8") as stderr,
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as process,
    ):
        assert process.stdout is not None
        products = 0
        for line in process.stdout:
            lines.append(line)
            message = json.loads(line)
            if message["type"] == "RECORD" and message["stream"] == "products":
                products += 1
                if products == 20:  # the first page is out; the second is in flight
                    break
        time.sleep(0.5)  # well inside the slow answer
        process.send_signal(signum)
        signalled = time.monotonic()
        lines.append(process.stdout.read())
        process.wait(timeout=60)
        stopped_after = time.monotonic() - signalled
    stderr_text = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    check_no_token("".join(lines) + stderr_text)
    assert process.returncode == 128 + signum
    name = signal.Signals(signum).name
    assert stderr_text.strip().splitlines()[-1].startswith(f"tap-custobar: interrupted by {name}")
    assert "Gracefully shutting down" not in stderr_text
    assert stopped_after < SLOW_SECONDS - 1, "it stopped without waiting for the slow answer"
    text = "".join(lines)
    assert text.endswith("\n"), "stdout ends with a whole line"
    messages = [json.loads(line) for line in text.splitlines() if line.strip()]
    activated = {m["stream"] for m in messages if m["type"] == "ACTIVATE_VERSION"}
    assert activated == {"customers"}, "only the full-table stream that completed"
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "products"]
    assert len(records) == 20, "the answered page, nothing more"
    last_state = [m for m in messages if m["type"] == "STATE"][-1]["value"]
    partitions = last_state["bookmarks"]["events"]["partitions"]
    assert partitions[0]["context"] == {"type": "BROWSE"} and partitions[0]["replication_key_value"]
    # That STATE resumes a run: events start from its bookmark, nothing fails.
    sandbox.clear_faults()
    resumed = run_tap_cli(config, state=last_state, args=())
    assert resumed.returncode == 0, resumed.stderr[-1500:]


def test_a_signal_while_stdout_is_full_leaves_only_whole_lines(sandbox, tmp_path: Path) -> None:
    # The reader stops reading: the pipe fills and the tap blocks in a write of a page. The
    # signal interrupts that write; the page must still come out whole (a raw stdout takes
    # part of it and returns), and the run stops right after.
    config = sandbox_config(sandbox, page_size=100, event_types=["BROWSE"])
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    argv = [sys.executable, "-m", "tap_custobar", "--config", str(tmp_path / "config.json")]
    with (
        (tmp_path / "stderr.txt").open("wb") as stderr,  # a file: only stdout can fill up
        subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as process,
    ):
        assert process.stdout is not None
        first = process.stdout.readline()  # started; from now on nobody reads
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    text = (first + out).decode("utf-8")
    err = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    check_no_token(text + err)
    assert process.returncode == 143, err[-1500:]
    assert text.endswith("\n"), "stdout ends with a whole line"
    messages = [json.loads(line) for line in text.splitlines()]
    records = [m for m in messages if m["type"] == "RECORD"]
    assert 0 < len(records) < 250 + 120 + 60, "stopped mid-run"


WRITER_CHILD = """
import sys
from signal import SIGTERM, signal
from tap_custobar.interrupts import OUTPUT_GUARD, Interrupted
from tap_custobar.page_writer import CustobarWriter

signal(SIGTERM, OUTPUT_GUARD.handle)
page = (b"x" * 99 + b"\\n") * 20000
sys.stderr.write("writing\\n")
try:
    CustobarWriter().write_lines(page)
except Interrupted as stop:
    sys.exit(stop.exit_code)
"""


def test_a_page_write_interrupted_by_a_signal_still_comes_out_whole() -> None:
    # Unbuffered stdout is a raw file: a signal during a write into a full pipe makes write()
    # return after part of the data. The writer must go on until all of it is out.
    with subprocess.Popen(
        [sys.executable, "-u", "-c", WRITER_CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        assert process.stderr.readline() == b"writing\n"
        time.sleep(0.5)  # the 2 MB page fills the pipe; nobody reads yet
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert len(out) == 2_000_000, err.decode()[-1500:]
    assert process.returncode == 143, "the signal takes effect once the write is complete"


def test_a_signal_during_a_write_waits_for_its_end() -> None:
    guard = OutputGuard()
    with pytest.raises(Interrupted) as stopped:
        with guard:
            guard.handle(signal.SIGTERM, None)  # arrives mid-write: noted, not raised
            written = "the rest of the line"
    assert written
    assert stopped.value.exit_code == 143
    assert guard.writing == 0
    idle = OutputGuard()
    with pytest.raises(Interrupted) as now:
        idle.handle(signal.SIGINT, None)
    assert now.value.exit_code == 130
    idle.handle(signal.SIGINT, None)  # a second signal while stopping changes nothing
