"""What the tap should emit for the sandbox's records: the same values, datetimes in UTC."""

from __future__ import annotations

import json
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
        if name in record:
            record[name] = by_rule_2(record[name], prop)
        if prop.get("format") == "date-time" and isinstance(record.get(name), str):
            record[name] = normalize_datetime(record[name])
    return {k: v for k, v in record.items() if k in properties}


def by_rule_2(value: t.Any, schema: dict) -> t.Any:
    """A value as it must arrive under its declared schema (DESIGN §2 "Custom fields"): one
    that does not fit is its JSON text in a string field and null in any other (nested values
    by their own schemas; date-times are compared as instants elsewhere)."""
    kinds = [k for k in schema.get("type", []) if k != "null"]
    if value is None or len(kinds) != 1:
        return value
    kind = kinds[0]
    if kind == "string":
        if isinstance(value, str):
            return value
        if schema.get("format") == "date-time":
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if kind in ("number", "integer"):
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        return value if numeric and (kind == "number" or isinstance(value, int)) else None
    if kind == "boolean":  # a whole number fits, and the SDK makes it `value != 0`
        if isinstance(value, int) and not isinstance(value, bool):
            return value != 0
        return value if isinstance(value, bool) else None
    if kind == "object":
        if not isinstance(value, dict):
            return None
        inner = schema.get("properties", {})
        return {k: by_rule_2(v, inner[k]) if k in inner else v for k, v in value.items()}
    if kind == "array":
        if not isinstance(value, list):
            return None
        return [by_rule_2(item, schema.get("items", {})) for item in value]
    return value


def key_of(stream: str, record: dict) -> tuple:
    return tuple(record[k] for k in KEYS[stream])


def by_key(stream: str, records: t.Iterable[dict]) -> dict[tuple, dict]:
    result: dict[tuple, dict] = {}
    for record in records:
        key = key_of(stream, record)
        assert key not in result, f"duplicate primary key {key} in {stream}"
        result[key] = record
    return result
