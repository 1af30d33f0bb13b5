"""Pagination over Custobar's `next_url` (body) / `X-Custobar-Next-Url` (header)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import requests
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.pagination import BaseAPIPaginator

from tap_custobar.http import OffOriginError
from tap_custobar.settings import normalize_origin

NEXT_URL_HEADER = "X-Custobar-Next-Url"


class NextUrlLoopError(FatalAPIError):
    """The API handed out a next_url it had already given in this stream."""


class NextUrlPaginator(BaseAPIPaginator[str | None]):
    """Follows `next_url` from the page's single parse (`response.custobar_payload`).

    Relative URLs resolve against the request URL; the result must stay on the configured
    origin, and a URL seen twice in one stream is a loop (fatal, never requested).
    """

    def __init__(self, origin: str, seen: set[str], stream: str) -> None:
        super().__init__(None)
        self.origin = origin
        self.seen = seen
        self.stream = stream

    def get_next(self, response: requests.Response) -> str | None:
        next_url = self.next_url(response)
        if next_url is None:
            return None
        if next_url in self.seen:
            raise NextUrlLoopError(
                f"{self.stream}: the API returned a next_url ({urlsplit(next_url).path}) "
                "already followed in this stream (a pagination loop); stopping instead of "
                "reading pages again."
            )
        self.seen.add(next_url)
        return next_url

    def next_url(self, response: requests.Response) -> str | None:
        """The page's next_url made absolute, refused when it leaves the origin."""
        payload = getattr(response, "custobar_payload", None) or {}
        next_url = payload.get("next_url") or response.headers.get(NEXT_URL_HEADER)
        if not next_url:
            return None
        absolute = urljoin(response.url, str(next_url))
        if normalize_origin(absolute) != self.origin:
            raise OffOriginError(
                f"{self.stream}: refusing a next_url to {normalize_origin(absolute)} "
                f"({urlsplit(absolute).path}): it is not the configured origin {self.origin}, "
                "so nothing is sent there."
            )
        return absolute

    def continue_if_empty(self, response: requests.Response) -> bool:
        # Custobar may send an empty page that still has a next_url: keep going.
        return self.next_url(response) is not None
