"""Custom fields: discovery keeps every field a tenant has; a stale catalog says what it drops."""

from __future__ import annotations

import json
import logging

import pytest
from singer_sdk.exceptions import FatalAPIError

from tap_custobar.tap import TapCustobar
from tests.harness import run_tap, sandbox_config
from tests.leaks import check_no_token

EXPECTED_TYPES = {
    "acme__points": {"type": ["number", "null"]},
    "acme__score": {"type": ["number", "null"]},
    "acme__vip": {"type": ["boolean", "null"]},
    "acme__segment": {"type": ["string", "null"]},
    "acme__last_seen": {"type": ["string", "null"], "format": "date-time"},
    "acme__labels": {"type": ["array", "null"], "items": {"type": ["string", "null"]}},
    "acme__mixed": {"type": ["string", "null"]},
    # Beyond the one-page sample: found by the narrow look-ups.
    "acme__rare_flag": {"type": ["boolean", "null"]},
}


def discover(config: dict, capsys: pytest.CaptureFixture[str]) -> dict:
    TapCustobar(config=config, validate_config=False, setup_mapper=False).run_discovery()
    out = capsys.readouterr().out
    check_no_token(out)
    return {s["tap_stream_id"]: s for s in json.loads(out)["streams"]}


def test_discovery_types_every_custom_field(sandbox, capsys) -> None:
    # A sample page smaller than the data set: the rare field lies beyond it.
    catalog = discover(sandbox_config(sandbox, page_size=100), capsys)
    for stream in ("customers", "products", "sales", "events"):
        properties = catalog[stream]["schema"]["properties"]
        for name, expected in EXPECTED_TYPES.items():
            assert properties[name] == expected, (stream, name)
        profile = properties["acme__profile"]
        assert profile["type"] == ["object", "null"]
        assert profile["properties"]["level"]["type"] == ["number", "null"]
        assert profile["properties"]["badges"]["type"] == ["array", "null"]
    # Built-in fields keep their declared types.
    assert catalog["products"]["schema"]["properties"]["price"] == {"type": ["integer", "null"]}


def test_discovery_requests_and_sync_requests(sandbox, capsys) -> None:
    config = sandbox_config(sandbox, event_types=["BROWSE", "MAIL_OPEN"])
    catalog = discover(config, capsys)
    csv_requests = [r for r in sandbox.requests if r["params"].get("format") == ["csv"]]
    # One CSV header request per stream, per event type for events.
    assert len(csv_requests) == 3 + 2
    assert all(r["params"]["limit"] == ["1"] for r in csv_requests)
    sandbox.clear_requests()
    run_tap(config, catalog={"streams": list(catalog.values())})
    assert not [r for r in sandbox.requests if "format" in r["params"]], "a sync never samples"


def test_rare_field_values_arrive_when_discovered(sandbox, capsys) -> None:
    config = sandbox_config(sandbox)
    catalog = discover(config, capsys)
    run = run_tap(config, catalog={"streams": list(catalog.values())})
    rare = [c for c in run.records["customers"] if "acme__rare_flag" in c]
    source = [c for c in sandbox.records("customers") if "acme__rare_flag" in c]
    assert rare and len(rare) == len(source)
    profiles = [c["acme__profile"] for c in run.records["customers"] if "acme__profile" in c]
    assert profiles and all(isinstance(p["level"], int) for p in profiles)


def test_discovery_off_gives_the_builtin_catalog_and_unreachable_gives_none(
    sandbox, capsys, caplog
) -> None:
    with caplog.at_level(logging.INFO):
        catalog = discover(sandbox_config(sandbox, discover_custom_fields=False), capsys)
    assert "acme__points" not in catalog["customers"]["schema"]["properties"]
    assert any("discover_custom_fields is off" in r.getMessage() for r in caplog.records)
    assert not sandbox.requests
    unreachable = sandbox_config(sandbox, base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(FatalAPIError, match="no catalog was written") as failure:
        discover(unreachable, capsys)
    assert "http://127.0.0.1:9" in str(failure.value) and "connection refused" in str(failure.value)
    assert not capsys.readouterr().out


def test_a_refused_csv_request_still_discovers_from_the_json_sample(sandbox, capsys, caplog) -> None:
    sandbox.inject("400", stream="customers", times=1, reason="format=csv is not supported")
    with caplog.at_level(logging.WARNING):
        catalog = discover(sandbox_config(sandbox), capsys)
    assert catalog["customers"]["schema"]["properties"]["acme__points"] == {
        "type": ["number", "null"]
    }
    assert any("no CSV field list" in r.getMessage() for r in caplog.records)


def test_one_stream_refused_fails_discovery_naming_it(sandbox, capsys) -> None:
    sandbox.inject("403", stream="products", times=2)
    with pytest.raises(FatalAPIError, match="no catalog was written") as failure:
        discover(sandbox_config(sandbox), capsys)
    assert "products: 403" in str(failure.value) and "GET /api/data/products/" in str(failure.value)
    assert not capsys.readouterr().out
