"""The sandbox itself, over real HTTP: it must do what the API doc and DESIGN.md §4 say."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import email.utils
import io
import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.sandbox import (
    CUSTOM_FIELDS,
    EVENT_TYPES,
    SALE_STATES,
    STREAMS,
    TEST_TOKEN,
    Sandbox,
    generate_dataset,
)
from tests.sandbox.data import SHOPS, TEMPLATE_POOL, WINDOW_DAYS

ANCHOR = dt.date(2026, 3, 15)
UTC = dt.timezone.utc
NEXT_URL_HEADER = "X-Custobar-Next-Url"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def ds():
    return generate_dataset(anchor=ANCHOR)


@pytest.fixture
def sb(ds):
    with Sandbox(dataset=ds) as server:
        yield server


@pytest.fixture
def http():
    with requests.Session() as session:
        session.headers["Authorization"] = f"Token {TEST_TOKEN}"
        yield session


def get(http: requests.Session, sb: Sandbox, stream: str, **params: Any) -> requests.Response:
    return http.get(f"{sb.url}/api/data/{stream}/", params=params, timeout=10)


def listed(http: requests.Session, sb: Sandbox, stream: str, **params: Any) -> list[dict]:
    """Every record of a query, following next_url."""
    return read_all(http, f"{sb.url}/api/data/{stream}/", stream, params)


def read_all(
    http: requests.Session, url: str, stream: str, params: dict | None = None
) -> list[dict]:
    records = []
    while url:
        response = http.get(url, params=params, timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.get("next_url") == response.headers.get(NEXT_URL_HEADER)
        records.extend(body[stream])
        url, params = body.get("next_url"), None
    return records


def instant(text: str) -> float:
    """Independent of the sandbox's own parsing: no offset means UTC."""
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def day_start(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def reason(response: requests.Response) -> str:
    return response.json()["error"]["reason"]


# --- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Token", "Bearer"])
def test_both_auth_schemes_are_accepted(sb, scheme: str) -> None:
    response = requests.get(
        f"{sb.url}/api/data/customers/",
        headers={"Authorization": f"{scheme} {TEST_TOKEN}", "User-Agent": "probe/1"},
        timeout=10,
    )
    assert response.status_code == 200
    (entry,) = sb.requests
    assert entry["auth_ok"] and entry["auth_scheme"] == scheme
    assert entry["user_agent"] == "probe/1" and entry["stream"] == "customers"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Token wrong"}, {"Authorization": f"Basic {TEST_TOKEN}"}],
    ids=["none", "wrong-token", "other-scheme"],
)
def test_missing_or_wrong_credentials_are_401(sb, headers: dict) -> None:
    response = requests.get(f"{sb.url}/api/data/customers/", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"error": {"reason": "Invalid token."}}
    assert not sb.requests[0]["auth_ok"]


def test_scopes_limit_the_streams_a_token_reads(ds, http) -> None:
    with Sandbox(dataset=ds, scopes={"customers"}) as sb:
        assert get(http, sb, "customers").status_code == 200
        response = get(http, sb, "sales")
    assert response.status_code == 403
    assert reason(response) == "Token has no permission for GET /api/data/sales/"


def test_other_paths_are_404_and_both_path_spellings_work(sb, http) -> None:
    assert http.get(f"{sb.url}/api/data/customers", timeout=10).status_code == 200
    for path in ("/api/data/orders/", "/api/customers/", "/"):
        response = http.get(sb.url + path, timeout=10)
        assert response.status_code == 404
        assert response.json() == {"error": {"reason": "Not found"}}


def test_the_log_never_holds_the_token(sb) -> None:
    requests.get(
        f"{sb.url}/api/data/customers/?token={TEST_TOKEN}",
        headers={"Authorization": f"Token {TEST_TOKEN}", "User-Agent": TEST_TOKEN},
        timeout=10,
    )
    assert TEST_TOKEN not in json.dumps(sb.requests)


