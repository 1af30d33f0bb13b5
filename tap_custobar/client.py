"""CustobarStream: everything the four Custobar streams share (requests, responses, retries,
the page loop), built on the page writer's SDK layer."""

from __future__ import annotations

import typing as t
from functools import cached_property

import backoff
import msgspec
import requests
from singer_sdk import SchemaDirectory
from singer_sdk.exceptions import RetriableAPIError
from singer_sdk.streams.rest import HTTPRequest

from tap_custobar import schemas
from tap_custobar.bookmarks import BookmarkTracker, partition_key, unordered_warning
from tap_custobar.connection_test import DRY_RUN_STOP_FILTER
from tap_custobar.discovery import csv_header
from tap_custobar.http import (
    RETRIED_EXCEPTIONS,
    FirstContact,
    TokenAuth,
    describe_failure,
    error_message,
    exhausted_error,
    retry_waits,
    status_failure,
)
from tap_custobar.page_writer import PageWriterStream, paused_gc
from tap_custobar.pagination import NextUrlPaginator, Page, Query, next_url_of
from tap_custobar.records import RecordProcessor
from tap_custobar.settings import filter_query_value

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.helpers.types import Context, Record

    from tap_custobar.settings import Settings
    from tap_custobar.tap import TapCustobar

SCHEMAS_DIR = SchemaDirectory(schemas)


