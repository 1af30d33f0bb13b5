"""Faults and bad input (GitHub issue #5, DESIGN.md §3) against the sandbox over real HTTP.

Every transient fault is retried and changes nothing in the output; every fatal one stops at
once with one plain sentence; the token never leaves the Authorization header of a request to
the configured origin.
"""

from __future__ import annotations

import copy
import itertools
import json
import socket
import threading
import typing as t
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError

from tap_custobar.http import CustobarSession
from tap_custobar.tap import TapCustobar
from tests.expected import by_key, instant
from tests.harness import (
    TapRun,
    bookmarks_of,
    catalog_for,
    check_state_messages,
    retry_waits,
    run_tap,
    run_tap_cli,
    sandbox_config,
)
from tests.leaks import TEST_TOKEN, check_no_token
from tests.sandbox import Sandbox

PAGE = 50  # customers: 250 records -> 5 pages
CUSTOMERS_PATH = "/api/data/customers/"
BACKOFF_FIRST_WAIT = 1.0  # DESIGN §3: exponential backoff from 1 s
# Exponential waits are stretched at random by up to half (jitter), never shortened.
JITTER_STRETCH = 1.5
# Backoff waits are asserted from the waits the tap announces; the sandbox's request stamps only
# show it really waited, as lower bounds less this: a handler thread scheduled late stamps a
# request late (0.16 s has been seen on a loaded machine), and a late first stamp shortens a gap.
STAMP_TOLERANCE = 0.5


def is_backoff(waits: list[float], steps: list[float]) -> bool:
    """Whether the announced waits are these exponential steps, each with its jitter."""
    return len(waits) == len(steps) and all(
        step <= wait <= step * JITTER_STRETCH for wait, step in zip(waits, steps, strict=True)
    )


# --- helpers -----------------------------------------------------------------------------------


def requests_for(sandbox: Sandbox, stream: str) -> list[dict]:
    return [r for r in sandbox.requests if r["stream"] == stream]


def last_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


def assert_error_line(run: TapRun, *needles: str) -> str:
    """Exit code 1 and a last stderr line `tap-custobar: error: ...` holding every needle."""
    check_no_token(run.stderr)
    assert run.returncode == 1, run.stderr[-2000:]
    line = last_line(run.stderr)
    assert line.startswith("tap-custobar: error: "), line
    assert run.stderr.count("tap-custobar: error:") == 1
    assert "Traceback" not in run.stderr
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert "?" not in line and "cursor" not in line and "limit=" not in line, line
    return line


def assert_retry_in_log(entries: list[dict], kind: str, *, wait: float) -> None:
    """The faulted request, then a successful request for the same page `wait` s later."""
    faulted = [i for i, entry in enumerate(entries) if entry["fault"] == kind]
    assert len(faulted) == 1, [(e["status"], e["fault"]) for e in entries]
    index = faulted[0]
    assert 0 < index < len(entries) - 1, "the fault should hit a middle page"
    bad, retry = entries[index], entries[index + 1]
    assert retry["fault"] is None and retry["status"] == 200
    assert retry["query"] == bad["query"], "the retry must ask for the same page"
    assert "cursor" in bad["query"], "the fault should hit a next_url page"
    gap = retry["t_start"] - bad["t_start"]
    assert gap >= wait - STAMP_TOLERANCE, f"retried after {gap:.3f} s, the tap announced {wait} s"
    assert all(entry["auth_ok"] for entry in entries)


def messages_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