# --- pagination --------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", STREAMS)
def test_paging_returns_every_record_once_in_order(sb, http, ds, stream: str) -> None:
    assert listed(http, sb, stream, limit=37) == ds.records[stream]
    last = sb.requests[-1]
    assert len(sb.requests) == -(-len(ds.records[stream]) // 37)
    assert last["status"] == 200 and "cursor" in last["params"]


def test_next_url_is_absolute_on_the_server_and_absent_on_the_last_page(sb, http, ds) -> None:
    first = get(http, sb, "products", limit=50)
    next_url = first.json()["next_url"]
    assert next_url == first.headers[NEXT_URL_HEADER]
    assert next_url.startswith(f"{sb.url}/api/data/products/?cursor=")
    last = http.get(next_url, timeout=10)
    assert len(last.json()["products"]) == len(ds.records["products"]) - 50
    assert "next_url" not in last.json() and NEXT_URL_HEADER not in last.headers


def test_a_cursor_carries_the_query_and_ignores_other_parameters(sb, http, ds) -> None:
    first = get(http, sb, "customers", limit=5, country="FI", fields="country")
    second = http.get(first.json()["next_url"] + "&country=GB&limit=1", timeout=10).json()
    assert len(second["customers"]) == 5
    assert {c["country"] for c in second["customers"]} == {"FI"}
    assert all(set(c) == {"external_id", "country"} for c in second["customers"])


def test_invalid_cursor_is_400(sb, http) -> None:
    response = get(http, sb, "customers", cursor="not-a-cursor")
    assert response.status_code == 400 and reason(response) == "Invalid cursor"


def test_header_only_switch_keeps_next_url_out_of_the_body(sb, http, ds) -> None:
    sb.switches = {"next_url_header_only"}
    url, records = f"{sb.url}/api/data/sales/?limit=100", []
    while url:
        response = http.get(url, timeout=10)
        assert "next_url" not in response.json()
        records.extend(response.json()["sales"])
        url = response.headers.get(NEXT_URL_HEADER)
    assert records == ds.records["sales"]


def test_relative_switch_gives_a_path_in_body_and_header(sb, http, ds) -> None:
    sb.switches.add("relative_next_url")
    response = get(http, sb, "customers", limit=100)
    next_url = response.json()["next_url"]
    assert next_url.startswith("/api/data/customers/?cursor=")
    assert response.headers[NEXT_URL_HEADER] == next_url
    assert (
        http.get(sb.url + next_url, timeout=10).json()["customers"]
        == ds.records["customers"][100:200]
    )


def test_empty_page_switch_starts_every_stream_with_an_empty_page(sb, http, ds) -> None:
    sb.switches = {"empty_page_with_next"}
    for stream in STREAMS:
        first = get(http, sb, stream, limit=1000).json()
        assert first[stream] == [] and first["next_url"]
        assert http.get(first["next_url"], timeout=10).json()[stream] == ds.records[stream][:1000]
    assert listed(http, sb, "events", type="BROWSE", limit=50) == [
        e for e in ds.records["events"] if e["type"] == "BROWSE"
    ]


def test_unknown_switch_is_refused(sb) -> None:
    with pytest.raises(ValueError, match="Unknown switch"):
        sb.switches.add("order_ignord")


# --- limit -------------------------------------------------------------------------------------


def test_limit_defaults_to_100_and_allows_the_maxima(ds) -> None:
    big = generate_dataset(customers=10050, products=0, sales=0, events_per_type=0, anchor=ANCHOR)
    with Sandbox(dataset=big) as sb, requests.Session() as http:
        http.headers["Authorization"] = f"Token {TEST_TOKEN}"
        assert len(get(http, sb, "customers").json()["customers"]) == 100
        assert len(get(http, sb, "customers", limit=10000).json()["customers"]) == 10000
        csv_page = get(http, sb, "customers", limit=100000, format="csv", fields="email")
        assert csv_page.status_code == 200 and len(csv_page.text.splitlines()) == 10051


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"limit": 10001}, "maximum of 10000"),
        ({"limit": 100001, "format": "csv"}, "maximum of 100000"),
        ({"limit": 0}, "positive"),
        ({"limit": -5}, "positive"),
        ({"limit": "ten"}, "not an integer"),
        ({"limit": "1.5"}, "not an integer"),
        ({"format": "xml"}, "Unknown format"),
    ],
)
def test_bad_limit_or_format_is_400_with_a_reason(sb, http, params: dict, needle: str) -> None:
    response = get(http, sb, "customers", **params)
    assert response.status_code == 400
    assert needle in reason(response)


# --- filters -----------------------------------------------------------------------------------


def pick(records: list[dict], key: str, skip: int = 0) -> Any:
    """A value of ``key`` that some record has."""
    return [r[key] for r in records if key in r][skip]


@pytest.mark.parametrize(
    "name",
    ["external_id", "email", "first_name", "last_name", "city", "country", "zip_code", "province"],
)
def test_customer_exact_filters(sb, http, ds, name: str) -> None:
    customers = ds.records["customers"]
    value = pick(customers, name, skip=3)
    expected = [c for c in customers if c.get(name) == value]
    assert listed(http, sb, "customers", **{name: value}, limit=1000) == expected


def test_customer_phone_filter_accepts_the_docs_unencoded_plus(sb, http, ds) -> None:
    customer = next(c for c in ds.records["customers"] if "phone_number" in c)
    phone = customer["phone_number"]
    for url in (f"/api/data/customers/?phone_number={phone}", "/api/data/customers/"):
        params = None if "?" in url else {"phone_number": phone}  # literal '+', then '%2B'
        response = http.get(sb.url + url, params=params, timeout=10)
        assert response.json()["customers"] == [customer]


def test_customer_campaign_key_matches_the_campaign_keys_list(sb, http, ds) -> None:
    expected = [c for c in ds.records["customers"] if "CA-3" in c.get("campaign_keys", [])]
    assert 0 < len(expected) < len(ds.records["customers"])
    assert listed(http, sb, "customers", campaign_key="CA-3", limit=1000) == expected


@pytest.mark.parametrize("name", ["can_email", "can_sms", "can_post", "can_push"])
def test_customer_permission_filters_are_booleans(sb, http, ds, name: str) -> None:
    for text, wanted in (("true", True), ("FALSE", False)):
        expected = [c for c in ds.records["customers"] if c.get(name) is wanted]
        assert listed(http, sb, "customers", **{name: text}, limit=1000) == expected
    response = get(http, sb, "customers", **{name: "yes"})
    assert response.status_code == 400 and name in reason(response)


