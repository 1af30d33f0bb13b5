"""Faults a client must survive (DESIGN.md §4), and the switches for what the API doc leaves open."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .responses import HTML_TYPE, Response, error_response

SWITCHES = frozenset(
    {
        "order_ignored",
        "next_url_header_only",
        "relative_next_url",
        "empty_page_with_next",
        "out_of_order",
    }
)

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
REPLACING_FAULTS = frozenset({*_ERROR_REASONS, "403", "html_error", "missing_list", "redirect"})
# Faults that deliver the API's own answer badly.
_DELIVERY_FAULTS = frozenset({"drop_before", "drop_mid_body", "slow", "truncated_json"})
# Faults that serve the real page with a wrong next_url.
_NEXT_URL_FAULTS = frozenset({"foreign_next_url", "repeat_next_url"})
FAULT_KINDS = REPLACING_FAULTS | _DELIVERY_FAULTS | _NEXT_URL_FAULTS

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


class Faults:
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


class Switches(set):
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

    def __ior__(self, other: Any) -> Switches:
        self.update(other)
        return self


def _check_switches(names: Iterable[str]) -> None:
    unknown = set(names) - SWITCHES
    if unknown:
        raise ValueError(f"Unknown switch {sorted(unknown)}; switches are {sorted(SWITCHES)}")
