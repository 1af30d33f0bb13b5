"""Incremental replication (GitHub issue #4, DESIGN.md §2 "Incremental replication").

Every run here goes through `sync()` / `check_run()`, which also check what must hold for any
run: the final STATE has the SDK's shape (no progress markers) and each bookmark is the
greatest instant emitted (or given in the input state); no STATE is ever ahead of the records
emitted before it.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import typing as t
from collections import Counter
from zoneinfo import ZoneInfo

from tap_custobar.event_id import event_id
from tap_custobar.tap import TapCustobar
from tests.harness import ROOT, parse_messages, run_tap, run_tap_cli, sandbox_config
from tests.leaks import TEST_TOKEN, check_no_token
from tests.sandbox import Sandbox, generate_dataset

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
TYPES = ["MAIL_OPEN", "BROWSE"]
REPLICATION_KEYS = {"events": "date", "sales": "sale_date"}


# --- time helpers (independent of the tap's own) ------------------------------------------


def instant(text: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    """An ISO datetime as an aware UTC instant; without offset it is read in `zone`."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=UTC)


def today() -> dt.date:
    return dt.datetime.now(UTC).date()


def days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + k * DAY).isoformat() for k in range((last - first).days + 1)]


# --- catalog, runs and the checks every run must pass -------------------------------------


def catalog_for(config: dict, streams: t.Iterable[str]) -> dict:
    """The tap's built-in catalog with only `streams` selected."""
    wanted = set(streams)
    catalog = json.loads(json.dumps(TapCustobar(config=config).catalog_dict))
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if not item["breadcrumb"]:
                item["metadata"]["selected"] = entry["tap_stream_id"] in wanted
    return catalog


def partition_key(stream: str, record: dict) -> tuple[str, str | None]:
    return (stream, record["type"] if stream == "events" else None)


def bookmarks_of(state: dict | None) -> dict[tuple[str, str | None], str]:
    """(stream, event type or None) -> replication_key_value, for events and sales."""
    result: dict[tuple[str, str | None], str] = {}
    bookmarks = (state or {}).get("bookmarks", {})
    for partition in bookmarks.get("events", {}).get("partitions", []):
        if partition.get("replication_key_value") is not None:
            result[("events", partition["context"]["type"])] = partition["replication_key_value"]
    sales = bookmarks.get("sales", {})
    if sales.get("replication_key_value") is not None:
        result[("sales", None)] = sales["replication_key_value"]
    return result


def assert_sdk_state_shape(state: dict, streams: t.Iterable[str]) -> None:
    """The SDK's state format: bookmarks.<stream>, partitions for events, no progress markers."""
    assert json.loads(json.dumps(state)) == state
    assert set(state) == {"bookmarks"}
    assert "progress_markers" not in json.dumps(state)
    bookmarks = state["bookmarks"]
    if "events" in streams:
        events = bookmarks["events"]
        assert set(events) == {"partitions"}, events
        contexts = [json.dumps(p["context"], sort_keys=True) for p in events["partitions"]]
        assert len(contexts) == len(set(contexts)), "a partition appears twice"
        for partition in events["partitions"]:
            assert set(partition["context"]) == {"type"}
            if "replication_key_value" not in partition:
                assert set(partition) == {"context"}, partition
                continue
            assert set(partition) == {"context", "replication_key", "replication_key_value"}
            assert partition["replication_key"] == "date"
            instant(partition["replication_key_value"])
    if "sales" in streams and bookmarks.get("sales"):
        sales = bookmarks["sales"]
        assert set(sales) == {"replication_key", "replication_key_value"}, sales
        assert sales["replication_key"] == "sale_date"
        instant(sales["replication_key_value"])


