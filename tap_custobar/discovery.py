"""Custom-field discovery: which fields a tenant's data has, and their JSON types.

A CSV response without `fields` has a column for every potential property (API doc), so
`format=csv&limit=1` lists the names cheaply; JSON records give the types (field_types.py's
rule 1: one JSON type per field).
"""

from __future__ import annotations

import csv
import io
import typing as t

from tap_custobar.field_types import infer_properties, nullable

if t.TYPE_CHECKING:
    from collections.abc import Iterable


def csv_header(text: str) -> list[str]:
    """The column names of a CSV response."""
    reader = csv.reader(io.StringIO(text))
    return [name.strip() for name in next(reader, []) if name.strip()]


def extend_schema(
    schema: dict[str, t.Any], names: Iterable[str], samples: list[dict]
) -> tuple[dict[str, t.Any], list[str]]:
    """The built-in schema plus every discovered field it lacks (built-ins keep their types);
    a field no sample gave a value is `string` (any value loads as its JSON text)."""
    properties = dict(schema.get("properties", {}))
    added: list[str] = []
    sampled = infer_properties(samples)
    for name in [*names, *sampled]:
        if name in properties:
            continue
        properties[name] = sampled.get(name, nullable("string"))
        added.append(name)
    return {**schema, "properties": properties}, added
