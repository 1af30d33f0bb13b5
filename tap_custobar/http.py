"""HTTP plumbing shared by all streams: auth header, pacing, origin guard, Retry-After,
backoff waits (with jitter), one-line failure descriptions, and how failures to reach the
host at all are told apart and worded."""

from __future__ import annotations

import email.utils
import errno
import random
import socket
import ssl
import threading
import time
import typing as t
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, RetriableAPIError

from tap_custobar.settings import normalize_origin, token_problem

MAX_RETRY_AFTER = 600.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
# Until the host has answered once in a run, a failure to connect at all is most likely a
# wrong `company` / `base_url`: a couple of quick retries, not the whole retry policy.
FIRST_CONTACT_RETRIES = 2
# Exponential waits are stretched by up to this fraction, at random, so that parallel jobs
# hit by the same outage do not retry in lockstep (never shortened: the documented doubling
# stays a floor).
JITTER_FRACTION = 0.5


# What a request may fail with and still be retried (as the SDK's request_decorator).
RETRIED_EXCEPTIONS = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class TokenAuth(requests.auth.AuthBase):
    """Sets `Authorization: <scheme> <token>` and nothing else.

    The SDK's API-key authenticators re-encode the query string, which would escape the
    commas of `fields=` and `order=`; this one leaves the URL alone.
    """

    def __init__(self, scheme: str, token: str) -> None:
        token = token.strip()
        problem = token_problem(token)
        if problem:  # validated with the settings already; never reach http.client with it
            raise ConfigValidationError(f"api_token: {problem}", errors=[f"api_token: {problem}"])
        self._header = f"{scheme} {token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "TokenAuth(<redacted>)"


class OffOriginError(FatalAPIError):
    """A next_url or redirect that leaves the configured origin."""


class RetriesExhaustedError(FatalAPIError):
    """A request still failed after every retry."""


class CustobarSession(requests.Session):
    """A session that paces request starts and never leaves the configured origin."""

    def __init__(self, origin: str, min_interval: float) -> None:
        super().__init__()
        self.origin = origin
        self.min_interval = min_interval
        self.first_contact = FirstContact()
        self._last_start = 0.0
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        self.check_same_origin(request.url or "", what="request")
        self._pace()
        response = super().send(request, **kwargs)
        self.first_contact.answered = True
        return response

    def _pace(self) -> None:
        if self.min_interval <= 0:
            return
        with self._lock:
            wait = self._last_start + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_start = time.monotonic()

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target and normalize_origin(urljoin(resp.url, target)) != self.origin:
            resp.close()  # refused: hand the connection back before failing
            self.check_same_origin(urljoin(resp.url, target), what=f"redirect ({resp.status_code})")
        return target

    def check_same_origin(self, url: str, *, what: str) -> None:
        if normalize_origin(url) != self.origin:
            raise OffOriginError(
                f"Refusing a {what} to {normalize_origin(url)} ({urlsplit(url).path}): it is "
                f"not the configured origin {self.origin}, so nothing is sent there."
            )


def retry_after_seconds(response: requests.Response | None) -> float | None:
    """The server's Retry-After (seconds or HTTP date), capped at ten minutes."""
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_message(response: requests.Response, path: str) -> str:
    """Status, reason and Custobar's short reason: never the body (it can hold customer data)."""
    reason = custobar_reason(response)
    message = f"{response.status_code} {response.reason} from {path}"
    return f"{message}: {reason}" if reason else message


def status_failure(
    response: requests.Response, *, stream: str, path: str, auth_scheme: str, origin: str
) -> Exception | None:
    """What a response's status means: retried (429, 5xx), fatal (other non-2xx) or fine."""
    status = response.status_code
    if status == 429 or status >= 500:
        return RetriableAPIError(error_message(response, path), response)
    if status in (401, 403):
        return FatalAPIError(
            f"{stream}: {status} {response.reason} from {path}. Check `api_token` "
            f"and `auth_scheme` ({auth_scheme}): the token needs "
            f"the scope GET {path}. Custobar said: {custobar_reason(response) or '-'}"
        )
    if status == 404:
        return FatalAPIError(
            f"{stream}: 404 Not Found for {path} on {origin}. Check "
            "`company` / `base_url`: they must point at your Custobar instance's root."
        )
    if status >= 300:
        return FatalAPIError(
            f"{stream}: {status} {response.reason} for {path}. Custobar said: "
            f"{custobar_reason(response) or '-'}"
        )
    return None


def custobar_reason(response: requests.Response, limit: int = 200) -> str:
    """Custobar's short error reason: `{"error": {"reason": ...}}`, else the shortened text.

    Never the whole body: bodies can hold customer data.
    """
    reason = ""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("reason"):
            reason = str(error["reason"])
        elif isinstance(error, str):
            reason = error
        elif isinstance(payload.get("detail"), str):
            reason = payload["detail"]
    if not reason and "json" not in response.headers.get("Content-Type", ""):
        content_type = response.headers.get("Content-Type", "")
        if "html" not in content_type:
            reason = " ".join(response.text.split())
    if len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    return reason


