"""HTTP plumbing shared by all streams: auth header, pacing, origin guard, Retry-After,
backoff waits and one-line failure descriptions."""

from __future__ import annotations

import email.utils
import threading
import time
import typing as t
from urllib.parse import urljoin, urlsplit

import requests
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError

from tap_custobar.settings import normalize_origin

MAX_RETRY_AFTER = 600.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0


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
        self._last_start = 0.0
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: t.Any) -> requests.Response:
        self.check_same_origin(request.url or "", what="request")
        self._pace()
        return super().send(request, **kwargs)

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
    else 1, 2, 4 ... seconds, capped at five minutes (the failed request's exception is sent
    in before each wait)."""
    attempt = 0
    exception = yield  # type: ignore[misc]
    while True:
        delay = retry_after_seconds(getattr(exception, "response", None))
        if delay is None:
            delay = min(BACKOFF_BASE_SECONDS * 2**attempt, BACKOFF_CAP_SECONDS)
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
            "connection failed or was dropped"
            if isinstance(exc, (requests.exceptions.ConnectionError, ConnectionResetError))
            else exc.__class__.__name__
        )
    return f"{prefix}{kind} ({exc.__class__.__name__}) on {urlsplit(path).path}"
