"""Custom fields end to end: `meltano run` into PostgreSQL with two independent loaders.

The tricky data set (tests/sandbox/data.py TRICKY_FIELDS) gives customers fields that trip
type inference, placed relative to the first PAGE customers; with page_size PAGE, discovery's
one-page sample misses what lies beyond it, exactly as a 10,000-record page does at the default
page size (discovery's sample is one page, whatever its size). Loaded values must equal the
sandbox's by rule 2: a value that does not fit its declared type is its JSON text in a string
column and NULL elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from decimal import Decimal

import psycopg
import pytest

from tests.e2e.expected import PRIMARY_KEYS, expected_records, same_value
from tests.e2e.pipeline import postgres_env, tap_env
from tests.e2e.test_postgres import read_table
from tests.expected import by_rule_2
from tests.sandbox import TEST_TOKEN, Sandbox, generate_dataset

if t.TYPE_CHECKING:
    from pathlib import Path

    from tests.e2e.pipeline import Meltano
    from tests.e2e.postgres import PostgresCluster

PAGE = 20
EVENT_TYPES = ["BROWSE", "MAIL_OPEN"]
SELECT = ["customers.*", "events.*"]
NEW_FIELD = "acme__loyalty_tier"


@pytest.fixture
def tricky() -> t.Iterator[Sandbox]:
    dataset = generate_dataset(
        customers=3 * PAGE, products=5, sales=5, events_per_type=15, tricky_after=PAGE, seed=5
    )
    with Sandbox(dataset=dataset, token=TEST_TOKEN) as server:
        yield server


def custom_env(sandbox: Sandbox, **settings: str) -> dict[str, str]:
    return {
        **tap_env(sandbox, page_size=str(PAGE), event_types=json.dumps(EVENT_TYPES), **settings),
        "TAP_CUSTOBAR__SELECT": json.dumps(SELECT),
    }


def pipelinewise_env(postgres: PostgresCluster, schema: str) -> dict[str, str]:
    return {
        "PIPELINEWISE_TARGET_POSTGRES_HOST": postgres.host,
        "PIPELINEWISE_TARGET_POSTGRES_PORT": str(postgres.port),
        "PIPELINEWISE_TARGET_POSTGRES_USER": postgres.user,
        "PIPELINEWISE_TARGET_POSTGRES_PASSWORD": "unused-trust-auth",
        "PIPELINEWISE_TARGET_POSTGRES_DBNAME": postgres.dbname,
        "PIPELINEWISE_TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
    }


def served(sandbox: Sandbox, stream: str) -> list[dict]:
    """The sandbox's records of a stream, events of the configured types only."""
    records = sandbox.records(stream)
    return [r for r in records if r["type"] in EVENT_TYPES] if stream == "events" else records


def dump_catalog(meltano: Meltano, env: dict[str, str], folder: Path) -> tuple[dict, Path]:
    """The catalog Meltano gives the tap (discovery, then the select rules), kept in a file."""
    done = meltano.ok("--environment=sandbox", "invoke", "--dump=catalog", "tap-custobar", env=env)
    catalog = json.loads(done.stdout)
    path = folder / "catalog.json"
    path.write_text(json.dumps(catalog), encoding="utf-8")
    return catalog, path


def loaded_equal(expected: t.Any, actual: t.Any) -> bool:
    """A loaded value equals the expected one; JSON text columns (flattened arrays) by meaning."""
    if isinstance(expected, list | dict) and isinstance(actual, str):
        return same_value(expected, json.loads(actual))
    if isinstance(expected, float) and isinstance(actual, float | Decimal):
        return abs(Decimal(repr(expected)) - Decimal(str(actual))) < Decimal("1e-9")
    return same_value(expected, actual)


def flatten(record: dict, schema: dict, depth: int, prefix: str = "") -> dict:
    """The SDK flattener's columns for a record (objects to `depth`, arrays as JSON text)."""
    columns: dict[str, t.Any] = {}
    for name, value in record.items():
        sub = schema.get("properties", {}).get(name, {})
        if isinstance(value, dict) and depth > 0 and "properties" in sub:
            columns.update(flatten(value, sub, depth - 1, f"{prefix}{name}__"))
        else:
            columns[f"{prefix}{name}"] = value
    return columns


def check_loaded(
    pg: psycopg.Connection,
    schema: str,
    stream: str,
    sandbox_records: list[dict],
    declared: dict,
    *,
    flattening_depth: int | None = None,
) -> dict[str, str]:
    """Every sandbox record loaded once, every field equal to the sandbox's by rule 2."""
    table = read_table(pg, schema, stream)
    assert not table.duplicates, f"{stream}: duplicate keys"
    expected = expected_records(stream, sandbox_records)
    by_key = table.by_key
    assert set(by_key) == set(expected), (
        f"{stream}: {len(table.rows)} rows for {len(expected)} records"
    )
    problems = []
    for key, record in expected.items():
        conformed = {n: by_rule_2(v, declared.get(n, {})) for n, v in record.items()}
        if flattening_depth is not None:
            conformed = flatten(conformed, {"properties": declared}, flattening_depth)
        row = by_key[key]
        for name, value in conformed.items():
            if name not in PRIMARY_KEYS[stream] and not loaded_equal(value, row.get(name)):
                problems.append(f"{stream} {key} {name}: want {value!r}, loaded {row.get(name)!r}")
    assert not problems, "\n".join(problems[:15])
    return table.columns


