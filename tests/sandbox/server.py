"""A local stand-in for Custobar's data API: query engine, fault injection and HTTP server.

The API doc (shared/reference/custobar-data-api.txt) is the contract; DESIGN.md §4 adds the
switches for what the doc leaves open and the faults a client must survive.
"""

from __future__ import annotations

import base64
import binascii
import csv
import dataclasses
import email.utils
import functools
import hmac
import io
import itertools
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlsplit

import msgspec

from .data import STREAMS, Dataset, Record, generate_dataset

TEST_TOKEN = "cbsbx_TESTTOKEN_7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4e6b8d0f1"  # noqa: S105 - a fake

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000
MAX_CSV_LIMIT = 100000
SWITCHES = frozenset(
    {
        "order_ignored",
        "next_url_header_only",
        "relative_next_url",
        "empty_page_with_next",
        "out_of_order",
    }
)
NEXT_URL_HEADER = "X-Custobar-Next-Url"
JSON_TYPE = "application/json; charset=utf-8"
CSV_TYPE = "text/csv; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
# Encoded pages are cached up to this many bytes in all; beyond it pages are encoded per request.
DEFAULT_BODY_CACHE_BYTES = 512 * 1024 * 1024
# The date that decides where an out_of_order swap happens, per stream that has one.
REPLICATION_KEYS = {"events": "date", "sales": "sale_date"}

# --- filters -----------------------------------------------------------------------------------
# Kinds of filter: how the query value is compared with the record's field.
EXACT = "exact"  # equal, or one of the items of a list
PHONE = "phone"  # exact, with a leading '+' that query-string decoding turned into a space
BOOLEAN = "boolean"  # true/false, case-insensitive; anything else is a 400
FROM_DATE = "from_date"  # date.gte: day (from its 00:00 UTC) or datetime, inclusive
TO_DATE = "to_date"  # date.lte: day (up to the next day's 00:00 UTC) or datetime, inclusive
UTC_DAY = "utc_day"  # sale_date: the instant falls on that UTC day
STOCK = "stock"  # stock.*: all given conditions hold for one entry of the stock list

# stream -> query parameter -> (kind, record field)
FILTERS: dict[str, dict[str, tuple[str, str]]] = {
    "customers": {
        "external_id": (EXACT, "external_id"),
        "email": (EXACT, "email"),
        "phone_number": (PHONE, "phone_number"),
        "first_name": (EXACT, "first_name"),
        "last_name": (EXACT, "last_name"),
        "campaign_key": (EXACT, "campaign_keys"),
        "can_email": (BOOLEAN, "can_email"),
        "can_sms": (BOOLEAN, "can_sms"),
        "can_post": (BOOLEAN, "can_post"),
        "can_push": (BOOLEAN, "can_push"),
        "city": (EXACT, "city"),
        "country": (EXACT, "country"),
        "zip_code": (EXACT, "zip_code"),
        "province": (EXACT, "province"),
    },
    "events": {
        "type": (EXACT, "type"),
        "date.gte": (FROM_DATE, "date"),
        "date.lte": (TO_DATE, "date"),
    },
    "sales": {
        "sale_external_id": (EXACT, "sale_external_id"),
        "sale_date": (UTC_DAY, "sale_date"),
        "sale_customer_id": (EXACT, "sale_customer_id"),
        "sale_phone_number": (PHONE, "sale_phone_number"),
        "sale_email": (EXACT, "sale_email"),
        "sale_shop_id": (EXACT, "sale_shop_id"),
        "sale_payment_method": (EXACT, "sale_payment_method"),
        "sale_state": (EXACT, "sale_state"),
        "external_id": (EXACT, "external_id"),
        "product_id": (EXACT, "product_id"),
        "product_sku": (EXACT, "product_sku"),
    },
    "products": {
        "external_id": (EXACT, "external_id"),
        "sku": (EXACT, "sku"),
        "ean": (EXACT, "ean"),
        "title": (EXACT, "title"),
        "brand": (EXACT, "brand"),
        "category": (EXACT, "category"),
        "category_id": (EXACT, "category_id"),
        "type": (EXACT, "type"),
        "vendor": (EXACT, "vendor"),
        "shop_id": (EXACT, "shop_id"),
        "visible": (BOOLEAN, "visible"),
        "in_stock": (BOOLEAN, "in_stock"),
        "language": (EXACT, "language"),
        "stock.shop_id": (STOCK, "stock"),
        "stock.quantity.gte": (STOCK, "stock"),
        "stock.quantity.lte": (STOCK, "stock"),
    },
}

