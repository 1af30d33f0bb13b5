"""Custom fields: one type per field, values that fit it, discovery's look-ups, new fields.

The tricky data set (generate_dataset(tricky_after=N)) places its fields relative to the first
N customers. Discovery's sample is one page (`limit` = page_size), so with page_size N the
fields beyond N are exactly the ones a 10,000-record sample misses at the default page size:
the rule is in pages, and a 20-record page tests it without 10,000 records.
"""

from __future__ import annotations

import json
import logging
import typing as t

import pytest
import yaml

from tap_custobar.field_types import FieldConformer, infer_type
from tap_custobar.tap import TapCustobar
from tests.harness import ROOT, run_tap, sandbox_config, select_properties
from tests.leaks import TEST_TOKEN, check_no_token
from tests.sandbox import Sandbox, generate_dataset

PAGE = 20
NUMBER = {"type": ["number", "null"]}
STRING = {"type": ["string", "null"]}
BOOLEAN = {"type": ["boolean", "null"]}
DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
# What discovery must declare for each tricky field (DESIGN §2 "Custom fields").
TRICKY_TYPES = {
    "acme__late_flag": BOOLEAN,  # only beyond the sample page: found by a narrow look-up
    "acme__code": STRING,  # strings and integers
    "acme__amount": NUMBER,  # whole in the sample page (fractional later)
    "acme__address": {
        "type": ["object", "null"],
        "properties": {
            "street": STRING,
            "floor": NUMBER,
            "verified": BOOLEAN,
            "since": DATE_TIME,
        },
        "additionalProperties": True,
    },
    "acme__mixed_list": {"type": ["array", "null"], "items": STRING},  # mixed items
}


@pytest.fixture
def tricky() -> t.Iterator[Sandbox]:
    dataset = generate_dataset(
        customers=3 * PAGE, products=5, sales=5, events_per_type=5, tricky_after=PAGE, seed=3
    )
    with Sandbox(dataset=dataset, token=TEST_TOKEN) as server:
        yield server


def discover(config: dict, capsys: pytest.CaptureFixture[str]) -> dict:
    TapCustobar(config=config, validate_config=True, setup_mapper=False).run_discovery()
    out = capsys.readouterr().out
    check_no_token(out)
    return json.loads(out)


def properties(catalog: dict, stream: str) -> dict:
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == stream)
    return entry["schema"]["properties"]


def messages_of(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# --- rule 1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2, 3], NUMBER),
        ([1, 2.5], NUMBER),
        ([True, False, None], BOOLEAN),
        (["2026-01-01T10:00:00+02:00", "2026-01-02 08:00:00Z", "2026-01-03T00:00:00"], DATE_TIME),
        (["2026-01-01", "2026-01-02"], STRING),  # a bare date is not a date-time
        (["2026-01-01T10:00:00Z", "soon"], STRING),
        (["x", 3], STRING),
        ([True, 1], STRING),
        ([], STRING),
        ([None, None], STRING),
        ([["a", 1], [2.5]], {"type": ["array", "null"], "items": STRING}),
        ([[1], [2.5]], {"type": ["array", "null"], "items": NUMBER}),
        ([[]], {"type": ["array", "null"], "items": STRING}),
        ([{"a": 1}, "x"], STRING),
    ],
)
def test_rule_1_gives_one_type_per_field(values: list, expected: dict) -> None:
    assert infer_type(values) == expected


def test_rule_1_types_object_properties_by_the_same_rules() -> None:
    schema = infer_type([{"a": 1, "b": "x"}, {"a": 2.5, "b": 3, "c": {"d": True}}])
    assert schema == {
        "type": ["object", "null"],
        "properties": {
            "a": NUMBER,
            "b": STRING,
            "c": {
                "type": ["object", "null"],
                "properties": {"d": BOOLEAN},
                "additionalProperties": True,
            },
        },
        "additionalProperties": True,
    }


# --- rule 2 --------------------------------------------------------------------------------------


