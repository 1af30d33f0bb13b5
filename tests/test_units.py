"""Narrow units: event_id, datetime normalisation, Retry-After, Custobar's error reason."""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time

import pytest
import requests

from tap_custobar.datetimes import get_zone, normalize_datetime, parse_bound, utc_sort_keys
from tap_custobar.event_id import ExponentFloatWatch, event_id, set_event_ids
from tap_custobar.http import MAX_RETRY_AFTER, custobar_reason, retry_after_seconds


def definition_id(event: dict) -> str:
    """DESIGN's event_id definition, verbatim: the oracle for the tap's faster encoding."""
    from tests.expected import event_id as oracle

    return oracle(event)


def test_event_id_matches_the_design_test_vector() -> None:
    event = {
        "type": "MAIL_OPEN",
        "date": "2026-02-01T12:30:00Z",
        "customer_id": "23132",
        "email": "customer@example.com",
    }
    assert event_id(event) == "fd5848e87d6263e7935bb4d54d61b8096a4a28a9b7658d416b47ff4bc612abcd"


@pytest.mark.parametrize(
    "event",
    [
        {"s": '\x00\x1f\n\r\t\b\f"\\/\x7f\u2028é😀東京', "type": "BROWSE"},
        {"nested": {"z": [1, {"b": None, "a": True}], "a": -0}, "big": 10**30},
        {"f": 1e16, "g": 1e-7, "h": 0.1, "i": -2.5e-300, "j": 1.0},
        {"deep": [{"x": [1.5]}]},
        {"Ä": 1, "a": 2, "Z": 3, "😀": 4, "é": 5},
    ],
)
def test_event_id_is_the_json_dumps_definition(event: dict) -> None:
    assert event_id(event) == definition_id(event)


def test_event_id_is_the_definition_for_floats_of_every_magnitude() -> None:
    import math
    import struct

    rng = random.Random(5)
    floats = [0.0, -0.0, 1e-4, 9.999999999999999e-05, 9999999999999998.0, 1e16, 392.755]
    floats += [rng.random() * 10.0**e for e in range(-30, 30)]
    while len(floats) < 3000:
        value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(value):
            floats.append(value)
    for value in floats:
        event = {"type": "BROWSE", "x": {"y": [value]}}
        assert event_id(event) == definition_id(event), value


def float_literals(rng: random.Random, count: int) -> list[str]:
    """JSON number texts as an API may write them: plain, long, tiny, with exponents."""
    literals = ["0.0", "-0.0", "0.0001", "0.00009", "0.00001", "-0.000099999", "1e16", "1E-7",
                "9999999999999999.9", "9999999999999998.0", "10000000000000000.0", "1.5e300",
                "1e400", "-1e400", "392.755", "2e0", "0.1e-3", "123456789012345678.5"]  # fmt: skip
    while len(literals) < count:
        whole = str(rng.randint(0, 10 ** rng.randint(0, 19)))
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 8)))
        literal = f"{rng.choice(['', '-'])}{whole}.{fraction}"
        if rng.random() < 0.3:
            literal += f"{rng.choice('eE')}{rng.choice(['', '+', '-'])}{rng.randint(0, 30)}"
        literals.append(literal)
    return literals


def test_a_page_the_float_watch_clears_gets_the_definitions_event_ids() -> None:
    """ExponentFloatWatch never misses a float whose repr has an exponent: every page it
    clears (and every page it flags) gets exactly the definition's event_id."""
    rng = random.Random(11)
    watch = ExponentFloatWatch()
    cleared = flagged = 0
    for literal in float_literals(rng, 4000):
        body = (
            '{"events": [{"type": "BROWSE", "n": 1}, '
            f'{{"type": "BROWSE", "x": {{"y": [{literal}]}}, "s": "1e16 0.00001"}}]}}'
        ).encode()
        page = watch.decode(body)["events"]
        expected = [definition_id(event) for event in page]
        set_event_ids(page, may_hold_exponent_float=watch.seen)
        assert [event.pop("event_id") for event in page] == expected, literal
        cleared += not watch.seen
        flagged += watch.seen
    assert cleared > 1000 and flagged > 1000  # both paths were exercised