def check_messages(messages: list[dict], input_state: dict | None, *, final: bool = True) -> None:
    """No STATE ahead of the records before it; the final bookmarks are the greatest instants."""
    given = {key: instant(value) for key, value in bookmarks_of(input_state).items()}
    seen: dict[tuple[str, str | None], dt.datetime] = {}
    for number, message in enumerate(messages):
        if message["type"] == "RECORD" and message["stream"] in REPLICATION_KEYS:
            key = partition_key(message["stream"], message["record"])
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
    if not final:
        return
    states = [m for m in messages if m["type"] == "STATE"]
    assert states and messages[-1]["type"] == "STATE", "a run must end with a STATE message"
    final_bookmarks = bookmarks_of(states[-1]["value"])
    for key in given.keys() | seen.keys():
        expected = max(v for v in (given.get(key), seen.get(key)) if v is not None)
        assert key in final_bookmarks, f"final state lost the bookmark of {key}"
        assert instant(final_bookmarks[key]) == expected, (key, final_bookmarks[key], expected)


def check_run(run: t.Any, streams: t.Iterable[str], state: dict | None) -> None:
    assert_sdk_state_shape(run.final_state, streams)
    check_messages(run.messages, state)


def sync(
    config: dict, *, streams: t.Sequence[str] = ("events", "sales"), state: dict | None = None
) -> t.Any:
    """An in-process run of `streams` only, with the checks every run must pass."""
    run = run_tap(
        config,
        catalog=catalog_for(config, streams),
        state=copy.deepcopy(state) if state else None,
    )
    check_run(run, streams, state)
    return run


# --- what the sandbox holds ------------------------------------------------------------------


def raw_events(sandbox: Sandbox, event_type: str) -> list[dict]:
    return [e for e in sandbox.records("events") if e["type"] == event_type]


def event_ids(records: t.Iterable[dict]) -> set[str]:
    return {event_id(r) if "event_id" not in r else r["event_id"] for r in records}


def sale_keys(records: t.Iterable[dict]) -> set[tuple[str, str]]:
    return {(r["sale_external_id"], r["external_id"]) for r in records}


def emitted(run: t.Any, stream: str, event_type: str | None = None) -> list[dict]:
    records = run.records.get(stream, [])
    return [r for r in records if event_type is None or r["type"] == event_type]


def events_since(sandbox: Sandbox, event_type: str, start: dt.datetime) -> list[dict]:
    return [e for e in raw_events(sandbox, event_type) if instant(e["date"]) >= start]


def sales_since(sandbox: Sandbox, start: dt.datetime, zone: dt.tzinfo = UTC) -> list[dict]:
    return [s for s in sandbox.records("sales") if instant(s["sale_date"], zone) >= start]


def first_pages(sandbox: Sandbox, stream: str) -> list[dict]:
    """Query parameters of the first page of each query (later pages carry only a cursor)."""
    return [
        {name: values[0] for name, values in r["params"].items()}
        for r in sandbox.requests
        if r["stream"] == stream and "cursor" not in r["params"]
    ]


def pages_needed(count: int, page_size: int) -> int:
    return max(1, math.ceil(count / page_size))


def event(event_type: str, date: str, tag: str) -> dict:
    return {
        "type": event_type,
        "date": date,
        "customer_id": f"NEW-{tag}",
        "email": f"{tag}@example.com",
    }


def sale(number: str, date: str) -> dict:
    return {
        "sale_external_id": f"NEW-{number}",
        "external_id": f"NEW-{number}-1",
        "sale_date": date,
        "sale_shop_id": "KAMPPI",
        "sale_state": "COMPLETE",
        "product_id": "P00001",
        "quantity": 1,
        "unit_price": 1290,
        "total": 1290,
        "sale_total": 1290,
    }


# --- two consecutive runs --------------------------------------------------------------------


