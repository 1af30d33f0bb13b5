"""The four Custobar streams: each declares only what makes it different."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t

import msgspec

from tap_custobar.client import CustobarStream, decode_page, partition_key
from tap_custobar.datetimes import parse_utc, utc_day

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
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    return hashlib.sha256(_SORTED_JSON.encode(event)).hexdigest()


def set_event_ids(events: list[dict], *, may_hold_exponent_float: bool = True) -> None:
    """Set each event's event_id(); pages known to hold no exponent-form float (see
    ExponentFloatWatch) skip looking for one, in a loop of their own (it runs per event)."""
    if may_hold_exponent_float:
        for event in events:
            event["event_id"] = event_id(event)
        return
    encode, sha256 = _SORTED_JSON.encode, hashlib.sha256
    for event in events:
        event["event_id"] = sha256(encode(event)).hexdigest()


def _is_exponent_float(value: float) -> bool:
    """Whether repr() writes the float in exponent form: nonzero, below 1e-4 or from 1e16."""
    return bool(value) and not 1e-4 <= abs(value) < 1e16


def _holds_exponent_float(value: dict | list) -> bool:
    for item in value.values() if value.__class__ is dict else value:  # type: ignore[union-attr]
        kind = item.__class__
        if kind is float:
            if _is_exponent_float(item):
                return True
        elif (kind is dict or kind is list) and _holds_exponent_float(item):
            return True
    return False


class ExponentFloatWatch:
    """Decodes pages noting whether one held an exponent-form float (msgspec's float_hook).

    Most pages hold none, and then no event of the page needs looking through for one.
    """

    def __init__(self) -> None:
        self.seen = False

        def float_hook(text: str, _float: type[float] = float) -> float:
            value = _float(text)
            if value and not 1e-4 <= abs(value) < 1e16:  # _is_exponent_float, inlined
                self.seen = True
            return value

        self._decoder = msgspec.json.Decoder(float_hook=float_hook)

    def decode(self, body: bytes) -> t.Any:
        """Decode a body; `seen` then tells whether it held an exponent-form float."""
        self.seen = False
        return self._decoder.decode(body)


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

    def window(self, context: Context | None) -> tuple[dt.datetime | None, dt.datetime | None]:
        """[start, end) to trim records to: start_date only when the read starts from it."""
        from_start = self._from_start_date.get(partition_key(context), False)
        return (self.settings.start if from_start else None), self.settings.end

    def process_page(self, page: list[Record], context: Context | None) -> list[Record]:
        kept = super().process_page(page, context)
        start, end = self.window(context)
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
        # Records that did not come from a page this stream decoded are looked through.
        self._page_may_hold_exponent_float = True

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

    def decode_body(self, body: bytes) -> t.Any:
        payload = decode_page(body, self._float_watch.decode)
        self._page_may_hold_exponent_float = self._float_watch.seen
        return payload

    def process_page(self, page: list[Record], context: Context | None) -> list[Record]:
        # Of the events as received, before any change.
        set_event_ids(page, may_hold_exponent_float=self._page_may_hold_exponent_float)
        return super().process_page(page, context)


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