def test_combined_filters_all_apply(sb, http, ds) -> None:
    expected = [
        c
        for c in ds.records["customers"]
        if c.get("can_email") is True and c.get("country") == "FI"
    ]
    assert expected
    assert listed(http, sb, "customers", can_email="true", country="FI", limit=1000) == expected


@pytest.mark.parametrize(
    "name",
    [
        "external_id", "sku", "ean", "title", "brand", "category", "category_id", "type",
        "vendor", "shop_id", "language",
    ],
)  # fmt: skip
def test_product_exact_filters(sb, http, ds, name: str) -> None:
    products = ds.records["products"]
    value = pick(products, name, skip=1)
    expected = [p for p in products if p.get(name) == value]
    assert listed(http, sb, "products", **{name: value}, limit=1000) == expected


def test_product_category_with_an_apostrophe(sb, http, ds) -> None:
    url = f"{sb.url}/api/data/products/?category=Children%27s+Books&limit=1000"
    expected = [p for p in ds.records["products"] if p.get("category") == "Children's Books"]
    assert expected and read_all(http, url, "products") == expected


@pytest.mark.parametrize("name", ["visible", "in_stock"])
def test_product_boolean_filters(sb, http, ds, name: str) -> None:
    expected = [p for p in ds.records["products"] if p.get(name) is True]
    assert listed(http, sb, "products", **{name: "true"}, limit=1000) == expected


@pytest.mark.parametrize(
    "params",
    [
        {"stock.shop_id": "BAKER-STREET"},
        {"stock.quantity.gte": "10"},
        {"stock.quantity.gte": "10", "stock.quantity.lte": "50"},
        {"stock.shop_id": "KAMPPI", "stock.quantity.gte": "5"},
        {"stock.shop_id": "TAPIOLA", "stock.quantity.lte": "10"},
    ],
)
def test_product_stock_filters_hold_for_one_stock_entry(sb, http, ds, params: dict) -> None:
    def entry_matches(entry: dict) -> bool:
        return (
            entry["shop_id"] == params.get("stock.shop_id", entry["shop_id"])
            and entry["quantity"] >= float(params.get("stock.quantity.gte", "-inf"))
            and entry["quantity"] <= float(params.get("stock.quantity.lte", "inf"))
        )

    expected = [p for p in ds.records["products"] if any(map(entry_matches, p.get("stock", [])))]
    assert 0 < len(expected) < len(ds.records["products"])
    assert listed(http, sb, "products", **params, limit=1000) == expected


def test_stock_conditions_must_meet_in_the_same_entry(sb, http) -> None:
    sb.add(
        "products",
        {
            "external_id": "SPLIT",
            "stock": [
                {"shop_id": "BAKER-STREET", "quantity": 1},
                {"shop_id": "KAMPPI", "quantity": 99},
            ],
        },
    )
    found = listed(http, sb, "products", **{"stock.shop_id": "BAKER-STREET"}, limit=1000)
    assert "SPLIT" in {p["external_id"] for p in found}
    both = {"stock.shop_id": "BAKER-STREET", "stock.quantity.gte": "50"}
    assert "SPLIT" not in {
        p["external_id"] for p in listed(http, sb, "products", **both, limit=1000)
    }
    response = get(http, sb, "products", **{"stock.quantity.gte": "many"})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "name",
    [
        "sale_external_id", "sale_customer_id", "sale_phone_number", "sale_email",
        "sale_shop_id", "sale_payment_method", "sale_state", "external_id", "product_id",
        "product_sku",
    ],
)  # fmt: skip
def test_sale_filters(sb, http, ds, name: str) -> None:
    sales = ds.records["sales"]
    value = pick(sales, name, skip=2)
    expected = [s for s in sales if s.get(name) == value]
    assert listed(http, sb, "sales", **{name: value}, limit=1000) == expected


def test_sale_date_is_one_utc_day_compared_as_instants(sb, http, ds) -> None:
    day = ANCHOR - dt.timedelta(days=3)
    for text in (
        f"{day}T01:30:00+03:00",  # the day before, in UTC
        f"{day}T23:59:59-05:00",  # the day after, in UTC
        f"{day}T00:00:00",  # naive: UTC, on the day
        f"{day - dt.timedelta(days=1)}T23:30:00-01:00",  # on the day, in UTC
    ):
        sb.add("sales", {"sale_external_id": text, "external_id": "x", "sale_date": text})
    start = day_start(day)
    expected = [s for s in sb.records("sales") if start <= instant(s["sale_date"]) < start + 86400]
    got = listed(http, sb, "sales", sale_date=day.isoformat(), limit=1000)
    assert got == expected
    assert {s["sale_external_id"] for s in got} >= {
        f"{day}T00:00:00",
        f"{day - dt.timedelta(days=1)}T23:30:00-01:00",
    }
    assert f"{day}T01:30:00+03:00" not in {s["sale_external_id"] for s in got}
    assert get(http, sb, "sales", sale_date="15.3.2026").status_code == 400


