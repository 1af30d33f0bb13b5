"""Datetime handling: every instant inside the tap is timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from itertools import repeat
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
    """Render an aware instant as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (isoformat's layout).

    This runs for most datetimes of most records, and datetime.isoformat() costs about ten
    times a dict lookup: the `YYYY-MM-DDTHH` part is formatted once per hour and reused,
    minutes and seconds come from a table.
    """
    utc = instant.astimezone(UTC)
    key = (utc.year, utc.month, utc.day, utc.hour)
    hour = _HOUR_TEXT.get(key)
    if hour is None:
        hour = utc.isoformat()[:13]
        if len(_HOUR_TEXT) >= _HOUR_TEXT_LIMIT:
            _HOUR_TEXT.clear()
        _HOUR_TEXT[key] = hour
    text = hour + _COLON_TWO_DIGITS[utc.minute] + _COLON_TWO_DIGITS[utc.second]
    microsecond = utc.microsecond
    return f"{text}.{microsecond:06d}Z" if microsecond else text + "Z"


_HOUR_TEXT: dict[tuple[int, int, int, int], str] = {}
_HOUR_TEXT_LIMIT = 1 << 16
_COLON_TWO_DIGITS = tuple(f":{number:02d}" for number in range(60))


SECONDS_LENGTH = len("2026-02-01T12:30:00Z")
MICROSECONDS_LENGTH = len("2026-02-01T12:30:00.000000Z")


def utc_sort_keys(values: list[str]) -> list[str] | None:
    """Strings that sort as the instants of normalize_datetime()'s values; None for others.

    `YYYY-MM-DDTHH:MM:SSZ` and `YYYY-MM-DDTHH:MM:SS.ffffffZ` each sort as their instants,
    but not with each other: after the same second, "Z" sorts above ".". In the keys the
    `Z` becomes "!", which sorts below "." (a whole second comes before its fractions).
    """
    lengths = set(map(len, values))
    if len(lengths) == 1 and lengths <= _UTC_LENGTHS:
        return values
    if not lengths <= _UTC_LENGTHS:
        return None
    return list(map(str.replace, values, repeat("Z"), repeat("!")))


_UTC_LENGTHS = frozenset((SECONDS_LENGTH, MICROSECONDS_LENGTH))


def normalize_datetime(value: str, zone: dt.tzinfo = UTC) -> str:
    """Return the same instant in UTC with `Z` (raises ValueError for non-dates).

    The common layouts are told apart by length first (this runs for most datetimes of most
    records): `YYYY-MM-DDTHH:MM:SSZ` is only checked (fromisoformat), not rebuilt; naive
    values read in UTC get a `Z`; `±HH:00` offsets change only the date and hour, looked up
    per (hour, offset). Everything else goes through fromisoformat and format_utc.
    """
    size = len(value)
    try:
        # value[4:17:3] is what sits where `YYYY-MM-DDTHH:MM:SS` has "-", "-", "T", ":", ":".
        if size == 20:
            if value[19] == "Z" and value[4:17:3] == "--T::":
                _fromisoformat(value)
                return value
        elif size == 25:
            if value[22:] == ":00" and value[19] in "+-" and value[4:17:3] == "--T::":
                # A key is stored only once fromisoformat accepted its date, hour and offset:
                # a value with a known key needs no more than its minutes and seconds checked.
                key = value[:13] + value[19:22]
                hour = _UTC_HOURS.get(key)
                minutes_seconds = value[13:19]
                if hour is None or minutes_seconds not in _MINUTES_SECONDS:
                    hour = _utc_hour(key, _fromisoformat(value))
                return hour + minutes_seconds + "Z"
        elif size == 19 and zone is UTC and value[4:17:3] == "--T::":
            _fromisoformat(value)  # naive, and naive means UTC: append the Z
            return value + "Z"
        try:
            parsed = _fromisoformat(value)
        except ValueError:
            parsed = parse_instant(value, zone)  # lower-case or padded ISO text
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=zone)
        return format_utc(parsed)
    except OverflowError:  # e.g. 0001-01-01T00:30:00+01:00, which is in year 0 in UTC
        raise ValueError(f"{value!r} is outside years 1-9999 in UTC") from None


_fromisoformat = dt.datetime.fromisoformat

# "YYYY-MM-DDTHH±HH" -> the same hour in UTC, "YYYY-MM-DDTHH"
_UTC_HOURS: dict[str, str] = {}
_MINUTES_SECONDS = frozenset(f":{m:02d}:{s:02d}" for m in range(60) for s in range(60))


def _utc_hour(key: str, parsed: dt.datetime) -> str:
    """The UTC `YYYY-MM-DDTHH` of a whole-hour-offset key `YYYY-MM-DDTHH±HH` (cached)."""
    hour = _UTC_HOURS.get(key)
    if hour is None:
        hour = format_utc(parsed)[:13]
        if len(_UTC_HOURS) >= _HOUR_TEXT_LIMIT:
            _UTC_HOURS.clear()
        _UTC_HOURS[key] = hour
    return hour


def parse_bound(value: str, zone: dt.tzinfo) -> tuple[dt.datetime, bool]:
    """Parse a start_date/end_date setting: (instant, whether it was a bare date)."""
    text = value.strip()
    is_date = len(text) == 10 and "T" not in text and " " not in text
    return parse_instant(text, zone), is_date


def utc_day(instant: dt.datetime) -> dt.date:
    """The UTC calendar day of an instant."""
    return instant.astimezone(UTC).date()