_DAY_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_INTEGER_PATTERN = re.compile(r"[+-]?\d+")
_NUMBER_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")

Predicate = Callable[[Record], bool]


class QueryError(Exception):
    """A request the API answers with 400; the message is the reason."""


# --- datetimes ---------------------------------------------------------------------------------


def instant_of(value: Any) -> float | None:
    """POSIX timestamp of a record value that is an ISO 8601 datetime, else None."""
    return parse_instant(value) if isinstance(value, str) else None


@functools.lru_cache(maxsize=1 << 17)
def parse_instant(text: str) -> float | None:
    """POSIX timestamp of an ISO 8601 datetime (no offset = UTC), or None if it is not one."""
    if not _DATETIME_PREFIX.match(text):
        return None
    if text[-1] in "Zz":
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not accept "Z"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _day_start(text: str) -> float:
    day = date.fromisoformat(text)
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp()


def _parse_day(name: str, text: str) -> float:
    """Start (00:00 UTC) of the day ``YYYY-MM-DD``."""
    if _DAY_PATTERN.fullmatch(text):
        try:
            return _day_start(text)
        except ValueError:  # no such day, e.g. 2026-02-30
            pass
    raise QueryError(f"Invalid value for {name}: expected a date YYYY-MM-DD")


def _parse_bound(name: str, text: str) -> tuple[float, bool]:
    """(instant, is_day) of a date.gte / date.lte value: a day or a full datetime."""
    if _DAY_PATTERN.fullmatch(text):
        return _parse_day(name, text), True
    instant = parse_instant(text)
    if instant is None:
        raise QueryError(f"Invalid value for {name}: expected a date or an ISO 8601 datetime")
    return instant, False


# --- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A request's query string, validated and normalised."""

    stream: str
    filters: tuple[tuple[str, str], ...] = ()  # sorted by name
    fields: tuple[str, ...] = ()  # empty: every field
    order: tuple[str, ...] = ()
    csv: bool = False
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    from_cursor: bool = False

    def params(self) -> list[tuple[str, str]]:
        """The parameters that give this query again (offset aside)."""
        params = list(self.filters)
        if self.fields:
            params.append(("fields", ",".join(self.fields)))
        if self.order:
            params.append(("order", ",".join(self.order)))
        if self.csv:
            params.append(("format", "csv"))
        params.append(("limit", str(self.limit)))
        return params

    def projected_fields(self) -> tuple[str, ...]:
        """Keys of a returned record when ``fields`` is given: external_id is always included."""
        return ("external_id", *(name for name in self.fields if name != "external_id"))


def parse_query(stream: str, raw_query: str, company: str) -> Query:
    """Validate a request's query string; a ``cursor`` replaces every other parameter."""
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    cursors = [value for name, value in pairs if name == "cursor"]
    if cursors:
        params, offset = decode_cursor(cursors[-1])
        return _build_query(stream, params, company, offset=offset, from_cursor=True)
    return _build_query(stream, pairs, company, offset=0, from_cursor=False)


def _build_query(
    stream: str,
    pairs: Iterable[tuple[str, str]],
    company: str,
    offset: int,
    from_cursor: bool,
) -> Query:
    params: dict[str, str] = {}
    for name, value in pairs:  # a repeated parameter: the last one counts
        params[name] = value
    is_csv = _parse_format(params.pop("format", ""))
    limit = _parse_limit(params.pop("limit", str(DEFAULT_LIMIT)), is_csv)
    fields = _parse_list(params.pop("fields", ""))
    order = tuple(key for key in _parse_list(params.pop("order", "")) if key.lstrip("-"))
    params.pop("cursor", None)
    for name in params:
        filter_kind(stream, name, company)  # raises for an unknown filter
    return Query(
        stream=stream,
        filters=tuple(sorted(params.items())),
        fields=fields,
        order=order,
        csv=is_csv,
        limit=limit,
        offset=offset,
        from_cursor=from_cursor,
    )