def test_events_of_one_type_and_of_all_types(sb, http, ds) -> None:
    events = ds.records["events"]
    for event_type in EVENT_TYPES:
        expected = [e for e in events if e["type"] == event_type]
        assert listed(http, sb, "events", type=event_type, limit=1000) == expected
    assert listed(http, sb, "events", limit=10000) == events


def test_event_date_bounds_take_whole_utc_days(sb, http, ds) -> None:
    low, high = ANCHOR - dt.timedelta(days=20), ANCHOR - dt.timedelta(days=10)
    for text in (f"{high}T23:59:59.999Z", f"{high}T22:00:00-03:00", f"{low}T01:00:00+02:00"):
        sb.add("events", {"type": "BROWSE", "date": text, "customer_id": "edge"})
    start, end = day_start(low), day_start(high) + 86400
    expected = [
        e
        for e in sb.records("events")
        if e["type"] == "BROWSE" and start <= instant(e["date"]) < end
    ]
    got = listed(http, sb, "events", type="BROWSE", **{"date.gte": str(low), "date.lte": str(high)})
    assert got == expected
    edge = {e["date"] for e in got if e["customer_id"] == "edge"}
    assert edge == {f"{high}T23:59:59.999Z"}  # the others are outside in UTC


def test_event_date_bounds_accept_full_datetimes(sb, http, ds) -> None:
    low, high = f"{ANCHOR - dt.timedelta(days=9)}T12:00:00Z", f"{ANCHOR}T06:00:00+02:00"
    expected = [
        e for e in ds.records["events"] if instant(low) <= instant(e["date"]) <= instant(high)
    ]
    got = listed(http, sb, "events", limit=1000, **{"date.gte": low, "date.lte": high})
    assert expected and got == expected
    response = get(http, sb, "events", **{"date.gte": "yesterday"})
    assert response.status_code == 400 and "date.gte" in reason(response)


@pytest.mark.parametrize("stream", STREAMS)
def test_custom_fields_are_exact_match_filters(sb, http, ds, stream: str) -> None:
    records = ds.records[stream]
    for name, value, wanted in (
        ("acme__segment", "gold", lambda r: r.get("acme__segment") == "gold"),
        ("acme__labels", "beta", lambda r: "beta" in r.get("acme__labels", [])),
        ("acme__vip", "true", lambda r: r.get("acme__vip") is True),
    ):
        expected = [r for r in records if wanted(r)]
        assert expected
        assert listed(http, sb, stream, **{name: value}, limit=1000) == expected
    points = pick(records, "acme__points")
    assert listed(http, sb, stream, acme__points=str(points), limit=1000) == [
        r for r in records if r.get("acme__points") == points
    ]


@pytest.mark.parametrize(
    ("stream", "name"),
    [
        ("customers", "nickname"),
        ("customers", "other__segment"),
        ("customers", "type"),
        ("events", "email"),
        ("products", "stock.quantity"),
        ("sales", "date.gte"),
    ],
)
def test_unknown_filter_is_400(sb, http, stream: str, name: str) -> None:
    response = get(http, sb, stream, **{name: "x"})
    assert response.status_code == 400
    assert response.json() == {"error": {"reason": f"Unknown filter: {name}"}}


# --- fields, order, csv --------------------------------------------------------------------------


def test_fields_keep_the_named_keys_and_external_id(sb, http, ds) -> None:
    got = get(http, sb, "customers", fields="email, can_email", limit=250).json()["customers"]
    for record, source in zip(got, ds.records["customers"], strict=True):
        assert record == {
            k: source[k] for k in ("external_id", "email", "can_email") if k in source
        }
    assert any("email" not in r for r in got)  # a record without the field omits it
    sales = get(http, sb, "sales", fields="sale_date").json()["sales"]
    assert all(set(r) == {"external_id", "sale_date"} for r in sales)
    events = get(http, sb, "events", fields="type,date").json()["events"]
    assert all(set(r) == {"type", "date"} for r in events)


def test_order_by_several_keys_with_descending(sb, http, ds) -> None:
    customers = ds.records["customers"]
    got = listed(http, sb, "customers", order="country,-email", limit=1000)
    # Records without a key sort last, whatever the direction.
    by_email = sorted(
        (c for c in customers if "email" in c), key=lambda c: c["email"], reverse=True
    )
    by_email += [c for c in customers if "email" not in c]
    expected = sorted(by_email, key=lambda c: ("country" not in c, c.get("country", "")))
    assert got == expected
    assert got[-1].get("country") is None and got[0]["country"] == "CH"


def test_order_is_stable_and_dates_compare_as_instants(sb, http, ds) -> None:
    events = ds.records["events"]
    got = listed(http, sb, "events", type="MAIL_OPEN", order="date", limit=1000)
    expected = sorted(
        (e for e in events if e["type"] == "MAIL_OPEN"), key=lambda e: instant(e["date"])
    )
    assert got == expected  # Python's sort is stable: ties keep the data set's order
    newest_first = listed(http, sb, "sales", order="-sale_date", limit=1000)
    instants = [instant(s["sale_date"]) for s in newest_first]
    assert instants == sorted(instants, reverse=True)
    assert {s["external_id"] for s in newest_first} == {
        s["external_id"] for s in ds.records["sales"]
    }


