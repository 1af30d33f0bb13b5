"""The four Custobar streams: each declares only what makes it different."""

from __future__ import annotations

import datetime as dt
import typing as t

from tap_custobar.bookmarks import stored_bookmark
from tap_custobar.client import CustobarStream
from tap_custobar.datetimes import parse_utc, utc_day
from tap_custobar.event_id import ExponentFloatWatch, set_event_ids
from tap_custobar.pagination import Page, Query

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.helpers.types import Context, Record

ONE_DAY = dt.timedelta(days=1)


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
    # An out-of-order record must not abort the run (see bookmarks.py).
    check_sorted = False

    def first_day(self, context: Context | None) -> tuple[dt.date | None, dt.datetime | None]:
        """The first day to request, and the instant to trim records to.

        From a bookmark: its day minus lookback_days, and no trimming (records of those days
        are re-read on purpose). Without one: start_date's day, trimmed to start_date.
        """
        bookmark = stored_bookmark(self.get_context_state(context), self.replication_key)
        if bookmark is not None:
            lookback = int(self.config.get("lookback_days", 1))
            return utc_day(bookmark) - dt.timedelta(days=lookback), None
        start = self.settings.start
        return (None if start is None else utc_day(start)), start

    def last_day(self) -> dt.date | None:
        end = self.settings.end
        return None if end is None else utc_day(end - dt.timedelta(microseconds=1))

    def process_page(self, page: Page, query: Query, page_number: int) -> list[Record]:
        kept = super().process_page(page, query, page_number)
        start, end = query.start, query.end
        if start is None and end is None:
            return kept  # no window to trim to
        key = t.cast("str", self.replication_key)  # set by every incremental stream

        def inside(record: Record) -> bool:
            instant = parse_utc(record[key])
            return (end is None or instant < end) and (start is None or instant >= start)

        return [record for record in kept if inside(record)]


class EventsStream(IncrementalStream):
    """Events: one partition per configured type, incremental on date."""

    name = "events"
    primary_keys = ("event_id",)
    replication_key = "date"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._float_watch = ExponentFloatWatch()

    @property
    def partitions(self) -> list[dict]:
        return [{"type": event_type} for event_type in self.settings.event_types]

    def discovery_contexts(self) -> list[dict | None]:
        return list(self.partitions)

    def requested_fields(self) -> list[str] | None:
        return None  # event_id covers the whole event: never narrow the request

    def queries(self, context: Context | None) -> Iterator[Query]:
        if not context:  # event_types is empty: the SDK still runs one context-less pass
            return
        first, start = self.first_day(context)
        params: dict[str, t.Any] = {"type": context["type"], "order": "date"}
        if first is not None:
            params["date.gte"] = first.isoformat()
        if (last := self.last_day()) is not None:
            params["date.lte"] = last.isoformat()
        yield Query(params, f" [type={context['type']}]", start, self.settings.end)

    def decode_body(self, body: bytes) -> tuple[t.Any, bool]:
        payload = self._float_watch.decode(body)
        return payload, self._float_watch.seen

    def process_page(self, page: Page, query: Query, page_number: int) -> list[Record]:
        # Of the events as received, before any change.
        set_event_ids(page.records, may_hold_exponent_float=page.exponent_floats)
        return super().process_page(page, query, page_number)


class SalesStream(IncrementalStream):
    """Sale rows: incremental on sale_date, read day by day from a starting day."""

    name = "sales"
    primary_keys = ("sale_external_id", "external_id")
    replication_key = "sale_date"

    def queries(self, context: Context | None) -> Iterator[Query]:
        first, start = self.first_day(context)
        end = self.settings.end
        if first is None:
            # No starting day: one pass over the whole table, oldest first.
            yield Query({"order": "sale_date"}, "", start, end)
            return
        tomorrow = dt.datetime.now(dt.timezone.utc).date() + ONE_DAY
        last = min(filter(None, (self.last_day(), tomorrow)))
        day = first
        while day <= last:
            params = {"order": "sale_date", "sale_date": day.isoformat()}
            yield Query(params, f" [sale_date={day.isoformat()}]", start, end)
            day += ONE_DAY
