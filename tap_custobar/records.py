"""Post-processing a page of records: what the SDK's post_process does, a page at a time."""

from __future__ import annotations

import typing as t

from tap_custobar.datetimes import normalize_datetime
from tap_custobar.field_types import FieldConformer, describe, fields_to_conform
from tap_custobar.schema_growth import SchemaGrowth

if t.TYPE_CHECKING:
    import datetime as dt
    import logging
    from collections.abc import Callable

    from singer_sdk import Stream
    from singer_sdk.helpers.types import Record

SKIPPED_POSITIONS_REPORTED = 5


class RecordProcessor:
    """One stream's record rules: fields the catalog lacks join the schema or are dropped
    (schema_growth.py), datetimes become UTC with `Z`, custom fields' values fit their
    declared types (field_types.py's rule 2), and records without their keys are skipped.
    Skipped records, misfits and fields not emitted are reported once, at the end.

    Built from the stream's effective schema: `known_fields` is None when the schema allows
    any property. `on_new_fields` hears of the fields a page adds, before its records.
    """

    def __init__(
        self,
        stream: str,
        logger: logging.Logger,
        *,
        known_fields: frozenset[str] | None,
        datetime_fields: tuple[str, ...],
        required_fields: tuple[str, ...],
        replication_key: str | None,
        api_timezone: dt.tzinfo,
        conformer: FieldConformer | None = None,
        growth: SchemaGrowth | None = None,
        on_new_fields: Callable[[dict[str, dict]], None] | None = None,
    ) -> None:
        self.stream = stream
        self.logger = logger
        self.known_fields = known_fields
        self.datetime_fields = datetime_fields
        self.required_fields = required_fields
        self.replication_key = replication_key
        self.api_timezone = api_timezone
        self._skipped = 0
        self._skipped_positions: list[str] = []
        self._bad_datetimes: set[str] = set()
        self.conformer = conformer or FieldConformer({}, zone=api_timezone)
        self.growth = growth
        self.on_new_fields = on_new_fields

    @classmethod
    def for_stream(
        cls,
        stream: Stream,
        api_timezone: dt.tzinfo,
        builtin: dict[str, t.Any],
        on_new_fields: Callable[[dict[str, dict]], None] | None = None,
    ) -> RecordProcessor:
        """The rules of a stream's effective schema (the catalog's, else its own), with
        `builtin` its built-in schema (custom fields are the others)."""
        schema = stream.effective_schema
        properties = schema.get("properties", {})
        known = None if schema.get("additionalProperties") else frozenset(properties)
        custom = fields_to_conform(properties, builtin.get("properties", {}))
        return cls(
            stream.name,
            stream.logger,
            known_fields=known,
            datetime_fields=tuple(
                name for name, prop in properties.items() if prop.get("format") == "date-time"
            ),
            required_fields=(*stream.primary_keys, *filter(None, [stream.replication_key])),
            replication_key=stream.replication_key,
            api_timezone=api_timezone,
            conformer=FieldConformer(custom, zone=api_timezone),
            growth=None if known is None else SchemaGrowth(why_fields_may_not_join(stream)),
            on_new_fields=on_new_fields,
        )

    def process_page(self, page: list[Record], page_number: int) -> list[Record]:
        """Post-process a page in place: the records to emit, in order."""
        known = self.known_fields
        if known is not None:
            # One look at the page's keys, rather than one per record, when none is unknown.
            keys = set().union(*page)
            if not known.issuperset(keys) and self.growth is not None:
                self.grow(page, keys - known, page_number)
                known = t.cast("frozenset[str]", self.known_fields)
            if known.issuperset(keys):
                known = None
        zone = self.api_timezone
        datetime_fields = self.datetime_fields
        required = self.required_fields
        replication_key = self.replication_key
        normalize = normalize_datetime
        kept: list[Record] = []
        keep = kept.append
        for row in page:
            if known is not None and not known.issuperset(row):
                self.drop_unknown_fields(row)
            for name in datetime_fields:
                value = row.get(name)
                if type(value) is str:
                    try:
                        row[name] = normalize(value, zone)
                    except ValueError:
                        if name == replication_key:
                            self.skip(f"{name} is not a date-time", page_number)
                            break
                        row[name] = self.unparsed_datetime(name, value, page_number)
            else:  # no break: the replication key, if any, is a date-time
                for key in required:
                    if row.get(key) in (None, ""):
                        self.skip(f"missing {key}", page_number)
                        break
                else:
                    keep(row)
        if self.conformer.plans:  # rule 2
            self.conformer.conform_page(kept, page_number)
        return kept

    def grow(self, page: list[Record], unknown: set[str], page_number: int) -> None:
        """Let the fields a page brings join the stream (when they may), before its records."""
        added = t.cast("SchemaGrowth", self.growth).new_fields(page, unknown)
        if not added:
            return
        self.known_fields = t.cast("frozenset[str]", self.known_fields) | added.keys()
        self.datetime_fields += tuple(
            name for name, prop in added.items() if prop.get("format") == "date-time"
        )
        self.conformer = self.conformer.extended(added)
        self.logger.info(
            "%s: field(s) not in the catalog on page %d, added with a new SCHEMA message: %s",
            self.stream,
            page_number,
            ", ".join(f"{name} ({describe(schema)})" for name, schema in added.items()),
        )
        if self.on_new_fields is not None:
            self.on_new_fields(added)

    def drop_unknown_fields(self, row: Record) -> None:
        """Drop properties the catalog lacks (a narrowed selection, or discover_custom_fields
        off: the growth's warning names them once at the end)."""
        for name in row.keys() - t.cast("frozenset[str]", self.known_fields):
            del row[name]

    def unparsed_datetime(self, name: str, value: str, page_number: int) -> str | None:
        """A date-time field's value that is not an ISO date-time: a built-in passes it
        through (with one warning), a custom field makes it null (counted, rule 2)."""
        if name in self.conformer.properties:
            self.conformer.not_a_datetime(name, page_number)
            return None
        self.report_bad_datetime(name)
        return value

    def report_bad_datetime(self, name: str) -> None:
        if name not in self._bad_datetimes:
            self._bad_datetimes.add(name)
            self.logger.warning(
                "%s: field %s holds a value that is not an ISO date-time; passing it through "
                "unchanged",
                self.stream,
                name,
            )

    def skip(self, why: str, page_number: int) -> None:
        """Count a record that cannot be loaded or bookmarked (reported at the end)."""
        self._skipped += 1
        if len(self._skipped_positions) < SKIPPED_POSITIONS_REPORTED:
            self._skipped_positions.append(f"page {page_number} ({why})")

    def report(self) -> None:
        """The stream's end: skipped records, misfits, fields not emitted (one line each)."""
        self.report_skipped()
        for line in self.conformer.reports(self.stream):
            self.logger.warning(line)
        if self.growth is not None and (unlisted := self.growth.warning(self.stream)):
            self.logger.warning(unlisted)

    def report_skipped(self) -> None:
        if self._skipped:
            self.logger.warning(
                "%s: skipped %d record(s) without their key or replication key; first: %s",
                self.stream,
                self._skipped,
                "; ".join(self._skipped_positions),
            )


def why_fields_may_not_join(stream: Stream) -> tuple[str, str] | None:
    """Why fields that appear after discovery may not join the stream, and what lets them;
    None when they may."""
    if not stream.config.get("discover_custom_fields", True):
        return "discover_custom_fields is off", "turn discover_custom_fields on"
    if not all(stream.mask.values()):
        return (
            "the stream's selection is narrowed",
            f"select them (or `{stream.name}.*`) and refresh the catalog (meltano: "
            "--refresh-catalog)",
        )
    return None