def test_set_event_ids_equals_event_id_on_both_paths() -> None:
    events = [{"type": "BROWSE", "f": 1e16}, {"type": "BROWSE", "f": 0.5, "u": "é"}]
    set_event_ids(events)
    assert [e.pop("event_id") for e in events] == [definition_id(e) for e in events]
    plain = [{"type": "BROWSE", "f": 0.5, "u": "é"}]
    set_event_ids(plain, may_hold_exponent_float=False)
    assert plain[0].pop("event_id") == definition_id(plain[0]) == event_id(plain[0])


def test_event_id_is_the_definition_on_every_sandbox_event(dataset) -> None:
    for event in dataset.records["events"]:
        assert event_id(event) == definition_id(event)


def test_event_id_ignores_key_order_but_not_values() -> None:
    a = {"type": "BROWSE", "date": "2026-02-01T12:30:00Z", "url": "/ä"}
    b = {"url": "/ä", "date": "2026-02-01T12:30:00Z", "type": "BROWSE"}
    assert event_id(a) == event_id(b)
    assert event_id(a) != event_id({**a, "url": "/a"})


@pytest.mark.parametrize(
    ("value", "zone", "expected"),
    [
        ("2026-02-01T12:30:00Z", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01T14:30:00+02:00", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01T07:30:00-05:00", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01T12:30:00", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01T14:30:00", "Europe/Helsinki", "2026-02-01T12:30:00Z"),
        ("2026-07-01T15:30:00", "Europe/Helsinki", "2026-07-01T12:30:00Z"),
        ("2026-02-01T12:30:00.250Z", "UTC", "2026-02-01T12:30:00.250000Z"),
        ("2026-02-01", "UTC", "2026-02-01T00:00:00Z"),
        ("2026-02-01 12:30:00+00:00", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01t12:30:00z", "UTC", "2026-02-01T12:30:00Z"),
        ("2026-02-01T12:30:00.123+0200", "UTC", "2026-02-01T10:30:00.123000Z"),
    ],
)
def test_datetimes_become_the_same_instant_in_utc(value: str, zone: str, expected: str) -> None:
    assert normalize_datetime(value, get_zone(zone)) == expected


def test_other_iso_layouts_are_rewritten_in_the_canonical_one() -> None:
    # Same length and "T"/"Z" places as the canonical layout, but an ISO week date.
    assert normalize_datetime("2026-W05-1T12:30:00Z") == "2026-01-26T12:30:00Z"
    assert normalize_datetime("2026-W05-1T12:30:00+02:00") == "2026-01-26T10:30:00Z"
    assert normalize_datetime("2026-W05-1T12:30:00") == "2026-01-26T12:30:00Z"


def test_sort_keys_of_normalized_values_sort_as_their_instants() -> None:
    rng = random.Random(2)
    values = []
    for _ in range(3000):
        instant = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            seconds=rng.randint(0, 200), microseconds=rng.choice([0, 0, rng.randint(1, 999999)])
        )
        values.append(normalize_datetime(instant.isoformat()))
    assert {len(v) for v in values} == {20, 27}
    keys = utc_sort_keys(values)
    assert keys is not None
    by_key = sorted(range(len(values)), key=keys.__getitem__)
    by_instant = sorted(range(len(values)), key=lambda i: dt.datetime.fromisoformat(values[i]))
    assert [values[i] for i in by_key] == [values[i] for i in by_instant]
    assert utc_sort_keys(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00"]) is None


def test_non_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError):
        normalize_datetime("not a date")
    for beyond_utc_years in ("0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00.5-01:00"):
        with pytest.raises(ValueError, match="outside years 1-9999"):
            normalize_datetime(beyond_utc_years)
    with pytest.raises(ValueError):
        normalize_datetime("2026-02-30T00:00:00Z")


def test_bounds_accept_dates_and_datetimes() -> None:
    helsinki = get_zone("Europe/Helsinki")
    instant, is_date = parse_bound("2026-02-01", helsinki)
    assert is_date and instant == dt.datetime(2026, 1, 31, 22, tzinfo=dt.timezone.utc)
    instant, is_date = parse_bound("2026-02-01T10:00:00+00:00", helsinki)
    assert not is_date and instant.hour == 10