def test_order_ignored_switch(sb, http, ds) -> None:
    sb.switches = {"order_ignored"}
    assert listed(http, sb, "events", order="date", limit=1000) == ds.records["events"]


def test_out_of_order_switch_moves_exactly_one_record(sb, http, ds) -> None:
    sb.switches = {"out_of_order"}
    for stream, key, params in (("events", "date", {"type": "BROWSE"}), ("sales", "sale_date", {})):
        got = listed(http, sb, stream, order=key, limit=20, **params)
        instants = [instant(r[key]) for r in got]
        assert sum(a > b for a, b in itertools.pairwise(instants)) == 1
        expected = [r for r in ds.records[stream] if r.get("type", "BROWSE") == "BROWSE"]
        assert sorted(map(json.dumps, got)) == sorted(map(json.dumps, expected))


def test_csv_header_lists_every_property_including_rare_ones(sb, http, ds) -> None:
    response = get(http, sb, "customers", format="csv", limit=5)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.text)))
    every_key = sorted({key for record in ds.records["customers"] for key in record})
    assert rows[0] == every_key and "acme__rare_flag" in rows[0]
    assert len(rows) == 6
    assert "next_url" not in response.text and response.headers[NEXT_URL_HEADER]


def test_csv_cells(sb, http, ds) -> None:
    sb.add(
        "customers",
        {"external_id": "CSV1", "can_email": False, "campaign_keys": ["CA-1", "CA-2"],
         "acme__profile": {"level": 1}, "first_name": "Zoë, \"the\" one"},
    )  # fmt: skip
    response = get(
        http, sb, "customers", format="csv", external_id="CSV1",
        fields="can_email,campaign_keys,acme__profile,first_name,city",
    )  # fmt: skip
    header, row = csv.reader(io.StringIO(response.text))
    assert header == [
        "external_id",
        "can_email",
        "campaign_keys",
        "acme__profile",
        "first_name",
        "city",
    ]
    assert row == ["CSV1", "false", '["CA-1","CA-2"]', '{"level":1}', 'Zoë, "the" one', ""]


def test_csv_pages_link_by_header_only(sb, http, ds) -> None:
    url, lines = f"{sb.url}/api/data/products/?format=csv&limit=25&fields=title", []
    while url:
        response = http.get(url, timeout=10)
        lines.extend(list(csv.reader(io.StringIO(response.text)))[1:])
        url = response.headers.get(NEXT_URL_HEADER)
    assert [row[0] for row in lines] == [p["external_id"] for p in ds.records["products"]]


def test_json_is_utf8_with_non_ascii_as_is(sb, http) -> None:
    response = get(http, sb, "customers", limit=250)
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert "ä".encode() in response.content and b"\\u00e4" not in response.content


# --- add / delete ------------------------------------------------------------------------------


def test_add_and_delete_show_in_the_next_responses(sb, http, ds) -> None:
    before = listed(http, sb, "customers", limit=1000, country="FI")
    sb.add("customers", {"external_id": "C999999", "country": "FI", "first_name": "Uusi"})
    after = listed(http, sb, "customers", limit=1000, country="FI")
    assert after == [*before, {"external_id": "C999999", "country": "FI", "first_name": "Uusi"}]
    assert sb.delete("customers", external_id="C999999") == 1
    assert sb.delete("customers", external_id=before[0]["external_id"]) == 1
    assert listed(http, sb, "customers", limit=1000, country="FI") == before[1:]
    assert sb.delete("customers", external_id="nobody") == 0
    assert len(sb.records("customers")) == len(ds.records["customers"]) - 1
    assert len(ds.records["customers"]) == 250  # the data set itself is untouched


def test_add_to_an_unknown_stream_is_refused(sb) -> None:
    with pytest.raises(ValueError, match="Unknown stream"):
        sb.add("orders", {"external_id": "x"})


# --- faults ------------------------------------------------------------------------------------


def test_fault_counts_after_times_and_stream(sb, http) -> None:
    sb.inject("503", stream="events", after=1, times=2)
    statuses = [get(http, sb, "events").status_code for _ in range(4)]
    assert statuses == [200, 503, 503, 200]
    assert get(http, sb, "customers").status_code == 200
    assert [e["fault"] for e in sb.requests] == [None, "503", "503", None, None]


def test_fault_without_stream_hits_any_data_endpoint_until_cleared(sb, http) -> None:
    sb.inject("500", times=None)
    assert {get(http, sb, s).status_code for s in STREAMS} == {500}
    sb.clear_faults()
    assert get(http, sb, "customers").status_code == 200


def test_unknown_fault_is_refused(sb) -> None:
    with pytest.raises(ValueError, match="Unknown fault"):
        sb.inject("418")


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, None), (3, "3"), ("soon", "soon")],
)
def test_429_with_retry_after(sb, http, retry_after: Any, expected: str | None) -> None:
    sb.inject("429", retry_after=retry_after)
    response = get(http, sb, "customers")
    assert response.status_code == 429 and "reason" in response.json()["error"]
    assert response.headers.get("Retry-After") == expected


