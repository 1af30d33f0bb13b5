"""Every tap setting given as an environment variable reaches the tap through Meltano."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from tests.e2e.expected import instant
from tests.e2e.pipeline import effective_params, jsonl_env, read_jsonl, tap_env


def start_date(dataset) -> str:
    """Two days before the data set's 60-day window: no record is filtered out by it."""
    return f"{dataset.anchor - dt.timedelta(days=61)}T00:00:00Z"


def settings_env(sandbox, dataset) -> dict[str, str]:
    return tap_env(
        sandbox,
        page_size="25",
        max_retries="1",
        lookback_days="3",
        event_types='["MAIL_OPEN", "BROWSE"]',
        filters='{"products": {"visible": true}, "sales": {"sale_shop_id": "KAMPPI"}}',
        auth_scheme="Bearer",
        api_timezone="Europe/Helsinki",
        user_agent="e2e-agent/1.0",
        start_date=start_date(dataset),
        discover_custom_fields="false",
        emit_activate_version_messages="false",
    )


def test_config_print_shows_env_settings_with_their_types(meltano, sandbox, dataset):
    result = meltano.ok(
        "--environment=sandbox",
        "config",
        "print",
        "tap-custobar",
        env=settings_env(sandbox, dataset),
    )
    config = json.loads(result.stdout)
    assert config["api_token"] != "" and config["api_token"].strip("*") == ""  # masked
    assert config["base_url"] == sandbox.url  # the environment variable wins over meltano.yml
    assert config["page_size"] == 25 and type(config["page_size"]) is int
    assert config["min_request_interval"] == 0  # the sandbox environment's, a number
    assert config["max_retries"] == 1
    assert config["lookback_days"] == 3
    assert config["event_types"] == ["MAIL_OPEN", "BROWSE"]
    assert config["filters"] == {"products": {"visible": True}, "sales": {"sale_shop_id": "KAMPPI"}}
    assert config["auth_scheme"] == "Bearer"
    assert config["api_timezone"] == "Europe/Helsinki"
    assert config["user_agent"] == "e2e-agent/1.0"
    assert config["start_date"] == start_date(dataset)
    assert config["discover_custom_fields"] is False
    assert config["emit_activate_version_messages"] is False


def test_decimal_settings_reach_the_tap_unchanged_from_the_environment(meltano, sandbox):
    """min_request_interval and request_timeout are `kind: string` in meltano.yml: Meltano 4.4.1
    crashes on a `kind: decimal` value from the environment ("Object of type Decimal is not JSON
    serializable") and `kind: integer` refuses a fraction. The config file Meltano writes for
    the tap holds the text as given."""
    env = {
        **tap_env(sandbox),
        # --dump=config prints the whole config, token included: not the sandbox's token.
        "TAP_CUSTOBAR_API_TOKEN": "dump-only-token",
        "TAP_CUSTOBAR_MIN_REQUEST_INTERVAL": "0.5",
        "TAP_CUSTOBAR_REQUEST_TIMEOUT": "12.5",
    }
    dumped = meltano.ok("invoke", "--no-install", "--dump=config", "tap-custobar", env=env)
    config = json.loads(dumped.stdout)
    assert config["min_request_interval"] == "0.5"
    assert config["request_timeout"] == "12.5"
    # A number written in meltano.yml stays a number (the sandbox environment's 0).
    named = meltano.ok(
        "--environment=sandbox", "invoke", "--no-install", "--dump=config", "tap-custobar",
        env={**tap_env(sandbox), "TAP_CUSTOBAR_API_TOKEN": "dump-only-token"},
    )  # fmt: skip
    assert json.loads(named.stdout)["min_request_interval"] == 0


