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
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":
        dt.datetime.fromisoformat(value)  # already canonical: only check it is a real instant
        return value
    if zone is UTC and len(value) == 19 and value[10] == "T":
        dt.datetime.fromisoformat(value)  # naive, and naive means UTC: append the Z
        return value + "Z"
    return format_utc(parse_instant(value, zone))


def parse_bound(value: str, zone: dt.tzinfo) -> tuple[dt.datetime, bool]:
    """Parse a start_date/end_date setting: (instant, whether it was a bare date)."""
    text = value.strip()
    is_date = len(text) == 10 and "T" not in text and " " not in text
    return parse_instant(text, zone), is_date


def utc_day(instant: dt.datetime) -> dt.date:
    """The UTC calendar day of an instant."""
    return instant.astimezone(UTC).date()
