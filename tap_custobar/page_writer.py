"""The page-at-a-time RECORD path, the writer of every message, and the streams' one meeting
point with the SDK's internals (tap.py's config and signal hooks are the tap's own).

The SDK's per-record path (type conformance, deselection, a message object, a JSON encode and
a flush per record) costs several times the HTTP and parsing work of a Custobar page. Here the
same transformations are compiled once per schema and applied to JSON-native records a page at
a time, and each page's RECORD lines go out in one write. tests/test_page_writer.py proves the
output equal, message for message, to the SDK's standard path. That proof holds for the SDK
versions in VERIFIED_SDK_VERSIONS only: on any other the page path stays off and every record
takes the SDK's standard path (slower, never different). On both paths every message goes
out whole through CustobarWriter, even when a signal arrives mid-write.

`PageWriterStream` sits between the SDK's RESTStream and CustobarStream. It names every private
SDK attribute the tap uses, each for one reason:

- `_sync_records` (override): take the page path where it applies; send ACTIVATE_VERSION after
  the last record; report skipped records once per stream.
- `_write_activate_version_message` (override): hold the table version back until the table is
  complete (sent first, a hard-deleting target would empty the table for the whole load).
- `_increment_stream_state` (override): the SDK's per-record bookmark step, handed to the
  stream's own bookkeeping (bookmarks compare as instants and move per page).
- `_write_state_message`: a STATE message after every page, on both paths.
- `_get_state_partition_context`, `_write_starting_replication_value`, `_finalize_state`: the
  state bookkeeping of the SDK's record loop, which `_sync_pages` repeats page by page.
- `_stream_version`: the table version each RECORD line carries.
- `_tap`: the tap's message writer, which the page's lines go through; its `mapper`, which
  must learn a grown schema (`add_properties`) for SCHEMA messages and the standard path.
- `_schema`, `_input_schema`, `_stream_maps`: a stream's schema grown during a sync (fields
  that appear after discovery), where the SDK reads it; no public setter exists.
- `_write_schema_message`: the grown schema's SCHEMA message, right before the first record
  holding a new field (on both paths).
- `_request`: the SDK's one request (authenticator, session, duration metric,
  validate_response), for the stream's request loop, which yields pages, not records.
- `_LOG_REQUEST_METRIC_URLS`: kept off: URLs carry filter values (customer data).
- `helpers._typing` (`_is_exclusive_boolean_type`, `is_object_type`, `is_uniform_list`): the
  SDK's own schema tests, so that conforming follows its rules exactly.
"""

from __future__ import annotations

import abc
import datetime as dt
import gc
import importlib.metadata
import sys
import typing as t
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat

import msgspec
from singer_sdk import RESTStream
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.helpers._typing import (
    _is_exclusive_boolean_type,
    is_object_type,
    is_uniform_list,
)
from singer_sdk.mapper import SameRecordTransform

from tap_custobar.interrupts import OUTPUT_GUARD

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    import requests
    from singer_sdk.helpers.types import Context, Record
    from singer_sdk.singerlib import Message

# The singer-sdk releases the page path's equality test passed on.
VERIFIED_SDK_VERSIONS = frozenset({"0.54.9"})
SDK_VERSION = importlib.metadata.version("singer-sdk")


def page_path_verified() -> bool:
    """Whether the installed singer-sdk is one the page path was verified against."""
    return SDK_VERSION in VERIFIED_SDK_VERSIONS


class CustobarWriter(MsgSpecWriter):
    """MsgSpecWriter that can also write a page of RECORD lines in one call.

    Every write is whole: unbuffered stdout (python -u, PYTHONUNBUFFERED) is a raw file whose
    write() may take only part of the data when a signal interrupts it, and a signal arriving
    during a write stops the run only once the write is complete (interrupts.py).
    """

    def write_message(self, message: Message) -> None:
        write_out(self.format_message(message))

    def write_lines(self, lines: bytes | bytearray) -> None:
        write_out(lines)