def _parse_format(text: str) -> bool:
    """True for CSV."""
    if text.lower() in ("", "json"):
        return False
    if text.lower() == "csv":
        return True
    raise QueryError(f"Unknown format: {text}")


def _parse_limit(text: str, is_csv: bool) -> int:
    if not _INTEGER_PATTERN.fullmatch(text.strip()):
        raise QueryError(f"Invalid limit: {text!r} is not an integer")
    limit = int(text)
    if limit <= 0:
        raise QueryError("Invalid limit: must be a positive integer")
    maximum = MAX_CSV_LIMIT if is_csv else MAX_LIMIT
    if limit > maximum:
        raise QueryError(f"Invalid limit: {limit} is over the maximum of {maximum}")
    return limit


def _parse_list(text: str) -> tuple[str, ...]:
    names = (name.strip() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def encode_cursor(query: Query, offset: int) -> str:
    payload = msgspec.json.encode([query.params(), offset])
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[list[tuple[str, str]], int]:
    try:
        payload = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        params, offset = msgspec.json.decode(payload, type=tuple[list[tuple[str, str]], int])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise QueryError("Invalid cursor") from None
    if offset < 0:
        raise QueryError("Invalid cursor")
    return params, offset


# --- filtering and ordering --------------------------------------------------------------------


def filter_kind(stream: str, name: str, company: str) -> tuple[str, str]:
    """(kind, record field) of filter ``name``; custom fields are exact-match filters."""
    documented = FILTERS[stream].get(name)
    if documented is not None:
        return documented
    prefix = f"{company}__"
    if name.startswith(prefix) and len(name) > len(prefix):
        return EXACT, name
    raise QueryError(f"Unknown filter: {name}")


def compile_filters(query: Query, company: str) -> list[Predicate]:
    predicates = []
    stock_conditions = {}
    for name, value in query.filters:
        kind, record_field = filter_kind(query.stream, name, company)
        if kind == STOCK:
            stock_conditions[name] = value
        else:
            predicates.append(_FILTER_BUILDERS[kind](name, record_field, value))
    if stock_conditions:
        predicates.append(_stock_filter(stock_conditions))
    return predicates


def value_matches(value: Any, text: str) -> bool:
    """Whether a record value equals a query value (for a list: one of its items does)."""
    if isinstance(value, bool):
        return text.lower() == ("true" if value else "false")
    if isinstance(value, (int, float)):
        return _NUMBER_PATTERN.fullmatch(text) is not None and float(text) == value
    if isinstance(value, str):
        return value == text
    if isinstance(value, list):
        return any(value_matches(item, text) for item in value if not isinstance(item, list))
    return False


def _exact_filter(name: str, record_field: str, text: str) -> Predicate:
    return lambda record: record_field in record and value_matches(record[record_field], text)


def _phone_filter(name: str, record_field: str, text: str) -> Predicate:
    # The doc's own example, ?phone_number=+358101234567, decodes to a leading space.
    if text.startswith(" "):
        text = "+" + text[1:]
    return _exact_filter(name, record_field, text)


def _boolean_filter(name: str, record_field: str, text: str) -> Predicate:
    if text.lower() not in ("true", "false"):
        raise QueryError(f"Invalid value for {name}: expected true or false")
    wanted = text.lower() == "true"
    return lambda record: record.get(record_field) is wanted


def _from_date_filter(name: str, record_field: str, text: str) -> Predicate:
    bound, _ = _parse_bound(name, text)

    def matches(record: Record) -> bool:
        instant = instant_of(record.get(record_field))
        return instant is not None and instant >= bound

    return matches


def _to_date_filter(name: str, record_field: str, text: str) -> Predicate:
    bound, is_day = _parse_bound(name, text)
    if is_day:
        end = bound + 86400  # the whole day: before the next day's 00:00 UTC

        def matches(record: Record) -> bool:
            instant = instant_of(record.get(record_field))
            return instant is not None and instant < end

    else:

        def matches(record: Record) -> bool:
            instant = instant_of(record.get(record_field))
            return instant is not None and instant <= bound

    return matches


def _utc_day_filter(name: str, record_field: str, text: str) -> Predicate:
    start = _parse_day(name, text)
    end = start + 86400

    def matches(record: Record) -> bool:
        instant = instant_of(record.get(record_field))
        return instant is not None and start <= instant < end

    return matches


def _stock_filter(conditions: dict[str, str]) -> Predicate:
    shop = conditions.get("stock.shop_id")
    least = _optional_number(conditions, "stock.quantity.gte")
    most = _optional_number(conditions, "stock.quantity.lte")

    def entry_matches(entry: Any) -> bool:
        if not isinstance(entry, dict):
            return False
        quantity = entry.get("quantity")
        is_number = isinstance(quantity, (int, float)) and not isinstance(quantity, bool)
        return (
            (shop is None or entry.get("shop_id") == shop)
            and (least is None or (is_number and quantity >= least))
            and (most is None or (is_number and quantity <= most))
        )

    return lambda record: any(entry_matches(entry) for entry in record.get("stock") or ())


def _optional_number(conditions: dict[str, str], name: str) -> float | None:
    text = conditions.get(name)
    if text is None:
        return None
    if not _NUMBER_PATTERN.fullmatch(text.strip()):
        raise QueryError(f"Invalid value for {name}: expected a number")
    return float(text)


_FILTER_BUILDERS: dict[str, Callable[[str, str, str], Predicate]] = {
    EXACT: _exact_filter,
    PHONE: _phone_filter,
    BOOLEAN: _boolean_filter,
    FROM_DATE: _from_date_filter,
    TO_DATE: _to_date_filter,
    UTC_DAY: _utc_day_filter,
}


def _sort_value(value: Any) -> tuple[int, Any]:
    """Sort key of one field's value: datetimes compare as instants; each type has its rank."""
    if value is None:
        return (5, 0)
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        instant = parse_instant(value)
        return (2, instant) if instant is not None else (3, value)
    return (4, msgspec.json.encode(value))


def order_records(records: list[Record], order: tuple[str, ...]) -> list[Record]:
    """Records sorted by several keys ('-' prefix: descending); stable; missing keys last."""
    result = list(records)
    for spec in reversed(order):  # one stable pass per key, the most significant last
        descending = spec.startswith("-")
        key = spec[1:] if descending else spec
        present = [record for record in result if key in record]
        missing = [record for record in result if key not in record]
        present.sort(key=lambda record: _sort_value(record[key]), reverse=descending)
        result = present + missing
    return result


def swap_one_adjacent_pair(records: list[Record], date_key: str) -> list[Record]:
    """A copy with one record moved after a later one (two neighbours swapped), near the middle."""
    result = list(records)
    middle = len(result) // 2
    for position in itertools.chain(range(middle, len(result) - 1), range(middle)):
        earlier = instant_of(result[position].get(date_key))
        later = instant_of(result[position + 1].get(date_key))
        if earlier is not None and later is not None and earlier < later:
            result[position], result[position + 1] = result[position + 1], result[position]
            break
    return result


# --- rendering ---------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def error_response(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
    body = msgspec.json.encode({"error": {"reason": reason}})
    return Response(status, body, headers=dict(headers or {}))


def project(records: list[Record], keys: tuple[str, ...]) -> list[Record]:
    return [{key: record[key] for key in keys if key in record} for record in records]


def render_json(stream: str, records: list[Record], next_url: str | None) -> bytes:
    payload: dict[str, Any] = {stream: records}
    if next_url is not None:
        payload["next_url"] = next_url
    return msgspec.json.encode(payload)


def render_csv(records: list[Record], columns: Iterable[str]) -> bytes:
    columns = list(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for record in records:
        writer.writerow([_csv_cell(record.get(column)) for column in columns])
    return buffer.getvalue().encode("utf-8")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return msgspec.json.encode(value).decode("utf-8")
    return str(value)


# --- the data behind the API ---------------------------------------------------------------------


class _Store:
    """The sandbox's current records, and results computed from them until they change."""

    def __init__(self, dataset: Dataset, body_cache_bytes: int) -> None:
        self.company = dataset.company
        self._records = {stream: list(dataset.records.get(stream, ())) for stream in STREAMS}
        self._lock = threading.RLock()
        self._version = 0
        self._results: dict[tuple[Any, ...], list[Record]] = {}
        self._columns: dict[str, set[str]] = {}
        self._bodies: dict[Query, Response] = {}
        self._body_bytes = 0
        self._body_cache_bytes = body_cache_bytes

    def records(self, stream: str) -> list[Record]:
        with self._lock:
            return list(self._stream(stream))

    def add(self, stream: str, record: Record) -> None:
        with self._lock:
            self._stream(stream).append(dict(record))
            if stream in self._columns:
                self._columns[stream].update(record)
            self._changed()

    def delete(self, stream: str, key: dict[str, Any]) -> int:
        if not key:
            raise ValueError("delete() needs at least one field=value to match")
        with self._lock:
            records = self._stream(stream)
            kept = [r for r in records if any(r.get(k, _ABSENT) != v for k, v in key.items())]
            removed = len(records) - len(kept)
            records[:] = kept
            self._changed()
            return removed

    def select(self, query: Query, switches: frozenset[str]) -> tuple[list[Record], int]:
        """(matching records in order, data version) for a query; don't change the list."""
        order = () if "order_ignored" in switches else query.order
        swap = "out_of_order" in switches and query.stream in REPLICATION_KEYS
        with self._lock:
            records = self._stream(query.stream)
            if not (query.filters or order or swap):
                return records, self._version
            key = (query.stream, query.filters, order, swap)
            if key not in self._results:
                self._results[key] = self._compute(records, query, order, swap)
            return self._results[key], self._version

    def columns(self, stream: str) -> list[str]:
        """Every property any record of the stream has had, sorted."""
        with self._lock:
            if stream not in self._columns:
                self._columns[stream] = {key for record in self._stream(stream) for key in record}
            return sorted(self._columns[stream])

    def cached_body(self, key: Query) -> Response | None:
        return self._bodies.get(key)

    def cache_body(self, key: Query, response: Response, version: int) -> None:
        with self._lock:
            fits = self._body_bytes + len(response.body) <= self._body_cache_bytes
            if version == self._version and fits:  # else the data changed while rendering
                self._bodies[key] = response
                self._body_bytes += len(response.body)

    def _compute(
        self, records: list[Record], query: Query, order: tuple[str, ...], swap: bool
    ) -> list[Record]:
        predicates = compile_filters(query, self.company)
        if predicates:
            records = [r for r in records if all(match(r) for match in predicates)]
        if order:
            records = order_records(records, order)
        if swap:
            records = swap_one_adjacent_pair(records, REPLICATION_KEYS[query.stream])
        return records

    def _stream(self, stream: str) -> list[Record]:
        if stream not in self._records:
            raise ValueError(f"Unknown stream {stream!r}; streams are {', '.join(STREAMS)}")
        return self._records[stream]

    def _changed(self) -> None:
        self._version += 1
        self._results.clear()
        self._bodies.clear()
        self._body_bytes = 0


_ABSENT = object()


# --- faults ------------------------------------------------------------------------------------

# Faults that answer instead of the API.
_ERROR_REASONS = {
    "400": "Invalid filter value",
    "401": "Invalid token.",
    "404": "Not found",
    "429": "Too many requests",
    "500": "Internal server error",
    "502": "Bad gateway",
    "503": "Service unavailable",
    "504": "Gateway timeout",
}
_REPLACING_FAULTS = frozenset({*_ERROR_REASONS, "403", "html_error", "missing_list", "redirect"})
# Faults that deliver the API's own answer badly.
_DELIVERY_FAULTS = frozenset({"drop_before", "drop_mid_body", "slow", "truncated_json"})
# Faults that serve the real page with a wrong next_url.
_NEXT_URL_FAULTS = frozenset({"foreign_next_url", "repeat_next_url"})
FAULT_KINDS = _REPLACING_FAULTS | _DELIVERY_FAULTS | _NEXT_URL_FAULTS

HTML_ERROR_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1>"
    b"<p>The proxy server received an invalid response from an upstream server.</p>"
    b"</body></html>"
)


@dataclass
class FaultRule:
    kind: str
    times: int | None  # None: every matching request
    stream: str | None  # None: any data endpoint
    after: int
    options: dict[str, Any]
    skipped: int = 0
    fired: int = 0

    def exhausted(self) -> bool:
        return self.times is not None and self.fired >= self.times


class _Faults:
    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pending(self) -> bool:
        with self._lock:
            return any(not rule.exhausted() for rule in self._rules)

    def take(self, stream: str) -> FaultRule | None:
        """The fault for a request to ``stream``, if any; every matching rule counts it."""
        chosen = None
        with self._lock:
            for rule in self._rules:
                if rule.exhausted() or rule.stream not in (None, stream):
                    continue
                if rule.skipped < rule.after:
                    rule.skipped += 1
                elif chosen is None:
                    rule.fired += 1
                    chosen = rule
        return chosen


def _retry_after_header(value: int | str | None) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str) and value.startswith("http-date:"):
        seconds = float(value.split(":", 1)[1])
        return {"Retry-After": email.utils.formatdate(time.time() + seconds, usegmt=True)}
    return {"Retry-After": str(value)}


