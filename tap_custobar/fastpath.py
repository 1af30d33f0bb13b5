"""The page-at-a-time record path: what the SDK does per record, done per page.

The SDK's per-record path (type conformance, deselection, a message object, a JSON encode
and a flush per record) costs several times the HTTP and parsing work of a Custobar page.
This module does the same transformations for JSON-native records, compiled once per
schema, and writes each page's RECORD lines with one write. tests/test_fast_path.py proves
the output equal, message for message, to the SDK's standard path (singer-sdk is pinned to
the minor version that test ran against).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import msgspec
from singer_sdk.helpers._typing import (
    _is_exclusive_boolean_type,
    is_object_type,
    is_uniform_list,
)

if t.TYPE_CHECKING:
    import datetime as dt

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class ObjectPlan:
    """How to conform one object: the keys it may keep, and the properties needing work."""

    allowed: frozenset[str] | None  # None: any key may stay (additionalProperties)
    steps: tuple[tuple[str, t.Any], ...]


@dataclass(frozen=True)
class ListPlan:
    item: ObjectPlan | str | None


BOOLEAN = "boolean"


def compile_object(schema: dict, *, root: bool = False) -> ObjectPlan:
    """Mirror singer_sdk.helpers._typing._conform_record_data_types for JSON values."""
    properties = schema.get("properties", {})
    allowed = None if root or schema.get("additionalProperties") else frozenset(properties)
    steps = []
    for name, prop in properties.items():
        step = compile_property(prop)
        if step is not None:
            steps.append((name, step))
    return ObjectPlan(allowed, tuple(steps))


def compile_property(prop: dict) -> t.Any:
    """The work a property's values need, or None when they pass through unchanged."""
    if is_uniform_list(prop):
        items = prop["items"]
        item = (
            compile_object(items)
            if is_object_type(items) and "properties" in items
            else compile_primitive(items)
        )
        return None if is_noop(item) else ListPlan(item)
    if is_object_type(prop) and "properties" in prop:
        plan = compile_object(prop)
        return None if is_noop(plan) else plan
    return compile_primitive(prop)


def compile_primitive(prop: dict) -> str | None:
    # Booleans are the only JSON primitives the SDK changes (`value != 0`); msgspec never
    # yields the NaN/infinity it would turn into null.
    return BOOLEAN if _is_exclusive_boolean_type(prop) else None


def is_noop(plan: t.Any) -> bool:
    return plan is None or (
        isinstance(plan, ObjectPlan) and plan.allowed is None and not plan.steps
    )


def conform(plan: ObjectPlan, record: dict) -> dict:
    """Conform a record in place (values are JSON-native: no datetimes or bytes)."""
    if plan.allowed is not None and not record.keys() <= plan.allowed:
        for name in record.keys() - plan.allowed:
            del record[name]
    for name, step in plan.steps:
        value = record.get(name)
        if value is None or value is True or value is False:
            continue  # None stays None, and a JSON boolean is already what the SDK makes
        record[name] = conform_value(step, value)
    return record


def conform_page(plan: ObjectPlan, records: list[dict]) -> None:
    """conform() each record of a page in place (the loop inlined: it runs per record)."""
    if is_noop(plan):
        return
    allowed, steps = plan.allowed, plan.steps
    for record in records:
        if allowed is not None and not record.keys() <= allowed:
            for name in record.keys() - allowed:
                del record[name]
        for name, step in steps:
            value = record.get(name)
            if value is None or value is True or value is False:
                continue
            record[name] = conform_value(step, value)


def conform_value(step: t.Any, value: t.Any) -> t.Any:
    if step is BOOLEAN:
        return value != 0
    if isinstance(step, ObjectPlan):
        return conform(step, value) if isinstance(value, dict) else value
    if isinstance(step, ListPlan) and isinstance(value, list):
        item = step.item
        if isinstance(item, ObjectPlan):
            return [conform(item, v) if isinstance(v, dict) else v for v in value]
        return [None if v is None else conform_value(item, v) for v in value]
    return value


def record_lines(
    stream: str, records: list[dict], version: int | None, extracted: dt.datetime
) -> bytearray:
    """RECORD messages, one JSON line each, for a page of records (encoded in one buffer)."""
    head = b'{"type":"RECORD","stream":' + _encoder.encode(stream) + b',"record":'
    tail = b""
    if version is not None:
        tail += b',"version":' + _encoder.encode(version)
    tail += b',"time_extracted":' + _encoder.encode(extracted) + b"}\n"
    lines = bytearray()
    encode_into = _encoder.encode_into
    for record in records:
        lines += head
        encode_into(record, lines, -1)
        lines += tail
    return lines