def response_with(
    headers: dict[str, str], body: bytes = b"", status: int = 429
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers)
    response._content = body
    return response


def test_retry_after_seconds_and_http_dates_are_honoured_and_capped() -> None:
    assert retry_after_seconds(response_with({"Retry-After": "3"})) == 3.0
    before = time.time()
    future = email.utils.formatdate(before + 30, usegmt=True)  # whole seconds: floor(before + 30)
    waited = retry_after_seconds(response_with({"Retry-After": future}))
    after = time.time()
    # Bounds from this test's own clock readings, however slowly the machine runs.
    assert int(before + 30) - after <= waited <= int(before + 30) - before
    assert retry_after_seconds(response_with({"Retry-After": "99999"})) == MAX_RETRY_AFTER
    assert retry_after_seconds(response_with({"Retry-After": "soon"})) is None
    assert retry_after_seconds(response_with({})) is None
    assert retry_after_seconds(None) is None


def test_custobar_reason_is_short_and_never_a_whole_body() -> None:
    body = b'{"error": {"reason": "Unknown filter: colour"}, "customers": [{"email": "x@y.z"}]}'
    assert custobar_reason(response_with({"Content-Type": "application/json"}, body, 400)) == (
        "Unknown filter: colour"
    )
    html = b"<html><body><h1>Bad Gateway</h1>secret customer list</body></html>"
    assert custobar_reason(response_with({"Content-Type": "text/html"}, html, 502)) == ""
    long_text = b"x" * 1000
    assert (
        len(custobar_reason(response_with({"Content-Type": "text/plain"}, long_text, 400))) == 200
    )


def isoformat_utc(value: str, zone: dt.tzinfo = dt.timezone.utc) -> str:
    """The oracle: the instant through datetime's own parse and isoformat()."""
    from tests.expected import utc_text

    return utc_text(value, zone)


def test_every_layout_agrees_with_datetimes_own_isoformat() -> None:
    rng = random.Random(3)
    helsinki = get_zone("Europe/Helsinki")
    for _ in range(20000):
        text = (
            f"{rng.randint(1, 9999):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        )
        digits = rng.randint(1, 7)
        text += rng.choice(
            ["", "", ".000", f".{rng.randint(0, 999):03d}", f".{rng.randint(0, 999999):06d}",
             f"{rng.choice('.,')}{rng.randint(0, 10**digits - 1):0{digits}d}"]
        )  # fmt: skip
        offset = rng.choice(["", "Z", "+00:00", f"{rng.choice('+-')}{rng.randint(0, 14):02d}:00",
                             f"{rng.choice('+-')}{rng.randint(0, 13):02d}:{rng.choice(['30', '45'])}"])  # fmt: skip
        value = text + offset
        variants = [value, value, value, value.lower(), f" {value} ", f"{value} "]  # all ISO
        value = rng.choice(variants)
        try:
            expected = isoformat_utc(value.strip().upper())
        except (ValueError, OverflowError):
            continue  # an instant outside years 1..9999 once in UTC
        assert normalize_datetime(value) == expected, value
        assert normalize_datetime(value) == expected, value  # cached the same
        if not offset and 2 <= int(text[:4]) <= 9998 and value == text:
            assert normalize_datetime(value, helsinki) == isoformat_utc(value, helsinki), value


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-01T12:30:61+02:00",
        "2026-02-01T12:3a:00+02:00",
        "2026-02-30T12:30:00+02:00",
        "2026-02-01T24:30:00+02:00",
        "2026-02-01T12:30:00+25:00",
        "2026-02-01T12:３0:00+02:00",
    ],
)
def test_malformed_offset_datetimes_are_rejected(value: str) -> None:
    # The same hour and offset, valid, first: its UTC hour is then known (cached).
    assert normalize_datetime("2026-02-01T12:00:00+02:00") == "2026-02-01T10:00:00Z"
    with pytest.raises(ValueError):
        normalize_datetime(value)
