"""The four Custobar streams: each declares only what makes it different."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t

import msgspec

from tap_custobar.client import CustobarStream
from tap_custobar.datetimes import parse_instant, utc_day

if t.TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record

ONE_DAY = dt.timedelta(days=1)


_SORTED_JSON = msgspec.json.Encoder(order="sorted")


def event_id(event: dict) -> str:
    """SHA-256 of the event exactly as received (DESIGN §2, with its test vector).

    The definition is `json.dumps(event, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)` in UTF-8. msgspec's sorted encoding gives the same bytes, several
    times faster, except for floats that Python writes with an exponent (`1e+16`; msgspec
    writes `1e16`): events holding one take the definition itself.
    """
    if _holds_exponent_float(event):
        text = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        canonical = text.encode("utf-8")
    else:
        canonical = _SORTED_JSON.encode(event)
    return hashlib.sha256(canonical).hexdigest()


def _holds_exponent_float(value: dict | list) -> bool:
    """A float that repr() writes in exponent form: nonzero, below 1e-4 or from 1e16."""
    for item in value.values() if value.__class__ is dict else value:  # type: ignore[union-attr]
        kind = item.__class__
        if kind is float:
            if item and not 1e-4 <= abs(item) < 1e16:
                return True
        elif (kind is dict or kind is list) and _holds_exponent_float(item):
            return True
    return False


class CustomersStream(CustobarStream):
    """Customers: full table, keyed by external_id."""

    name = "customers"
    primary_keys = ("external_id",)


class ProductsStream(CustobarStream):
    """Products: full table, keyed by external_id."""

    name = "products"
    primary_keys = ("external_id",)


class IncrementalStream(CustobarStream):
    """A stream read from a day onwards: the bookmark's day minus lookback, else start_date."""

    is_sorted = True  # requests carry order=<replication key>
    check_sorted = (
        False  # an out-of-order record must not abort the run (see _increment_stream_state)
    )

    def window_start(self, context: Context | None) -> tuple[dt.date | None, bool]:
        """First day to request, and whether it came from start_date (not a bookmark)."""
        bookmark = self.bookmark(context)
        if bookmark is not None:
            lookback = int(self.config.get("lookback_days", 1))
            return utc_day(bookmark) - dt.timedelta(days=lookback), False
        if self.settings.start is not None:
            return utc_day(self.settings.start), True
        return None, False

    def last_day(self) -> dt.date | None:
        end = self.settings.end
        return None if end is None else utc_day(end - dt.timedelta(microseconds=1))

    def in_window(self, value: str, *, from_start_date: bool) -> bool:
        start = self.settings.start if from_start_date else None
        if start is None and self.settings.end is None:
            return True  # no window to trim to: skip the parse
        instant = parse_instant(value)
        if self.settings.end is not None and instant >= self.settings.end:
            return False
        return not (
            from_start_date and self.settings.start is not None and instant < self.settings.start
        )


class EventsStream(IncrementalStream):
    """Events: one partition per configured type, incremental on date."""

    name = "events"
    primary_keys = ("event_id",)
    replication_key = "date"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._from_start_date: dict[str, bool] = {}

    @property
    def partitions(self) -> list[dict]:
        return [{"type": event_type} for event_type in self.settings.event_types]

    def partition_label(self, context: Context | None) -> str:
        return f" [type={context['type']}]" if context else ""

    def discovery_contexts(self) -> list[dict | None]:
        return list(self.partitions)

    def read_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        if not context:  # event_types is empty: the SDK still runs one context-less pass
            return iter(())
        return super().read_pages(context)

    def requested_fields(self) -> list[str] | None:
        return None  # event_id covers the whole event: never narrow the request

    def query_params(self, context: Context | None) -> dict[str, t.Any]:
        assert context is not None  # events always run per type partition
        start, from_start_date = self.window_start(context)
        self._from_start_date[context["type"]] = from_start_date
        params: dict[str, t.Any] = {"type": context["type"], "order": "date"}
        if start is not None:
            params["date.gte"] = start.isoformat()
        if (last := self.last_day()) is not None:
            params["date.lte"] = last.isoformat()
        return params

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        row["event_id"] = event_id(row)  # of the event as received, before any change
        record = super().post_process(row, context)
        if record is None or context is None:
            return record
        from_start = self._from_start_date.get(context["type"], False)
        return record if self.in_window(record["date"], from_start_date=from_start) else None


class SalesStream(IncrementalStream):
    """Sale rows: incremental on sale_date, read day by day from a starting day."""

    name = "sales"
    primary_keys = ("sale_external_id", "external_id")
    replication_key = "sale_date"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._day: dt.date | None = None
        self._from_start_date = False

    def read_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        start, self._from_start_date = self.window_start(context)
        if start is None:
            # No starting day: one pass over the whole table, oldest first.
            self._day = None
            yield from self.request_pages(context)
            return
        tomorrow = dt.datetime.now(dt.timezone.utc).date() + ONE_DAY
        last = min(filter(None, (self.last_day(), tomorrow)))
        day = start
        while day <= last:
            self._day = day
            yield from self.request_pages(context)
            day += ONE_DAY

    def partition_label(self, context: Context | None) -> str:
        return f" [sale_date={self._day.isoformat()}]" if self._day else ""

    def query_params(self, context: Context | None) -> dict[str, t.Any]:
        params: dict[str, t.Any] = {"order": "sale_date"}
        if self._day is not None:
            params["sale_date"] = self._day.isoformat()
        return params

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        record = super().post_process(row, context)
        if record is None:
            return None
        return (
            record
            if self.in_window(record["sale_date"], from_start_date=self._from_start_date)
            else None
        )
