"""What a load must hold, from the sandbox's own records, and how to compare a loaded value.

Comparisons are by meaning, never by the tap's or a target's formatting:
- date-times are equal as instants (a value without offset is UTC, on both sides);
- numbers are equal as decimals (`1.5 == Decimal("1.5")`), but a boolean is never a number;
- lists and objects element by element; a key absent from a sparse record equals NULL.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t
from decimal import Decimal
from pathlib import Path

from tests.expected import event_id

SCHEMAS = Path(__file__).resolve().parents[2] / "tap_custobar" / "schemas"
STREAMS = ("customers", "products", "sales", "events")
PRIMARY_KEYS = {
    "customers": ("external_id",),
    "products": ("external_id",),
    "sales": ("sale_external_id", "external_id"),
    "events": ("event_id",),
}
# Money and prices: integers in minor units (DESIGN §2), so integer columns in a warehouse.
CENTS = {
    "products": ("price", "sale_price"),
    "sales": ("sale_total", "sale_discount", "sale_shipping", "unit_price", "discount", "total"),
}
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")

Key = tuple[t.Any, ...]


def builtin_properties(stream: str) -> dict[str, dict]:
    """The properties the tap's own schema file declares for `stream`."""
    schema = json.loads((SCHEMAS / f"{stream}.json").read_text(encoding="utf-8"))
    return schema["properties"]


def datetime_properties(stream: str) -> set[str]:
    return {
        name
        for name, spec in builtin_properties(stream).items()
        if spec.get("format") == "date-time"
    }


def key_of(stream: str, record: t.Mapping[str, t.Any]) -> Key:
    return tuple(record.get(name) for name in PRIMARY_KEYS[stream])


def expected_records(stream: str, records: t.Iterable[dict]) -> dict[Key, dict]:
    """Sandbox records by primary key; events get their synthetic id (identical events merge)."""
    expected: dict[Key, dict] = {}
    for record in records:
        if stream == "events":
            record = {**record, "event_id": event_id(record)}
        expected[key_of(stream, record)] = record
    return expected


def instant(value: str | dt.datetime) -> dt.datetime:
    """An aware datetime; a value without offset is UTC."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _number(value: t.Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def same_value(expected: t.Any, actual: t.Any) -> bool:
    """Whether a loaded value means what the sandbox sent."""
    if expected is None:
        return actual is None
    if isinstance(expected, bool):
        return type(actual) is bool and actual is expected
    if isinstance(expected, int | float):
        got = _number(actual)
        return got is not None and got == _number(expected)
    if isinstance(expected, str):
        if isinstance(actual, dt.datetime):
            return bool(_DATETIME.match(expected)) and instant(expected) == instant(actual)
        if not isinstance(actual, str):
            return False
        if actual == expected:
            return True
        return bool(_DATETIME.match(expected) and _DATETIME.match(actual)) and (
            instant(expected) == instant(actual)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same_value(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(same_value(expected[k], actual[k]) for k in expected)
        )
    return expected == actual


def same_text(expected: t.Any, actual: t.Any) -> bool:
    """A text column of a field with several JSON types (e.g. integer or string): 3 is '3'."""
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return actual == json.dumps(expected)
    return same_value(expected, actual)


def compare(
    stream: str,
    expected: t.Mapping[Key, dict],
    actual: t.Mapping[Key, t.Mapping[str, t.Any]],
    fields: t.Iterable[str],
    *,
    text_fields: t.Collection[str] = (),
    limit: int = 15,
) -> list[str]:
    """Differences between the sandbox's records and the loaded ones, over `fields`.

    A field absent from a sandbox record must be NULL (or absent) in the load. `text_fields`
    are stored as text, so a number in them is compared as its JSON text.
    """
    problems: list[str] = []
    missing = sorted(set(expected) - set(actual), key=repr)
    extra = sorted(set(actual) - set(expected), key=repr)
    if missing:
        problems.append(f"{stream}: {len(missing)} keys not loaded, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{stream}: {len(extra)} keys loaded that the sandbox lacks: {extra[:5]}")
    names = sorted(fields)
    for key in sorted(set(expected) & set(actual), key=repr):
        record, row = expected[key], actual[key]
        for name in names:
            want, got = record.get(name), row.get(name)
            same = same_text if name in text_fields else same_value
            if not same(want, got):
                problems.append(f"{stream} {key} {name}: sandbox {want!r}, loaded {got!r}")
                if len(problems) >= limit:
                    return problems
    return problems
