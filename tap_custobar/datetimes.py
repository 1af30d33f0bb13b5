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


def parse_utc(value: str) -> dt.datetime:
    """parse_instant for the `...Z` values normalize_datetime returns, without its detours."""
    if value[-1:] == "Z":
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    return parse_instant(value)


def format_utc(instant: dt.datetime) -> str:
    """Render an aware instant as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`."""
    return instant.astimezone(UTC).isoformat()[:-6] + "Z"  # drop the "+00:00"


def normalize_datetime(value: str, zone: dt.tzinfo = UTC) -> str:
    """Return the same instant in UTC with `Z` (raises ValueError for non-dates).

    This runs for every datetime of every record, so the shapes APIs commonly send
    (`...Z`, naive, whole-hour offsets, all in the `YYYY-MM-DDTHH:MM:SS` layout) skip the
    datetime arithmetic; fromisoformat still checks each of them is a real instant.
    """
    size = len(value)
    if (size == 20 or size == 19 or size == 25) and (
        value[4] == "-" and value[7] == "-" and value[10] == "T" and value[13] == value[16] == ":"
    ):
        if size == 20:
            if value[19] == "Z":
                _fromisoformat(value)
                return value
        elif size == 19:
            if zone is UTC:
                _fromisoformat(value)  # naive, and naive means UTC: append the Z
                return value + "Z"
        elif value[22] == ":" and value[23:] == "00" and value[19] in "+-":
            return _whole_hour_offset_to_utc(value)
    try:
        parsed = _fromisoformat(value)
    except ValueError:
        parsed = parse_instant(value, zone)  # lower-case or padded ISO text
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC).isoformat()[:-6] + "Z"


_fromisoformat = dt.datetime.fromisoformat

# "YYYY-MM-DDTHH±HH" -> the same hour in UTC, "YYYY-MM-DDTHH"
_UTC_HOURS: dict[str, str] = {}
_UTC_HOURS_LIMIT = 1 << 16


def _whole_hour_offset_to_utc(value: str) -> str:
    """`YYYY-MM-DDTHH:MM:SS±HH:00` in UTC.

    A whole-hour offset changes only the date and hour, so that conversion is computed
    once per (hour, offset) and reused: formatting a datetime costs several times a dict
    lookup.
    """
    parsed = _fromisoformat(value)  # checks the minutes and seconds kept below
    key = value[:13] + value[19:22]
    hour = _UTC_HOURS.get(key)
    if hour is None:
        hour = parsed.astimezone(UTC).isoformat()[:13]
        if len(_UTC_HOURS) >= _UTC_HOURS_LIMIT:
            _UTC_HOURS.clear()
        _UTC_HOURS[key] = hour
    return hour + value[13:19] + "Z"


def parse_bound(value: str, zone: dt.tzinfo) -> tuple[dt.datetime, bool]:
    """Parse a start_date/end_date setting: (instant, whether it was a bare date)."""
    text = value.strip()
    is_date = len(text) == 10 and "T" not in text and " " not in text
    return parse_instant(text, zone), is_date


def utc_day(instant: dt.datetime) -> dt.date:
    """The UTC calendar day of an instant."""
    return instant.astimezone(UTC).date()
