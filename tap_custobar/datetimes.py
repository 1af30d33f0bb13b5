"""Datetime handling: every instant inside the tap is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = dt.timezone.utc


@lru_cache(maxsize=64)
def get_zone(name: str) -> dt.tzinfo:
    """Return the tzinfo for an IANA name; raises KeyError for an unknown one."""
    if name.upper() in {"UTC", "Z", "ETC/UTC"}:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise KeyError(name) from exc


def parse_instant(value: str, zone: dt.tzinfo = UTC) -> dt.datetime:
    """Parse an ISO 8601 date or date-time; a value without offset is read in `zone`.

    Raises ValueError when the text is not an ISO date or date-time.
    """
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        parsed = dt.datetime.fromisoformat(text.upper())  # `t` / `z` are valid ISO 8601 too
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def format_utc(instant: dt.datetime) -> str:
    """Render an aware instant as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""
    return instant.astimezone(UTC).isoformat()[:-6] + "Z"  # drop the "+00:00"


def normalize_datetime(value: str, zone: dt.tzinfo = UTC) -> str:
    """Return the same instant in UTC with `Z` (raises ValueError for non-dates)."""
    size = len(value)
    if size == 20 and value[19] == "Z" and value[10] == "T":
        dt.datetime.fromisoformat(value)  # already canonical: only check it is a real instant
        return value
    if zone is UTC and size == 19 and value[10] == "T":
        dt.datetime.fromisoformat(value)  # naive, and naive means UTC: append the Z
        return value + "Z"
    if size == 25 and value[19] in "+-" and value[23:25] == "00":
        return _whole_hour_offset_to_utc(value)
    return format_utc(parse_instant(value, zone))


# "YYYY-MM-DDTHH±HH:00" -> the same hour in UTC, "YYYY-MM-DDTHH"
_UTC_HOURS: dict[str, str] = {}
_UTC_HOURS_LIMIT = 1 << 16


def _whole_hour_offset_to_utc(value: str) -> str:
    """`YYYY-MM-DDTHH:MM:SS±HH:00` in UTC.

    A whole-hour offset changes only the date and hour, so that conversion is computed
    once per (hour, offset) and reused: formatting a datetime costs several times a dict
    lookup, and this runs for every datetime of every record.
    """
    tail = value[13:19]  # ":MM:SS", unchanged by the conversion
    digits = tail[1:3] + tail[4:6]
    if not (
        tail[0] == ":"
        and tail[3] == ":"
        and digits.isascii()
        and digits.isdecimal()
        and tail[1:3] <= "59"
        and tail[4:6] <= "59"
    ):
        return format_utc(parse_instant(value))  # anything unusual takes the full parse
    key = value[:13] + value[19:]
    hour = _UTC_HOURS.get(key)
    if hour is None:
        hour = format_utc(parse_instant(value[:13] + ":00:00" + value[19:]))[:13]
        if len(_UTC_HOURS) >= _UTC_HOURS_LIMIT:
            _UTC_HOURS.clear()
        _UTC_HOURS[key] = hour
    return hour + tail + "Z"


def parse_bound(value: str, zone: dt.tzinfo) -> tuple[dt.datetime, bool]:
    """Parse a start_date/end_date setting: (instant, whether it was a bare date)."""
    text = value.strip()
    is_date = len(text) == 10 and "T" not in text and " " not in text
    return parse_instant(text, zone), is_date


def utc_day(instant: dt.datetime) -> dt.date:
    """The UTC calendar day of an instant."""
    return instant.astimezone(UTC).date()
