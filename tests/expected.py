"""What the tap should emit for the sandbox's records: the same values, datetimes in UTC."""

from __future__ import annotations

import typing as t

from tap_custobar.datetimes import normalize_datetime
from tap_custobar.event_id import event_id

KEYS = {
    "customers": ("external_id",),
    "products": ("external_id",),
    "sales": ("sale_external_id", "external_id"),
    "events": ("event_id",),
}


def expected_record(stream: str, raw: dict, schema: dict) -> dict:
    """The sandbox record as the tap must emit it under `schema` (a SCHEMA message's)."""
    record = dict(raw)
    if stream == "events":
        record["event_id"] = event_id(raw)
    properties = schema["properties"]
    for name, prop in properties.items():
        if prop.get("format") == "date-time" and isinstance(record.get(name), str):
            record[name] = normalize_datetime(record[name])
    return {k: v for k, v in record.items() if k in properties}


def key_of(stream: str, record: dict) -> tuple:
    return tuple(record[k] for k in KEYS[stream])


def by_key(stream: str, records: t.Iterable[dict]) -> dict[tuple, dict]:
    result: dict[tuple, dict] = {}
    for record in records:
        key = key_of(stream, record)
        assert key not in result, f"duplicate primary key {key} in {stream}"
        result[key] = record
    return result
