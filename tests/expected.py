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
        if prop.get("format") == "date-time" and isinstance(record.get(name), str):
            record[name] = utc_text(record[name], zone)
    return {k: v for k, v in record.items() if k in properties}


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
