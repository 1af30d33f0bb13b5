"""Post-processing a page of records: what the SDK's post_process does, a page at a time."""

from __future__ import annotations

import typing as t

from tap_custobar.datetimes import normalize_datetime

if t.TYPE_CHECKING:
    import datetime as dt
    import logging

    from singer_sdk import Stream
    from singer_sdk.helpers.types import Record

SKIPPED_POSITIONS_REPORTED = 5


class RecordProcessor:
    """One stream's record rules: fields the catalog lacks are dropped (and listed in one
    warning at the end), datetimes become UTC with `Z`, and records without their keys are
    skipped (and counted, to be reported once at the end).

    Built from the stream's effective schema: `known_fields` is None when the schema allows
    any property.
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
        self._reported_unknown: set[str] = set()
        self._dropped_fields: set[str] = set()

    @classmethod
    def for_stream(cls, stream: Stream, api_timezone: dt.tzinfo) -> RecordProcessor:
        """The rules of a stream's effective schema (the catalog's, else its own)."""
        schema = stream.effective_schema
        properties = schema.get("properties", {})
        return cls(
            stream.name,
            stream.logger,
            known_fields=None if schema.get("additionalProperties") else frozenset(properties),
            datetime_fields=tuple(
                name for name, prop in properties.items() if prop.get("format") == "date-time"
            ),
            required_fields=(*stream.primary_keys, *filter(None, [stream.replication_key])),
            replication_key=stream.replication_key,
            api_timezone=api_timezone,
        )

    def process_page(self, page: list[Record], page_number: int) -> list[Record]:
        """Post-process a page in place: the records to emit, in order."""
        known = self.known_fields
        # One look at the page's keys, rather than one per record, when none is unknown.
        if known is not None and known.issuperset(set().union(*page)):
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
                        self.report_bad_datetime(name)
            else:  # no break: the replication key, if any, is a date-time
                for key in required:
                    if row.get(key) in (None, ""):
                        self.skip(f"missing {key}", page_number)
                        break
                else:
                    keep(row)
        return kept

    def drop_unknown_fields(self, row: Record) -> None:
        """Drop properties the catalog lacks, noting them for report_dropped_fields."""
        for name in row.keys() - t.cast("frozenset[str]", self.known_fields):
            del row[name]
            self._dropped_fields.add(name)

    def report_dropped_fields(self) -> None:
        """One warning per stream listing the fields dropped since the last report."""
        names = sorted(self._dropped_fields - self._reported_unknown)
        if names:
            self._reported_unknown.update(names)
            self.logger.warning(dropped_fields_message(self.stream, names))

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

    def report_skipped(self) -> None:
        if self._skipped:
            self.logger.warning(
                "%s: skipped %d record(s) without their key or replication key; first: %s",
                self.stream,
                self._skipped,
                "; ".join(self._skipped_positions),
            )


def dropped_fields_message(stream: str, names: list[str]) -> str:
    return (
        f"{stream}: {len(names)} field(s) in the data are not in the catalog's schema, so they "
        f"are dropped: {', '.join(names)}; re-run discovery (meltano: --refresh-catalog) to "
        "add them"
    )
