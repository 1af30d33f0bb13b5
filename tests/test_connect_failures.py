"""A wrong host fails in seconds and says which host and why; a host that has answered keeps the
full retry policy; exponential waits carry jitter, Retry-After waits do not."""

from __future__ import annotations

import io
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import requests
import urllib3.exceptions
from singer_sdk.exceptions import RetriableAPIError

from tap_custobar import http as custobar_http
from tap_custobar.http import (
    FIRST_CONTACT_RETRIES,
    JITTER_FRACTION,
    FirstContact,
    RetriesExhaustedError,
    UnreachableHostError,
    connect_failure_cause,
    describe_failure,
    jittered,
    unreachable_message,
)
from tap_custobar.tap import TapCustobar
from tests.harness import ROOT, sandbox_config
from tests.leaks import TEST_TOKEN, check_no_token

URL = "https://yourcompany.custobar.com/api/data/customers/?limit=10000&fields=email,phone_number"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def requests_error(
    kind: type[requests.exceptions.RequestException], reason: Exception
) -> Exception:
    """What requests raises: its error around urllib3's MaxRetryError around the cause."""
    retry_error = urllib3.exceptions.MaxRetryError(None, URL, reason)  # type: ignore[arg-type]
    return kind(retry_error)


def name_resolution_error() -> Exception:
    resolver = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    try:
        raise urllib3.exceptions.NameResolutionError(
            "yourcompany.custobar.com",
            None,  # type: ignore[arg-type]
            resolver,
        ) from resolver
    except urllib3.exceptions.NameResolutionError as error:
        return requests_error(requests.exceptions.ConnectionError, error)


def refused_error() -> Exception:
    refused = ConnectionRefusedError(111, "Connection refused")
    try:
        raise urllib3.exceptions.NewConnectionError(
            None,  # type: ignore[arg-type]
            "Failed to establish a new connection: [Errno 111] Connection refused",
        ) from refused
    except urllib3.exceptions.NewConnectionError as error:
        return requests_error(requests.exceptions.ConnectionError, error)


def certificate_error(code: int, message: str) -> Exception:
    verification = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    verification.verify_code = code
    verification.verify_message = message
    wrapped = urllib3.exceptions.SSLError(verification)
    return requests_error(requests.exceptions.SSLError, wrapped)


# --- wording (the resolver's and TLS errors fed in: no DNS, no TLS server in tests) -----------


def test_a_name_that_does_not_resolve_is_worded_with_the_host_and_the_settings() -> None:
    error = name_resolution_error()
    assert connect_failure_cause(error) == "name not resolved"
    message = unreachable_message(URL, "name not resolved", 3)
    assert message.startswith(
        "cannot connect to https://yourcompany.custobar.com:443: name not resolved (3 tries)"
    )
    assert "`company`" in message and "`base_url`" in message
    assert "limit=" not in message and "email" not in message, "never the query"
    described = describe_failure(error, "/api/data/customers/", stream="customers")
    assert described.startswith("customers: name not resolved")
    assert "?" not in described


def test_tls_and_refusal_are_worded() -> None:
    mismatch = certificate_error(62, "Hostname mismatch, certificate is not valid for 'x'.")
    assert connect_failure_cause(mismatch) == "TLS certificate not valid for host"
    expired = certificate_error(10, "certificate has expired")
    assert connect_failure_cause(expired) == "TLS certificate not trusted (certificate has expired)"
    handshake = requests_error(
        requests.exceptions.SSLError, urllib3.exceptions.SSLError(ssl.SSLError(1, "bad record"))
    )
    assert connect_failure_cause(handshake) == "TLS handshake failed"
    assert connect_failure_cause(refused_error()) == "connection refused"
    assert "http://[::1]:8080" in unreachable_message("http://[::1]:8080/x?a=b", "refused", 1)


def test_drops_timeouts_and_answers_are_not_connect_failures() -> None:
    for error in (
        requests.exceptions.ConnectionError(ConnectionResetError(104, "reset by peer")),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ChunkedEncodingError("dropped"),
        RetriableAPIError("503 Service Unavailable from /api/data/customers/"),
    ):
        assert connect_failure_cause(error) is None, error


def test_first_contact_gives_up_quickly_only_until_the_host_answers() -> None:
    first = FirstContact()
    refused = refused_error()
    assert [first.gives_up(refused) for _ in range(FIRST_CONTACT_RETRIES + 1)] == [
        *([False] * FIRST_CONTACT_RETRIES),
        True,
    ]
    assert not first.gives_up(requests.exceptions.ReadTimeout("slow")), "not a connect failure"
    answered = FirstContact()
    answered.answered = True
    assert not any(answered.gives_up(refused) for _ in range(20))
    assert answered.unreachable(refused) is None


# --- real sockets -----------------------------------------------------------------------------


