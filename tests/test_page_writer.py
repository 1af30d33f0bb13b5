"""The page-at-a-time record path emits exactly what the SDK's standard path emits.

Run over the whole sandbox data set (every stream): built-in and discovered (custom-field)
catalogs, booleans given as 0/1, nested objects and arrays, field selection, nested
deselection and stream maps (where the page path must step aside), an incremental state, and
fields that appear after discovery (a new SCHEMA message before the first record holding one).
"""

from __future__ import annotations

import copy
import json

import pytest

from tap_custobar.page_writer import CustobarWriter, PageWriterStream
from tap_custobar.pagination import Page, Query
from tests.harness import run_tap, run_tap_cli, sandbox_config, select_properties
from tests.leaks import TEST_TOKEN
from tests.sandbox import Sandbox

STREAMS = {"customers", "events", "products", "sales"}


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
    assert bool(pages_written) == fast_expected, "the page path ran where it should not, or did not run"
    monkeypatch.setattr(PageWriterStream, "page_path_enabled", False)
    pages_written.clear()
    standard = run_tap(config, **kwargs)
    assert not pages_written
    monkeypatch.setattr(PageWriterStream, "page_path_enabled", True)
    return comparable(fast.messages), comparable(standard.messages)


def assert_same(fast: list[dict], standard: list[dict], streams: set[str] | None = None) -> None:
    assert len(fast) == len(standard)
    records = 0
    for index, (a, b) in enumerate(zip(fast, standard, strict=False)):
        # As JSON text: in Python 1 == True, on the wire `1` is not `true`.
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), f"message {index} differs"
        records += a["type"] == "RECORD"
    assert records > 0
    if streams is not None:
        assert {m["stream"] for m in fast if m["type"] == "RECORD"} == streams


def test_builtin_catalog_on_every_stream(monkeypatch, sandbox) -> None:
    assert_same(*both_paths(monkeypatch, sandbox_config(sandbox, page_size=40)), STREAMS)


def with_booleans_as_numbers_and_nested_values(dataset):
    """The data set with 0/1 in boolean fields, and nested objects and arrays holding
    booleans (as 0/1, true/false and null): the values the SDK's conforming changes."""
    changed = copy.deepcopy(dataset)
    for index, record in enumerate(changed.records["customers"]):
        if index % 3 == 0:
            record["can_email"] = index % 2  # 0 or 1
        if index % 5 == 0:
            record["can_sms"] = 1 - index % 2
        record["acme__flags"] = {"vip": index % 2, "beta": index % 3 == 0, "note": None, "rank": index}
        record["acme__history"] = [{"active": 1, "n": index}, {"active": 0}, {"active": None}]
        record["acme__bits"] = [1, 0, True, None]
    for index, record in enumerate(changed.records["products"]):
        if index % 2 == 0:
            record["visible"] = int(bool(record.get("visible")))
            record["in_stock"] = 0
    return changed


NESTED_PROPERTIES = {
    "acme__flags": {
        "type": ["object", "null"],
        "properties": {
            "vip": {"type": ["boolean", "null"]},
            "beta": {"type": ["boolean", "null"]},
            "note": {"type": ["string", "null"]},
            "rank": {"type": ["integer", "null"]},
        },
    },
    "acme__history": {
        "type": ["array", "null"],
        "items": {"type": "object", "properties": {"active": {"type": ["boolean", "null"]}, "n": {"type": ["integer", "null"]}}},
    },
    "acme__bits": {"type": ["array", "null"], "items": {"type": ["boolean", "null"]}},
}


def declare_nested(catalog: dict) -> dict:
    """Customers' nested custom fields typed as booleans (discovery, seeing 0/1, infers integers)."""
    for entry in catalog["streams"]:
        if entry["tap_stream_id"] == "customers":
            entry["schema"]["properties"].update(copy.deepcopy(NESTED_PROPERTIES))
            known = {tuple(item["breadcrumb"]) for item in entry["metadata"]}
            assert {("properties", name) for name in NESTED_PROPERTIES} <= known, "discovered"
    return catalog