def test_rule_2_text_in_string_fields_null_and_counted_elsewhere() -> None:
    conformer = FieldConformer(
        {
            "s": STRING,
            "n": NUMBER,
            "b": BOOLEAN,
            "d": DATE_TIME,
            "o": TRICKY_TYPES["acme__address"],
            "a": {"type": ["array", "null"], "items": NUMBER},
        }
    )
    records = [
        {"s": True, "n": 1, "b": True, "o": {"floor": 2, "since": "2026-01-01T10:00:00+02:00"}},
        {"s": {"a": 1, "ä": [1, 2]}, "n": "n/a", "b": "yes", "d": 5, "a": [1, "x", 2.5]},
        {"s": 3, "n": 2.5, "o": {"floor": "ground", "street": 7, "extra": "kept"}, "a": "one"},
        {"s": "plain", "n": None},
    ]
    conformer.conform_page(records, page=4)
    assert records == [
        {"s": "true", "n": 1, "b": True, "o": {"floor": 2, "since": "2026-01-01T08:00:00Z"}},
        {"s": '{"a":1,"ä":[1,2]}', "n": None, "b": None, "d": None, "a": [1, None, 2.5]},
        {"s": "3", "n": 2.5, "o": {"floor": None, "street": "7", "extra": "kept"}, "a": None},
        {"s": "plain", "n": None},
    ]
    reports = conformer.reports("customers")
    assert len(reports) == 6  # n, b, d, a[], o.floor, a
    assert any(line.startswith("customers: field n: 1 value(s)") for line in reports)
    assert all("(first on page 4)" in line for line in reports)
    assert not any(word in " ".join(reports) for word in ("n/a", "yes", "ground", "one"))


def test_rule_2_lets_whole_numbers_into_boolean_fields_for_the_sdk_to_conform() -> None:
    conformer = FieldConformer({"b": BOOLEAN, "o": {"type": ["object", "null"], "properties": {"b": BOOLEAN}}})
    records = [{"b": 1, "o": {"b": 0}}, {"b": 0}, {"b": 2.5, "o": {"b": "no"}}]
    conformer.conform_page(records, page=1)
    assert records == [{"b": 1, "o": {"b": 0}}, {"b": 0}, {"b": None, "o": {"b": None}}]
    assert len(conformer.reports("customers")) == 2  # b (2.5) and o.b ("no")


def test_rule_2_leaves_fitting_pages_untouched_and_builtins_alone(sandbox) -> None:
    config = sandbox_config(sandbox, page_size=50, event_types=["BROWSE"])
    run = run_tap(config)
    # No catalog: the built-in schema; custom fields join as they appear (typed by rule 1).
    products = run.records["products"]
    source = {p["external_id"]: p for p in sandbox.records("products")}
    for product in products:
        assert product["price"] == source[product["external_id"]]["price"]
        assert type(product["price"]) is int  # built-in integers stay integers


# --- discovery -----------------------------------------------------------------------------------


def test_discovery_declares_each_tricky_field_with_one_type(tricky, capsys, caplog) -> None:
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"])
    with caplog.at_level(logging.INFO):
        catalog = discover(config, capsys)
    declared = properties(catalog, "customers")
    for name, expected in TRICKY_TYPES.items():
        assert declared[name] == expected, name
    for stream in ("customers", "products", "sales", "events"):
        for name, schema in properties(catalog, stream).items():
            types = schema.get("type", [])
            assert len([k for k in types if k != "null"]) == 1, (stream, name, schema)
            assert "anyOf" not in json.dumps(schema)

    requests = [r for r in tricky.requests if r["stream"] == "customers"]
    assert requests[0]["params"] == {"format": ["csv"], "limit": ["1"]}
    assert requests[1]["params"] == {"limit": [str(PAGE)]}  # the one-page JSON sample
    # Look-ups name only the fields the sample lacked, and page on until each has a value.
    lookup = requests[2]["params"]
    assert lookup["limit"] == [str(PAGE)]
    assert set(lookup["fields"][0].split(",")) == {"acme__late_flag", "acme__rare_flag"}
    assert all(set(r["params"]) == {"cursor"} for r in requests[3:])
    assert len(requests) == 5  # the rare flag sits in the last of the 3 pages
    assert messages_of(caplog, "customers: acme__late_flag first seen in narrow look-up request 2")
    cost = messages_of(caplog, "customers: discovery made")
    assert cost == [
        next(m for m in cost if "made 5 request(s)" in m and "read 80 record(s) (3 narrow" in m)
    ]