def test_second_run_reads_from_bookmark_day_minus_lookback(sandbox) -> None:
    page_size = 10
    config = sandbox_config(sandbox, page_size=page_size, event_types=TYPES, lookback_days=1)
    first = sync(config)
    for event_type in TYPES:
        everything = raw_events(sandbox, event_type)
        assert event_ids(emitted(first, "events", event_type)) == event_ids(everything)
    assert sale_keys(emitted(first, "sales")) == sale_keys(sandbox.records("sales"))

    now = today()
    yesterday = now - DAY
    latest = f"{now}T23:59:59.999Z"  # after every generated record
    added_events = {event_type: [
        event(event_type, f"{now}T00:00:01Z", f"{event_type}-1"),
        event(event_type, f"{yesterday}T12:00:00+02:00", f"{event_type}-2"),
        event(event_type, f"{yesterday}T18:30:00", f"{event_type}-3"),
        event(event_type, latest, f"{event_type}-4"),
    ] for event_type in TYPES}
    added_sales = [
        sale("1", f"{now}T00:00:01Z"),
        sale("2", f"{yesterday}T12:00:00+02:00"),
        sale("3", f"{yesterday}T18:30:00"),
        sale("4", latest),
    ]
    for records in added_events.values():
        for record in records:
            sandbox.add("events", record)
    for record in added_sales:
        sandbox.add("sales", record)
    sandbox.clear_requests()

    second = sync(config, state=first.final_state)

    bookmarks = bookmarks_of(first.final_state)
    for event_type in TYPES:
        start = midnight(instant(bookmarks[("events", event_type)]).date() - DAY)
        got = emitted(second, "events", event_type)
        assert event_ids(added_events[event_type]) <= event_ids(got)
        assert min(instant(r["date"]) for r in got) >= start, "a record older than the lookback"
        wanted = events_since(sandbox, event_type, start)
        assert event_ids(got) == event_ids(wanted)
        assert len(got) == len(wanted), "a record was emitted twice in one run"
    expected_event_queries = [
        {
            "limit": str(page_size),
            "type": event_type,
            "order": "date",
            "date.gte": (instant(bookmarks[("events", event_type)]).date() - DAY).isoformat(),
        }
        for event_type in TYPES
    ]
    assert first_pages(sandbox, "events") == expected_event_queries

    sales_start_day = instant(bookmarks[("sales", None)]).date() - DAY
    got_sales = emitted(second, "sales")
    assert sale_keys(added_sales) <= sale_keys(got_sales)
    assert min(instant(r["sale_date"]) for r in got_sales) >= midnight(sales_start_day)
    assert sale_keys(got_sales) == sale_keys(sales_since(sandbox, midnight(sales_start_day)))
    sales_queries = first_pages(sandbox, "sales")
    assert [q["sale_date"] for q in sales_queries] == days(sales_start_day, today() + DAY)
    assert all(q["order"] == "sale_date" and q["limit"] == str(page_size) for q in sales_queries)
    # The bookmarks moved to the newest record added in between.
    assert all(instant(v) == instant(latest) for v in bookmarks_of(second.final_state).values())

    # A third run with nothing new: exactly one query per type and per sales day, paged.
    sandbox.clear_requests()
    third = sync(config, state=second.final_state)
    assert bookmarks_of(third.final_state) == bookmarks_of(second.final_state)
    expected_requests = 0
    for event_type in TYPES:
        start = midnight(instant(latest).date() - DAY)
        in_window = events_since(sandbox, event_type, start)
        expected_requests += pages_needed(len(in_window), page_size)
        assert event_ids(emitted(third, "events", event_type)) == event_ids(in_window)
    on_day = Counter(str(instant(s["sale_date"]).date()) for s in sandbox.records("sales"))
    for day in days(instant(latest).date() - DAY, today() + DAY):
        expected_requests += pages_needed(on_day[day], page_size)
    assert len(sandbox.requests) == expected_requests
    assert {r["stream"] for r in sandbox.requests} == {"events", "sales"}