class Listener:
    """A second HTTP server that records every connection it accepts (there should be none)."""

    def __init__(self, host: str) -> None:
        self.connections: list[tuple[str, int]] = []
        self.requests: list[dict] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                listener.requests.append(
                    {"path": self.path, "authorization": self.headers.get("Authorization")}
                )
                body = b'{"customers": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: t.Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: t.Any, client_address: t.Any) -> bool:
                listener.connections.append(client_address)
                return True

        self.server = Server((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.daemon = True
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def untouched(self) -> bool:
        return not self.connections and not self.requests


def loopback_alias() -> str:
    """127.0.0.2 where it can be bound (Linux), else 127.0.0.1 (another port)."""
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.2", 0))
    except OSError:
        return "127.0.0.1"
    return "127.0.0.2"


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("198.51.100.1", 9))  # no packet is sent
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address  # noqa: S104


@pytest.fixture
def other_host() -> t.Iterator[Listener]:
    listener = Listener(loopback_alias())
    yield listener
    listener.stop()


@pytest.fixture
def other_port() -> t.Iterator[Listener]:
    listener = Listener("127.0.0.1")
    yield listener
    listener.stop()


@pytest.fixture
def redirects(monkeypatch) -> t.Iterator[list]:
    """The redirect responses the tap's session looked at; closed at teardown whatever happened."""
    seen: list = []
    original = CustobarSession.get_redirect_target

    def spy(self: CustobarSession, resp: t.Any) -> str | None:
        seen.append(resp)
        return original(self, resp)

    monkeypatch.setattr(CustobarSession, "get_redirect_target", spy)
    yield seen
    for response in seen:
        response.close()  # so an unclosed socket cannot fail a later test (filterwarnings=error)


@pytest.fixture(scope="module")
def baseline(dataset) -> dict:
    """Customers as a run without faults emits them, and how many requests that takes."""
    with Sandbox(dataset=dataset, token=TEST_TOKEN) as clean:
        config = sandbox_config(clean, page_size=PAGE)
        outcome = run_tap(config, catalog=catalog_for(config, ["customers"]), allow_error=True)
        assert outcome.error is None
        records = outcome.records["customers"]
        pages = len(requests_for(clean, "customers"))
    assert len(records) == len(dataset.records["customers"])
    assert pages == len(records) // PAGE
    return {"records": records, "by_key": by_key("customers", records), "pages": pages}


def customers_run(sandbox: Sandbox, **overrides: t.Any) -> TapRun:
    config = sandbox_config(sandbox, page_size=PAGE, **overrides)
    return run_tap(config, catalog=catalog_for(config, ["customers"]), allow_error=True)


def page_queries(sandbox: Sandbox) -> list[str]:
    """The query strings of the customers pages, from a clean run (the log is then cleared)."""
    assert customers_run(sandbox).error is None
    queries = [r["query"] for r in requests_for(sandbox, "customers")]
    sandbox.clear_requests()
    return queries


# --- transient faults: retried, output unchanged --------------------------------------------


TRANSIENT = [
    pytest.param("500", {}, {}, id="500"),
    pytest.param("502", {}, {}, id="502"),
    pytest.param("503", {}, {}, id="503"),
    pytest.param("504", {}, {}, id="504"),
    pytest.param("drop_before", {}, {}, id="drop_before"),
    pytest.param("drop_mid_body", {}, {}, id="drop_mid_body"),
    pytest.param("slow", {"seconds": 1.5}, {"request_timeout": 0.5}, id="slow_beyond_timeout"),
    pytest.param("truncated_json", {}, {}, id="truncated_json"),
    pytest.param("html_error", {}, {}, id="html_error_200"),
    pytest.param("html_error", {"status": 502}, {}, id="html_error_502"),
    pytest.param("missing_list", {}, {}, id="missing_list"),
]


@pytest.mark.parametrize(("kind", "options", "overrides"), TRANSIENT)
def test_transient_fault_is_retried_and_changes_nothing(
    sandbox, baseline, caplog, kind: str, options: dict, overrides: dict
) -> None:
    sandbox.inject(kind, stream="customers", after=1, **options)  # the 2nd page, once
    outcome = customers_run(sandbox, **overrides)
    assert outcome.error is None, outcome.error
    emitted = outcome.records["customers"]
    assert len(emitted) == len(baseline["records"])
    assert by_key("customers", emitted) == baseline["by_key"]  # no duplicate, no loss, same values
    entries = requests_for(sandbox, "customers")
    assert len(entries) == baseline["pages"] + 1
    waits = retry_waits(messages_of(caplog))
    assert is_backoff(waits, [BACKOFF_FIRST_WAIT]), waits
    assert_retry_in_log(entries, kind, wait=waits[0])


@pytest.mark.parametrize(
    ("retry_after", "least", "most"),
    [
        pytest.param(2, 2.0, 2.0, id="429-seconds"),
        # An HTTP date has whole seconds: "now + 3 s" is 2 to 3 s after the response.
        pytest.param("http-date:3", 2.0, 3.0, id="429-http-date"),
    ],
)
def test_retry_after_is_honoured(
    sandbox, baseline, caplog, retry_after: t.Any, least: float, most: float
) -> None:
    # Retry-After longer than the first backoff step (1 s), so honouring it is visible.
    sandbox.inject("429", stream="customers", after=1, retry_after=retry_after)
    outcome = customers_run(sandbox)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    entries = requests_for(sandbox, "customers")
    assert len(entries) == baseline["pages"] + 1
    # The wait is Retry-After's alone (not a backoff step on top of it) ...
    [wait] = retry_waits(messages_of(caplog))
    assert least <= wait <= most, f"waited {wait} s for a Retry-After of {retry_after}"
    # ... and the tap did wait that long before asking again.
    assert_retry_in_log(entries, "429", wait=wait)


def test_unreadable_retry_after_falls_back_to_backoff(sandbox, baseline, caplog) -> None:
    sandbox.inject("429", stream="customers", after=1, retry_after="soon")
    outcome = customers_run(sandbox)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    waits = retry_waits(messages_of(caplog))
    assert is_backoff(waits, [BACKOFF_FIRST_WAIT]), waits
    assert_retry_in_log(requests_for(sandbox, "customers"), "429", wait=waits[0])


def test_faults_in_a_row_are_retried_with_growing_waits(sandbox, baseline, caplog) -> None:
    # Two different faults on the 3rd page, then it answers: 3 tries fit in max_retries=2.
    for kind in ("502", "truncated_json"):
        sandbox.inject(kind, stream="customers", after=2)
    outcome = customers_run(sandbox, max_retries=2)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    entries = requests_for(sandbox, "customers")
    assert [e["fault"] for e in entries] == [None, None, "502", "truncated_json"] + [None] * (
        baseline["pages"] - 2
    )
    assert len({e["query"] for e in entries[2:5]}) == 1 and entries[4]["status"] == 200
    waits = retry_waits(messages_of(caplog))
    assert is_backoff(waits, [1.0, 2.0]), waits  # exponential: 1 s, then 2 s (plus jitter)
    starts = [e["t_start"] for e in entries[2:5]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert all(gap >= wait - STAMP_TOLERANCE for gap, wait in zip(gaps, waits, strict=True)), gaps


def test_transient_fault_during_discovery_is_retried(sandbox) -> None:
    sandbox.inject("429", stream="products", retry_after=0)  # the CSV header request
    sandbox.inject("truncated_json", stream="customers", after=1)  # the JSON sample
    run = run_tap_cli(sandbox_config(sandbox, event_types=["BROWSE"]), args=["--discover"])
    assert run.returncode == 0, run.stderr[-2000:]
    check_no_token(run.stderr)
    assert "discovery failed" not in run.stderr.lower()
    streams = {s["tap_stream_id"]: s for s in run.messages[0]["streams"]}
    assert any("acme__" in name for name in streams["customers"]["schema"]["properties"])
    for stream, kind in (("products", "429"), ("customers", "truncated_json")):
        entries = requests_for(sandbox, stream)
        faulted = [i for i, e in enumerate(entries) if e["fault"] == kind]
        assert len(faulted) == 1
        assert entries[faulted[0] + 1]["query"] == entries[faulted[0]]["query"]
        assert entries[faulted[0] + 1]["status"] == 200


# --- retries exhausted ---------------------------------------------------------------------


def test_retries_exhausted_in_process_raises_after_the_pages_already_emitted(
    sandbox, baseline
) -> None:
    sandbox.inject("503", times=10, stream="customers", after=2)
    outcome = customers_run(sandbox, max_retries=0)
    assert isinstance(outcome.error, FatalAPIError)
    message = str(outcome.error)
    for needle in ("customers", "503", CUSTOMERS_PATH):
        assert needle in message
    emitted = outcome.records["customers"]
    assert emitted == baseline["records"][: 2 * PAGE]
    assert len(requests_for(sandbox, "customers")) == 3  # max_retries=0: one try


def test_retries_exhausted_from_the_command_line(sandbox, baseline) -> None:
    sandbox.inject("503", times=10, stream="customers", after=2)
    run = run_tap_cli(
        sandbox_config(sandbox, page_size=PAGE, max_retries=1, event_types=["BROWSE"])
    )
    line = assert_error_line(run, "customers", "503", CUSTOMERS_PATH)
    assert "127.0.0.1" not in line  # the path, not the URL
    # Records already emitted stay emitted; every line of stdout (records, STATE) is JSON.
    assert run.records["customers"] == baseline["records"][: 2 * PAGE]
    assert run.states and all(isinstance(s.get("bookmarks"), dict) for s in run.states)
    kinds = [m["type"] for m in run.messages]
    assert "STATE" in kinds[kinds.index("RECORD") :]  # progress was checkpointed before the failure
    entries = sandbox.requests
    assert [e["fault"] for e in entries] == [None, None, "503", "503"]  # 1 try + 1 retry
    assert entries[2]["query"] == entries[3]["query"]
    waits = retry_waits(run.stderr.splitlines())
    assert is_backoff(waits, [BACKOFF_FIRST_WAIT]), waits
    assert entries[3]["t_start"] - entries[2]["t_start"] >= waits[0] - STAMP_TOLERANCE
    assert {e["stream"] for e in entries} == {"customers"}  # nothing after the failure


# --- fatal at once --------------------------------------------------------------------------

REASON_400 = "Invalid value for can_email: expected true or false"

FATAL = [
    pytest.param(
        "401", {}, ("401", "`api_token`", "`auth_scheme`", "GET /api/data/customers/"), id="401"
    ),
    pytest.param(
        "403", {}, ("403", "`api_token`", "`auth_scheme`", "GET /api/data/customers/"), id="403"
    ),
    pytest.param("400", {"reason": REASON_400}, ("400", REASON_400, CUSTOMERS_PATH), id="400"),
    pytest.param("404", {}, ("404", "`company`", "`base_url`", CUSTOMERS_PATH), id="404"),
]


@pytest.mark.parametrize(("kind", "options", "needles"), FATAL)
def test_fatal_status_stops_at_once(
    sandbox, baseline, caplog, kind: str, options: dict, needles: tuple[str, ...]
) -> None:
    config = sandbox_config(sandbox, page_size=PAGE, max_retries=3, event_types=["BROWSE"])
    # In process: no retry announced (so no backoff wait), and the request log.
    sandbox.inject(kind, stream="customers", after=1, **options)
    outcome = run_tap(config, allow_error=True)  # what was emitted before the error, too
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    for needle in ("customers", *needles):
        assert needle in str(outcome.error)
    entries = sandbox.requests
    assert [e["fault"] for e in entries] == [None, kind], "one try, and nothing after it"
    assert retry_waits(messages_of(caplog)) == []
    assert outcome.records["customers"] == baseline["records"][:PAGE]
    # As a process: exit code and the one sentence at the end of stderr.
    sandbox.clear_requests()
    sandbox.inject(kind, stream="customers", after=1, **options)
    run = run_tap_cli(config)
    assert_error_line(run, "customers", *needles)
    assert [e["fault"] for e in sandbox.requests] == [None, kind]
    assert run.records["customers"] == baseline["records"][:PAGE]


def test_wrong_token_is_fatal_on_the_first_request(sandbox) -> None:
    other_token = "cbsbx_another_token_0000000000000000000000"  # noqa: S105 - a test value
    with Sandbox(dataset=sandbox.dataset, token=other_token) as other:
        config = sandbox_config(other, api_token=TEST_TOKEN, auth_scheme="Bearer")
        run = run_tap_cli(config)
        line = assert_error_line(run, "customers", "401", "`api_token`", "`auth_scheme` (Bearer)")
        assert "GET /api/data/customers/" in line
        assert len(other.requests) == 1 and not other.requests[0]["auth_ok"]


# --- next_url and redirects that leave the origin -------------------------------------------


def foreign_urls(sandbox: Sandbox, host: Listener, port: Listener) -> dict[str, str]:
    path = "/api/data/customers/?cursor=x"
    return {
        "other-host": f"{host.url}{path}",
        "other-port": f"{port.url}{path}",
        "protocol-relative": f"//{host.host}:{host.port}{path}",
        "userinfo": f"http://127.0.0.1:{sandbox.port}@{host.host}:{host.port}{path}",
        "https": f"https://127.0.0.1:{sandbox.port}{path}",
    }


@pytest.mark.parametrize(
    "variant", ["other-host", "other-port", "protocol-relative", "userinfo", "https"]
)
def test_foreign_next_url_is_fatal_and_never_requested(
    sandbox, baseline, other_host, other_port, variant: str
) -> None:
    url = foreign_urls(sandbox, other_host, other_port)[variant]
    sandbox.inject("foreign_next_url", stream="customers", after=1, url=url)
    outcome = customers_run(sandbox)
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    assert "origin" in str(outcome.error)
    assert other_host.untouched() and other_port.untouched()
    assert [e["fault"] for e in sandbox.requests] == [None, "foreign_next_url"]
    # Pages before the faulted one stay emitted; next_url is checked before its page is
    # emitted, so the page carrying the bad next_url never is.
    assert outcome.records["customers"] == baseline["records"][:PAGE]


@pytest.mark.parametrize("variant", ["other-host", "other-port", "protocol-relative"])
def test_cross_origin_redirect_is_not_followed(
    sandbox, baseline, other_host, other_port, redirects, variant: str
) -> None:
    location = foreign_urls(sandbox, other_host, other_port)[variant]
    sandbox.inject("redirect", stream="customers", after=1, location=location)
    outcome = customers_run(sandbox)
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    assert "origin" in str(outcome.error)
    assert other_host.untouched() and other_port.untouched()
    assert [e["fault"] for e in sandbox.requests] == [None, "redirect"]
    assert outcome.records["customers"] == baseline["records"][:PAGE]


def test_refused_redirect_leaves_no_connection_open(sandbox, other_host, redirects) -> None:
    sandbox.inject(
        "redirect", stream="customers", after=1, location=f"{other_host.url}/api/data/customers/"
    )
    outcome = customers_run(sandbox)
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    assert other_host.untouched()
    # The refused 302 must not keep its connection checked out with the socket open until
    # garbage collection (an unclosed-socket ResourceWarning, an error under this suite).
    [refused] = [r for r in redirects if r.status_code == 302]
    connection = refused.raw.connection
    assert refused.raw.closed or connection is None or connection.sock is None, (
        "the refused redirect's response was left open, holding its socket"
    )


def test_repeating_next_url_is_a_fatal_loop(sandbox, baseline) -> None:
    sandbox.inject("repeat_next_url", stream="customers", after=1)
    outcome = customers_run(sandbox)
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    assert "loop" in str(outcome.error)
    entries = sandbox.requests
    assert [e["fault"] for e in entries] == [None, "repeat_next_url"]  # never requested again
    # next_url is checked before its page is emitted: the looping page's records never are.
    assert outcome.records["customers"] == baseline["records"][:PAGE]


def test_first_page_pointing_at_itself_forever_is_a_fatal_loop(sandbox) -> None:
    sandbox.inject("repeat_next_url", times=None, stream="customers")
    outcome = customers_run(sandbox)
    assert isinstance(outcome.error, FatalAPIError), outcome.error
    assert "loop" in str(outcome.error)
    assert len(sandbox.requests) <= 2


def test_same_origin_next_urls_and_redirects_keep_working(sandbox, baseline, redirects) -> None:
    queries = page_queries(sandbox)
    # A relative next_url (switch), resolved against the request URL.
    sandbox.switches = {"relative_next_url"}
    outcome = customers_run(sandbox)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    assert [r["query"] for r in sandbox.requests] == queries
    sandbox.switches = set()
    sandbox.clear_requests()
    # An absolute next_url on the same origin spelled differently (scheme case, explicit path).
    sandbox.inject(
        "foreign_next_url",
        stream="customers",
        after=1,
        url=f"HTTP://127.0.0.1:{sandbox.port}/api/data/customers/?{queries[2]}",
    )
    outcome = customers_run(sandbox)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    assert [r["query"] for r in sandbox.requests] == queries
    sandbox.clear_requests()
    # A redirect on the same origin is followed (to the same page).
    sandbox.inject(
        "redirect", stream="customers", after=1, location=f"/api/data/customers/?{queries[1]}"
    )
    outcome = customers_run(sandbox)
    assert outcome.error is None, outcome.error
    assert by_key("customers", outcome.records["customers"]) == baseline["by_key"]
    entries = sandbox.requests
    assert [e["fault"] for e in entries[:3]] == [None, "redirect", None]
    assert entries[2]["query"] == queries[1] and entries[2]["auth_ok"]


# --- API variations: the same records and bookmarks -----------------------------------------

SWITCH_SETS = [
    pytest.param({"order_ignored"}, id="order_ignored"),
    pytest.param({"next_url_header_only"}, id="next_url_header_only"),
    pytest.param({"relative_next_url"}, id="relative_next_url"),
    pytest.param({"empty_page_with_next"}, id="empty_page_with_next"),
    pytest.param(
        {"order_ignored", "next_url_header_only", "relative_next_url", "empty_page_with_next"},
        id="all_four",
    ),
]
VARIANT_TYPES = ["MAIL_OPEN", "BROWSE"]
VARIANT_STREAMS = ("customers", "sales", "events")


def middle(values: t.Iterable[str]) -> str:
    ordered = sorted(values, key=instant)
    return ordered[len(ordered) // 2]


def mid_state(records: dict[str, list[dict]]) -> dict:
    """Bookmarks in the middle of the data: incremental reads with a window start."""
    partitions = [
        {
            "context": {"type": kind},
            "replication_key": "date",
            "replication_key_value": middle(
                e["date"] for e in records["events"] if e["type"] == kind
            ),
        }
        for kind in VARIANT_TYPES
    ]
    sale = middle(r["sale_date"] for r in records["sales"])
    return {
        "bookmarks": {
            "events": {"partitions": partitions},
            "sales": {"replication_key": "sale_date", "replication_key_value": sale},
        }
    }


def variant_run(sandbox: Sandbox, state: dict | None) -> TapRun:
    config = sandbox_config(sandbox, page_size=20, event_types=VARIANT_TYPES, lookback_days=1)
    catalog = catalog_for(config, VARIANT_STREAMS)
    outcome = run_tap(config, catalog=catalog, state=copy.deepcopy(state))
    assert outcome.error is None, outcome.error
    # DESIGN §2: a crash never skips data. Resuming from any STATE message of the run (from
    # the bookmark's day minus the lookback) re-reads every record emitted after it.
    check_state_messages(outcome.messages, state, lookback_days=1)
    return outcome


@pytest.fixture(scope="module")
def plain_runs(dataset) -> dict:
    """Runs without any switch, with no state and with a mid-data state."""
    states = {"no_state": None, "mid_state": mid_state(dataset.records)}
    with Sandbox(dataset=dataset, token=TEST_TOKEN) as clean:
        runs = {name: (state, variant_run(clean, state)) for name, state in states.items()}
        assert {r["stream"] for r in clean.requests} == set(VARIANT_STREAMS)
    full, windowed = runs["no_state"][1], runs["mid_state"][1]
    every_partition = {("sales", None)} | {("events", kind) for kind in VARIANT_TYPES}
    assert set(bookmarks_of(full.final_state)) == every_partition
    assert set(bookmarks_of(windowed.final_state)) == every_partition
    assert 0 < len(windowed.records["sales"]) < len(full.records["sales"])
    assert 0 < len(windowed.records["events"]) < len(full.records["events"])
    return runs


@pytest.mark.parametrize("state_name", ["no_state", "mid_state"])
@pytest.mark.parametrize("switches", SWITCH_SETS)
def test_api_variations_give_the_same_records_and_bookmarks(
    sandbox, plain_runs, switches: set[str], state_name: str
) -> None:
    state, plain = plain_runs[state_name]
    sandbox.switches = switches
    varied = variant_run(sandbox, state)
    for stream in VARIANT_STREAMS:
        assert by_key(stream, varied.records[stream]) == by_key(stream, plain.records[stream]), (
            stream
        )
    assert bookmarks_of(varied.final_state) == bookmarks_of(plain.final_state)
    if state is not None:  # read from the bookmarks on, and they did not move back
        assert bookmarks_of(varied.final_state)[("sales", None)] == max(
            (r["sale_date"] for r in varied.records["sales"]), key=instant
        )
        first_sales_request = next(r for r in sandbox.requests if r["stream"] == "sales")
        assert "sale_date" in first_sales_request["params"]
        first_pages = [
            r for r in sandbox.requests if r["stream"] == "events" and "cursor" not in r["params"]
        ]
        assert first_pages and all("date.gte" in r["params"] for r in first_pages)


@pytest.mark.parametrize("state_name", ["no_state", "mid_state"])
def test_order_ignored_never_checkpoints_past_records_still_to_come(
    sandbox, plain_runs, state_name: str
) -> None:
    # DESIGN §2: a crash never skips data. When Custobar ignores order=, a STATE written
    # mid-partition must not hold a bookmark beyond records that arrive after it.
    state, plain = plain_runs[state_name]
    sandbox.switches = {"order_ignored"}
    varied = variant_run(sandbox, state)
    assert bookmarks_of(varied.final_state) == bookmarks_of(plain.final_state)
    # (variant_run has checked that a run resumed from any of its STATE messages loses nothing)


def test_faults_in_incremental_streams_change_neither_records_nor_bookmarks(
    sandbox, plain_runs
) -> None:
    state, plain = plain_runs["mid_state"]
    sandbox.inject("truncated_json", stream="sales", after=3)  # a page of some day's query
    sandbox.inject("429", stream="events", after=2, retry_after=0)  # inside the first partition
    varied = variant_run(sandbox, state)
    for stream in VARIANT_STREAMS:
        assert by_key(stream, varied.records[stream]) == by_key(stream, plain.records[stream]), (
            stream
        )
    assert bookmarks_of(varied.final_state) == bookmarks_of(plain.final_state)
    for stream, kind in (("sales", "truncated_json"), ("events", "429")):
        entries = requests_for(sandbox, stream)
        index = next(i for i, e in enumerate(entries) if e["fault"] == kind)
        assert entries[index + 1]["query"] == entries[index]["query"]
        assert entries[index + 1]["status"] == 200


# --- the token appears nowhere ------------------------------------------------------------


def test_token_absent_from_debug_output_with_a_retry_and_a_fatal_401(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("TAP_CUSTOBAR_LOGLEVEL", "DEBUG")
    sandbox.inject("503", stream="customers", after=1)
    sandbox.inject("429", stream="events", after=1, retry_after=0)
    sandbox.inject("401", stream="products", after=1)
    run = run_tap_cli(sandbox_config(sandbox, page_size=PAGE, event_types=["BROWSE"]))
    check_no_token(run.stderr)
    check_no_token(json.dumps(run.messages))
    assert " DEBUG " in run.stderr, "the run should have logged at DEBUG"
    assert "retry 1 of 2" in run.stderr
    assert_error_line(run, "products", "401", "`api_token`")
    assert [e["fault"] for e in requests_for(sandbox, "products")] == [None, "401"]
    assert all(e["auth_ok"] for e in sandbox.requests)


def test_token_absent_from_about_and_discover(sandbox, monkeypatch) -> None:
    monkeypatch.setenv("TAP_CUSTOBAR_LOGLEVEL", "DEBUG")
    config = sandbox_config(sandbox, event_types=["BROWSE"])
    done = run_tap_cli(config, args=["--about"])  # text: settings with their descriptions
    assert done.returncode == 0, done.stderr[-2000:]
    assert "api_token" in done.stdout
    sandbox.inject("429", stream="sales", retry_after=0)
    run = run_tap_cli(config, args=["--discover"])
    assert run.returncode == 0, run.stderr[-2000:]
    check_no_token(run.stderr)
    check_no_token(json.dumps(run.messages))
    assert len(requests_for(sandbox, "sales")) >= 3  # the 429, its retry and the sample
    # Discovery that fails on auth writes no catalog, and says why without the token.
    sandbox.inject("401", times=None)
    run = run_tap_cli(config, args=["--discover"])
    assert run.returncode == 1, run.stderr[-2000:]
    check_no_token(run.stderr)
    last = run.stderr.strip().splitlines()[-1]
    assert "no catalog was written" in last and "401" in last and "api_token" in last


def test_off_origin_next_url_from_the_command_line_with_debug_logging(
    sandbox, other_host, monkeypatch
) -> None:
    monkeypatch.setenv("TAP_CUSTOBAR_LOGLEVEL", "DEBUG")
    fault = "foreign_next_url"
    sandbox.inject(
        fault, stream="customers", after=1, url=f"{other_host.url}/api/data/customers/?cursor=x"
    )
    run = run_tap_cli(sandbox_config(sandbox, page_size=PAGE, event_types=["BROWSE"]))
    check_no_token(run.stderr + json.dumps(run.messages))
    assert_error_line(run, other_host.url, "origin")
    assert other_host.untouched()
    assert [e["fault"] for e in sandbox.requests] == [None, fault]


# --- plain http:// to a non-loopback host -----------------------------------------------------


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.example.com",
        "http://acme.custobar.com",
        "http://localhost.example.com:8765",
        "http://127.0.0.1.example.com",
        "http://10.1.2.3:8080",
        "http://0.0.0.0:8765",
    ],
)
def test_plain_http_to_a_remote_host_is_a_config_error(base_url: str) -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapCustobar(config={"api_token": TEST_TOKEN, "base_url": base_url}, validate_config=True)
    assert "base_url" in " ".join(info.value.errors)
    check_no_token(str(info.value))


def test_plain_http_to_a_remote_host_is_refused_before_any_request() -> None:
    address = non_loopback_address()
    listener = Listener(address) if address else None
    try:
        base_url = listener.url if listener else "http://api.example.com"
        config = {"api_token": TEST_TOKEN, "base_url": base_url, "max_retries": 0}
        sync_run = run_tap_cli(config)
        discover_run = run_tap_cli(config, args=["--discover"])
        if listener:
            assert listener.untouched(), "a request went out over plain http"
    finally:
        if listener:
            listener.stop()
    # Discovery runs without config validation (an SDK convention), but must not reach the
    # host either; if it succeeds, it says why custom fields are missing, naming base_url.
    if discover_run.returncode == 0:
        assert "base_url: plain http:// is refused" in discover_run.stderr
    else:
        assert_error_line(discover_run, "base_url", "http://")
    # A sync is a configuration error: exit code 1 and one sentence naming the setting.
    assert_error_line(sync_run, "base_url", "plain http://")


def test_https_to_a_remote_host_is_a_valid_configuration() -> None:
    TapCustobar(
        config={"api_token": TEST_TOKEN, "base_url": "https://api.example.com"},
        validate_config=True,
    )