def test_429_with_an_http_date(sb, http) -> None:
    sb.inject("429", retry_after="http-date:30")
    before = time.time()
    response = get(http, sb, "customers")
    after = time.time()
    when = email.utils.parsedate_to_datetime(response.headers["Retry-After"]).timestamp()
    # "now + 30 s" at some instant of the request, without its fraction of a second.
    assert int(before + 30) <= when <= after + 30


@pytest.mark.parametrize("status", ["500", "502", "503", "504"])
def test_server_errors_have_a_json_reason(sb, http, status: str) -> None:
    sb.inject(status, retry_after=1)
    response = get(http, sb, "products")
    assert response.status_code == int(status)
    assert reason(response) and response.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        ("400", {}, "Invalid filter value"),
        ("400", {"reason": "Bad sale_date"}, "Bad sale_date"),
        ("401", {}, "Invalid token."),
        ("403", {}, "Token has no permission for GET /api/data/sales/"),
        ("404", {}, "Not found"),
    ],
)
def test_client_errors(sb, http, kind: str, options: dict, expected: str) -> None:
    sb.inject(kind, **options)
    response = get(http, sb, "sales")
    assert response.status_code == int(kind) and reason(response) == expected


def test_drop_before_closes_without_an_answer(sb, http) -> None:
    sb.inject("drop_before")
    with pytest.raises(requests.ConnectionError):
        get(http, sb, "customers")
    assert sb.requests[-1]["fault"] == "drop_before" and sb.requests[-1]["status"] is None
    assert get(http, sb, "customers").status_code == 200


def test_drop_mid_body_sends_half_of_the_promised_body(sb, http) -> None:
    sb.inject("drop_mid_body")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(http, sb, "customers")
    assert get(http, sb, "customers").status_code == 200


def test_slow_answers_late_but_right(sb, http, ds) -> None:
    sb.inject("slow", seconds=0.3)
    started = time.monotonic()
    response = get(http, sb, "customers", limit=3)
    assert time.monotonic() - started >= 0.3
    assert response.json()["customers"] == ds.records["customers"][:3]


def test_truncated_json_has_a_matching_content_length(sb, http) -> None:
    sb.inject("truncated_json")
    response = get(http, sb, "customers")
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(response.content)
    with pytest.raises(ValueError):
        json.loads(response.content)
    # the page cache is not damaged by it
    assert get(http, sb, "customers").json()["customers"]


@pytest.mark.parametrize("status", [None, 502])
def test_html_error_page(sb, http, status: int | None) -> None:
    sb.inject("html_error", **({"status": status} if status else {}))
    response = get(http, sb, "customers")
    assert response.status_code == (status or 200)
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<html><") and "<h1>Bad Gateway</h1>" in response.text


def test_missing_list(sb, http) -> None:
    sb.inject("missing_list")
    response = get(http, sb, "customers")
    assert response.status_code == 200 and response.json() == {"detail": "ok"}


def test_foreign_next_url(sb, http, ds) -> None:
    sb.inject("foreign_next_url")
    sb.inject("foreign_next_url", url="https://evil.example/steal")
    response = get(http, sb, "customers", limit=5)
    assert response.json()["customers"] == ds.records["customers"][:5]
    expected = f"http://127.0.0.2:{sb.port}/api/data/customers/?cursor=x"
    assert response.json()["next_url"] == response.headers[NEXT_URL_HEADER] == expected
    assert get(http, sb, "customers").json()["next_url"] == "https://evil.example/steal"


def test_repeat_next_url_points_at_the_request_itself(sb, http) -> None:
    first = get(http, sb, "customers", limit=5).json()["next_url"]
    sb.inject("repeat_next_url")
    assert http.get(first, timeout=10).json()["next_url"] == first


