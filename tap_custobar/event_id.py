"""Events' event_id (DESIGN §2), and the watch that spares most pages the exponent-float scan."""

from __future__ import annotations

import hashlib
import json
import typing as t

import msgspec

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
