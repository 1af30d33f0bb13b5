"""The page-at-a-time record path emits exactly what the SDK's standard path emits.

Run over the whole sandbox data set: built-in and discovered (custom-field) catalogs, field
selection, stream maps (where the fast path must step aside) and an incremental state.
"""

from __future__ import annotations

import json

import pytest

from tap_custobar.client import CustobarStream
from tap_custobar.writer import CustobarWriter
from tests.harness import run_tap, run_tap_cli, sandbox_config, select_properties


def comparable(messages: list[dict]) -> list[dict]:
    """Messages without what differs between any two runs: times and table versions."""
    return [without_run_times(message) for message in messages]


def without_run_times(value: object) -> object:
    if isinstance(value, dict):
        return {
            key: "<run-specific>"
            if key in ("time_extracted", "version", "replication_key_signpost")
            else without_run_times(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [without_run_times(item) for item in value]
    return value


def both_paths(
    monkeypatch: pytest.MonkeyPatch, config: dict, *, fast_expected: bool = True, **kwargs: object
) -> tuple[list, list]:
    pages_written = []
    original = CustobarWriter.write_lines
    monkeypatch.setattr(
        CustobarWriter, "write_lines", lambda self, lines: (pages_written.append(1), original(self, lines))
    )
    fast = run_tap(config, **kwargs)
    assert bool(pages_written) == fast_expected, "the fast path ran where it should not, or did not run"
    monkeypatch.setattr(CustobarStream, "fast_path_enabled", False)
    pages_written.clear()
    standard = run_tap(config, **kwargs)
    assert not pages_written
    monkeypatch.setattr(CustobarStream, "fast_path_enabled", True)
    return comparable(fast.messages), comparable(standard.messages)


def assert_same(fast: list[dict], standard: list[dict]) -> None:
    assert len(fast) == len(standard)
    records = 0
    for index, (a, b) in enumerate(zip(fast, standard, strict=False)):
        assert a == b, f"message {index} differs"
        records += a["type"] == "RECORD"
    assert records > 0


def test_builtin_catalog(monkeypatch, sandbox) -> None:
    assert_same(*both_paths(monkeypatch, sandbox_config(sandbox, page_size=40)))


def test_discovered_custom_fields(monkeypatch, sandbox) -> None:
    config = sandbox_config(sandbox, page_size=40)
    catalog = run_tap_cli(config, args=["--discover"]).messages[0]
    assert_same(*both_paths(monkeypatch, config, catalog=catalog))


def test_field_selection(monkeypatch, sandbox) -> None:
    config = sandbox_config(sandbox, page_size=40)
    catalog = run_tap_cli(config, args=["--discover"]).messages[0]
    select_properties(catalog, "products", ["title", "stock", "visible", "acme__profile"])
    assert_same(*both_paths(monkeypatch, config, catalog=catalog))
    select_properties(catalog, "events", ["event_id", "date", "type", "acme__points"])
    assert_same(*both_paths(monkeypatch, config, catalog=catalog))


def test_nested_deselection_falls_back(monkeypatch, sandbox) -> None:
    config = sandbox_config(sandbox, page_size=40)
    catalog = run_tap_cli(config, args=["--discover"]).messages[0]
    select_properties(catalog, "customers", ["external_id", "acme__profile"])
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            if item["breadcrumb"][-1:] == ["badges"] and entry["tap_stream_id"] == "customers":
                item["metadata"]["selected"] = False
    fast, standard = both_paths(monkeypatch, config, catalog=catalog, fast_expected=False)
    assert_same(fast, standard)


def test_stream_maps_and_flattening_fall_back(monkeypatch, sandbox) -> None:
    config = sandbox_config(
        sandbox,
        page_size=50,
        stream_maps={"customers": {"email": "__NULL__", "email_hash": "md5(record.get('email') or '')"}},
        flattening_enabled=True,
        flattening_max_depth=2,
    )
    fast, standard = both_paths(monkeypatch, config, fast_expected=False)
    assert_same(fast, standard)
    assert all("email" not in m["record"] for m in fast if m.get("stream") == "customers" and m["type"] == "RECORD")


def test_incremental_state(monkeypatch, sandbox) -> None:
    config = sandbox_config(sandbox, page_size=30, lookback_days=2)
    first = run_tap(config)
    assert_same(*both_paths(monkeypatch, config, state=first.final_state))


def test_partition_context_is_added_only_where_missing_as_the_sdk_does(monkeypatch) -> None:
    from tap_custobar.tap import TapCustobar

    config = {"api_token": "unused-token", "base_url": "http://127.0.0.1:9", "event_types": ["BROWSE"]}
    events = TapCustobar(config=config, validate_config=True).streams["events"]
    written: list[bytes] = []
    monkeypatch.setattr(CustobarWriter, "write_lines", lambda self, lines: written.append(bytes(lines)))
    context = {"type": "BROWSE"}
    page = [
        {"type": "BROWSE", "date": "2026-02-01T12:00:00Z", "customer_id": "1"},
        {"date": "2026-02-01T12:00:01Z", "customer_id": "2"},  # no type: gets the partition's
        {"type": None, "date": "2026-02-01T12:00:02Z", "customer_id": "3"},  # present: kept
    ]
    standard = [events.post_process(dict(row), context) for row in page]
    for row in standard:
        if "type" not in row:  # what the SDK's record loop adds
            row["type"] = "BROWSE"
    assert events.emit_page(page, context, context) == 3
    records = [json.loads(line)["record"] for line in b"".join(written).splitlines()]
    assert [r.get("type", "<absent>") for r in records] == ["BROWSE", "BROWSE", None]
    assert records == standard


def test_new_fields_join_with_a_schema_message_on_both_paths(monkeypatch, sandbox) -> None:
    config = sandbox_config(sandbox, page_size=40, event_types=["BROWSE", "MAIL_OPEN"])
    catalog = run_tap_cli(config, args=["--discover"]).messages[0]
    # Fields the catalog lacks, first on a later page and in mid-page (customers, BROWSE events),
    # one of them an object and one a number in some records and text in others.
    for position in (45, 46, 130):
        customer = dict(sandbox.records("customers")[position])
        sandbox.delete("customers", external_id=customer["external_id"])
        sandbox.add("customers", {**customer, "acme__later": position, "acme__nested": {"a": 1}})
    browse = [e for e in sandbox.records("events") if e["type"] == "BROWSE"]
    sandbox.add("events", {**browse[50], "acme__later": "text", "acme__event_only": True})
    sandbox.add("events", {**browse[60], "acme__later": 2})
    fast, standard = both_paths(monkeypatch, config, catalog=catalog)
    assert_same(fast, standard)
    schemas = [m for m in fast if m["type"] == "SCHEMA"]
    grown = {m["stream"] for m in schemas if "acme__later" in m["schema"]["properties"]}
    assert grown == {"customers", "events"}
    later = [m["record"] for m in fast if m["type"] == "RECORD" and "acme__later" in m["record"]]
    assert len(later) == 5
