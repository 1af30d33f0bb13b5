"""The query engine's front: a request's query string validated into a Query, and cursors.

Also the filter table (which parameters each stream accepts, and how each compares) and the
datetime parsing that date filters and ordering share.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from .data import Record

DEFAULT_LIMIT = 100
MAX_LIMIT = 10000
MAX_CSV_LIMIT = 100000

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
NUMBER_PATTERN = re.compile(r"[+-]?\d+(\.\d+)?")

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


def parse_day(name: str, text: str) -> float:
    """Start (00:00 UTC) of the day ``YYYY-MM-DD``."""
    if _DAY_PATTERN.fullmatch(text):
        try:
            return _day_start(text)
        except ValueError:  # no such day, e.g. 2026-02-30
            pass
    raise QueryError(f"Invalid value for {name}: expected a date YYYY-MM-DD")


def parse_bound(name: str, text: str) -> tuple[float, bool]:
    """(instant, is_day) of a date.gte / date.lte value: a day or a full datetime."""
    if _DAY_PATTERN.fullmatch(text):
        return parse_day(name, text), True
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


def filter_kind(stream: str, name: str, company: str) -> tuple[str, str]:
    """(kind, record field) of filter ``name``; custom fields are exact-match filters."""
    documented = FILTERS[stream].get(name)
    if documented is not None:
        return documented
    prefix = f"{company}__"
    if name.startswith(prefix) and len(name) > len(prefix):
        return EXACT, name
    raise QueryError(f"Unknown filter: {name}")
