"""The project's fast target-postgres setup loses nothing: the real `meltano run`, row by row.

meltano.yml sets target-postgres to `validate_records: false` and `use_copy: true` (the fastest
safe setup in `make bench-pipeline`). These runs take the loader's settings from meltano.yml
alone, so they check exactly what a user's `meltano run tap-custobar target-postgres` does.
"""

from __future__ import annotations

import datetime as dt
import json
import typing as t

from tests.e2e.expected import STREAMS, expected_records, instant, key_of
from tests.e2e.pipeline import effective_params, postgres_env, tap_env
from tests.e2e.test_postgres import change_sandbox, check_stream, read_table

FAST_SETUP = {"validate_records": False, "use_copy": True}
STATE_ID = "sandbox:tap-custobar-to-target-postgres:{suffix}"


def bookmarks(meltano: t.Any, suffix: str) -> dict[str, t.Any]:
    """The state Meltano stored for this pipeline: stream -> the SDK's bookmark."""
    result = meltano.ok("--environment=sandbox", "state", "get", STATE_ID.format(suffix=suffix))
    state = json.loads(result.stdout[result.stdout.index("{") :])
    return state["singer_state"]["bookmarks"]


def event_bookmarks(state: dict[str, t.Any]) -> dict[str, str]:
    """events' replication_key_value per event type partition."""
    return {
        partition["context"]["type"]: partition["replication_key_value"]
        for partition in state["events"]["partitions"]
        if "replication_key_value" in partition
    }


def later_sale(sandbox: t.Any, dataset: t.Any, bookmark: str) -> dict[str, t.Any]:
    """Add a one-row sale one minute after `bookmark` (a UTC `...Z` date-time)."""
    moment = instant(bookmark) + dt.timedelta(minutes=1)
    record = {
        "sale_external_id": "SLATEST",
        "external_id": "SLATEST-1",
        "sale_customer_id": "NEW001",
        "sale_date": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sale_state": "COMPLETE",
        "sale_total": 990,
        "unit_price": 990,
        "quantity": 1,
        "total": 990,
        "product_id": dataset.records["products"][0]["external_id"],
    }
    sandbox.add("sales", record)
    return record


def test_meltano_yml_loads_with_the_fast_setup(meltano, postgres, pg_schema):
    result = meltano.ok(
        "--environment=sandbox",
        "config",
        "print",
        "target-postgres",
        env=postgres_env(postgres, pg_schema),
    )
    config = json.loads(result.stdout[result.stdout.index("{") :])
    assert {name: config.get(name) for name in FAST_SETUP} == FAST_SETUP
    # What ACTIVATE_VERSION needs is still on.
    assert config["activate_version"] is True
    assert config["add_record_metadata"] is True
    assert config["hard_delete"] is True


def test_fast_setup_loads_every_row_applies_deletes_and_advances_state(
    meltano, postgres, pg, pg_schema, sandbox, dataset, state_suffix
):
    env = {**tap_env(sandbox), **postgres_env(postgres, pg_schema)}
    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)

    for stream in STREAMS:
        records = sandbox.records(stream)
        assert records, f"the sandbox serves no {stream}"
        table = check_stream(pg, pg_schema, stream, records)
        assert all(row["_sdc_deleted_at"] is None for row in table.rows)
        # Every row carries its table version: ACTIVATE_VERSION can tell old rows from new.
        if stream in ("customers", "products"):
            assert all(row["_sdc_table_version"] is not None for row in table.rows)

    # Custom fields (typed by discovery) land in their own columns, with their values.
    for stream in STREAMS:
        custom = {name for record in sandbox.records(stream) for name in record if "__" in name}
        assert custom, f"the sandbox sends no custom field in {stream}"
        columns = read_table(pg, pg_schema, stream).columns
        assert custom <= set(columns), sorted(custom - set(columns))

    first_state = bookmarks(meltano, state_suffix)
    first_requests = len(sandbox.requests)

    new = change_sandbox(sandbox, dataset)
    erased = dataset.records["customers"][10]["external_id"]
    sandbox.delete("customers", external_id=erased)
    # A sale later than any so far (the data set's dates run to the end of today): the sales
    # bookmark must move to it.
    latest_sale = later_sale(sandbox, dataset, first_state["sales"]["replication_key_value"])
    new["sales"].append(key_of("sales", latest_sale))

    meltano.run_pipeline("target-postgres", env=env, state_suffix=state_suffix)

    for stream in STREAMS:
        table = check_stream(pg, pg_schema, stream, sandbox.records(stream))
        for key in new.get(stream, []) if stream != "events" else []:
            assert key in table.by_key, f"{stream} {key} did not arrive"
    customers = read_table(pg, pg_schema, "customers")
    assert (erased,) not in customers.by_key, "the erased customer lives on in the warehouse"
    events = read_table(pg, pg_schema, "events")
    assert set(expected_records("events", new["events"])) <= set(events.by_key)

    # The second run was incremental and its bookmarks moved on to today's records.
    event_queries = [
        query
        for query in (
            effective_params(r)
            for r in sandbox.requests[first_requests:]
            if r["stream"] == "events"
        )
        if "order" in query
    ]
    assert event_queries
    assert all("date.gte" in query for query in event_queries), event_queries[:3]
    # Sales were read day by day from the bookmark's day (sale_date=...), not the whole table.
    sales_reads = [
        query
        for query in (
            effective_params(r) for r in sandbox.requests[first_requests:] if r["stream"] == "sales"
        )
        if "order" in query
    ]
    assert sales_reads
    assert all("sale_date" in query for query in sales_reads), sales_reads[:3]
    second_state = bookmarks(meltano, state_suffix)
    assert second_state["sales"]["replication_key_value"] == latest_sale["sale_date"]
    before, after = event_bookmarks(first_state), event_bookmarks(second_state)
    assert all(instant(after[kind]) >= instant(before[kind]) for kind in before)
    assert after != before, "no event bookmark advanced on the second run"