def test_the_budget_caps_look_ups_and_unseen_fields_are_strings(tricky, capsys, caplog) -> None:
    # The sample page and one look-up page: the late flag (on the second page) stays unseen.
    config = sandbox_config(
        tricky, page_size=PAGE, event_types=["BROWSE"], discovery_max_records=2 * PAGE
    )
    with caplog.at_level(logging.INFO):
        catalog = discover(config, capsys)
    assert properties(catalog, "customers")["acme__late_flag"] == STRING
    assert properties(catalog, "customers")["acme__amount"] == NUMBER
    lookups = [r for r in tricky.requests if r["stream"] == "customers" and "csv" not in str(r)]
    assert len(lookups) == 2  # the sample and one look-up
    unseen = messages_of(caplog, "customers: no value within the discovery budget")
    assert len(unseen) == 1 and "acme__late_flag" in unseen[0] and "acme__rare_flag" in unseen[0]


def test_a_budget_of_zero_sends_no_look_up(tricky, capsys) -> None:
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"], discovery_max_records=0)
    discover(config, capsys)
    assert not [r for r in tricky.requests if "fields" in r["params"]]


def test_discovery_warns_about_names_postgres_would_cut(tricky, capsys, caplog) -> None:
    long_name = "acme__" + "very_long_custom_field_name_" * 3  # 90 bytes
    tricky.add("customers", {"external_id": "LONG1", long_name: "x"})
    with caplog.at_level(logging.WARNING):
        discover(sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"]), capsys)
    warnings = messages_of(caplog, "longer than 63 bytes")
    assert len(warnings) == 1 and long_name in warnings[0] and "stream_maps" in warnings[0]


# --- sync: values fit, pinned types, new fields ---------------------------------------------------


def test_sync_conforms_values_and_reports_misfits_once(tricky, capsys, caplog) -> None:
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"])
    catalog = select_properties(discover(config, capsys), "customers", None)
    with caplog.at_level(logging.WARNING):
        run = run_tap(config, catalog=catalog)
    source = {r["external_id"]: r for r in tricky.records("customers")}
    for record in run.records["customers"]:
        original = source[record["external_id"]]
        if "acme__code" in original:
            assert record["acme__code"] == str(original["acme__code"])
        if isinstance(original.get("acme__amount"), str):
            assert record["acme__amount"] is None
        if "acme__mixed_list" in original:
            assert record["acme__mixed_list"] == [
                "one",
                str(original["acme__mixed_list"][1]),
                "2.5",
            ]
    misfits = messages_of(caplog, "did not fit its declared type")
    assert misfits == [
        "customers: field acme__amount: 1 value(s) did not fit its declared type number and were "
        "emitted as null (first on page 2); pin another type with Meltano's `schema` extra to "
        "keep them"
    ]


def test_a_pinned_type_is_what_values_are_conformed_to(tricky, capsys, caplog) -> None:
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"])
    catalog = select_properties(discover(config, capsys), "customers", None)
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == "customers")
    entry["schema"]["properties"]["acme__amount"] = STRING  # as Meltano's `schema` extra does
    entry["schema"]["properties"]["acme__code"] = NUMBER
    with caplog.at_level(logging.WARNING):
        run = run_tap(config, catalog=catalog)
    assert run.schemas["customers"]["schema"]["properties"]["acme__amount"] == STRING
    source = {r["external_id"]: r for r in tricky.records("customers")}
    for record in run.records["customers"]:
        original = source[record["external_id"]]
        amount = original.get("acme__amount")
        assert record.get("acme__amount") == (
            amount if isinstance(amount, str) else json.dumps(amount)
        )
        code = original.get("acme__code")
        assert record.get("acme__code") == (code if isinstance(code, int) else None)
    codes = sum(isinstance(r.get("acme__code"), str) for r in tricky.records("customers"))
    assert messages_of(caplog, f"field acme__code: {codes} value(s)")


def new_field_records(sandbox: Sandbox, stream: str, name: str, positions: t.Iterable[int]) -> list:
    """Give some of the sandbox's records a field it never had (re-added with it)."""
    changed = []
    for position in positions:
        record = dict(sandbox.records(stream)[position])
        record[name] = position + 0.5
        key = {k: record[k] for k in ("external_id",) if k in record} or {"date": record["date"]}
        sandbox.delete(stream, **key)
        sandbox.add(stream, record)
        changed.append(record)
    return changed