def test_run_honours_env_settings(meltano, sandbox, dataset, tmp_path, state_suffix):
    out = tmp_path / "output"
    run = meltano.run_pipeline(
        "target-jsonl",
        env={**settings_env(sandbox, dataset), **jsonl_env(out)},
        state_suffix=state_suffix,
    )
    # emit_activate_version_messages=false: target-jsonl, which logs every ACTIVATE_VERSION it
    # gets as an unknown message, got none.
    assert "ACTIVATE_VERSION" not in run.output
    requests = [r for r in sandbox.requests if r["stream"]]
    assert requests
    assert all(r["status"] == 200 and r["auth_ok"] for r in requests)
    params = [(r["stream"], effective_params(r)) for r in requests]
    # page_size -> limit on every request; auth_scheme and user_agent -> headers.
    assert {p.get("limit") for _, p in params} == {"25"}
    assert {r["auth_scheme"] for r in requests} == {"Bearer"}
    assert {r["user_agent"] for r in requests} == {"e2e-agent/1.0"}
    # event_types -> one partition per type, nothing else asked for.
    assert {p.get("type") for s, p in params if s == "events"} == {"MAIL_OPEN", "BROWSE"}
    # filters -> server-side filters on their own streams only.
    for stream, query in params:
        if stream == "products":
            assert query.get("visible") in {"true", "True", "1"}, query
        if stream == "sales":
            assert query.get("sale_shop_id") == "KAMPPI", query
        if stream in ("customers", "events"):
            assert "visible" not in query and "sale_shop_id" not in query, query
    # start_date -> sales are read day by day from its day, events from its day on.
    first_day = start_date(dataset)[:10]
    assert any(p.get("sale_date") == first_day for s, p in params if s == "sales")
    assert {p.get("date.gte") for s, p in params if s == "events"} == {first_day}

    # discover_custom_fields=false: the catalog has the built-in fields only.
    customers = read_jsonl(out, "customers")
    assert customers and not any(k.startswith(f"{dataset.company}__") for c in customers for k in c)

    events = read_jsonl(out, "events")
    assert {e["type"] for e in events} == {"MAIL_OPEN", "BROWSE"}
    products = read_jsonl(out, "products")
    assert products and all(p["visible"] is True for p in products)
    sales = read_jsonl(out, "sales")
    assert sales and all(s["sale_shop_id"] == "KAMPPI" for s in sales)

    # api_timezone: a datetime without offset is read in Europe/Helsinki, not UTC.
    naive = [
        c
        for c in dataset.records["customers"]
        if "date_joined" in c and _is_naive(c["date_joined"])
    ]
    assert naive, "the data set has no customer with a naive date_joined"
    loaded = {c["external_id"]: c for c in customers}
    sample = naive[0]
    local = dt.datetime.fromisoformat(sample["date_joined"]).replace(
        tzinfo=_zone("Europe/Helsinki")
    )
    assert instant(loaded[sample["external_id"]]["date_joined"]) == local


def _is_naive(text: str) -> bool:
    return dt.datetime.fromisoformat(text).tzinfo is None


def _zone(name: str) -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_a_fractional_pacing_from_the_environment_paces_the_run(
    meltano, sandbox, tmp_path, state_suffix
):
    """The text Meltano hands over ("0.5", "12.5") is read as the number it is: the run is paced
    at half a second, not refused as a setting of the wrong type."""
    interval = 0.5
    env = {
        **tap_env(sandbox, event_types='["MAIL_OPEN"]', discover_custom_fields="false"),
        **jsonl_env(tmp_path / "output"),
        "TAP_CUSTOBAR_MIN_REQUEST_INTERVAL": str(interval),
        "TAP_CUSTOBAR_REQUEST_TIMEOUT": "12.5",
    }
    meltano.run_pipeline("target-jsonl", env=env, state_suffix=state_suffix)
    starts = sorted(r["t_start"] for r in sandbox.requests if r["stream"])
    assert len(starts) >= 5
    # Any two requests k apart are at least k intervals apart, less the sandbox's stamping
    # tolerance (a late stamp shortens one gap; delays never add up).
    for i, j in itertools.combinations(range(len(starts)), 2):
        assert starts[j] - starts[i] >= (j - i) * interval - 0.3, (i, j)
    assert read_jsonl(tmp_path / "output", "customers")
