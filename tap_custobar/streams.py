"""The four Custobar streams: each declares only what makes it different."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t

import msgspec

from tap_custobar.client import CustobarStream, partition_key
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
    # An out-of-order record must not abort the run (see CustobarStream._increment_stream_state).
    check_sorted = False

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._from_start_date: dict[tuple, bool] = {}

    def window_start(self, context: Context | None) -> dt.date | None:
        """First day to request: the bookmark's day minus lookback, else start_date's day.

        Records before start_date are trimmed only when the read starts from it (not from a
        bookmark), which post_process learns from what this returns.
        """
        bookmark = self.bookmark(context)
        self._from_start_date[partition_key(context)] = bookmark is None
        if bookmark is not None:
            lookback = int(self.config.get("lookback_days", 1))
            return utc_day(bookmark) - dt.timedelta(days=lookback)
        if self.settings.start is not None:
            return utc_day(self.settings.start)
        return None

    def last_day(self) -> dt.date | None:
        end = self.settings.end
        return None if end is None else utc_day(end - dt.timedelta(microseconds=1))

    def in_window(self, value: str, context: Context | None) -> bool:
        """Whether a replication value lies in [start_date, end_date] as the read asked."""
        from_start = self._from_start_date.get(partition_key(context), False)
        start = self.settings.start if from_start else None
        end = self.settings.end
        if start is None and end is None:
            return True  # no window to trim to: skip the parse
        instant = parse_instant(value)
        return (end is None or instant < end) and (start is None or instant >= start)

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        record = super().post_process(row, context)
        key = t.cast("str", self.replication_key)  # set by every incremental stream
        if record is None or not self.in_window(record[key], context):
            return None
        return record


class EventsStream(IncrementalStream):
    """Events: one partition per configured type, incremental on date."""

    name = "events"
    primary_keys = ("event_id",)
    replication_key = "date"

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
        start = self.window_start(context)
        params: dict[str, t.Any] = {"type": context["type"], "order": "date"}
        if start is not None:
            params["date.gte"] = start.isoformat()
        if (last := self.last_day()) is not None:
            params["date.lte"] = last.isoformat()
        return params

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        row["event_id"] = event_id(row)  # of the event as received, before any change
        return super().post_process(row, context)


class SalesStream(IncrementalStream):
    """Sale rows: incremental on sale_date, read day by day from a starting day."""

    name = "sales"
    primary_keys = ("sale_external_id", "external_id")
    replication_key = "sale_date"

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._day: dt.date | None = None

    def read_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        start = self.window_start(context)
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