def fault_response(rule: FaultRule, stream: str, port: int) -> Response:
    """The answer of a fault that replaces the API's own."""
    kind, options = rule.kind, rule.options
    if kind == "429":
        headers = _retry_after_header(options.get("retry_after", 0))
        return error_response(429, _ERROR_REASONS[kind], headers)
    if kind in ("500", "502", "503", "504"):
        headers = _retry_after_header(options.get("retry_after"))
        return error_response(int(kind), _ERROR_REASONS[kind], headers)
    if kind == "400":
        return error_response(400, options.get("reason", _ERROR_REASONS[kind]))
    if kind == "403":
        return error_response(403, f"Token has no permission for GET /api/data/{stream}/")
    if kind in _ERROR_REASONS:
        return error_response(int(kind), _ERROR_REASONS[kind])
    if kind == "html_error":
        return Response(options.get("status", 200), HTML_ERROR_PAGE, HTML_TYPE)
    if kind == "missing_list":
        return Response(200, b'{"detail":"ok"}')
    if kind == "redirect":
        location = options.get("location", f"http://127.0.0.2:{port}/api/data/{stream}/")
        return Response(302, b"", headers={"Location": location})
    raise AssertionError(f"not a replacing fault: {kind}")


class _Switches(set):
    """The set of active switches; refuses names that are not switches."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        super().__init__()
        self.update(names)

    def add(self, name: str) -> None:
        _check_switches([name])
        super().add(name)

    def update(self, *groups: Iterable[str]) -> None:
        names = [name for group in groups for name in group]
        _check_switches(names)
        super().update(names)

    def __ior__(self, other: Any) -> _Switches:
        self.update(other)
        return self


def _check_switches(names: Iterable[str]) -> None:
    unknown = set(names) - SWITCHES
    if unknown:
        raise ValueError(f"Unknown switch {sorted(unknown)}; switches are {sorted(SWITCHES)}")


# --- the request log -----------------------------------------------------------------------------


class _RequestLog:
    """Entries appended as requests arrive; never holds the token."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def start(
        self, method: str, url: SplitResult, headers: Any, auth: tuple[str | None, bool]
    ) -> dict[str, Any]:
        scheme, auth_ok = auth
        entry = {
            "method": method,
            "path": self._redact(url.path),
            "query": self._redact(url.query),
            "params": {
                self._redact(name): [self._redact(value) for value in values]
                for name, values in parse_qs(url.query, keep_blank_values=True).items()
            },
            "stream": None,
            "auth_ok": auth_ok,
            "auth_scheme": scheme,
            "user_agent": self._redact(headers.get("User-Agent") or "") or None,
            "status": None,
            "fault": None,
            "t_start": time.monotonic(),
            "t_end": None,
        }
        with self._lock:
            self._entries.append(entry)
        return entry

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "[REDACTED]") if self._token else text


