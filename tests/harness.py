"""What the tests share: running the tap against the sandbox (in this process or as a real
process), catalogs with some streams or properties selected, bookmarks read from STATE, and the
check that every STATE message is safe to resume from."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from tap_custobar.tap import TapCustobar
from tests.expected import instant
from tests.leaks import check_no_token

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TapRun:
    """The Singer messages of one run, sorted by kind."""

    messages: list[dict]
    stderr: str = ""
    stdout: str = ""  # run_tap_cli: as printed (e.g. `--about` as text)
    returncode: int = 0
    records: dict[str, list[dict]] = field(default_factory=dict)
    schemas: dict[str, dict] = field(default_factory=dict)
    states: list[dict] = field(default_factory=list)
    error: BaseException | None = None  # run_tap(allow_error=True): what the sync raised

    def __post_init__(self) -> None:
        for message in self.messages:
            kind = message["type"]
            if kind == "RECORD":
                self.records.setdefault(message["stream"], []).append(message["record"])
            elif kind == "SCHEMA":
                self.schemas[message["stream"]] = message
            elif kind == "STATE":
                self.states.append(message["value"])

    @property
    def final_state(self) -> dict:
        return self.states[-1]


def parse_messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sandbox_config(sandbox: t.Any, **overrides: t.Any) -> dict:
    config = {
        "api_token": sandbox.token,
        "base_url": sandbox.url,
        "min_request_interval": 0,
        "max_retries": 2,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def run_tap(
    config: dict,
    *,
    catalog: dict | None = None,
    state: dict | None = None,
    allow_error: bool = False,
) -> TapRun:
    """Sync in this process (fast); stdout is captured as bytes, like the real writer's.

    With `allow_error`, an exception from the sync is kept in `error`, with the messages
    written before it, instead of propagating.
    """
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8")
    tap = TapCustobar(config=config, catalog=catalog, state=state or {}, validate_config=True)
    error = None
    with redirect_stdout(stdout):
        try:
            tap.sync_all()
        except Exception as exc:
            if not allow_error:
                raise
            error = exc
        finally:
            stdout.flush()
            if "session" in vars(tap):  # close kept-alive sockets now, not at garbage collection
                tap.session.close()
    text = buffer.getvalue().decode("utf-8")
    check_no_token(text)
    if error is not None:
        check_no_token(str(error))
    return TapRun(parse_messages(text), error=error)


def run_tap_cli(
    config: dict,
    *,
    catalog: dict | None = None,
    state: dict | None = None,
    args: t.Sequence[str] = (),
    timeout: float = 120,
) -> TapRun:
    """Run `tap-custobar` as a real process with config/catalog/state files."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "tap_custobar", "--config", _write(tmp, "config", config)]
        if catalog is not None:
            argv += ["--catalog", _write(tmp, "catalog", catalog)]
        if state is not None:
            argv += ["--state", _write(tmp, "state", state)]
        argv += list(args)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
        )
    check_no_token(done.stdout + done.stderr)
    one_document = any(arg in ("--discover", "--about") for arg in args)
    as_text = "--about" in args and "--format=json" not in args  # text or markdown
    messages = [] if one_document else parse_messages(done.stdout)
    run = TapRun(messages, stderr=done.stderr, stdout=done.stdout, returncode=done.returncode)
    if one_document and not as_text and done.returncode == 0:
        run.messages = [json.loads(done.stdout)]  # the catalog or the about document
    return run


# The tap's WARNING before each retry: "<what failed>; retry 1 of 8 in 2.0 s".
_RETRY_LINE = re.compile(r"; retry (\d+) of (\d+) in (\d+(?:\.\d+)?) s\b")


def retry_waits(lines: t.Iterable[str]) -> list[float]:
    """The waits the tap announced before its retries, in order (log messages or stderr lines).

    Tests assert backoff from these, and from the sandbox's request-start times only as lower
    bounds with a tolerance: a loaded machine stretches waits, never shortens them.
    """
    return [float(match[3]) for line in lines if (match := _RETRY_LINE.search(line))]


def _write(folder: str, name: str, payload: dict) -> str:
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


# --- catalogs ----------------------------------------------------------------------------------


def builtin_catalog(config: dict) -> dict:
    """The tap's built-in catalog (no request), every stream selected; a copy to change."""
    return copy.deepcopy(TapCustobar(config=config, validate_config=True).catalog_dict)


def discovered_catalog(config: dict) -> dict:
    """The catalog `tap-custobar --discover` prints (custom fields included)."""
    run = run_tap_cli(config, args=["--discover"])
    assert run.returncode == 0, run.stderr[-2000:]
    return run.messages[0]