def test_late_record_inside_the_lookback_is_picked_up(sandbox) -> None:
    config = sandbox_config(sandbox, page_size=50, event_types=["MAIL_OPEN"], lookback_days=1)
    first = sync(config)
    bookmarks = bookmarks_of(first.final_state)
    event_mark = instant(bookmarks[("events", "MAIL_OPEN")])
    sale_mark = instant(bookmarks[("sales", None)])
    plus3 = dt.timezone(dt.timedelta(hours=3))
    late_event = event(
        "MAIL_OPEN", (event_mark - dt.timedelta(hours=6)).astimezone(plus3).isoformat(), "late"
    )
    late_sale = sale("late", (sale_mark - dt.timedelta(hours=20)).astimezone(plus3).isoformat())
    old_event = event("MAIL_OPEN", f"{event_mark.date() - 3 * DAY}T12:00:00Z", "old")
    old_sale = sale("old", f"{sale_mark.date() - 3 * DAY}T12:00:00Z")
    for stream, record in (
        ("events", late_event), ("sales", late_sale), ("events", old_event), ("sales", old_sale)
    ):
        sandbox.add(stream, record)
    # The newest rows disappear (erased upstream): the re-read finds only older ones, and
    # the bookmarks must not move back.
    newest_event = max(raw_events(sandbox, "MAIL_OPEN"), key=lambda e: instant(e["date"]))
    assert sandbox.delete("events", **newest_event) == 1
    newest_sale = max(sandbox.records("sales"), key=lambda s: instant(s["sale_date"]))
    assert sandbox.delete("sales", sale_external_id=newest_sale["sale_external_id"]) >= 1

    second = sync(config, state=first.final_state)
    assert event_id(late_event) in event_ids(emitted(second, "events"))
    assert sale_keys([late_sale]) <= sale_keys(emitted(second, "sales"))
    # Older than the lookback window: not re-read (a --full-refresh or more lookback would).
    assert event_id(old_event) not in event_ids(emitted(second, "events"))
    assert not sale_keys([old_sale]) & sale_keys(emitted(second, "sales"))
    # The late records are older than the bookmarks, and the newest rows are gone: the
    # bookmarks neither move forward nor back.
    assert bookmarks_of(second.final_state) == bookmarks_of(first.final_state)

    sandbox.clear_requests()
    third = sync({**config, "lookback_days": 3}, state=second.final_state)
    assert event_id(old_event) in event_ids(emitted(third, "events"))
    assert sale_keys([old_sale]) <= sale_keys(emitted(third, "sales"))
    assert first_pages(sandbox, "events")[0]["date.gte"] == str(event_mark.date() - 3 * DAY)
    assert first_pages(sandbox, "sales")[0]["sale_date"] == str(sale_mark.date() - 3 * DAY)


# --- an interrupted run ----------------------------------------------------------------------