def check_authorization(header: str | None, token: str) -> tuple[str | None, bool]:
    """(scheme as "Token"/"Bearer" or None, whether the token is right)."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    canonical = {"token": "Token", "bearer": "Bearer"}.get(scheme.lower())
    if canonical is None:
        return None, False
    ok = hmac.compare_digest(credentials.strip().encode(), token.encode())
    return canonical, ok


# --- HTTP ----------------------------------------------------------------------------------------

_STREAM_PATHS = {
    path: stream for stream in STREAMS for path in (f"/api/data/{stream}/", f"/api/data/{stream}")
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS, which can take seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """End kept-alive connections, so no request is served after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that hangs up mid-response is part of the game
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 300  # an idle kept-alive connection is closed after this many seconds
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is sb.requests

    def _dispatch(self, method: str) -> None:
        self._discard_request_body()
        url = urlsplit(self.path)
        sandbox = self.server.sandbox
        if url.path.startswith("/_sandbox/"):
            self._write(sandbox._admin_response(method, url.path))
            return
        auth = check_authorization(self.headers.get("Authorization"), sandbox.token)
        entry = sandbox._log.start(method, url, self.headers, auth)
        stream = _STREAM_PATHS.get(url.path)
        entry["stream"] = stream
        if stream is None:
            self._finish(entry, error_response(404, "Not found"))
        elif method != "GET":
            self._finish(entry, error_response(405, "Method not allowed"))
        else:
            try:
                self._serve_data(entry, stream, url)
            except OSError:
                raise  # the client hung up
            except Exception as error:  # a bug in the sandbox: say so rather than hang up
                traceback.print_exc()
                self._finish(entry, error_response(500, f"Sandbox error: {error!r}"))

    def _serve_data(self, entry: dict[str, Any], stream: str, url: SplitResult) -> None:
        sandbox = self.server.sandbox
        fault = sandbox._faults.take(stream)
        kind = fault.kind if fault else None
        entry["fault"] = kind
        if kind in _REPLACING_FAULTS:
            self._finish(entry, fault_response(fault, stream, sandbox.port))
            return
        if kind == "drop_before":
            self._drop(entry)
            return
        next_url = None
        if kind == "foreign_next_url":
            default = f"http://127.0.0.2:{sandbox.port}/api/data/{stream}/?cursor=x"
            next_url = fault.options.get("url", default)
        elif kind == "repeat_next_url":
            next_url = sandbox.url + self.path
        response = sandbox._api_response(stream, url.query, entry["auth_ok"], next_url)
        if kind == "slow":
            time.sleep(fault.options.get("seconds", 1.0))
        if kind == "truncated_json":  # a new Response: this one may be in the page cache
            response = dataclasses.replace(response, body=response.body[: len(response.body) // 2])
        if kind == "drop_mid_body":
            self._finish(entry, response, body=response.body[: len(response.body) // 2])
            self.close_connection = True
        else:
            self._finish(entry, response)

    def _finish(self, entry: dict[str, Any], response: Response, body: bytes | None = None) -> None:
        """Log the answer, then send it (``body``: send only that part of the body)."""
        entry["status"] = response.status
        entry["t_end"] = time.monotonic()
        self._write(response, body)

    def _drop(self, entry: dict[str, Any]) -> None:
        entry["t_end"] = time.monotonic()
        self.close_connection = True

    def _write(self, response: Response, body: bytes | None = None) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body if body is None else body)

    def _discard_request_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(int(length))


# --- the sandbox ---------------------------------------------------------------------------------


class Sandbox:
    """Custobar's data API on a local port, serving ``dataset``; see tests/sandbox/__init__.py."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        token: str = TEST_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        scopes: Iterable[str] | None = None,
        body_cache_bytes: int = DEFAULT_BODY_CACHE_BYTES,
    ) -> None:
        self.dataset = dataset if dataset is not None else generate_dataset()
        self.token = token
        self.host = host
        self.port = port
        self.scopes = set(scopes) if scopes is not None else None
        self._switches = _Switches()
        self._store = _Store(self.dataset, body_cache_bytes)
        self._faults = _Faults()
        self._log = _RequestLog(token)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Sandbox:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # stop() waits for the loop to wake up: tests start and stop many sandboxes.
                kwargs={"poll_interval": 0.01},
                name=f"custobar-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    # data

    def add(self, stream: str, record: Record) -> None:
        self._store.add(stream, record)

    def delete(self, stream: str, **key: Any) -> int:
        return self._store.delete(stream, key)

    def records(self, stream: str) -> list[Record]:
        return self._store.records(stream)

    # switches and faults

    @property
    def switches(self) -> set[str]:
        return self._switches

    @switches.setter
    def switches(self, names: Iterable[str]) -> None:
        self._switches = _Switches(names)

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        stream: str | None = None,
        after: int = 0,
        **options: Any,
    ) -> None:
        """Answer the next ``times`` matching requests (after ``after`` of them) with a fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; faults are {sorted(FAULT_KINDS)}")
        if stream is not None and stream not in STREAMS:
            raise ValueError(f"Unknown stream {stream!r}")
        self._faults.add(FaultRule(kind, times, stream, after, options))

    def clear_faults(self) -> None:
        self._faults.clear()

    # request log

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._log.entries()

    def clear_requests(self) -> None:
        self._log.clear()

    # serving (called from the handler threads)

    def _api_response(
        self, stream: str, raw_query: str, auth_ok: bool, next_url: str | None
    ) -> Response:
        """The API's answer; ``next_url`` replaces the real one (a fault)."""
        if not auth_ok:
            return error_response(401, "Invalid token.")
        if self.scopes is not None and stream not in self.scopes:
            return error_response(403, f"Token has no permission for GET /api/data/{stream}/")
        try:
            query = parse_query(stream, raw_query, self._store.company)
            return self._page_response(query, next_url)
        except QueryError as error:
            return error_response(400, str(error))

    def _page_response(self, query: Query, next_url_override: str | None) -> Response:
        switches = frozenset(self._switches)
        cacheable = not switches and next_url_override is None and not self._faults.pending()
        if cacheable and (cached := self._store.cached_body(query)) is not None:
            return cached
        page, next_offset, version = self._page(query, switches)
        next_url = next_url_override
        if next_url is None and next_offset is not None:
            next_url = self._next_url(query, next_offset, switches)
        response = self._render(query, page, next_url, switches)
        if cacheable:
            self._store.cache_body(query, response, version)
        return response

    def _page(self, query: Query, switches: frozenset[str]) -> tuple[list[Record], int | None, int]:
        """(the page's records, the next page's offset or None, the data's version)."""
        if "empty_page_with_next" in switches and not query.from_cursor:
            return [], 0, -1  # a next_url with a cursor (offset 0) leads to the real first page
        results, version = self._store.select(query, switches)
        end = query.offset + query.limit
        return results[query.offset : end], (end if end < len(results) else None), version

    def _next_url(self, query: Query, offset: int, switches: frozenset[str]) -> str:
        path = f"/api/data/{query.stream}/?cursor={encode_cursor(query, offset)}"
        return path if "relative_next_url" in switches else self.url + path

    def _render(
        self,
        query: Query,
        page: list[Record],
        next_url: str | None,
        switches: frozenset[str],
    ) -> Response:
        if query.fields:
            page = project(page, query.projected_fields())
        headers = {NEXT_URL_HEADER: next_url} if next_url is not None else {}
        if query.csv:
            columns = (
                query.projected_fields() if query.fields else self._store.columns(query.stream)
            )
            return Response(200, render_csv(page, columns), CSV_TYPE, headers)
        body_next_url = None if "next_url_header_only" in switches else next_url
        return Response(200, render_json(query.stream, page, body_next_url), JSON_TYPE, headers)

    def _admin_response(self, method: str, path: str) -> Response:
        """The unauthenticated endpoints for users in another process."""
        if path == "/_sandbox/requests":
            if method != "GET":
                return error_response(405, "Method not allowed")
            return Response(200, msgspec.json.encode(self.requests))
        if path == "/_sandbox/clear-requests":
            if method != "POST":
                return error_response(405, "Method not allowed")
            return Response(200, msgspec.json.encode({"cleared": self._log.clear()}))
        return error_response(404, "Not found")
