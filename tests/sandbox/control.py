"""The Sandbox: start and stop it, change its data, switches and faults, read its request log."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import msgspec

from .data import STREAMS, Dataset, Record, generate_dataset
from .faults import FAULT_KINDS, FaultRule, Faults, Switches
from .query import Query, QueryError, encode_cursor, parse_query
from .responses import (
    CSV_TYPE,
    JSON_TYPE,
    NEXT_URL_HEADER,
    Response,
    error_response,
    project,
    render_csv,
    render_json,
)
from .routing import RequestLog, Server
from .store import Store

TEST_TOKEN = "cbsbx_TESTTOKEN_7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4e6b8d0f1"  # noqa: S105 - a fake

# Encoded pages are cached up to this many bytes in all; beyond it pages are encoded per request.
DEFAULT_BODY_CACHE_BYTES = 512 * 1024 * 1024


class Sandbox:
    """Custobar's data API on a local port, serving ``dataset``; see tests/sandbox/__init__.py."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        token: str = TEST_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        scopes: Iterable[str] | None = None,
        body_cache_bytes: int = DEFAULT_BODY_CACHE_BYTES,
    ) -> None:
        self.dataset = dataset if dataset is not None else generate_dataset()
        self.token = token
        self.host = host
        self.port = port
        self.scopes = set(scopes) if scopes is not None else None
        self._switches = Switches()
        self._store = Store(self.dataset, body_cache_bytes)
        self.faults = Faults()  # the handler takes each request's fault from here
        self.log = RequestLog(token)  # ... and logs each request here
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> Sandbox:
        if self._server is None:
            self._server = Server((self.host, self.port), self)
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # stop() waits for the loop to wake up: tests start and stop many sandboxes.
                kwargs={"poll_interval": 0.01},
                name=f"custobar-sandbox-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    # data

    def add(self, stream: str, record: Record) -> None:
        self._store.add(stream, record)

    def delete(self, stream: str, **key: Any) -> int:
        return self._store.delete(stream, key)

    def records(self, stream: str) -> list[Record]:
        return self._store.records(stream)

    # switches and faults

    @property
    def switches(self) -> set[str]:
        return self._switches

    @switches.setter
    def switches(self, names: Iterable[str]) -> None:
        self._switches = Switches(names)

    def inject(
        self,
        kind: str,
        *,
        times: int | None = 1,
        stream: str | None = None,
        after: int = 0,
        **options: Any,
    ) -> None:
        """Answer the next ``times`` matching requests (after ``after`` of them) with a fault."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault {kind!r}; faults are {sorted(FAULT_KINDS)}")
        if stream is not None and stream not in STREAMS:
            raise ValueError(f"Unknown stream {stream!r}")
        self.faults.add(FaultRule(kind, times, stream, after, options))

    def clear_faults(self) -> None:
        self.faults.clear()

    # request log

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.log.entries()

    def clear_requests(self) -> None:
        self.log.clear()

    # serving (called from the handler threads, tests/sandbox/routing.py)

    def api_response(
        self, stream: str, raw_query: str, auth_ok: bool, next_url: str | None
    ) -> Response:
        """The API's answer; ``next_url`` replaces the real one (a fault)."""
        if not auth_ok:
            return error_response(401, "Invalid token.")
        if self.scopes is not None and stream not in self.scopes:
            return error_response(403, f"Token has no permission for GET /api/data/{stream}/")
        try:
            query = parse_query(stream, raw_query, self._store.company)
            return self._page_response(query, next_url)
        except QueryError as error:
            return error_response(400, str(error))

    def _page_response(self, query: Query, next_url_override: str | None) -> Response:
        switches = frozenset(self._switches)
        cacheable = not switches and next_url_override is None and not self.faults.pending()
        if cacheable and (cached := self._store.cached_body(query)) is not None:
            return cached
        page, next_offset, version = self._page(query, switches)
        next_url = next_url_override
        if next_url is None and next_offset is not None:
            next_url = self._next_url(query, next_offset, switches)
        response = self._render(query, page, next_url, switches)
        if cacheable:
            self._store.cache_body(query, response, version)
        return response

    def _page(self, query: Query, switches: frozenset[str]) -> tuple[list[Record], int | None, int]:
        """(the page's records, the next page's offset or None, the data's version)."""
        if "empty_page_with_next" in switches and not query.from_cursor:
            return [], 0, -1  # a next_url with a cursor (offset 0) leads to the real first page
        results, version = self._store.select(query, switches)
        end = query.offset + query.limit
        return results[query.offset : end], (end if end < len(results) else None), version

    def _next_url(self, query: Query, offset: int, switches: frozenset[str]) -> str:
        path = f"/api/data/{query.stream}/?cursor={encode_cursor(query, offset)}"
        return path if "relative_next_url" in switches else self.url + path

    def _render(
        self,
        query: Query,
        page: list[Record],
        next_url: str | None,
        switches: frozenset[str],
    ) -> Response:
        if query.fields:
            page = project(page, query.projected_fields())
        headers = {NEXT_URL_HEADER: next_url} if next_url is not None else {}
        if query.csv:
            columns = (
                query.projected_fields() if query.fields else self._store.columns(query.stream)
            )
            return Response(200, render_csv(page, columns), CSV_TYPE, headers)
        body_next_url = None if "next_url_header_only" in switches else next_url
        return Response(200, render_json(query.stream, page, body_next_url), JSON_TYPE, headers)

    def admin_response(self, method: str, path: str) -> Response:
        """The unauthenticated endpoints for users in another process."""
        if path == "/_sandbox/requests":
            if method != "GET":
                return error_response(405, "Method not allowed")
            return Response(200, msgspec.json.encode(self.requests))
        if path == "/_sandbox/clear-requests":
            if method != "POST":
                return error_response(405, "Method not allowed")
            return Response(200, msgspec.json.encode({"cleared": self.log.clear()}))
        return error_response(404, "Not found")