def test_a_refusing_port_fails_a_real_run_in_seconds_naming_the_host(tmp_path: Path) -> None:
    port = closed_port()
    config = {
        "api_token": TEST_TOKEN,
        "base_url": f"http://127.0.0.1:{port}",
        "min_request_interval": 0,
        "max_retries": 8,  # the default: a full retry policy would wait about 4 minutes
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tap_custobar", "--config", str(tmp_path / "config.json")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    elapsed = time.monotonic() - started
    check_no_token(done.stdout + done.stderr)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"tap-custobar: error: customers: cannot connect to http://127.0.0.1:{port}: connection "
        f"refused ({FIRST_CONTACT_RETRIES + 1} tries). Check `company` / `base_url`: they must "
        "name your Custobar instance."
    )
    assert done.stderr.count("retry ") == FIRST_CONTACT_RETRIES
    # Quick retries wait 1-1.5 s and 2-3 s; the rest is interpreter start-up on a busy machine.
    assert elapsed < 30, f"took {elapsed:.1f} s"


def in_process_sync(config: dict) -> BaseException | None:
    tap = TapCustobar(config=config, validate_config=True)
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    try:
        with redirect_stdout(stdout):
            tap.sync_all()
    except Exception as error:  # the outcome under test
        return error
    return None


def test_after_the_host_answered_a_refusal_gets_the_full_retry_policy(sandbox, monkeypatch) -> None:
    monkeypatch.setattr(custobar_http, "BACKOFF_BASE_SECONDS", 0.01)  # the count matters here, not waits
    sandbox.inject("slow", stream="customers", after=1, seconds=3)  # the second page
    config = sandbox_config(sandbox, page_size=50, max_retries=6, event_types=["BROWSE"])

    def stop_when_the_second_page_is_asked() -> None:
        deadline = time.monotonic() + 60
        while len(sandbox.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        sandbox.stop()  # the answer in flight is dropped; then every connection is refused

    stopper = threading.Thread(target=stop_when_the_second_page_is_asked)
    stopper.start()
    error = in_process_sync(config)
    stopper.join()
    assert isinstance(error, RetriesExhaustedError), error
    assert not isinstance(error, UnreachableHostError)
    assert str(error).startswith("customers: giving up after 7 tries:"), str(error)
    assert "connection refused" in str(error)


def test_before_the_host_answered_a_refusal_gets_quick_retries(monkeypatch) -> None:
    monkeypatch.setattr(custobar_http, "BACKOFF_BASE_SECONDS", 0.01)
    port = closed_port()
    config = {"api_token": TEST_TOKEN, "base_url": f"http://127.0.0.1:{port}", "max_retries": 6}
    error = in_process_sync({**config, "min_request_interval": 0})
    assert isinstance(error, UnreachableHostError), error
    assert f"({FIRST_CONTACT_RETRIES + 1} tries)" in str(error)


def test_a_drop_after_the_first_answer_is_retried(sandbox, monkeypatch) -> None:
    monkeypatch.setattr(custobar_http, "BACKOFF_BASE_SECONDS", 0.01)
    drops = FIRST_CONTACT_RETRIES + 2  # more than a first contact would get
    sandbox.inject("drop_before", stream="customers", after=1, times=drops)
    config = sandbox_config(sandbox, page_size=50, max_retries=drops, event_types=["BROWSE"])
    assert in_process_sync(config) is None
    faults = [e["fault"] for e in sandbox.requests if e["stream"] == "customers"]
    assert faults.count("drop_before") == drops


# --- jitter -----------------------------------------------------------------------------------


def test_jitter_stretches_a_wait_by_at_most_the_fraction() -> None:
    assert jittered(4.0, draw=lambda: 0.0) == 4.0
    assert jittered(4.0, draw=lambda: 0.999999) == pytest.approx(4.0 * (1 + JITTER_FRACTION))
    waits = [jittered(2.0) for _ in range(2000)]
    assert all(2.0 <= wait < 2.0 * (1 + JITTER_FRACTION) for wait in waits)
    assert len(set(waits)) > 1900, "random, so parallel jobs do not retry in lockstep"


def test_exponential_waits_are_jittered_and_retry_after_is_not() -> None:
    tap = TapCustobar(config={"api_token": TEST_TOKEN, "base_url": "http://127.0.0.1:9"})
    stream = tap.streams["customers"]
    response = requests.Response()
    response.status_code = 429
    response.headers["Retry-After"] = "7"
    busy = RetriableAPIError("429 Too Many Requests", response)
    dropped = requests.exceptions.ConnectionError("dropped")
    firsts = set()
    for _ in range(50):
        waits = stream.backoff_wait_generator()
        next(waits)
        first, second, told = waits.send(dropped), waits.send(dropped), waits.send(busy)
        assert 1.0 <= first < 1.0 * (1 + JITTER_FRACTION)
        assert 2.0 <= second < 2.0 * (1 + JITTER_FRACTION)
        assert told == 7.0
        firsts.add(first)
    assert len(firsts) > 40, "each run draws its own wait"
    capped = stream.backoff_wait_generator()
    next(capped)
    assert max(capped.send(dropped) for _ in range(20)) <= custobar_http.BACKOFF_CAP_SECONDS
