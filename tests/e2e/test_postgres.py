"""`meltano run tap-custobar target-postgres` against the sandbox, checked row by row in SQL."""

from __future__ import annotations

import datetime as dt
import json
import typing as t
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from tests.e2e.expected import (
    CENTS,
    STREAMS,
    Key,
    builtin_properties,
    compare,
    datetime_properties,
    expected_records,
    key_of,
)
from tests.e2e.pipeline import effective_params, postgres_env, tap_env

# A type a user pins with Meltano's `schema` extra: any JSON value (target-postgres: jsonb).
PERMISSIVE_SCHEMA = {"type": ["string", "number", "integer", "boolean", "object", "array", "null"]}
INTEGER_TYPES = {"bigint", "integer", "smallint"}
TEXT_TYPES = {"text", "character varying"}
TIMESTAMP_TYPES = {"timestamp without time zone", "timestamp with time zone"}


@dataclass
class Table:
    columns: dict[str, str]  # name -> data_type
    rows: list[dict]
    by_key: dict[Key, dict] = field(default_factory=dict)
    duplicates: list[Key] = field(default_factory=list)

    @property
    def fields(self) -> set[str]:
        """Columns that carry record values (not the target's _sdc_* metadata)."""
        return {name for name in self.columns if not name.startswith("_sdc_")}


def read_table(pg: psycopg.Connection, schema: str, stream: str) -> Table:
    columns = dict(
        pg.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s",
            (schema, stream),
        ).fetchall()
    )
    assert columns, f"target-postgres created no table {schema}.{stream}"
    with pg.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            sql.SQL("SELECT * FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(stream))
        ).fetchall()
    table = Table(columns, rows)
    for row in rows:
        key = key_of(stream, row)
        if key in table.by_key:
            table.duplicates.append(key)
        table.by_key[key] = row
    return table


def primary_key_columns(pg: psycopg.Connection, schema: str, stream: str) -> list[str]:
    rows = pg.execute(
        "SELECT kcu.column_name FROM information_schema.table_constraints tc"
        " JOIN information_schema.key_column_usage kcu"
        "   ON kcu.constraint_name = tc.constraint_name AND kcu.table_schema = tc.table_schema"
        " WHERE tc.table_schema = %s AND tc.table_name = %s AND tc.constraint_type = 'PRIMARY KEY'"
        " ORDER BY kcu.ordinal_position",
        (schema, stream),
    ).fetchall()
    return [name for (name,) in rows]


def check_stream(
    pg: psycopg.Connection,
    schema: str,
    stream: str,
    records: list[dict],
    *,
    deleted: t.Collection[Key] = (),
) -> Table:
    """The table holds exactly `records` (plus `deleted` rows, kept but marked deleted)."""
    table = read_table(pg, schema, stream)
    assert not table.duplicates, f"{stream}: primary keys loaded twice: {table.duplicates[:5]}"
    # Every built-in property and every field the sandbox sends (custom fields are discovered).
    missing_columns = set(builtin_properties(stream)).union(*records) - table.fields
    assert not missing_columns, f"{stream}: no column for {sorted(missing_columns)}"

    expected = expected_records(stream, records)
    live = {key: row for key, row in table.by_key.items() if key not in deleted}
    text_fields = {name for name, kind in table.columns.items() if kind in TEXT_TYPES}
    problems = compare(stream, expected, live, table.fields, text_fields=text_fields)
    assert not problems, "\n".join(problems)
    loaded, wanted = len(table.rows), len(expected) + len(deleted)
    assert loaded == wanted, f"{stream}: {loaded} rows loaded, {wanted} expected"

    for name in CENTS.get(stream, ()):
        assert table.columns[name] in INTEGER_TYPES, (
            f"{stream}.{name} is {table.columns[name]}: cents must load as integers"
        )
        assert all(type(row[name]) is int for row in table.rows if row[name] is not None)
    for name in datetime_properties(stream):
        assert table.columns[name] in TIMESTAMP_TYPES, f"{stream}.{name} is {table.columns[name]}"
    return table


