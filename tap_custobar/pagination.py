"""Queries, decoded pages, and pagination over Custobar's `next_url` (body) /
`X-Custobar-Next-Url` (header)."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from singer_sdk.exceptions import FatalAPIError

from tap_custobar.http import OffOriginError
from tap_custobar.settings import normalize_origin

if t.TYPE_CHECKING:
    import datetime as dt

    import requests

NEXT_URL_HEADER = "X-Custobar-Next-Url"


@dataclass(frozen=True)
class Query:
    """One query of a stream or partition: its own first-page parameters, the label of its
    progress lines, and the [start, end) its records are trimmed to (None: no bound)."""

    params: dict[str, t.Any]
    label: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None


@dataclass(frozen=True)
class Page:
    """One decoded response: its records, its next_url (absolute, not yet checked) and
    whether its body may hold a float written with an exponent (see event_id.py)."""

    records: list[dict]
    next_url: str | None
    exponent_floats: bool = True


def next_url_of(response: requests.Response, payload: dict) -> str | None:
    """The response's next_url (body, else header), made absolute against the request URL."""
    next_url = payload.get("next_url") or response.headers.get(NEXT_URL_HEADER)
    return urljoin(response.url, str(next_url)) if next_url else None


class NextUrlLoopError(FatalAPIError):
    """The API handed out a next_url it had already given in this stream."""


class NextUrlPaginator:
    """Follows one query's pages by their next_url.

    The next_url must stay on the configured origin, and a URL seen twice in one stream
    (`seen` is shared by the stream's queries) is a loop: fatal, never requested. An empty
    page that still has a next_url is followed.
    """

    def __init__(self, origin: str, seen: set[str], stream: str) -> None:
        self.origin = origin
        self.seen = seen
        self.stream = stream
        self.current_value: str | None = None  # the next request's URL; None: the first page
        self.finished = False
        self.count = 0

    def advance(self, page: Page) -> None:
        """Move past a page: to its next_url, or finished when it has none."""
        self.count += 1
        next_url = self.checked_next_url(page)
        if next_url is None:
            self.finished = True
            return
        if next_url in self.seen:
            raise NextUrlLoopError(
                f"{self.stream}: the API returned a next_url ({urlsplit(next_url).path}) "
                "already followed in this stream (a pagination loop); stopping instead of "
                "reading pages again."
            )
        self.seen.add(next_url)
        self.current_value = next_url

    def checked_next_url(self, page: Page) -> str | None:
        """The page's next_url, refused when it leaves the origin."""
        if page.next_url is None:
            return None
        if normalize_origin(page.next_url) != self.origin:
            raise OffOriginError(
                f"{self.stream}: refusing a next_url to {normalize_origin(page.next_url)} "
                f"({urlsplit(page.next_url).path}): it is not the configured origin "
                f"{self.origin}, so nothing is sent there."
            )
        return page.next_url
