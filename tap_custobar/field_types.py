"""Custom fields: one JSON type per field, and values that always fit it.

Rule 1 (`infer_type`): a field gets exactly one JSON type besides null, from the values seen:
numbers `number` (whole or not), booleans `boolean`, strings that are all ISO date-times
`string` + `date-time`, objects `object` (properties by the same rules, more allowed), arrays
`array` (items by the same rules), anything mixed or never seen `string`. Loaders make one
column per field, and unions crash several of them.

Rule 2 (`FieldConformer`): a value that does not fit its declared type becomes its JSON text in
a `string` field, and null in any other, where it is counted (never logged: it is customer data).
A whole number fits a `boolean` field (the SDK's conforming then makes it true or false).
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass, field
from itertools import chain, repeat

from tap_custobar.datetimes import UTC, normalize_datetime

if t.TYPE_CHECKING:
    import datetime as dt
    from collections.abc import Callable, Iterable

# A date and a time of day at least: a bare date or a number-like string is not a date-time.
DATETIME_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?)?$",
    re.IGNORECASE,
)
NoneType = type(None)
NO_TYPES: frozenset[type] = frozenset({NoneType})


def nullable(kind: str) -> dict[str, t.Any]:
    return {"type": [kind, "null"]}


def json_kind(value: t.Any) -> str:
    """The rule-1 kind of a JSON value (not None): integers and floats are both numbers."""
    kind = type(value)
    if kind is bool:
        return "boolean"
    if kind is int or kind is float:
        return "number"
    if kind is str:
        return "string"
    if kind is list:
        return "array"
    if kind is dict:
        return "object"
    return "string"


def is_datetime_text(value: str) -> bool:
    if not DATETIME_PATTERN.match(value):
        return False
    try:
        normalize_datetime(value, UTC)
    except ValueError:
        return False
    return True


def infer_type(values: Iterable[t.Any]) -> dict[str, t.Any]:
    """Rule 1: the nullable schema of one JSON type that the values call for."""
    kinds: set[str] = set()
    strings: list[str] = []
    objects: list[dict] = []
    items: list[t.Any] = []
    for value in values:
        if value is None:
            continue
        kind = json_kind(value)
        kinds.add(kind)
        if kind == "string":
            strings.append(value)
        elif kind == "object":
            objects.append(value)
        elif kind == "array":
            items.extend(value)
    if len(kinds) != 1:
        return nullable("string")  # mixed, or never seen
    kind = kinds.pop()
    schema = nullable(kind)
    if kind == "string" and all(map(is_datetime_text, strings)):
        schema["format"] = "date-time"
    elif kind == "object":
        schema["properties"] = infer_properties(objects)
        schema["additionalProperties"] = True
    elif kind == "array":
        schema["items"] = infer_type(items)
    return schema


def infer_properties(records: Iterable[dict]) -> dict[str, dict[str, t.Any]]:
    """Rule-1 schemas of the keys of some objects, in first-seen order."""
    values: dict[str, list[t.Any]] = {}
    for record in records:
        for key, value in record.items():
            values.setdefault(key, []).append(value)
    return {key: infer_type(found) for key, found in values.items()}


# --- rule 2 ------------------------------------------------------------------------------------

_FITTING_TYPES: dict[str, frozenset[type]] = {
    "string": frozenset({str}),
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    # A whole number in a boolean field fits: the SDK's conforming, which runs after rule 2
    # on both record paths, makes it `value != 0` (how Custobar's own 0/1 booleans load).
    "boolean": frozenset({bool, int}),
    "object": frozenset({dict}),
    "array": frozenset({list}),
}
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_CONTAINER_TYPES = frozenset({dict, list, NoneType})
_INF = float("inf")


def _of_type(kind: type, values: list[t.Any]) -> list[t.Any]:
    return [value for value in values if type(value) is kind]


def json_text(value: t.Any) -> str:
    """A value's JSON text (json.dumps, compact, non-ASCII kept); numbers without the detour."""
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is float and value == value and value not in (_INF, -_INF):
        return repr(value)  # what json.dumps writes for a finite float
    return _JSON_TEXT(value)


@dataclass
class Misfit:
    """Values of one field (path) emitted as null because they did not fit."""

    declared: str
    count: int = 0
    first_page: int = 0