def test_full_load_matches_the_sandbox(meltano, postgres, pg, pg_schema, sandbox, state_suffix):
    meltano.run_pipeline(
        "target-postgres",
        env={**tap_env(sandbox), **postgres_env(postgres, pg_schema)},
        state_suffix=state_suffix,
    )

    for stream in STREAMS:
        records = sandbox.records(stream)
        assert records, f"the sandbox serves no {stream}"
        table = check_stream(pg, pg_schema, stream, records)
        assert all(row["_sdc_deleted_at"] is None for row in table.rows)

    # target-postgres keys every table on the stream's primary key.
    assert primary_key_columns(pg, pg_schema, "customers") == ["external_id"]
    assert primary_key_columns(pg, pg_schema, "products") == ["external_id"]
    assert primary_key_columns(pg, pg_schema, "sales") == ["sale_external_id", "external_id"]
    assert primary_key_columns(pg, pg_schema, "events") == ["event_id"]

    # Unicode survives the whole way (names, cities, product titles).
    customers = read_table(pg, pg_schema, "customers")
    names = {row["first_name"] for row in customers.rows} | {row["city"] for row in customers.rows}
    assert {"Šárka", "Zoë", "東京"} & names, sorted(n for n in names if n)[:20]
    assert any(not (row["last_name"] or "").isascii() for row in customers.rows)


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def change_sandbox(sandbox: t.Any, dataset: t.Any) -> dict[str, list[Key]]:
    """New customers, sales and events dated today, and one erased customer."""
    now = _now_utc()
    new: dict[str, list[Key]] = {"customers": [], "sales": [], "events": []}
    for number, (first, last) in enumerate((("Ännä", "Ö'Connor"), ("Ζωή", "Łukasiewicz")), 1):
        record = {
            "external_id": f"NEW{number:03d}",
            "first_name": first,
            "last_name": last,
            "email": f"new{number}@example.com",
            "can_email": number % 2 == 0,
            "date_joined": (now - dt.timedelta(hours=number)).isoformat(),
            "tags": ["new", "ü"],
        }
        sandbox.add("customers", record)
        new["customers"].append(key_of("customers", record))
    for row in (1, 2):
        record = {
            "sale_external_id": "SNEW1",
            "external_id": f"SNEW1-{row}",
            "sale_customer_id": "NEW001",
            "sale_date": (now - dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sale_state": "COMPLETE",
            "sale_total": 2490,
            "unit_price": 1245,
            "quantity": 1,
            "total": 1245,
            "product_id": dataset.records["products"][0]["external_id"],
        }
        sandbox.add("sales", record)
        new["sales"].append(key_of("sales", record))
    helsinki = dt.timezone(dt.timedelta(hours=2))
    for number, event_type in enumerate(("MAIL_OPEN", "BROWSE", "BASKET_ADD"), 1):
        moment = now - dt.timedelta(minutes=5 * number)
        record = {
            "type": event_type,
            # One with another offset, one without (UTC), one with Z.
            "date": [
                moment.astimezone(helsinki).isoformat(),
                moment.replace(tzinfo=None).isoformat(),
                moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ][number - 1],
            "customer_id": "NEW002",
        }
        sandbox.add("events", record)
        new["events"].append(record)
    return new


@pytest.mark.parametrize("hard_delete", [True, False], ids=["hard-delete", "soft-delete"])
def test_second_run_loads_changes_and_applies_deletes(
    meltano, postgres, pg, pg_schema, sandbox, dataset, state_suffix, hard_delete
):
    env = {
        **tap_env(sandbox),
        **postgres_env(postgres, pg_schema, hard_delete=str(hard_delete).lower()),
    }
    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)
    first_requests = len(sandbox.requests)

    new = change_sandbox(sandbox, dataset)
    erased = dataset.records["customers"][10]["external_id"]
    sandbox.delete("customers", external_id=erased)
    assert erased not in {r["external_id"] for r in sandbox.records("customers")}

    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)
    second_requests = sandbox.requests[first_requests:]
    assert second_requests, "the second run sent no request"

    deleted = set() if hard_delete else {(erased,)}
    for stream in STREAMS:
        table = check_stream(
            pg,
            pg_schema,
            stream,
            sandbox.records(stream),
            deleted=deleted if stream == "customers" else (),
        )
        for key in new.get(stream, []):
            if stream == "events":
                continue
            assert key in table.by_key, f"{stream} {key} did not arrive"
        if stream == "customers":
            if hard_delete:
                assert (erased,) not in table.by_key
            else:
                assert table.by_key[(erased,)]["_sdc_deleted_at"] is not None
            live = [row for key, row in table.by_key.items() if key not in deleted]
            assert all(row["_sdc_deleted_at"] is None for row in live)

    events = read_table(pg, pg_schema, "events")
    new_event_ids = set(expected_records("events", new["events"]))
    assert new_event_ids <= set(events.by_key), "today's events did not arrive"

    # The second run was incremental: events were read (order=date) from a day on, not from the
    # start. (Discovery's samples, without `order`, are not reads.)
    event_queries = [
        query
        for query in (effective_params(r) for r in second_requests if r["stream"] == "events")
        if "order" in query
    ]
    assert event_queries
    assert all("date.gte" in query for query in event_queries), event_queries[:3]


