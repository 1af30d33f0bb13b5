"""Whatever token a user pastes, it never leaves the Authorization header; discovery that cannot
read the tenant writes no catalog; `--test` ends with one line. Real CLI processes throughout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

from tap_custobar.settings import token_problem
from tests.harness import ROOT, sandbox_config
from tests.sandbox import Sandbox

CORE = "cbsbx_SAFETY_5e1d9a7c3b"  # part of the fake token the sandbox accepts
WRONG_TOKEN = "not-the-right-token"  # noqa: S105 - a fake
TAIL = "0f2e4d6c8b1a3f5e7d9c"
# Pasted tokens that still work once surrounding whitespace is stripped, or as they are.
WORKING_TOKENS = {
    "trailing newline": (CORE + TAIL + "\n", CORE + TAIL),
    "spaces around and inside": ("  " + CORE + " " + TAIL + " \t", CORE + " " + TAIL),
    "latin-1 letters": (CORE + "ÄÖå" + TAIL, CORE + "ÄÖå" + TAIL),
}
# Tokens no HTTP header can carry: configuration errors, whatever the command.
BROKEN_TOKENS = {
    "newline inside": (CORE + "\n" + TAIL, "line break or another control character"),
    "non-latin-1 text": (CORE + "–€" + TAIL, "outside Latin-1"),
}
COMMANDS = (["--about"], ["--discover"], ["--test"], [])  # [] : a sync


def tap_process(
    config: dict, args: t.Sequence[str], *, debug: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`tap-custobar --config <file> <args>` with DEBUG logging; output kept as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if debug:
        env["TAP_CUSTOBAR_LOGLEVEL"] = "DEBUG"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        return subprocess.run(
            [sys.executable, "-m", "tap_custobar", "--config", str(path), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            cwd=ROOT,
            env=env,
            check=False,
        )


def assert_not_echoed(done: subprocess.CompletedProcess[str], *secrets: str) -> None:
    text = done.stdout + done.stderr
    for secret in secrets:
        assert secret not in text, "the API token (or part of it) appeared in the output"
        assert json.dumps(secret)[1:-1] not in text, "the API token appeared JSON-escaped"


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    return done.stderr.strip().splitlines()[-1]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- item 1: the token ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WORKING_TOKENS))
def test_a_pasted_token_works_and_never_appears_in_any_output(dataset, name: str) -> None:
    pasted, sent = WORKING_TOKENS[name]
    with Sandbox(dataset=dataset, token=sent) as sandbox:
        config = sandbox_config(sandbox, api_token=pasted, event_types=["BROWSE"])
        for args in COMMANDS:
            done = tap_process(config, args)
            assert done.returncode == 0, (args, done.stderr[-1500:])
            assert_not_echoed(done, pasted, sent, CORE, TAIL)
        assert "DEBUG" in done.stderr, "the scan ran with debug logging"
        assert all(r["auth_ok"] for r in sandbox.requests), "the stripped token was sent"
        # A wrong token in the same shape: 401, and still not echoed.
        config["api_token"] = pasted.replace(TAIL, TAIL[::-1])
        done = tap_process(config, [])
        assert done.returncode == 1
        assert "401" in last_line(done) and "api_token" in last_line(done)
        assert_not_echoed(done, config["api_token"], config["api_token"].strip(), TAIL[::-1])


@pytest.mark.parametrize("name", list(BROKEN_TOKENS))
def test_a_token_no_header_can_carry_is_a_configuration_error(dataset, name: str) -> None:
    pasted, problem = BROKEN_TOKENS[name]
    with Sandbox(dataset=dataset, token=CORE + TAIL) as sandbox:
        config = sandbox_config(sandbox, api_token=pasted, event_types=["BROWSE"])
        for args in COMMANDS:
            done = tap_process(config, args)
            assert_not_echoed(done, pasted, pasted.strip(), CORE, TAIL)
            assert "Traceback" not in done.stderr
            if args == ["--about"]:
                assert done.returncode == 0  # describes the tap; reads no setting
                continue
            assert done.returncode == 1, (args, done.stderr[-1500:])
            assert "api_token" in last_line(done) and problem in last_line(done), last_line(done)
        assert not sandbox.requests, "nothing is sent with a token that cannot be sent"


def test_token_problem_words_quote_nothing_of_the_token() -> None:
    assert token_problem(" abc\n") is None
    assert token_problem("ÄÖ latin-1 and a space") is None
    for token in ("Qz7\nXk9", "Qz7\rXk9", "Qz7\x00Xk9", "Qz7\x7fXk9", "Qz7“Xk9”", "Qz7€"):
        problem = token_problem(token)
        assert problem
        assert not any(part in problem for part in ("Qz7", "Xk9", "“", "€"))
    assert token_problem("  \n") == token_problem(None) == token_problem(1234)


# --- item 2: discovery that cannot read the tenant --------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("401", "401 Unauthorized"),
        ("403", "403 Forbidden"),
        ("404", "Check `company` / `base_url`"),
        ("503", "giving up after 2 tries"),
    ],
)
def test_discovery_that_cannot_read_the_tenant_exits_non_zero(
    sandbox, fault: str, expected: str
) -> None:
    sandbox.inject(fault, times=None)
    done = tap_process(sandbox_config(sandbox, max_retries=1), ["--discover"], debug=False)
    assert done.returncode == 1
    assert not done.stdout.strip(), "no catalog is written"
    assert "no catalog was written" in last_line(done) and expected in last_line(done)
    assert "discover_custom_fields" in last_line(done)


def test_discovery_of_a_refusing_port_exits_non_zero_naming_the_host() -> None:
    port = closed_port()
    config = {"api_token": CORE, "base_url": f"http://127.0.0.1:{port}", "min_request_interval": 0}
    done = tap_process(config, ["--discover"], debug=False)
    assert done.returncode == 1 and not done.stdout.strip()
    assert f"http://127.0.0.1:{port}: connection refused" in last_line(done)


def test_discovery_without_custom_fields_asks_nothing_and_succeeds() -> None:
    port = closed_port()  # nothing listens: any request would fail the run
    config = {
        "api_token": CORE,
        "base_url": f"http://127.0.0.1:{port}",
        "discover_custom_fields": False,
    }
    done = tap_process(config, ["--discover"], debug=False)
    assert done.returncode == 0, done.stderr[-1500:]
    streams = {s["tap_stream_id"] for s in json.loads(done.stdout)["streams"]}
    assert streams == {"customers", "events", "products", "sales"}


# --- item 7: --test ---------------------------------------------------------------------------


def test_connection_test_passes_with_one_line_and_no_error_lines(sandbox) -> None:
    done = tap_process(sandbox_config(sandbox, event_types=["BROWSE"]), ["--test"], debug=False)
    assert done.returncode == 0, done.stderr[-1500:]
    assert last_line(done).startswith("tap-custobar: connection test passed:")
    assert "customers, events, products, sales" in last_line(done)
    assert " ERROR " not in done.stderr and "unhandled error" not in done.stderr


def test_connection_test_with_a_bad_token_fails_with_one_line(sandbox) -> None:
    config = sandbox_config(sandbox, api_token=WRONG_TOKEN, event_types=["BROWSE"])
    done = tap_process(config, ["--test"], debug=False)
    assert done.returncode == 1
    assert last_line(done).startswith("tap-custobar: error: customers: 401 Unauthorized")
    assert "api_token" in last_line(done)
    assert done.stderr.count("unhandled error") <= 1
    assert_not_echoed(done, WRONG_TOKEN)


def test_connection_test_on_a_refusing_port_fails_with_one_line() -> None:
    port = closed_port()
    config = {"api_token": CORE, "base_url": f"http://127.0.0.1:{port}", "min_request_interval": 0}
    done = tap_process(config, ["--test"], debug=False)
    assert done.returncode == 1
    assert last_line(done).startswith(
        f"tap-custobar: error: customers: cannot connect to http://127.0.0.1:{port}: "
        "connection refused"
    )
    assert done.stderr.count("unhandled error") <= 1