def write_out(data: bytes | bytearray) -> None:
    """All of `data` to stdout, flushed; a signal meanwhile takes effect after it."""
    with OUTPUT_GUARD:
        write_all(sys.stdout.buffer, data)
        sys.stdout.flush()


def write_all(stream: t.BinaryIO, data: bytes | bytearray) -> None:
    """Write all of `data`, also to a raw file that takes part of it per call."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else 0 :]


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector paused for one page, from its request until it is written.

    A page is hundreds of thousands of objects, nearly all acyclic and freed by reference
    counting once written; collections triggered while decoding and emitting them would walk
    them again and again. The pause ends with the page, once the page is freed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class PageWriterStream(RESTStream[t.Any]):
    """A REST stream whose records come a page at a time (`partition_pages`), written by the
    page path where it applies and by the SDK's standard path everywhere else."""

    _LOG_REQUEST_METRIC_URLS = False  # URLs can carry filter values (customer data)
    page_path_enabled = True

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self.completed_version: int | None = None
        self.unannounced: frozenset[str] = frozenset()  # new properties, no SCHEMA sent yet

    # --- what the stream provides -----------------------------------------------------

    @abc.abstractmethod
    def partition_pages(self, context: Context | None) -> Iterator[list[Record]]:
        """The post-processed records of this stream or partition, page by page.

        When asked for the next page, every record of the last one has been emitted: the
        moment to move the bookmark and call write_state_message().
        """

    @abc.abstractmethod
    def note_replication_values(self, context: Context | None, values: list[str]) -> None:
        """Replication-key values of emitted records, for the bookmark."""

    @abc.abstractmethod
    def sync_finished(self) -> None:
        """The stream's sync ended (or failed)."""

    # --- requests ---------------------------------------------------------------------

    def send_request(
        self, prepared: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """Send one request the SDK's way: auth, session, duration metric, validate_response."""
        return self._request(prepared, context)

    def write_state_message(self) -> None:
        """A STATE message, if the state changed since the last one."""
        self._write_state_message()

    # --- a schema that grows during a sync --------------------------------------------

    def add_properties(self, added: dict[str, dict]) -> None:
        """Add properties to the stream's schema; its SCHEMA message goes out right before
        the first record holding one of them (`announce_split`)."""
        schema = self.effective_schema
        schema = {**schema, "properties": {**schema.get("properties", {}), **added}}
        self._schema = schema
        if self._input_schema is not None:
            self._input_schema = schema
        self._tap.mapper.register_raw_stream_schema(self.name, schema, self.primary_keys)
        self._stream_maps = self._tap.mapper.stream_maps[self.name]
        self.__dict__.pop("conform_plan", None)
        self.unannounced |= added.keys()

    def announce_split(self, records: list[Record]) -> int | None:
        """Where a page's records need the grown schema's SCHEMA message first: the index of
        the first one holding an unannounced property, or None."""
        if self.unannounced:
            unannounced = self.unannounced
            for index, record in enumerate(records):
                if not unannounced.isdisjoint(record):
                    return index
        return None

    def announce_schema(self) -> None:
        self.unannounced = frozenset()
        self._write_schema_message()

    # --- the SDK's standard path, page by page ----------------------------------------

    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        for page in self.partition_pages(context):
            # The SDK writes each record before asking for the next.
            if (split := self.announce_split(page)) is not None:
                yield from page[:split]
                self.announce_schema()
                page = page[split:]
            yield from page
            del page  # one page at a time

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        # The SDK calls this per record; the bookmark moves per page (see bookmarks.py).
        value = latest_record.get(self.replication_key) if self.replication_key else None
        if isinstance(value, str):
            self.note_replication_values(context, [value])

    def _write_activate_version_message(self, full_table_version: int) -> None:
        # The SDK sends ACTIVATE_VERSION before the first record, and a target that
        # hard-deletes older versions then empties the table for the whole load (or for
        # good, if the run fails). Sent after the last record instead: see _sync_records.
        self.completed_version = full_table_version

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict, t.Any, t.Any]:
        try:
            if write_messages and self.page_path_applies():
                self._sync_pages(context)  # yields nothing: sync() only drains this generator
            else:
                yield from super()._sync_records(context, write_messages=write_messages)
            if self.completed_version is not None:  # also after BATCH messages' records
                super()._write_activate_version_message(self.completed_version)
        finally:
            self.sync_finished()

    # --- the page path ----------------------------------------------------------------

    def page_path_applies(self) -> bool:
        """Only where it provably matches the SDK: a verified SDK version, and no maps,
        flattening, child streams or nested selection."""
        if not (self.page_path_enabled and page_path_verified()):
            return False
        if self.ABORT_AT_RECORD_COUNT is not None:
            return False
        if len(self.stream_maps) != 1 or type(self.stream_maps[0]) is not SameRecordTransform:
            return False
        if self.config.get("flattening_enabled") or self.child_streams:
            return False
        # Nested deselection inside a selected property needs the SDK's recursive pop.
        return not any(
            len(breadcrumb) > 2 and not selected and self.mask[breadcrumb[:2]]
            for breadcrumb, selected in self.mask.items()
        )

    @cached_property
    def conform_plan(self) -> ObjectPlan:
        return compile_object(self.effective_schema, root=True)

    @cached_property
    def deselected_fields(self) -> frozenset[str]:
        properties = self.effective_schema.get("properties", {})
        return frozenset(p for p in properties if not self.mask[("properties", p)])

    def _sync_pages(self, context: Context | None) -> None:
        """The SDK's record loop (Stream._sync_records) with per-record work done per page:
        the same contexts, state, metrics and messages."""
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        contexts = [context] if context is not None else self.partitions
        with record_counter, timer:
            for element in contexts or [{}]:
                record_counter.with_context(element)
                timer.with_context(element)
                current = element or None
                partition = self._get_state_partition_context(current)
                self._write_starting_replication_value(current)
                for page in self.partition_pages(current):
                    record_counter.increment(self.emit_page(page, current, partition))
                    del page  # one page at a time
                if current == partition:
                    self._finalize_state(self.get_context_state(current))
        if not context:
            self._finalize_state(self.stream_state)
        self._write_state_message()

    def emit_page(
        self, records: list[Record], context: Context | None, partition: Context | None
    ) -> int:
        """Write one post-processed page's RECORD messages (conformed as the SDK would) and
        note their replication values; the number written."""
        extracted = dt.datetime.now(dt.timezone.utc)
        for key, value in (partition or {}).items():
            # The SDK adds a partition's context to records that lack it (events from a
            # `type=` query all carry their type already: one C-level look, no loop).
            if not all(map(dict.__contains__, records, repeat(key))):
                for record in records:
                    record.setdefault(key, value)
        if deselected := self.deselected_fields:
            for record in records:
                for name in deselected & record.keys():
                    del record[name]
        conform_page(self.conform_plan, records)
        if not records:
            return 0
        write = self._tap.message_writer.write_lines  # type: ignore[attr-defined]
        if (split := self.announce_split(records)) is not None:
            if split:
                write(record_lines(self.name, records[:split], self._stream_version, extracted))
            self.announce_schema()
            write(record_lines(self.name, records[split:], self._stream_version, extracted))
        else:
            write(record_lines(self.name, records, self._stream_version, extracted))
        self.state_manager.is_flushed = False
        if bookmark_field := self.replication_key:
            values: list[t.Any] = list(map(dict.get, records, repeat(bookmark_field)))
            if set(map(type, values)) != {str}:  # e.g. a number: no bookmark from that one
                values = [value for value in values if type(value) is str]
            self.note_replication_values(context, values)
        return len(records)


# --- conforming, compiled once per schema ---------------------------------------------


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
    """conform() each record of a page in place (the root plan never limits keys: the
    stream has dropped unknown fields already)."""
    if is_noop(plan):
        return
    steps = plan.steps
    for record in records:
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


_encoder = msgspec.json.Encoder()


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
