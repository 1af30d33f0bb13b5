"""The query engine's work: which records match a query's filters, and in what order."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import msgspec

from .data import Record
from .query import (
    BOOLEAN,
    EXACT,
    FROM_DATE,
    NUMBER_PATTERN,
    PHONE,
    STOCK,
    TO_DATE,
    UTC_DAY,
    Predicate,
    Query,
    QueryError,
    filter_kind,
    instant_of,
    parse_bound,
    parse_day,
    parse_instant,
)


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
        return NUMBER_PATTERN.fullmatch(text) is not None and float(text) == value
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
    bound, _ = parse_bound(name, text)

    def matches(record: Record) -> bool:
        instant = instant_of(record.get(record_field))
        return instant is not None and instant >= bound

    return matches


def _to_date_filter(name: str, record_field: str, text: str) -> Predicate:
    bound, is_day = parse_bound(name, text)
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
    start = parse_day(name, text)
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
    if not NUMBER_PATTERN.fullmatch(text.strip()):
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