def test_killed_run_resumes_from_the_last_state_it_printed(tmp_path) -> None:
    dataset = generate_dataset(
        customers=10, products=2, sales=1, events_per_type=300, seed=4, anchor=today()
    )
    with Sandbox(dataset=dataset, token=TEST_TOKEN) as sandbox:
        all_ids = event_ids(raw_events(sandbox, "MAIL_OPEN"))
        assert len(all_ids) == 300
        # Slow enough to be killed mid-partition. (Pacing with min_request_interval 0.05 would
        # do, but a fractional number in a config file is refused: see the test below.)
        sandbox.inject("slow", times=None, stream="events", seconds=0.05)
        config = sandbox_config(sandbox, page_size=20, event_types=["MAIL_OPEN"])
        catalog = catalog_for(config, ["events"])
        (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
        (tmp_path / "catalog.json").write_text(json.dumps(catalog), encoding="utf-8")
        argv = [
            sys.executable, "-m", "tap_custobar",
            "--config", str(tmp_path / "config.json"),
            "--catalog", str(tmp_path / "catalog.json"),
        ]
        lines: list[str] = []
        stderr = (tmp_path / "stderr.txt").open("w", encoding="utf-8")
        with stderr, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as process:
            assert process.stdout is not None
            states = 0
            for line in process.stdout:
                lines.append(line)
                if json.loads(line)["type"] == "STATE":
                    states += 1
                    if states == 5:
                        process.send_signal(signal.SIGKILL)
                        break
            lines.append(process.stdout.read())  # whatever it printed before it died
            process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        text = "".join(lines)
        check_no_token(text + (tmp_path / "stderr.txt").read_text(encoding="utf-8"))
        complete = text[: text.rfind("\n") + 1]  # a line cut by the kill is not a message
        killed = parse_messages(complete)
        check_messages(killed, None, final=False)
        assert_checkpointed_every_page(killed, 20)
        killed_ids = event_ids(m["record"] for m in killed if m["type"] == "RECORD")
        assert 0 < len(killed_ids) < len(all_ids), "the kill should land mid-partition"
        last_state = [m["value"] for m in killed if m["type"] == "STATE"][-1]
        bookmark = instant(bookmarks_of(last_state)[("events", "MAIL_OPEN")])

        sandbox.clear_requests()
        restart = run_tap_cli(config, catalog=catalog, state=last_state)
        assert restart.returncode == 0, restart.stderr
        check_run(restart, ["events"], last_state)
        restart_requests = len(sandbox.requests)
        assert first_pages(sandbox, "events")[0]["date.gte"] == (bookmark.date() - DAY).isoformat()
        assert killed_ids | event_ids(emitted(restart, "events")) == all_ids

        sandbox.clear_requests()
        sandbox.clear_faults()
        scratch = sync(config, streams=["events"])
        assert event_ids(emitted(scratch, "events")) == all_ids
        assert restart_requests < len(sandbox.requests)


def test_fractional_pacing_from_a_config_file_is_accepted(sandbox) -> None:
    # The SDK reads a config file's numbers with parse_float=Decimal.
    config = sandbox_config(
        sandbox, page_size=100, event_types=["BROWSE"], min_request_interval=0.05
    )
    run = run_tap_cli(config, catalog=catalog_for(config, ["events"]))
    assert "is not a number" not in run.stderr, run.stderr[-500:]
    assert run.returncode == 0, run.stderr[-500:]
    assert event_ids(emitted(run, "events")) == event_ids(raw_events(sandbox, "BROWSE"))


# --- start_date / end_date windows -----------------------------------------------------------


def window_expectation(sandbox: Sandbox, start: dt.datetime, end: dt.datetime) -> tuple[dict, set]:
    """Event ids per type and sale keys with start <= instant <= end (both inclusive)."""
    events = {
        event_type: event_ids(
            e for e in raw_events(sandbox, event_type) if start <= instant(e["date"]) <= end
        )
        for event_type in TYPES
    }
    sales = sale_keys(
        s for s in sandbox.records("sales") if start <= instant(s["sale_date"]) <= end
    )
    return events, sales


def window_result(run: t.Any) -> tuple[dict, set]:
    events = {event_type: event_ids(emitted(run, "events", event_type)) for event_type in TYPES}
    return events, sale_keys(emitted(run, "sales"))


def test_adjacent_date_windows_equal_one_run_over_the_whole_span(sandbox, dataset) -> None:
    anchor = dataset.anchor
    first, split, last = anchor - 44 * DAY, anchor - 30 * DAY, anchor - 16 * DAY
    windows = {
        "a": (first, split - DAY),  # 14 + 1 days, both bounds inclusive
        "b": (split, last),
        "whole": (first, last),
    }
    results = {}
    for name, (start, end) in windows.items():
        sandbox.clear_requests()
        config = sandbox_config(
            sandbox, page_size=25, event_types=TYPES,
            start_date=start.isoformat(), end_date=end.isoformat(),
        )
        run = sync(config)
        results[name] = run
        bounds = {"date.gte": start.isoformat(), "date.lte": end.isoformat()}
        assert first_pages(sandbox, "events") == [
            {"limit": "25", "type": event_type, "order": "date", **bounds} for event_type in TYPES
        ]
        assert [q["sale_date"] for q in first_pages(sandbox, "sales")] == days(start, end)
        got = window_result(run)
        last_instant = midnight(end + DAY) - dt.timedelta(microseconds=1)
        assert got == window_expectation(sandbox, midnight(start), last_instant)
        assert all(got[0].values()) and got[1], "each window should hold records"
        assert len(emitted(run, "events")) == sum(len(ids) for ids in got[0].values())
        assert len(emitted(run, "sales")) == len(got[1])
    a, b, whole = (window_result(results[k]) for k in ("a", "b", "whole"))
    for event_type in TYPES:
        assert not a[0][event_type] & b[0][event_type], "windows overlap"
        assert a[0][event_type] | b[0][event_type] == whole[0][event_type]
    assert not a[1] & b[1]
    assert a[1] | b[1] == whole[1]
    # The same records, value for value.
    whole_events = {r["event_id"]: r for r in emitted(results["whole"], "events")}
    for r in emitted(results["a"], "events") + emitted(results["b"], "events"):
        assert whole_events[r["event_id"]] == r


def test_window_given_as_datetimes_with_offsets(sandbox, dataset) -> None:
    anchor = dataset.anchor
    # The end bound: the instant many events share, written with another offset.
    shared_text, shared_count = Counter(
        instant(e["date"]) for e in raw_events(sandbox, "MAIL_OPEN")
    ).most_common(1)[0]
    assert shared_count > 1
    end = shared_text
    # The start bound: an event's exact instant, written at -05:00.
    start_event = min(
        events_since(sandbox, "BROWSE", midnight(anchor - 20 * DAY)),
        key=lambda e: instant(e["date"]),
    )
    start = instant(start_event["date"])
    start_text = start.astimezone(dt.timezone(dt.timedelta(hours=-5))).isoformat()
    end_text = end.astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    config = sandbox_config(
        sandbox, page_size=25, event_types=TYPES, start_date=start_text, end_date=end_text
    )
    run = sync(config)
    got = window_result(run)
    assert got == window_expectation(sandbox, start, end)
    assert event_id(start_event) in got[0]["BROWSE"], "the start bound is inclusive"
    shared = {event_id(e) for e in raw_events(sandbox, "MAIL_OPEN") if instant(e["date"]) == end}
    assert shared <= got[0]["MAIL_OPEN"], "the end bound is inclusive"
    assert got[1], "the window should hold sales"
    assert [q["date.gte"] for q in first_pages(sandbox, "events")] == [start.date().isoformat()] * 2
    assert [q["date.lte"] for q in first_pages(sandbox, "events")] == [end.date().isoformat()] * 2
    assert [q["sale_date"] for q in first_pages(sandbox, "sales")] == days(start.date(), end.date())


# --- datetimes: naive, offsets, out of order, bookmarks as instants ---------------------------


def test_naive_and_offset_start_dates_give_the_same_records(sandbox, dataset) -> None:
    zone = ZoneInfo("Europe/Helsinki")
    local_day = dataset.anchor - 5 * DAY
    start = dt.datetime.combine(local_day, dt.time(), tzinfo=zone).astimezone(UTC)
    offset = dt.datetime.combine(local_day, dt.time(), tzinfo=zone).isoformat()  # +02:00 or +03:00
    spellings = [
        f"{local_day}T00:00:00",  # naive: read in api_timezone
        start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        offset,
        local_day.isoformat(),  # a bare date: midnight in api_timezone
    ]
    runs = []
    for text in spellings:
        sandbox.clear_requests()
        config = sandbox_config(
            sandbox, page_size=40, event_types=TYPES, start_date=text,
            api_timezone="Europe/Helsinki",
        )
        runs.append(sync(config))
        gte = [q["date.gte"] for q in first_pages(sandbox, "events")]
        assert gte == [start.date().isoformat()] * 2
        sale_days = [q["sale_date"] for q in first_pages(sandbox, "sales")]
        assert sale_days == days(start.date(), today() + DAY)
    reference = runs[0]
    for run in runs[1:]:
        assert run.records["events"] == reference.records["events"]
        assert run.records["sales"] == reference.records["sales"]
    # Exactly the records at or after the start instant, naive API values read in Helsinki time.
    raw = {event_id(e): e for event_type in TYPES for e in raw_events(sandbox, event_type)}
    wanted = {k for k, e in raw.items() if instant(e["date"], zone) >= start}
    assert event_ids(reference.records["events"]) == wanted
    assert sale_keys(reference.records["sales"]) == sale_keys(sales_since(sandbox, start, zone))
    naive = 0
    for record in reference.records["events"]:
        source = raw[record["event_id"]]["date"]
        assert record["date"].endswith("Z")
        assert instant(record["date"]) == instant(source, zone)
        naive += dt.datetime.fromisoformat(source).tzinfo is None
    assert naive, "the data set should hold naive datetimes"


def test_naive_and_offset_api_datetimes_become_the_same_instant_in_utc(sandbox) -> None:
    run = sync(sandbox_config(sandbox, page_size=100, event_types=TYPES))
    raw = {event_id(e): e for event_type in TYPES for e in raw_events(sandbox, event_type)}
    raw_sales = {(s["sale_external_id"], s["external_id"]): s for s in sandbox.records("sales")}
    styles = Counter()
    pairs = [(r["date"], raw[r["event_id"]]["date"]) for r in run.records["events"]] + [
        (r["sale_date"], raw_sales[(r["sale_external_id"], r["external_id"])]["sale_date"])
        for r in run.records["sales"]
    ]
    for value, source in pairs:
        assert value.endswith("Z") and "+" not in value
        assert instant(value) == instant(source)
        parsed = dt.datetime.fromisoformat(source)
        styles["naive" if parsed.tzinfo is None else "Z" if source.endswith("Z") else "offset"] += 1
    assert styles["naive"] and styles["offset"] and styles["Z"], styles


def test_out_of_order_record_neither_aborts_nor_is_lost(sandbox) -> None:
    sandbox.switches = {"out_of_order"}
    config = sandbox_config(sandbox, page_size=15, event_types=TYPES)
    run = sync(config)
    for event_type in TYPES:
        got = emitted(run, "events", event_type)
        assert event_ids(got) == event_ids(raw_events(sandbox, event_type))
        values = [instant(r["date"]) for r in got]
        assert any(a > b for a, b in itertools.pairwise(values)), "the switch should reorder a pair"
        top = max(instant(e["date"]) for e in raw_events(sandbox, event_type))
        assert instant(bookmarks_of(run.final_state)[("events", event_type)]) == top
    got_sales = emitted(run, "sales")
    assert sale_keys(got_sales) == sale_keys(sandbox.records("sales"))
    values = [instant(r["sale_date"]) for r in got_sales]
    assert any(a > b for a, b in itertools.pairwise(values))
    top = max(instant(s["sale_date"]) for s in sandbox.records("sales"))
    assert instant(bookmarks_of(run.final_state)[("sales", None)]) == top
    # And incrementally, from that state, with the switch still on.
    again = sync(config, state=run.final_state)
    assert bookmarks_of(again.final_state) == bookmarks_of(run.final_state)


def test_bookmarks_compare_as_instants(sandbox, dataset) -> None:
    anchor = dataset.anchor
    plus2 = dt.timezone(dt.timedelta(hours=2))
    plus14 = dt.timezone(dt.timedelta(hours=14))
    # +02:00 one hour after local midnight: the UTC day is the day before.
    open_mark = dt.datetime.combine(anchor - 9 * DAY, dt.time(1), tzinfo=plus2)
    sale_mark = dt.datetime.combine(anchor - 2 * DAY, dt.time(1), tzinfo=plus2)
    # BROWSE: an hour before its newest record, written at +14:00: a greater string, an
    # earlier instant; the newest record must still move the bookmark.
    browse_top_text = max((e["date"] for e in raw_events(sandbox, "BROWSE")), key=instant)
    browse_top = instant(browse_top_text)
    browse_mark = (browse_top - dt.timedelta(hours=1)).astimezone(plus14)
    assert browse_mark.isoformat() > browse_top_text
    state = {"bookmarks": {
        "events": {"partitions": [
            {"context": {"type": "MAIL_OPEN"}, "replication_key": "date",
             "replication_key_value": open_mark.isoformat()},
            {"context": {"type": "BROWSE"}, "replication_key": "date",
             "replication_key_value": browse_mark.isoformat()},
        ]},
        "sales": {"replication_key": "sale_date", "replication_key_value": sale_mark.isoformat()},
    }}
    config = sandbox_config(sandbox, page_size=50, event_types=TYPES, lookback_days=1)
    run = sync(config, state=state)
    starts = {
        "MAIL_OPEN": anchor - 11 * DAY,  # UTC day of the bookmark (anchor - 10) minus one
        "BROWSE": browse_mark.astimezone(UTC).date() - DAY,
    }
    assert first_pages(sandbox, "events") == [
        {"limit": "50", "type": event_type, "order": "date", "date.gte": str(starts[event_type])}
        for event_type in TYPES
    ]
    for event_type in TYPES:
        wanted = events_since(sandbox, event_type, midnight(starts[event_type]))
        assert event_ids(emitted(run, "events", event_type)) == event_ids(wanted)
    sale_days = [q["sale_date"] for q in first_pages(sandbox, "sales")]
    assert sale_days == days(anchor - 4 * DAY, today() + DAY)
    wanted_sales = sales_since(sandbox, midnight(anchor - 4 * DAY))
    assert sale_keys(emitted(run, "sales")) == sale_keys(wanted_sales)
    final = bookmarks_of(run.final_state)
    assert instant(final[("events", "BROWSE")]) == browse_top
    open_top = max(instant(e["date"]) for e in raw_events(sandbox, "MAIL_OPEN"))
    assert instant(final[("events", "MAIL_OPEN")]) == open_top


# --- the STATE messages themselves -----------------------------------------------------------


def test_final_state_from_the_command_line_is_sdk_shaped_and_reusable(sandbox) -> None:
    config = sandbox_config(sandbox, page_size=60, event_types=TYPES)
    catalog = catalog_for(config, ["events", "sales"])
    first = run_tap_cli(config, catalog=catalog)
    assert first.returncode == 0, first.stderr
    check_run(first, ["events", "sales"], None)
    partitions = first.final_state["bookmarks"]["events"]["partitions"]
    assert {p["context"]["type"] for p in partitions} == set(TYPES)
    again = run_tap_cli(config, catalog=catalog, state=first.final_state)
    assert again.returncode == 0, again.stderr
    check_run(again, ["events", "sales"], first.final_state)
    assert bookmarks_of(again.final_state) == bookmarks_of(first.final_state)
    assert 0 < len(again.records["events"]) < len(first.records["events"])


def assert_checkpointed_every_page(messages: list[dict], page_size: int) -> None:
    """Each record is covered by a STATE (bookmark >= its instant) within one page's worth of
    further records of its partition: a crash loses at most the last page's progress."""
    pending: dict[tuple[str, str | None], list[list]] = {}
    marks: dict[tuple[str, str | None], dt.datetime] = {}
    for message in messages:
        if message["type"] == "STATE":
            for key, value in bookmarks_of(message["value"]).items():
                marks[key] = instant(value)
                pending[key] = [p for p in pending.get(key, []) if p[0] > marks[key]]
        elif message["type"] == "RECORD" and message["stream"] in REPLICATION_KEYS:
            key = partition_key(message["stream"], message["record"])
            waiting = pending.setdefault(key, [])
            for entry in waiting:
                entry[1] += 1
                assert entry[1] <= page_size, (
                    f"{key}: a record dated {entry[0].isoformat()} is still not covered by a "
                    f"STATE {page_size} records later"
                )
            value = instant(message["record"][REPLICATION_KEYS[message["stream"]]])
            if key not in marks or value > marks[key]:  # else the last STATE covers it
                waiting.append([value, 0])


def test_state_after_every_page_is_never_ahead_and_never_more_than_a_page_behind(sandbox) -> None:
    # Small pages (and, for sales, day by day): many STATE messages, each checked by
    # check_messages (never ahead) and here (never more than a page behind).
    page_size = 7
    config = sandbox_config(
        sandbox, page_size=page_size, event_types=TYPES, start_date=(today() - 20 * DAY).isoformat()
    )
    run = sync(config)
    assert len(run.states) > 20
    assert_checkpointed_every_page(run.messages, page_size)
    again = sync(config, state=run.final_state)
    assert_checkpointed_every_page(again.messages, page_size)
    # Records out of order: the bookmark may hold back, but is never ahead and ends at the max.
    sandbox.switches = {"out_of_order"}
    unordered = sync(config)
    assert event_ids(unordered.records["events"]) == event_ids(run.records["events"])
    assert sale_keys(unordered.records["sales"]) == sale_keys(run.records["sales"])
    assert bookmarks_of(unordered.final_state) == bookmarks_of(run.final_state)