def declared_properties(catalog: dict, stream: str) -> dict:
    entry = next(s for s in catalog["streams"] if s["tap_stream_id"] == stream)
    return entry["schema"]["properties"]


# --- the loads ----------------------------------------------------------------------------------


@pytest.mark.parametrize("flattening", [False, True], ids=["nested", "flattened"])
def test_meltanolabs_target_postgres_loads_every_tricky_value(
    meltano, postgres, pg, pg_schema, tricky, state_suffix, tmp_path, flattening
):
    settings = {"flattening_enabled": "true", "flattening_max_depth": "1"} if flattening else {}
    env = custom_env(tricky, **settings)
    catalog, path = dump_catalog(meltano, env, tmp_path)
    env["TAP_CUSTOBAR__CATALOG"] = str(path)
    meltano.run_pipeline(
        "target-postgres",
        env={**env, **postgres_env(postgres, pg_schema)},
        state_suffix=state_suffix,
    )
    depth = 1 if flattening else None
    declared = declared_properties(catalog, "customers")
    columns = check_loaded(
        pg, pg_schema, "customers", tricky.records("customers"), declared, flattening_depth=depth
    )
    check_loaded(
        pg, pg_schema, "events", served(tricky, "events"), declared_properties(catalog, "events"),
        flattening_depth=depth,
    )  # fmt: skip
    assert columns["acme__late_flag"] == "boolean"
    assert columns["acme__code"] in ("text", "character varying")
    if flattening:
        assert columns["acme__address__verified"] == "boolean"
        assert "timestamp" in columns["acme__address__since"]
    else:
        assert columns["acme__address"] == "jsonb"


def test_pipelinewise_target_postgres_loads_every_tricky_value(
    meltano, postgres, pg, pg_schema, tricky, state_suffix, tmp_path
):
    env = custom_env(tricky)
    catalog, path = dump_catalog(meltano, env, tmp_path)
    env["TAP_CUSTOBAR__CATALOG"] = str(path)
    meltano.run_pipeline(
        "pipelinewise-target-postgres",
        env={**env, **pipelinewise_env(postgres, pg_schema)},
        state_suffix=state_suffix,
    )
    declared = declared_properties(catalog, "customers")
    columns = check_loaded(pg, pg_schema, "customers", tricky.records("customers"), declared)
    check_loaded(
        pg, pg_schema, "events", served(tricky, "events"), declared_properties(catalog, "events")
    )
    assert columns["acme__late_flag"] == "boolean"
    assert columns["acme__amount"] in ("double precision", "numeric")


def add_new_field(sandbox: Sandbox) -> None:
    """A field the catalog has never seen, on a few customers and BROWSE events."""
    for position in (3, PAGE + 4):
        customer = dict(sandbox.records("customers")[position])
        sandbox.delete("customers", external_id=customer["external_id"])
        sandbox.add("customers", {**customer, NEW_FIELD: position + 0.5})
    browse = [e for e in sandbox.records("events") if e["type"] == "BROWSE"]
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    sandbox.add("events", {**browse[0], "date": now, NEW_FIELD: 7})


def test_a_new_field_reaches_postgres_without_rediscovery(
    meltano, postgres, pg, pg_schema, tricky, state_suffix, tmp_path
):
    env = custom_env(tricky)
    catalog, path = dump_catalog(meltano, env, tmp_path)
    assert NEW_FIELD not in declared_properties(catalog, "customers")
    env = {**env, "TAP_CUSTOBAR__CATALOG": str(path), **postgres_env(postgres, pg_schema)}
    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)
    add_new_field(tricky)
    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)  # the old catalog
    for stream in ("customers", "events"):
        declared = {**declared_properties(catalog, stream), NEW_FIELD: {"type": ["number", "null"]}}
        columns = check_loaded(pg, pg_schema, stream, served(tricky, stream), declared)
        assert NEW_FIELD in columns, stream
    rows = read_table(pg, pg_schema, "customers").rows
    assert sorted(float(r[NEW_FIELD]) for r in rows if r[NEW_FIELD] is not None) == [3.5, 24.5]


def test_a_narrowed_selection_does_not_load_a_new_field_and_names_it(
    meltano, postgres, pg, pg_schema, tricky, state_suffix, tmp_path
):
    narrowed = ["customers.external_id", "customers.acme__code", "events.event_id", "events.date",
                "events.type", "events.customer_id"]  # fmt: skip
    env = {**custom_env(tricky), "TAP_CUSTOBAR__SELECT": json.dumps(narrowed)}
    _, path = dump_catalog(meltano, env, tmp_path)
    add_new_field(tricky)
    env = {**env, "TAP_CUSTOBAR__CATALOG": str(path), **postgres_env(postgres, pg_schema)}
    result = meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)
    for stream in ("customers", "events"):
        table = read_table(pg, pg_schema, stream)
        assert NEW_FIELD not in table.columns
        assert len(table.rows) == len(expected_records(stream, served(tricky, stream)))
    # Customers requests name the selected fields (Custobar never sends the new one); events
    # requests are never narrowed, so the tap sees it, drops it and says so once.
    warnings = [line for line in result.output.splitlines() if "not in the catalog" in line]
    assert len(warnings) == 1, warnings
    assert f"events: field(s) {NEW_FIELD} are in the data but not in the catalog" in warnings[0]
