"""Custom-field discovery: which fields a tenant's data has, and their JSON types.

A CSV response without `fields` has a column for every potential property (API doc), so
`format=csv&limit=1` lists the names cheaply; a JSON sample gives the types.
"""

from __future__ import annotations

import csv
import io
import re
import typing as t

from singer_sdk.exceptions import FatalAPIError

from tap_custobar.http import RetriesExhaustedError, UnreachableHostError

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable


class Sampled(t.Protocol):
    """What discovery asks of a stream: its queries, and one CSV header / JSON page each."""

    name: str

    @property
    def logger(self) -> logging.Logger: ...

    def discovery_contexts(self) -> list[dict | None]: ...

    def fetch_csv_header(self, params: dict) -> list[str]: ...

    def fetch_records(self, params: dict) -> list[dict]: ...


DATETIME_PATTERN = re.compile(
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"
)
# A field no sampled record carries: any JSON value loads (target-postgres makes it jsonb).
PERMISSIVE_SCHEMA: dict[str, t.Any] = {
    "type": ["string", "number", "integer", "boolean", "object", "array", "null"]
}
_KIND_ORDER = ("string", "number", "integer", "boolean", "object", "array")


def sample(stream: Sampled, sample_size: int) -> tuple[list[str], list[dict]]:
    """Field names from a one-row CSV, and a JSON sample of records, per discovery context."""
    names: list[str] = []
    records: list[dict] = []
    for context in stream.discovery_contexts():
        base = dict(context or {})
        try:
            names.extend(stream.fetch_csv_header(base))
        except (RetriesExhaustedError, UnreachableHostError):
            raise  # the server cannot be reached: no point asking for the JSON sample too
        except FatalAPIError as exc:
            stream.logger.warning(
                "%s: no CSV field list (%s); discovering from the JSON sample only",
                stream.name,
                exc,
            )
        records.extend(stream.fetch_records({**base, "limit": sample_size}))
    return names, records


def csv_header(text: str) -> list[str]:
    """The column names of a CSV response."""
    reader = csv.reader(io.StringIO(text))
    return [name.strip() for name in next(reader, []) if name.strip()]


def infer_schema(values: Iterable[t.Any]) -> dict[str, t.Any]:
    """A nullable JSON schema that accepts every sampled value (never empty)."""
    kinds: set[str] = set()
    items: list[t.Any] = []
    objects: list[dict] = []
    date_times = strings = 0
    for value in values:
        if value is None:
            continue
        kind = json_kind(value)
        kinds.add(kind)
        if kind == "array":
            items.extend(value)
        elif kind == "object":
            objects.append(value)
        elif kind == "string":
            strings += 1
            date_times += bool(DATETIME_PATTERN.match(value))
    if not kinds:
        return dict(PERMISSIVE_SCHEMA)
    if {"integer", "number"} <= kinds:
        kinds.discard("integer")
    schema: dict[str, t.Any] = {"type": [k for k in _KIND_ORDER if k in kinds] + ["null"]}
    if kinds == {"string"} and date_times == strings:
        schema["format"] = "date-time"
    if "array" in kinds:
        schema["items"] = _non_null(infer_schema(items)) if items else {}
    if "object" in kinds:
        schema["properties"] = infer_properties(objects)
        schema["additionalProperties"] = True
    return schema


def infer_properties(records: Iterable[dict]) -> dict[str, dict[str, t.Any]]:
    """Property schemas for a list of objects, in first-seen order."""
    values: dict[str, list[t.Any]] = {}
    for record in records:
        for key, value in record.items():
            values.setdefault(key, []).append(value)
    return {key: infer_schema(found) for key, found in values.items()}


def json_kind(value: t.Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def _non_null(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    types = [kind for kind in schema.get("type", []) if kind != "null"]
    return {**schema, "type": types} if types else schema


def extend_schema(
    schema: dict[str, t.Any], names: Iterable[str], samples: list[dict]
) -> tuple[dict[str, t.Any], list[str]]:
    """The built-in schema plus every discovered field it lacks (built-ins keep their types)."""
    properties = dict(schema.get("properties", {}))
    added: list[str] = []
    sampled = infer_properties(samples)
    for name in [*names, *sampled]:
        if name in properties:
            continue
        properties[name] = sampled.get(name, dict(PERMISSIVE_SCHEMA))
        added.append(name)
    return {**schema, "properties": properties}, added


class TenantUnreadableError(FatalAPIError):
    """Discovery could not read the tenant: no catalog is written."""


def discovery_failure(exc: BaseException) -> str:
    """Why discovery wrote no catalog, and the way to a catalog without asking the tenant."""
    reason = " ".join(str(exc).split()) or exc.__class__.__name__
    return (
        f"discovery could not read the tenant's fields, so no catalog was written: {reason} "
        "(to write the built-in catalog without asking the tenant, set "
        "discover_custom_fields to false)"
    )
