"""Oracles written from DESIGN.md §2, never imported from the tap: what it must emit.

- ``event_id``: DESIGN's definition verbatim (json.dumps, sorted keys, compact, UTF-8, SHA-256);
- ``utc_text`` / ``instant``: date-times through the standard library's own parser and zoneinfo;
- ``expected_record``: a sandbox record as the tap must emit it under a SCHEMA message's schema.

A bug in the tap's faster versions of these is caught because nothing here shares their code.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc
KEYS = {
    "customers": ("external_id",),
    "products": ("external_id",),
    "sales": ("sale_external_id", "external_id"),
    "events": ("event_id",),
}


def event_id(event: dict) -> str:
    """DESIGN §2: the SHA-256 hex digest of the event's sorted, compact JSON (UTF-8)."""
    text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def instant(text: str, zone: dt.tzinfo | str = UTC) -> dt.datetime:
    """An ISO 8601 date-time as an aware UTC datetime; without an offset it is read in `zone`."""
    if isinstance(zone, str):
        zone = ZoneInfo(zone)
    text = text.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not read "Z"
        text = text[:-1] + "+00:00"
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def utc_text(text: str, zone: dt.tzinfo | str = UTC) -> str:
    """DESIGN §2: the same instant in UTC with a Z, as datetime.isoformat() writes it."""
    return instant(text, zone).replace(tzinfo=None).isoformat() + "Z"


def expected_record(stream: str, raw: dict, schema: dict, zone: dt.tzinfo | str = UTC) -> dict:
    """The sandbox record as the tap must emit it under `schema` (a SCHEMA message's)."""
    record = dict(raw)
    if stream == "events":
        record["event_id"] = event_id(raw)
    properties = schema["properties"]
    for name, prop in properties.items():
        if name in record:
            record[name] = by_rule_2(record[name], prop)
        if prop.get("format") == "date-time" and isinstance(record.get(name), str):
            record[name] = utc_text(record[name], zone)
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


def key_of(stream: str, record: t.Mapping[str, t.Any]) -> tuple:
    return tuple(record[k] for k in KEYS[stream])


def by_key(stream: str, records: t.Iterable[dict]) -> dict[tuple, dict]:
    """Records by primary key; fails on a key seen twice."""
    result: dict[tuple, dict] = {}
    for record in records:
        key = key_of(stream, record)
        assert key not in result, f"duplicate primary key {key} in {stream}"
        result[key] = record
    return result