def test_select_rules_load_only_the_selected_columns(
    meltano, postgres, pg, pg_schema, sandbox, state_suffix
):
    # Meltano's `select` extra, given through the environment as meltano.yml would give it.
    select = ["customers.external_id", "customers.email", "customers.acme__points", "sales.*"]
    meltano.run_pipeline(
        "target-postgres",
        env={
            **tap_env(sandbox),
            **postgres_env(postgres, pg_schema),
            "TAP_CUSTOBAR__SELECT": json.dumps(select),
            # Meltano's `schema` extra overrides the discovered type (boolean) of a field.
            "TAP_CUSTOBAR__SCHEMA": json.dumps({"sales": {"acme__rare_flag": PERMISSIVE_SCHEMA}}),
        },
        state_suffix=state_suffix,
    )
    customers = read_table(pg, pg_schema, "customers")
    data_columns = {c for c in customers.columns if not c.startswith("_sdc_")}
    assert data_columns == {"external_id", "email", "acme__points"}
    source = {r["external_id"]: r for r in sandbox.records("customers")}
    assert customers.by_key.keys() == {(k,) for k in source}
    for (key,), row in customers.by_key.items():
        assert row["email"] == source[key].get("email")
        assert row["acme__points"] == source[key].get("acme__points")
    # The request named exactly the selected fields (plus the key), so Custobar sent less.
    # (Discovery's narrow look-ups name only fields its sample page lacked, never the key.)
    fields = {
        r["params"]["fields"][0]
        for r in sandbox.requests
        if r["stream"] == "customers" and "external_id" in r["params"].get("fields", [""])[0]
    }
    assert {frozenset(f.split(",")) for f in fields} == {
        frozenset({"external_id", "email", "acme__points"})
    }
    # sales.* keeps every sales column, custom fields included; unselected streams load nothing.
    sales = read_table(pg, pg_schema, "sales")
    assert {"sale_total", "acme__profile", "acme__rare_flag"} <= set(sales.columns)
    # The pinned type wins over the discovered one: target-postgres makes it jsonb.
    assert sales.columns["acme__rare_flag"] == "jsonb"
    flagged = [r for r in sandbox.records("sales") if "acme__rare_flag" in r]
    assert flagged
    for record in flagged:
        row = sales.by_key[(record["sale_external_id"], record["external_id"])]
        assert row["acme__rare_flag"] == record["acme__rare_flag"]
    tables = {
        name
        for (name,) in pg.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
        ).fetchall()
    }
    assert tables == {"customers", "sales"}