def test_booleans_as_numbers_and_nested_values(monkeypatch, dataset) -> None:
    with Sandbox(dataset=with_booleans_as_numbers_and_nested_values(dataset), token=TEST_TOKEN) as sandbox:
        config = sandbox_config(sandbox, page_size=40)
        catalog = declare_nested(run_tap_cli(config, args=["--discover"]).messages[0])
        fast, standard = both_paths(monkeypatch, config, catalog=catalog)
    assert_same(fast, standard, STREAMS)
    customers = [m["record"] for m in fast if m["type"] == "RECORD" and m["stream"] == "customers"]
    products = [m["record"] for m in fast if m["type"] == "RECORD" and m["stream"] == "products"]
    # The conforming did happen: no 0/1 is left where the schema says boolean.
    assert {type(c.get("can_email")) for c in customers} == {bool, type(None)}
    assert {type(p.get("in_stock")) for p in products} == {bool}
    assert {type(c["acme__flags"]["vip"]) for c in customers} == {bool}
    assert json.dumps(customers[0]["acme__history"]) == '[{"active": true, "n": 0}, {"active": false}, {"active": null}]'
    assert json.dumps(customers[0]["acme__bits"]) == "[true, false, true, null]"


def test_deselected_nested_properties_fall_back(monkeypatch, dataset) -> None:
    with Sandbox(dataset=with_booleans_as_numbers_and_nested_values(dataset), token=TEST_TOKEN) as sandbox:
        config = sandbox_config(sandbox, page_size=40)
        catalog = declare_nested(run_tap_cli(config, args=["--discover"]).messages[0])
        select_properties(catalog, "customers", ["external_id", "can_email", "acme__flags", "acme__history"])
        for entry in catalog["streams"]:
            if entry["tap_stream_id"] == "customers":
                entry["metadata"].append(
                    {"breadcrumb": ["properties", "acme__flags", "properties", "vip"], "metadata": {"selected": False}}
                )
        fast, standard = both_paths(monkeypatch, config, catalog=catalog, fast_expected=False)
    assert_same(fast, standard, {"customers"})
    assert all("vip" not in m["record"]["acme__flags"] for m in fast if m["type"] == "RECORD")


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
    processed = events.process_page(Page(page, None), Query({}), 1)
    standard = copy.deepcopy(processed)
    for row in standard:
        if "type" not in row:  # what the SDK's record loop adds
            row["type"] = "BROWSE"
    assert events.emit_page(processed, context, context) == 3
    records = [json.loads(line)["record"] for line in b"".join(written).splitlines()]
    assert [r.get("type", "<absent>") for r in records] == ["BROWSE", "BROWSE", None]
    assert records == standard


def test_an_unverified_sdk_version_takes_the_standard_path_with_one_info_line(monkeypatch, sandbox, caplog) -> None:
    import logging

    from tap_custobar import page_writer

    config = sandbox_config(sandbox, page_size=40)
    verified = comparable(run_tap(config).messages)
    monkeypatch.setattr(page_writer, "VERIFIED_SDK_VERSIONS", frozenset({"0.0.1"}))
    pages_written = []
    monkeypatch.setattr(CustobarWriter, "write_lines", lambda self, lines: pages_written.append(1))
    with caplog.at_level(logging.INFO):
        unverified = comparable(run_tap(config).messages)
    assert not pages_written
    notes = [r.getMessage() for r in caplog.records if "page-at-a-time record path" in r.getMessage()]
    assert notes == [
        f"singer-sdk {page_writer.SDK_VERSION} is not a version the page-at-a-time record path was "
        "verified against (0.0.1): records take the SDK's standard path (slower, same output)"
    ]
    assert_same(verified, unverified, STREAMS)


def test_the_gc_pause_ends_with_each_page_and_with_a_failed_stream(monkeypatch, sandbox) -> None:
    import gc

    config = sandbox_config(sandbox, page_size=40, event_types=["BROWSE"])
    during: list[bool] = []
    original = CustobarWriter.write_lines
    monkeypatch.setattr(
        CustobarWriter, "write_lines", lambda self, lines: (during.append(gc.isenabled()), original(self, lines))
    )
    assert gc.isenabled()
    run_tap(config)
    assert during and not any(during), "paused while a page is written"
    assert gc.isenabled(), "and on again once it is"

    def fail(self, lines):
        raise RuntimeError("the target went away")

    monkeypatch.setattr(CustobarWriter, "write_lines", fail)
    with pytest.raises(RuntimeError):
        run_tap(config)
    assert gc.isenabled()


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
