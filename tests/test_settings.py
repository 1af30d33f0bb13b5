"""Configuration errors: each bad setting gives a clear error that names it, before any request."""

from __future__ import annotations

import pytest
from singer_sdk.exceptions import ConfigValidationError

from tap_custobar.tap import TapCustobar
from tests.leaks import TEST_TOKEN

BASE = {"api_token": TEST_TOKEN, "base_url": "http://127.0.0.1:9"}


def errors_for(**changes: object) -> str:
    config = {**BASE, **changes}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ConfigValidationError) as info:
        TapCustobar(config=config, validate_config=True)
    text = " ".join(info.value.errors)
    assert TEST_TOKEN not in text and TEST_TOKEN not in str(info.value)
    return text


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"api_token": None}, "api_token"),
        ({"api_token": "  "}, "api_token: the Custobar API token is missing"),
        ({"base_url": None}, "company / base_url"),
        ({"base_url": None, "company": "bad name!"}, "company: 'bad name!' is not a valid"),
        ({"base_url": "http://api.example.com"}, "base_url: plain http:// is refused"),
        ({"base_url": "ftp://127.0.0.1"}, "base_url: 'ftp://127.0.0.1' is not an http(s) URL"),
        ({"start_date": "2026-13-01"}, "start_date: '2026-13-01' is not an ISO 8601"),
        ({"end_date": "yesterday"}, "end_date: 'yesterday' is not an ISO 8601"),
        (
            {"start_date": "2026-02-10", "end_date": "2026-02-01"},
            "end_date: '2026-02-01' is before start_date '2026-02-10'",
        ),
        ({"api_timezone": "Mars/Olympus"}, "api_timezone: 'Mars/Olympus' is not a known IANA"),
        ({"page_size": 0}, "page_size: 0 is out of range"),
        ({"page_size": 10001}, "page_size: 10001 is out of range"),
        ({"lookback_days": -1}, "lookback_days: -1 is out of range"),
        ({"max_retries": -2}, "max_retries: -2 is out of range"),
        ({"min_request_interval": -0.5}, "min_request_interval: -0.5 is out of range"),
        ({"request_timeout": 0}, "request_timeout: 0 is out of range"),
        ({"filters": {"orders": {"x": 1}}}, "filters: unknown stream 'orders'"),
        ({"filters": {"customers": {"colour": "red"}}}, "filters.customers: unknown filter 'colour'"),
        ({"filters": {"events": {"date.gte": "2026-01-01"}}}, "use the `start_date` setting"),
        ({"filters": {"events": {"type": "BROWSE"}}}, "use the `event_types` setting"),
        ({"filters": {"sales": {"sale_date": "2026-01-01"}}}, "sale_date' is set by the tap"),
        ({"auth_scheme": "Basic"}, "auth_scheme"),
        ({"event_types": ["BROWSE", "BROWSE"]}, "event_types: lists a type more than once"),
    ],
)
def test_config_error_names_the_setting(changes: dict, expected: str) -> None:
    assert expected in errors_for(**changes)


def test_numeric_token_is_not_echoed_in_schema_errors() -> None:
    with pytest.raises(ConfigValidationError) as info:
        TapCustobar(config={**BASE, "api_token": 987654321}, validate_config=True)
    assert "987654321" not in " ".join(info.value.errors)


def test_valid_filters_and_custom_field_filters_are_accepted() -> None:
    tap = TapCustobar(
        config={
            **BASE,
            "filters": {
                "products": {"visible": True, "stock.quantity.gte": 10},
                "customers": {"acme__vip": True, "can_email": "true"},
                "sales": {"sale_shop_id": "1"},
            },
            "start_date": "2026-02-01",
            "end_date": "2026-02-01T23:00:00+02:00",
            "api_timezone": "Europe/Helsinki",
        },
        validate_config=True,
    )
    assert tap.settings.filters["products"] == {"visible": True, "stock.quantity.gte": 10}


def test_base_url_wins_over_company() -> None:
    tap = TapCustobar(config={**BASE, "company": "acme"}, validate_config=True)
    assert tap.settings.origin == "http://127.0.0.1:9"
    tap = TapCustobar(
        config={"api_token": TEST_TOKEN, "company": "acme"}, validate_config=True
    )
    assert tap.settings.origin == "https://acme.custobar.com"


def test_loopback_http_is_allowed_in_every_spelling() -> None:
    for url in ("http://localhost:8765", "http://[::1]:8765", "http://127.0.0.2:8765"):
        tap = TapCustobar(config={**BASE, "base_url": url}, validate_config=True)
        assert tap.settings.base_url == url


def test_cli_config_error_exits_non_zero_with_one_last_sentence(sandbox) -> None:
    from tests.harness import run_tap_cli, sandbox_config

    run = run_tap_cli(sandbox_config(sandbox, start_date="2026-02-30", page_size=20000))
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("tap-custobar: error: invalid configuration:")
    assert "start_date: '2026-02-30'" in last and "page_size: 20000" in last
    assert "Traceback" not in run.stderr
    assert not sandbox.requests, "configuration is validated before any request"


def test_undocumented_event_type_is_accepted_with_a_warning(caplog) -> None:
    import logging

    tap = TapCustobar(config={**BASE, "event_types": ["BROWSE", "SMS_CLICK"]}, validate_config=True)
    with caplog.at_level(logging.WARNING):
        assert tap.settings.event_types == ("BROWSE", "SMS_CLICK")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "event_types: SMS_CLICK is not a documented Custobar event type; reading it anyway"
    ]