def test_redirect(sb, http) -> None:
    sb.inject("redirect")
    sb.inject("redirect", location="/api/data/products/")
    response = http.get(f"{sb.url}/api/data/customers/", allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == f"http://127.0.0.2:{sb.port}/api/data/customers/"
    response = http.get(f"{sb.url}/api/data/customers/", allow_redirects=False, timeout=10)
    assert response.headers["Location"] == "/api/data/products/"


# --- the log, admin endpoints, lifecycle ---------------------------------------------------------


def test_log_entries_say_what_happened(sb, http) -> None:
    get(http, sb, "events", type="BROWSE", limit="7")
    http.get(f"{sb.url}/nowhere", timeout=10)
    first, second = sb.requests
    assert first["method"] == "GET" and first["path"] == "/api/data/events/"
    assert first["query"] == "type=BROWSE&limit=7"
    assert first["params"] == {"type": ["BROWSE"], "limit": ["7"]}
    assert first["stream"] == "events" and first["status"] == 200 and first["fault"] is None
    assert first["t_start"] <= first["t_end"] <= second["t_start"]
    assert second["stream"] is None and second["status"] == 404
    sb.clear_requests()
    assert sb.requests == []


def test_admin_endpoints_serve_and_clear_the_log(sb, http) -> None:
    get(http, sb, "customers")
    entries = requests.get(f"{sb.url}/_sandbox/requests", timeout=10).json()
    assert [e["path"] for e in entries] == ["/api/data/customers/"]
    cleared = requests.post(f"{sb.url}/_sandbox/clear-requests", timeout=10)
    assert cleared.status_code == 200 and sb.requests == []


def test_stop_ends_kept_alive_connections(ds, http) -> None:
    sb = Sandbox(dataset=ds).start()
    assert get(http, sb, "customers").status_code == 200  # the session keeps the connection
    sb.stop()
    with pytest.raises(requests.ConnectionError):
        get(http, sb, "customers")


def test_command_line_prints_url_and_token_and_stops_on_sigterm(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.sandbox", "--port", "0", "--customers", "300",
         "--token", "cbsbx_cli_token_0123456789"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = process.stdout.readline().strip().removeprefix("SANDBOX_URL=")
        token = process.stdout.readline().strip().removeprefix("SANDBOX_TOKEN=")
        assert token == "cbsbx_cli_token_0123456789"  # noqa: S105 - a fake
        headers = {"Authorization": f"Bearer {token}"}
        body = requests.get(f"{url}/api/data/products/?limit=100", headers=headers, timeout=10)
        assert len(body.json()["products"]) == 30  # scaled: customers / 10
        log = requests.get(f"{url}/_sandbox/requests", timeout=10).json()
        assert [e["stream"] for e in log] == ["products"]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr


# --- the data set ------------------------------------------------------------------------------


def test_same_seed_and_anchor_give_the_same_data_set(ds) -> None:
    assert generate_dataset(anchor=ANCHOR) == ds
    assert generate_dataset(anchor=ANCHOR, seed=2) != ds
    assert generate_dataset(anchor=ANCHOR + dt.timedelta(days=1)) != ds


def test_sizes_and_identifiers(ds) -> None:
    records = ds.records
    assert [c["external_id"] for c in records["customers"][:2]] == ["C000001", "C000002"]
    assert len(records["customers"]) == 250 and len(records["products"]) == 60
    transactions = collections.defaultdict(list)
    for row in records["sales"]:
        transactions[row["sale_external_id"]].append(row)
    assert len(transactions) == 150 and "S00001" in transactions
    for sale_id, rows in transactions.items():
        assert 1 <= len(rows) <= 4
        assert [r["external_id"] for r in rows] == [
            f"{sale_id}-{k}" for k in range(1, len(rows) + 1)
        ]
        assert len({r["sale_date"] for r in rows}) == 1
        assert all(r["sale_total"] == sum(x["total"] for x in rows) for r in rows)
        assert all(r["sale_state"] in SALE_STATES and r["sale_currency"] == "EUR" for r in rows)
    counts = collections.Counter(e["type"] for e in records["events"])
    assert counts == {event_type: 120 for event_type in EVENT_TYPES}


def test_records_are_sparse_and_carry_the_documented_fields(ds) -> None:
    def keys(stream: str) -> set[str]:
        return {key for record in ds.records[stream] for key in record}

    for stream in STREAMS:
        assert all(None not in record.values() for record in ds.records[stream])
        assert any(len(record) < len(keys(stream)) / 2 for record in ds.records[stream])
    assert keys("customers") >= {
        "external_id", "first_name", "last_name", "email", "phone_number", "can_email",
        "can_sms", "can_post", "can_push", "city", "country", "zip_code", "province",
        "date_joined", "last_login", "campaign_keys", "canonical_id", "can_profile", "cb_token",
        "street_address", "state", "language", "company", "vat_number", "mailing_lists",
        "gender", "tags", "last_purchase_date",
    }  # fmt: skip
    assert keys("products") >= {
        "external_id", "title", "brand", "category", "category_id", "type", "price",
        "sale_price", "url", "image", "visible", "in_stock", "shop_id", "stock", "ean", "sku",
        "description", "tags", "main_product_ids", "recommendation_set_ids", "date", "language",
        "vendor", "unit",
    }  # fmt: skip
    assert keys("sales") >= {
        "sale_external_id", "sale_customer_id", "sale_date", "sale_shop_id",
        "sale_payment_method", "sale_total", "external_id", "product_id", "unit_price",
        "quantity", "total", "sale_state", "sale_currency", "sale_exchange_rate",
        "sale_discount", "sale_shipping", "sale_shipping_method", "sale_coupon_codes",
        "discount", "product_sku", "sale_email", "sale_phone_number",
    }  # fmt: skip
    assert keys("events") >= {"type", "date", "customer_id", "email", "campaign_id", "url"}


def test_money_is_integer_cents_and_quantities_are_mostly_whole(ds) -> None:
    for product in ds.records["products"]:
        assert all(type(product[k]) is int for k in ("price", "sale_price") if k in product)
    for row in ds.records["sales"]:
        assert all(type(row[k]) is int for k in ("unit_price", "total", "sale_total"))
    quantities = collections.Counter(type(r["quantity"]) for r in ds.records["sales"])
    assert quantities[int] > quantities[float] > 0
    assert any(type(r.get("sale_exchange_rate")) is float for r in ds.records["sales"])


def test_products_stock_across_shops(ds) -> None:
    products = ds.records["products"]
    without = [p for p in products if "stock" not in p]
    assert without and len(without) < len(products) / 2
    for product in products:
        stock = product.get("stock", [])
        assert all(set(e) == {"shop_id", "quantity"} and e["shop_id"] in SHOPS for e in stock)
        assert len({e["shop_id"] for e in stock}) == len(stock) <= 4
    assert {len(p["stock"]) for p in products if "stock" in p} >= {1, 2}


def value_type(value: Any) -> str:
    if isinstance(value, str):
        try:
            instant(value)
            return "datetime"
        except ValueError:
            return "str"
    return type(value).__name__


@pytest.mark.parametrize("stream", STREAMS)
def test_custom_fields_of_every_type(ds, stream: str) -> None:
    types = collections.defaultdict(set)
    for record in ds.records[stream]:
        for key, value in record.items():
            if key.startswith("acme__"):
                types[key.removeprefix("acme__")].add(value_type(value))
    assert set(types) == set(CUSTOM_FIELDS)
    assert types["points"] == {"int"} and types["score"] == {"float"}
    assert types["vip"] == {"bool"} and types["segment"] == {"str"}
    assert types["last_seen"] == {"datetime"} and types["labels"] == {"list"}
    assert types["profile"] == {"dict"} and types["rare_flag"] == {"bool"}
    assert types["mixed"] == {"int", "str"}
    for record in ds.records[stream]:
        assert all(isinstance(label, str) for label in record.get("acme__labels", []))
        profile = record.get("acme__profile")
        if profile:
            assert type(profile["level"]) is int and type(profile["name"]) is str
            assert all(isinstance(badge, str) for badge in profile["badges"])


@pytest.mark.parametrize("stream", STREAMS)
def test_rare_field_is_on_a_few_records_far_from_the_first_pages(ds, stream: str) -> None:
    records = ds.records[stream]
    positions = [k for k, r in enumerate(records) if "acme__rare_flag" in r]
    assert 2 <= len(positions) <= 3
    assert min(positions) >= 0.8 * len(records)
    date_key = {"sales": "sale_date", "events": "date"}.get(stream)
    if date_key:  # also late when read in date order, as the tap reads it
        by_date = sorted(records, key=lambda r: instant(r[date_key]))
        dated = [k for k, r in enumerate(by_date) if "acme__rare_flag" in r]
        assert min(dated) >= 0.8 * len(records)


def test_many_events_of_each_type_share_one_timestamp(ds) -> None:
    for event_type in EVENT_TYPES:
        dates = collections.Counter(
            e["date"] for e in ds.records["events"] if e["type"] == event_type
        )
        assert dates.most_common(1)[0][1] >= 30


def test_datetimes_mix_styles_and_stay_in_the_window(ds) -> None:
    values = [
        value
        for stream in STREAMS
        for record in ds.records[stream]
        for key, value in record.items()
        if key in ("date", "sale_date", "date_joined", "last_login", "acme__last_seen")
    ]
    styles = collections.Counter(
        "fraction" if "." in v else "Z" if v.endswith("Z") else "naive" if len(v) == 19 else v[-6:]
        for v in values
    )
    assert {"Z", "naive", "+02:00", "+03:00", "-05:00", "fraction"} <= set(styles)
    start, end = day_start(ANCHOR - dt.timedelta(days=WINDOW_DAYS - 1)), day_start(ANCHOR) + 86400
    assert all(start <= instant(v) < end for v in values)
    days = {dt.datetime.fromtimestamp(instant(v), UTC).date() for v in values}
    assert {ANCHOR, ANCHOR - dt.timedelta(days=1)} <= days
    assert ANCHOR - dt.timedelta(days=WINDOW_DAYS - 1) in days


def test_default_anchor_is_today_in_utc() -> None:
    small = generate_dataset(customers=50, products=5, sales=50, events_per_type=30)
    assert small.anchor == dt.datetime.now(UTC).date()


def test_non_ascii_text(ds) -> None:
    text = json.dumps(ds.records, ensure_ascii=False)
    for needle in ("Jääskeläinen", "Šárka", "Øyvind", "Zoë", "東京", "🎉"):
        assert needle in text


def test_large_data_sets_copy_templates_but_keep_identities() -> None:
    size = TEMPLATE_POOL + 300
    big = generate_dataset(
        customers=size, products=20, sales=size, events_per_type=TEMPLATE_POOL + 40, anchor=ANCHOR
    )
    customers, sales, events = (big.records[s] for s in ("customers", "sales", "events"))
    assert len({c["external_id"] for c in customers}) == size
    emails = [c["email"] for c in customers if "email" in c]
    assert len(set(emails)) == len(emails)
    assert len({(s["sale_external_id"], s["external_id"]) for s in sales}) == len(sales)
    assert len({s["sale_external_id"] for s in sales}) == size
    assert customers[-1]["external_id"] == f"C{size:06d}"
    known = {c["external_id"]: c for c in customers}
    for event in events[-500:]:
        assert event.get("email", known[event["customer_id"]].get("email")) == known[
            event["customer_id"]
        ].get("email")
    nested = collections.Counter(
        id(value)
        for stream in STREAMS
        for record in big.records[stream]
        for value in record.values()
        if isinstance(value, (list, dict))
    )
    assert max(nested.values()) == 1  # no list or dict is shared between records
    assert (
        generate_dataset(
            customers=size,
            products=20,
            sales=size,
            events_per_type=TEMPLATE_POOL + 40,
            anchor=ANCHOR,
        )
        == big
    )