def test_a_new_field_flows_with_a_new_schema_message(tricky, capsys, caplog) -> None:
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"])
    catalog = select_properties(discover(config, capsys), "customers", None)
    added = new_field_records(tricky, "customers", "acme__added_later", [5, 7])
    with caplog.at_level(logging.INFO):
        run = run_tap(config, catalog=catalog)
    customers = [m for m in run.messages if m.get("stream") == "customers"]
    schemas = [i for i, m in enumerate(customers) if m["type"] == "SCHEMA"]
    holding = [i for i, m in enumerate(customers) if "acme__added_later" in m.get("record", {})]
    assert len(schemas) == 2 and len(holding) == 2
    assert "acme__added_later" not in customers[schemas[0]]["schema"]["properties"]
    assert customers[schemas[1]]["schema"]["properties"]["acme__added_later"] == NUMBER
    assert schemas[1] == holding[0] - 1  # right before the first record holding it
    values = {
        m["record"]["external_id"]: m["record"]["acme__added_later"]
        for m in customers
        if m["type"] == "RECORD" and "acme__added_later" in m["record"]
    }
    assert values == {r["external_id"]: r["acme__added_later"] for r in added}
    assert messages_of(caplog, "customers: field(s) not in the catalog on page 3, added")


def test_a_narrowed_selection_drops_new_fields_with_one_warning(tricky, capsys, caplog) -> None:
    config = sandbox_config(tricky, page_size=2, event_types=["BROWSE"])  # new fields on 2 pages
    catalog = discover(config, capsys)
    # events requests are never narrowed, so new fields arrive; the selection is narrowed.
    select_properties(catalog, "events", ["event_id", "date", "type", "customer_id"])
    browse = [e for e in tricky.records("events") if e["type"] == "BROWSE"][:3]
    for record in browse:
        tricky.add("events", {**record, "acme__new_a": 1, "acme__new_b": "x"})
    with caplog.at_level(logging.WARNING):
        run = run_tap(config, catalog=catalog)
    assert all(set(r) <= {"event_id", "date", "type", "customer_id"} for r in run.records["events"])
    assert len([m for m in run.messages if m["type"] == "SCHEMA"]) == 1
    warnings = messages_of(caplog, "are in the data but not in the catalog")
    assert len(warnings) == 1
    assert warnings[0].startswith("events: field(s) acme__new_a, acme__new_b are in the data")


def readme_stream_maps() -> dict:
    """The stream_maps of the README's long-names example, as a user would copy them."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(b for b in readme.split("```yaml")[1:] if "stream_maps:" in b).split("```")[0]
    return yaml.safe_load(block)["extractors"][0]["config"]["stream_maps"]


def test_the_readme_rename_of_long_names_loads_typed_values(tricky, capsys, caplog) -> None:
    maps = readme_stream_maps()
    long_text, long_number = sorted((k for k, v in maps["customers"].items() if v == "__NULL__"))[
        ::-1
    ]
    assert all(len(name.encode()) > 63 for name in (long_text, long_number))
    for position in (2, 25, 41):  # sparse: most customers have neither field
        customer = dict(tricky.records("customers")[position])
        tricky.delete("customers", external_id=customer["external_id"])
        tricky.add(
            "customers", {**customer, long_text: f"segment {position}", long_number: position * 100}
        )
    config = sandbox_config(tricky, page_size=PAGE, event_types=["BROWSE"])
    catalog = select_properties(discover(config, capsys), "customers", None)
    run = run_tap({**config, "stream_maps": maps}, catalog=catalog)
    declared = run.schemas["customers"]["schema"]["properties"]
    assert declared["acme__newsletter_segment"]["type"] == ["string", "null"]
    assert "number" in declared["acme__lifetime_value"]["type"]
    assert long_text not in declared and long_number not in declared
    with_values = [r for r in run.records["customers"] if r.get("acme__lifetime_value") is not None]
    assert sorted(r["acme__lifetime_value"] for r in with_values) == [200, 2500, 4100]
    assert sorted(r["acme__newsletter_segment"] for r in with_values) == [
        "segment 2",
        "segment 25",
        "segment 41",
    ]
    assert all(long_text not in r and long_number not in r for r in run.records["customers"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-1, "discovery_max_records: -1 is out of range"), (2.5, "2.5 is not of type 'integer'")],
)
def test_discovery_max_records_is_checked(value: object, expected: str) -> None:
    from singer_sdk.exceptions import ConfigValidationError

    config = {"api_token": TEST_TOKEN, "base_url": "http://127.0.0.1:9"}
    with pytest.raises(ConfigValidationError) as info:
        TapCustobar(config={**config, "discovery_max_records": value}, validate_config=True)
    assert expected in " ".join(info.value.errors) and "discovery_max_records" in str(info.value)