class Plan:
    """How to make the values of one declared (sub)schema fit it."""

    def __init__(
        self, schema: dict[str, t.Any], path: str, *, top: bool, zone: dt.tzinfo = UTC
    ) -> None:
        types = schema.get("type")
        kinds = [types] if isinstance(types, str) else [k for k in (types or ()) if k != "null"]
        self.path = path
        self.declared = "/".join(kinds)
        self.as_text = "string" in kinds
        self.date_time = self.as_text and schema.get("format") == "date-time"
        # Top-level date-times are normalised by the record path already (with the built-ins).
        self.normalize = self.date_time and not top
        self.zone = zone
        fitting: set[type] = set()
        for kind in kinds:
            fitting |= _FITTING_TYPES.get(kind, frozenset())
        self.fitting = frozenset(fitting)
        self.quick = frozenset(fitting | {NoneType})  # types a column may hold untouched
        self.checks_nothing = not kinds or any(k not in _FITTING_TYPES for k in kinds)
        self.properties: tuple[tuple[str, Plan], ...] = ()
        self.items: Plan | None = None
        if "object" in kinds and isinstance(schema.get("properties"), dict):
            self.properties = tuple(
                (name, Plan(sub, f"{path}.{name}", top=False, zone=zone))
                for name, sub in schema["properties"].items()
                if isinstance(sub, dict)
            )
        if "array" in kinds and isinstance(schema.get("items"), dict):
            self.items = Plan(schema["items"], f"{path}[]", top=False, zone=zone)

    def column_fits(self, values: Iterable[t.Any]) -> bool:
        """Whether every value of a column already fits (C-level passes, no per-value code)."""
        if self.checks_nothing:
            return True
        if self.normalize:
            return False
        if not self.properties and self.items is None:
            return self.quick.issuperset(map(type, values))
        values = list(values)
        if not self.quick.issuperset(map(type, values)):
            return False
        # Only containers and nulls here (else a one-by-one filter): drop the nulls in C.
        plain = self.quick <= _CONTAINER_TYPES
        if self.properties:
            objects = list(filter(None, values) if plain else _of_type(dict, values))
            for name, plan in self.properties:
                if not plan.column_fits(map(dict.get, objects, repeat(name))):
                    return False
        if self.items is not None:
            lists = filter(None, values) if plain else _of_type(list, values)
            if not self.items.column_fits(chain.from_iterable(lists)):
                return False
        return True

    def fit(self, value: t.Any, misfit: Callable[[Plan], None]) -> t.Any:
        """The value made to fit (rule 2); `misfit` hears of every value made null."""
        if value is None or self.checks_nothing:
            return value
        kind = type(value)
        if kind not in self.fitting:
            if self.as_text and not self.date_time:
                return value if kind is str else json_text(value)
            misfit(self)
            return None
        if kind is str and self.normalize:
            try:
                return normalize_datetime(value, self.zone)
            except ValueError:
                misfit(self)
                return None
        if kind is dict and self.properties:
            for name, plan in self.properties:
                if name in value:
                    value[name] = plan.fit(value[name], misfit)
        elif kind is list and self.items is not None:
            item = self.items
            return [item.fit(element, misfit) for element in value]
        return value


@dataclass
class FieldConformer:
    """Rule 2 for a stream's fields whose declared type the tap does not already guarantee."""

    properties: dict[str, dict[str, t.Any]]
    zone: dt.tzinfo = UTC
    misfits: dict[str, Misfit] = field(default_factory=dict)
    page: int = 0

    def __post_init__(self) -> None:
        self.plans = tuple(
            (name, Plan(schema, name, top=True, zone=self.zone))
            for name, schema in self.properties.items()
        )

    def conform_page(self, records: list[dict], page: int) -> None:
        """Make every value of the planned fields fit, in place (a page at a time: the checks
        are per column, and only a column holding a misfit is walked value by value)."""
        self.page = page
        for name, plan in self.plans:
            values = list(map(dict.get, records, repeat(name)))
            if plan.column_fits(values):
                continue
            fit, note = plan.fit, self.note
            # Values of a fitting type need no look unless they have insides or need parsing.
            skip = NO_TYPES if plan.properties or plan.items or plan.normalize else plan.quick
            for record, value in zip(records, values, strict=True):
                if type(value) not in skip:
                    record[name] = fit(value, note)

    def note(self, plan: Plan) -> None:
        found = self.misfits.get(plan.path)
        if found is None:
            found = self.misfits[plan.path] = Misfit(plan.declared, 0, self.page)
        found.count += 1

    def extended(self, properties: dict[str, dict[str, t.Any]]) -> FieldConformer:
        """This conformer with more fields (new ones: the schema grew), misfits kept."""
        return FieldConformer({**self.properties, **properties}, self.zone, self.misfits)

    def not_a_datetime(self, name: str, page: int) -> None:
        """A top-level date-time value that did not parse (the record path nulls it)."""
        self.page = page
        self.note(dict(self.plans)[name])

    def reports(self, stream: str) -> list[str]:
        """One line per field with values made null: field, count, first page (no value)."""
        return [
            f"{stream}: field {path}: {found.count} value(s) did not fit its declared type "
            f"{found.declared} and were emitted as null (first on page {found.first_page}); "
            "pin another type with Meltano's `schema` extra to keep them"
            for path, found in self.misfits.items()
        ]


def fields_to_conform(
    declared: dict[str, dict[str, t.Any]], builtin: dict[str, dict[str, t.Any]]
) -> dict[str, dict[str, t.Any]]:
    """The declared properties the tap must conform: every one not a built-in with its own type
    (built-ins keep their types and behaviour; a built-in given another type is conformed)."""
    return {
        name: schema
        for name, schema in declared.items()
        if isinstance(schema, dict) and builtin.get(name) != schema
    }


def describe(schema: dict[str, t.Any]) -> str:
    kind = next((k for k in schema.get("type", []) if k != "null"), "any")
    if schema.get("format"):
        return f"{kind}, {schema['format']}"
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {describe(schema['items'])}"
    return str(kind)