def select_streams(catalog: dict, streams: t.Iterable[str]) -> dict:
    """Select `streams` and deselect every other stream (property selection untouched)."""
    wanted = set(streams)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def catalog_for(config: dict, streams: t.Iterable[str]) -> dict:
    """The built-in catalog with only `streams` selected."""
    return select_streams(builtin_catalog(config), streams)


def select_properties(catalog: dict, stream: str, properties: t.Iterable[str] | None) -> dict:
    """Select one stream (all or some properties) and deselect every other stream."""
    wanted = None if properties is None else set(properties)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            breadcrumb = item["breadcrumb"]
            if not breadcrumb:
                item["metadata"]["selected"] = entry["tap_stream_id"] == stream
            elif entry["tap_stream_id"] == stream and wanted is not None:
                item["metadata"]["selected"] = breadcrumb[1] in wanted  # nested ones follow
    return catalog


# --- bookmarks and STATE safety ----------------------------------------------------------------

REPLICATION_KEYS = {"events": "date", "sales": "sale_date"}
Partition = tuple[str, "str | None"]  # (stream, event type or None)


def partition_of(stream: str, record: dict) -> Partition:
    return (stream, record.get("type") if stream == "events" else None)


def bookmarks_of(state: dict | None) -> dict[Partition, str]:
    """(stream, event type or None) -> replication_key_value, for events and sales."""
    result: dict[Partition, str] = {}
    bookmarks = (state or {}).get("bookmarks", {})
    for partition in bookmarks.get("events", {}).get("partitions", []):
        if partition.get("replication_key_value") is not None:
            result[("events", partition["context"]["type"])] = partition["replication_key_value"]
    sales = bookmarks.get("sales", {})
    if sales.get("replication_key_value") is not None:
        result[("sales", None)] = sales["replication_key_value"]
    return result


def check_state_messages(
    messages: list[dict],
    input_state: dict | None,
    *,
    lookback_days: int | None = None,
    final: bool = True,
) -> None:
    """DESIGN §2, "a crash never skips data", for every STATE message of a run:

    - its bookmarks are never ahead of the records emitted before it (or the input state's);
    - with `lookback_days`: a run resumed from it (from the bookmark's UTC day minus the
      lookback) re-reads every record emitted after it, even one that arrived out of order;
    - with `final`: the run ends with a STATE whose bookmarks are the greatest instants
      emitted (or given in the input state).
    """
    given = {key: instant(value) for key, value in bookmarks_of(input_state).items()}
    seen: dict[Partition, dt.datetime] = {}
    for number, message in enumerate(messages):
        if message["type"] == "RECORD" and message["stream"] in REPLICATION_KEYS:
            key = partition_of(message["stream"], message["record"])
            value = instant(message["record"][REPLICATION_KEYS[message["stream"]]])
            seen[key] = max(value, seen.get(key, value))
        elif message["type"] == "STATE":
            for key, value in bookmarks_of(message["value"]).items():
                limits = [v for v in (given.get(key), seen.get(key)) if v is not None]
                assert limits, f"message {number}: bookmark {key}={value} before any record"
                assert instant(value) <= max(limits), (
                    f"message {number}: bookmark {key}={value} is ahead of the records "
                    f"emitted so far (max {max(limits).isoformat()})"
                )
    if lookback_days is not None:
        _check_resumable(messages, lookback_days)
    if not final:
        return
    states = [m for m in messages if m["type"] == "STATE"]
    assert states and messages[-1]["type"] == "STATE", "a run must end with a STATE message"
    final_bookmarks = bookmarks_of(states[-1]["value"])
    for key in given.keys() | seen.keys():
        expected = max(v for v in (given.get(key), seen.get(key)) if v is not None)
        assert key in final_bookmarks, f"final state lost the bookmark of {key}"
        assert instant(final_bookmarks[key]) == expected, (key, final_bookmarks[key], expected)


def _check_resumable(messages: list[dict], lookback_days: int) -> None:
    """Resuming from any STATE (bookmark's UTC day minus lookback) loses no later record."""
    earliest_after: dict[Partition, dt.date] = {}  # the earliest UTC day emitted later
    for message in reversed(messages):
        if message["type"] == "RECORD" and message["stream"] in REPLICATION_KEYS:
            key = partition_of(message["stream"], message["record"])
            day = instant(message["record"][REPLICATION_KEYS[message["stream"]]]).date()
            earliest_after[key] = min(day, earliest_after.get(key, day))
        elif message["type"] == "STATE":
            for key, value in bookmarks_of(message["value"]).items():
                if key not in earliest_after:
                    continue
                resume = instant(value).date() - dt.timedelta(days=lookback_days)
                assert resume <= earliest_after[key], (
                    f"{key}: a STATE bookmark {value} is ahead of a record of "
                    f"{earliest_after[key]} emitted after it (lost if the run stopped there)"
                )