class CustobarStream(PageWriterStream):
    """One Custobar data API resource: `/api/data/<name>/` answering `{"<name>": [...]}`."""

    def __init__(self, tap: TapCustobar, *, schema: dict | None = None, **kwargs: t.Any) -> None:
        # A discovered schema passed in wins over the built-in one (schemas/<name>.json).
        self.builtin_schema = SCHEMAS_DIR.get_schema(self.name, key_properties=self.primary_keys)
        super().__init__(tap, schema=self.builtin_schema if schema is None else schema, **kwargs)
        self.logger.addFilter(DRY_RUN_STOP_FILTER)  # --test's stops are not errors
        self.custobar_tap = tap
        self._seen_next_urls: set[str] = set()
        self.bookmarks = BookmarkTracker(self.replication_key)

    # --- settings and request basics -------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self.custobar_tap.settings

    @property
    def url_base(self) -> str:
        return self.settings.base_url

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/api/data/{self.name}/"

    @property
    def requests_session(self) -> requests.Session:
        # One session for the tap, so pacing spans all streams.
        return self.custobar_tap.session

    @cached_property
    def authenticator(self) -> TokenAuth:
        return TokenAuth(self.config.get("auth_scheme") or "Token", self.config["api_token"])

    @property
    def http_headers(self) -> dict:
        return {"User-Agent": self.user_agent, "Accept": "application/json"}

    @property
    def user_agent(self) -> str:  # type: ignore[override]
        return str(self.config.get("user_agent") or self.custobar_tap.default_user_agent)

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout", 300))

    def first_page_params(self, query: Query) -> dict[str, t.Any]:
        """A query's first-page parameters: limit, filters, fields, then the query's own."""
        params: dict[str, t.Any] = {"limit": int(self.config.get("page_size", 10000))}
        for name, value in self.settings.filters.get(self.name, {}).items():
            params[name] = filter_query_value(value)
        if fields := self.requested_fields():
            params["fields"] = ",".join(fields)
        return {**params, **query.params}

    def requested_fields(self) -> list[str] | None:
        """`fields=` for a narrowed catalog: the selected properties plus the keys."""
        properties = list(self.effective_schema.get("properties", {}))
        selected = [p for p in properties if self.mask.get(("properties", p), True)]
        if len(selected) == len(properties):
            return None
        keys = {*(self.primary_keys or ()), self.replication_key}
        return [p for p in properties if p in keys or p in selected]

    def prepare(
        self, params: dict, next_url: str | None = None, *, safe_query_chars: str = ",:"
    ) -> requests.PreparedRequest:
        """A query's page: its first with `params`, a later one by its next_url, which
        carries the whole query (Custobar's cursor) and is sent unchanged."""
        request = HTTPRequest(url=next_url or self.get_url(None), headers=self.http_headers)
        if next_url is None:
            # fields=a,b stays readable; "+" is escaped, or it would arrive as a space.
            request.params, request.safe_query_chars = params, safe_query_chars
        query, headers = request.encode_params(), request.headers
        return self.build_prepared_request("GET", request.url, params=query, headers=headers)

    # --- responses --------------------------------------------------------------------

    def validate_response(self, response: requests.Response) -> None:
        scheme, origin = self.config.get("auth_scheme", "Token"), self.settings.origin
        failure = status_failure(
            response, stream=self.name, path=self.path, auth_scheme=scheme, origin=origin
        )
        if failure is not None:
            raise failure

    def response_error_message(self, response: requests.Response) -> str:
        return error_message(response, self.path)  # not the SDK's: no body (customer data)

    def read_page(self, prepared: requests.PreparedRequest, context: Context | None) -> Page:
        """Send a request and decode its page: a body that is not the page is retried."""
        response = self.send_request(prepared, context)
        try:
            payload, exponent_floats = self.decode_body(response.content)
        except msgspec.DecodeError as exc:
            content_type = response.headers.get("Content-Type", "unknown")
            raise RetriableAPIError(
                f"unreadable response body from {self.path} (content type "
                f"{content_type}, {len(response.content)} bytes: {exc.__class__.__name__})",
                response,
            ) from None
        key = self.name  # {"<name>": [...]}
        if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
            raise RetriableAPIError(
                f"a {response.status_code} response from {self.path} without the '{key}' list",
                response,
            )
        return Page(payload[key], next_url_of(response, payload), exponent_floats)

    def decode_body(self, body: bytes) -> tuple[t.Any, bool]:
        return msgspec.json.decode(body), True  # True: it may hold an exponent-form float

    # --- retries ----------------------------------------------------------------------

    def request_decorator(self, func: t.Callable) -> t.Callable:
        # The SDK hands backoff its logger, which prints the full URL (query = filter values).
        return backoff.on_exception(
            self.backoff_wait_generator,
            RETRIED_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            giveup=self.first_contact.gives_up,  # an unreachable host: a couple of retries
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

    @property
    def first_contact(self) -> FirstContact:
        return self.custobar_tap.session.first_contact

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:  # type: ignore[override]
        return retry_waits()

    def backoff_jitter(self, value: float) -> float:
        return value  # retry_waits jitters exponential waits, not Retry-After

    def backoff_handler(self, details: t.Any) -> None:
        self.logger.warning(
            "%s; retry %d of %d in %.1f s",
            describe_failure(details.get("exception"), self.path, stream=self.name),
            details.get("tries", 0),
            self.first_contact.retries_for(details.get("exception"), self.backoff_max_tries() - 1),
            details.get("wait", 0.0),
        )

    def send_with_retries(
        self, send: t.Callable, prepared: requests.PreparedRequest, context: Context | None
    ) -> t.Any:
        """Send with retries; when they run out, fail naming the cause (see exhausted_error)."""
        try:
            return send(prepared, context)
        except RETRIED_EXCEPTIONS as exc:
            tries, contact = self.backoff_max_tries(), self.first_contact
            raise exhausted_error(exc, self.name, self.path, prepared.url, tries, contact) from None

    # --- the page loop ----------------------------------------------------------------

    @cached_property
    def records(self) -> RecordProcessor:
        zone, builtin = self.settings.api_timezone, self.builtin_schema
        return RecordProcessor.for_stream(self, zone, builtin, on_new_fields=self.add_properties)

    def partition_pages(self, context: Context | None) -> Iterator[list[Record]]:
        """The records of this stream or partition, page by page; completes its bookmark."""
        key = partition_key(context)
        if self.replication_key:
            self.bookmarks.begin(key, self.get_context_state(context))
        for query in self.queries(context):
            yield from self.query_pages(context, query)
        if self.replication_key and self.bookmarks.complete(key, self.get_context_state(context)):
            self.state_manager.is_flushed = False

    def queries(self, context: Context | None) -> Iterator[Query]:
        """The queries of this stream or partition (sales: one per day)."""
        yield Query({})

    def query_pages(self, context: Context | None, query: Query) -> Iterator[list[Record]]:
        """Page through one query, yielding each page's post-processed records.

        The SDK's request loop, page by page, for Custobar syncs: a progress line per page,
        page boundaries for STATE messages, empty pages that still carry a next_url, and
        failure messages that name the stream and path but never a query or a body.
        """
        paginator = NextUrlPaginator(self.settings.origin, self._seen_next_urls, self.name)
        params = self.first_page_params(query)
        send = self.request_decorator(self.read_page)
        received = 0
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            while not paginator.finished:
                with paused_gc():  # until the page is written and freed
                    prepared = self.prepare(params, paginator.current_value)
                    page: Page = self.send_with_retries(send, prepared, context)
                    request_counter.increment()
                    paginator.advance(page)  # validates next_url before anything is emitted
                    received += len(page.records)
                    records = self.process_page(page, query, paginator.count)
                    del page
                    yield records
                    del records
                    if self.replication_key:  # every record of the page has been emitted now
                        self.checkpoint_page(context, query.label)
                    self.write_state_message()
                done = (self.name, query.label, paginator.count, received)
                self.logger.info("%s%s: page %d done, %d records so far", *done)

    def process_page(self, page: Page, query: Query, page_number: int) -> list[Record]:
        """A page's records to emit (post-processed in place)."""
        return self.records.process_page(page.records, page_number)

    def sync_finished(self) -> None:
        if "records" in vars(self):  # built with the first page
            self.records.report()

    # --- bookmarks --------------------------------------------------------------------

    def note_replication_values(self, context: Context | None, values: list[str]) -> None:
        self.bookmarks.note_page(partition_key(context), values)

    def checkpoint_page(self, context: Context | None, label: str) -> None:
        """Decide the bookmark after a page whose records have all been emitted."""
        state = self.get_context_state(context)
        became_unordered, changed = self.bookmarks.checkpoint(partition_key(context), state)
        if became_unordered:
            self.logger.warning(unordered_warning(self.name, label, self.replication_key))
        if changed:
            self.state_manager.is_flushed = False

    # --- discovery --------------------------------------------------------------------

    def discovery_contexts(self) -> list[dict | None]:
        """The queries whose fields make up the stream (events: one per type)."""
        return [None]

    def fetch_csv_header(self, params: dict) -> list[str]:
        """The field names of a one-row CSV response (same pacing, retries, error mapping)."""
        prepared = self.prepare({**params, "format": "csv", "limit": 1}, safe_query_chars="")
        response = self.send_with_retries(self.request_decorator(self.send_request), prepared, None)
        # UTF-8 whatever the Content-Type says (requests would guess Latin-1 for text/*).
        return csv_header(response.content.decode("utf-8-sig", errors="replace"))

    def fetch_pages(self, params: dict) -> Iterator[list[dict]]:
        """One query's JSON pages, while asked for (a sync's pacing, retries, checks)."""
        send = self.request_decorator(self.read_page)
        paginator = NextUrlPaginator(self.settings.origin, set(), self.name)
        while not paginator.finished:
            prepared = self.prepare(params, paginator.current_value, safe_query_chars="")
            page: Page = self.send_with_retries(send, prepared, None)
            paginator.advance(page)
            yield page.records