def retry_waits() -> t.Generator[float, t.Any, None]:
    """Backoff waits for `backoff.on_exception`: the server's Retry-After when it gives one,
    else 1, 2, 4 ... seconds with jitter, capped at five minutes (the failed request's
    exception is sent in before each wait)."""
    attempt = 0
    exception = yield  # type: ignore[misc]
    while True:
        delay = retry_after_seconds(getattr(exception, "response", None))
        if delay is None:  # exponential, with jitter; Retry-After is the server's own
            delay = min(jittered(BACKOFF_BASE_SECONDS * 2**attempt), BACKOFF_CAP_SECONDS)
        attempt += 1
        exception = yield delay


def describe_failure(exc: BaseException | None, path: str, *, stream: str = "") -> str:
    """A one-line description of a failed request: status or exception, and the path only."""
    prefix = f"{stream}: " if stream else ""
    if isinstance(exc, RetriableAPIError) and exc.args:
        return f"{prefix}{exc.args[0]}"  # "<status> <reason> from <path>..." or a body problem
    if exc is None:
        return f"{prefix}request to {path} failed"
    kinds: dict[type[BaseException], str] = {
        requests.exceptions.ConnectTimeout: "connection timed out",
        requests.exceptions.ReadTimeout: "read timed out",
        requests.exceptions.ChunkedEncodingError: "connection dropped while reading the body",
    }
    kind = kinds.get(type(exc))
    if kind is None:
        kind = (
            connect_failure_cause(exc) or "connection failed or was dropped"
            if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionResetError))
            else exc.__class__.__name__
        )
    return f"{prefix}{kind} ({exc.__class__.__name__}) on {urlsplit(path).path}"


def exhausted_error(
    exc: BaseException,
    stream: str,
    path: str,
    url: str | None,
    tries: int,
    first_contact: FirstContact,
) -> FatalAPIError:
    """The error that ends a request whose retries ran out: on a run's first contact, the
    host (never the query) and why it could not be reached at all; else the stream, the
    cause and the path only."""
    if cause := first_contact.unreachable(exc):
        return UnreachableHostError(
            f"{stream}: " + unreachable_message(url or "", cause, first_contact.failures)
        )
    return RetriesExhaustedError(
        f"{stream}: giving up after {tries} {'try' if tries == 1 else 'tries'}: "
        f"{describe_failure(exc, path)}"
    )


# --- failures to reach the host ------------------------------------------------------------


class UnreachableHostError(FatalAPIError):
    """The first contact of a run could not connect to the configured host at all."""


class FirstContact:
    """Whether the host has answered in this run, and how many times it could not be reached
    before that. Once it has answered, drops and timeouts get the full retry policy."""

    def __init__(self, retries: int = FIRST_CONTACT_RETRIES) -> None:
        self.retries = retries
        self.answered = False
        self.failures = 0

    def unreachable(self, exc: BaseException) -> str | None:
        """The cause in words when `exc` is a failure to reach a host never reached yet."""
        return None if self.answered else connect_failure_cause(exc)

    def gives_up(self, exc: BaseException) -> bool:
        """backoff's giveup: stop after a couple of quick retries on an unreachable host."""
        if self.unreachable(exc) is None:
            return False
        self.failures += 1
        return self.failures > self.retries

    def retries_for(self, exc: BaseException | None, retries: int) -> int:
        """How many retries a failure gets: a couple while the host has never answered."""
        if exc is not None and self.unreachable(exc):
            return min(retries, self.retries)
        return retries


def connect_failure_cause(exc: BaseException) -> str | None:
    """Why a connection could not be made at all, in words ("name not resolved",
    "connection refused", "TLS certificate not valid for host"...); None for any other
    failure (a drop, a timeout, a bad answer). Only exception types and OpenSSL's
    verification message are used: the exceptions' texts carry the URL with its query."""
    chain = _exception_chain(exc)
    for item in chain:
        if isinstance(item, urllib3.exceptions.NameResolutionError | socket.gaierror):
            return "name not resolved"
    for item in chain:
        if isinstance(item, ssl.SSLCertVerificationError):
            if item.verify_code == 62 or "mismatch" in str(item.verify_message).lower():
                return "TLS certificate not valid for host"
            return f"TLS certificate not trusted ({item.verify_message})"
    for item in chain:
        if isinstance(item, ssl.SSLError | requests.exceptions.SSLError):
            return "TLS handshake failed"
    for item in chain:
        if isinstance(item, ConnectionRefusedError):
            return "connection refused"
        if isinstance(item, OSError) and item.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "no route to host"
    return None


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: requests' ConnectionError holds urllib3's MaxRetryError,
    whose `reason` is the NewConnectionError raised from the socket's OSError."""
    seen: list[BaseException] = []
    pending: list[t.Any] = [exc]
    while pending and len(seen) < 20:
        item = pending.pop(0)
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending.extend(item.args)
        pending.extend((getattr(item, "reason", None), item.__cause__, item.__context__))
    return seen


def unreachable_message(url: str, cause: str, tries: int) -> str:
    """`cannot connect to scheme://host:port: <cause>`, pointing at the settings to check."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return (
        f"cannot connect to {parts.scheme}://{host}:{port}: {cause} "
        f"({tries} {'try' if tries == 1 else 'tries'}). Check `company` / `base_url`: "
        "they must name your Custobar instance."
    )


def jittered(
    delay: float, fraction: float = JITTER_FRACTION, draw: t.Callable[[], float] = random.random
) -> float:
    """`delay` stretched by a random part of `fraction` (between delay and delay*(1+fraction))."""
    return delay * (1.0 + fraction * draw())
