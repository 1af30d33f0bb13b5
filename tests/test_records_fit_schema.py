"""Every RECORD the tap emits fits the SCHEMA it sent before it.

This is the guarantee behind meltano.yml's `validate_records: false` for target-postgres: the
loader then trusts the tap instead of checking each record. Checked with the Singer SDK's own
target-side validator (the one target-postgres runs when validation is on), formats included.
"""

from __future__ import annotations

import copy

import pytest
from singer_sdk.exceptions import InvalidRecord
from singer_sdk.sinks.core import JSONSchemaValidator

from tests.harness import run_tap, run_tap_cli, sandbox_config

STREAMS = ("customers", "products", "sales", "events")


def checked_records(messages: list[dict]) -> dict[str, int]:
    """Validate each RECORD against its stream's latest SCHEMA; records checked per stream."""
    validators: dict[str, JSONSchemaValidator] = {}
    checked: dict[str, int] = {}
    for message in messages:
        if message["type"] == "SCHEMA":
            validators[message["stream"]] = JSONSchemaValidator(
                message["schema"], validate_formats=True
            )
        elif message["type"] == "RECORD":
            stream = message["stream"]
            assert stream in validators, f"a {stream} RECORD came before its SCHEMA"
            validators[stream].validate(message["record"])  # raises InvalidRecord
            checked[stream] = checked.get(stream, 0) + 1
    return checked


@pytest.mark.parametrize("catalog", ["discovered", "none"])
def test_every_record_fits_its_schema(sandbox, catalog: str) -> None:
    config = sandbox_config(sandbox, page_size=53)
    discovered = run_tap_cli(config, args=["--discover"]).messages[0]
    run = run_tap(config, catalog=discovered if catalog == "discovered" else None)

    checked = checked_records(run.messages)

    assert checked == {stream: len(run.records[stream]) for stream in STREAMS}
    assert checked["customers"] == len(sandbox.records("customers"))
    if catalog == "discovered":
        # The discovered custom fields were part of what was checked.
        customer_fields = {name for record in run.records["customers"] for name in record}
        assert any(name.startswith("acme__") for name in customer_fields)


def test_a_record_that_does_not_fit_is_refused(sandbox) -> None:
    # The check above has teeth: the validator refuses values of the wrong type.
    config = sandbox_config(sandbox, page_size=53)
    run = run_tap(config)
    schema = run.schemas["customers"]
    record = run.records["customers"][0]
    for field, value in (("can_email", "yes"), ("tags", "vip"), ("external_id", 7)):
        broken = copy.deepcopy(record)
        broken[field] = value
        messages = [schema, {"type": "RECORD", "stream": "customers", "record": broken}]
        with pytest.raises(InvalidRecord):
            checked_records(messages)
