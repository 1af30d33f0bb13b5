"""CustobarStream: everything the four Custobar streams share."""

from __future__ import annotations

import gc
import typing as t
from functools import cached_property
from itertools import repeat
from urllib.parse import urlsplit

import backoff
import msgspec
import requests
from singer_sdk import RESTStream, SchemaDirectory, StreamSchema
from singer_sdk.exceptions import FatalAPIError, RetriableAPIError
from singer_sdk.helpers._util import utc_now
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.streams.rest import HTTPRequest, PageContext

from tap_custobar import fastpath, schemas
from tap_custobar.bookmarks import BookmarkTracker
from tap_custobar.datetimes import normalize_datetime, parse_instant
from tap_custobar.field_types import FieldConformer, Misfit, describe, fields_to_conform
from tap_custobar.http import TokenAuth, custobar_reason, retry_after_seconds
from tap_custobar.pagination import NextUrlPaginator
from tap_custobar.schema_growth import SchemaGrowth
from tap_custobar.settings import filter_query_value

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.helpers.types import Context, Record

    from tap_custobar.settings import Settings
    from tap_custobar.tap import TapCustobar

SCHEMAS_DIR = SchemaDirectory(schemas)
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 300.0
SKIPPED_POSITIONS_REPORTED = 5
_RETRIED_EXCEPTIONS = (
    RetriableAPIError,
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


class RetriesExhaustedError(FatalAPIError):
    """A request still failed after every retry."""


class CustobarStream(RESTStream[str | None]):
    """One Custobar data API resource: `/api/data/<name>/` answering `{"<name>": [...]}`."""

    builtin_schema = StreamSchema(SCHEMAS_DIR)

    @property
    def schema(self) -> dict:  # type: ignore[override]
        # A discovered schema passed to the constructor wins; the SDK's StreamSchema
        # descriptor alone would always return the file's.
        return self._schema if self._schema is not None else self.builtin_schema

    _LOG_REQUEST_METRIC_URLS = False  # URLs can carry filter values (customer data)

    def __init__(self, tap: TapCustobar, **kwargs: t.Any) -> None:
        super().__init__(tap, **kwargs)
        self._seen_next_urls: set[str] = set()
        self._page_number = 0
        self._skipped = 0
        self._skipped_positions: list[str] = []
        self._bad_datetimes: set[str] = set()
        self._field_misfits: dict[str, Misfit] = {}  # kept when the schema grows
        self._keys_known_page: list[dict] | None = None  # see grow_schema
        self._expect_json = True
        self.bookmarks = BookmarkTracker()
        self._completed_version: int | None = None

    # --- settings and request basics -------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._tap.settings  # type: ignore[attr-defined]

    @property
    def url_base(self) -> str:
        return self.settings.base_url

    @property
    def path(self) -> str:  # type: ignore[override]
        return f"/api/data/{self.name}/"

    @property
    def records_key(self) -> str:
        return self.name

    @property
    def requests_session(self) -> requests.Session:
        # One session for the tap, so pacing spans all streams.
        return self._tap.session  # type: ignore[attr-defined, no-any-return]

    @cached_property
    def authenticator(self) -> TokenAuth:
        return TokenAuth(self.config.get("auth_scheme") or "Token", self.config["api_token"])

    @property
    def http_headers(self) -> dict:
        return {"User-Agent": self.user_agent, "Accept": "application/json"}

    @property
    def user_agent(self) -> str:  # type: ignore[override]
        return str(self.config.get("user_agent") or self._tap.default_user_agent)  # type: ignore[attr-defined]

    @property
    def timeout(self) -> float:  # type: ignore[override]
        return float(self.config.get("request_timeout", 300))

    @cached_property
    def datetime_fields(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, prop in self.effective_schema.get("properties", {}).items()
            if prop.get("format") == "date-time"
        )

    def get_new_paginator(self) -> NextUrlPaginator:
        return NextUrlPaginator(self.settings.origin, self._seen_next_urls, self.name)

    def get_http_request(self, *, page: PageContext) -> HTTPRequest:
        request = super().get_http_request(page=page)
        if page.next_page_token:
            # next_url carries the whole query (Custobar's cursor); send it unchanged.
            request.url, request.params = page.next_page_token, {}
            return request
        params: dict[str, t.Any] = {"limit": int(self.config.get("page_size", 10000))}
        for name, value in self.settings.filters.get(self.name, {}).items():
            params[name] = filter_query_value(value)
        if fields := self.requested_fields():
            params["fields"] = ",".join(fields)
        params.update(self.query_params(page.stream_context))
        request.params = params
        # fields=a,b stays readable; "+" is escaped, or it would arrive as a space.
        request.safe_query_chars = ",:"
        return request

    def query_params(self, context: Context | None) -> dict[str, t.Any]:
        """Stream-specific parameters of a first page (filters the tap drives)."""
        return {}

    def requested_fields(self) -> list[str] | None:
        """`fields=` for a narrowed catalog: the selected properties plus the keys."""
        properties = list(self.effective_schema.get("properties", {}))
        selected = [p for p in properties if self.mask.get(("properties", p), True)]
        if len(selected) == len(properties):
            return None
        keys = set(self.primary_keys or ()) | (
            {self.replication_key} if self.replication_key else set()
        )
        return [p for p in properties if p in keys or p in selected]

    # --- responses: one parse, inside the retried path -------------------------------

    def validate_response(self, response: requests.Response) -> None:
        status = response.status_code
        if status == 429 or status >= 500:
            raise RetriableAPIError(self.response_error_message(response), response)
        if status in (401, 403):
            raise FatalAPIError(
                f"{self.name}: {status} {response.reason} from {self.path}. Check `api_token` "
                f"and `auth_scheme` ({self.config.get('auth_scheme', 'Token')}): the token needs "
                f"the scope GET {self.path}. Custobar said: {custobar_reason(response) or '-'}"
            )
        if status == 404:
            raise FatalAPIError(
                f"{self.name}: 404 Not Found for {self.path} on {self.settings.origin}. Check "
                "`company` / `base_url`: they must point at your Custobar instance's root."
            )
        if status >= 300:
            raise FatalAPIError(
                f"{self.name}: {status} {response.reason} for {self.path}. Custobar said: "
                f"{custobar_reason(response) or '-'}"
            )
        if self._expect_json:
            self.parse_payload(response)

    def parse_payload(self, response: requests.Response) -> None:
        """Decode the body once and keep it on the response for records and next_url."""
        try:
            payload = self.decode_body(response.content)
        except msgspec.DecodeError as exc:
            content_type = response.headers.get("Content-Type", "unknown")
            raise RetriableAPIError(
                f"unreadable response body from {self.path} (content type "
                f"{content_type}, {len(response.content)} bytes: {exc.__class__.__name__})",
                response,
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get(self.records_key), list):
            raise RetriableAPIError(
                f"a {response.status_code} response from {self.path} without "
                f"the '{self.records_key}' list",
                response,
            )
        response.custobar_payload = payload  # type: ignore[attr-defined]

    def decode_body(self, body: bytes) -> t.Any:
        return decode_page(body)

    def response_error_message(self, response: requests.Response) -> str:
        # Not the SDK's default: that one includes the whole body, which can hold customer data.
        reason = custobar_reason(response)
        message = f"{response.status_code} {response.reason} from {self.path}"
        return f"{message}: {reason}" if reason else message

    def parse_response(self, response: requests.Response) -> t.Iterable[dict]:
        return response.custobar_payload[self.records_key]  # type: ignore[attr-defined, no-any-return]

    # --- retries ----------------------------------------------------------------------

    def request_decorator(self, func: t.Callable) -> t.Callable:
        # The SDK hands backoff its logger, which prints the full URL (query = filter values).
        return backoff.on_exception(
            self.backoff_wait_generator,
            _RETRIED_EXCEPTIONS,
            max_tries=self.backoff_max_tries,
            on_backoff=self.backoff_handler,
            jitter=self.backoff_jitter,
            logger=None,
        )(func)

    def backoff_max_tries(self) -> int:
        return int(self.config.get("max_retries", 8)) + 1

    def backoff_wait_generator(self) -> t.Generator[float, t.Any, None]:  # type: ignore[override]
        attempt = 0
        exception = yield  # type: ignore[misc]
        while True:
            delay = retry_after_seconds(getattr(exception, "response", None))
            if delay is None:
                delay = min(BACKOFF_BASE_SECONDS * 2**attempt, BACKOFF_CAP_SECONDS)
            attempt += 1
            exception = yield delay

    def backoff_jitter(self, value: float) -> float:
        return value  # waits are already spread by doubling, and Retry-After is exact

    def backoff_handler(self, details: t.Any) -> None:
        self.logger.warning(
            "%s; retry %d of %d in %.1f s",
            describe_failure(details.get("exception"), self.path, stream=self.name),
            details.get("tries", 0),
            self.backoff_max_tries() - 1,
            details.get("wait", 0.0),
        )

    # --- the paging loop --------------------------------------------------------------

    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        for page in self.get_pages(context):
            yield from page
            # The consumer has emitted every record of the page by now: safe to checkpoint.
            self.checkpoint_page(context)
            self._write_state_message()

    def get_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        """The pages of this stream or partition; completes its bookmark at the end."""
        if self.replication_key:
            self.begin_bookmark(context)
        for page in self.read_pages(context):
            self.grow_schema(page)  # fields the catalog lacks (schema_growth.py)
            yield page
        if self.replication_key:
            self.complete_bookmark(context)

    def read_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        """The queries of this stream or partition, page by page (sales: day by day)."""
        return self.request_pages(context)

    def request_pages(self, context: Context | None) -> t.Iterator[list[dict]]:
        """Page through one query, yielding each page's records as a list.

        Replaces the SDK's record loop to give Custobar syncs: a progress line per page,
        page boundaries for STATE messages, empty pages that still carry a next_url, and
        failure messages that name the stream and path but never a query or a body.
        """
        paginator = self.get_new_paginator()
        send = self.request_decorator(self._request)
        label = self.partition_label(context)
        emitted = 0
        with self.get_http_request_counter() as request_counter:
            request_counter.with_context(context)
            while not paginator.finished:
                prepared = self._prepare_request(context=context, page=paginator)
                response = self.send_with_retries(send, prepared, context)
                request_counter.increment()
                page_number = paginator.count + 1
                records = response.custobar_payload[self.records_key]  # type: ignore[attr-defined]
                paginator.advance(response)  # validates next_url before anything is emitted
                self._page_number = page_number
                emitted += len(records)
                yield records
                self.logger.info(
                    "%s%s: page %d done, %d records so far", self.name, label, page_number, emitted
                )

    def send_with_retries(
        self, send: t.Callable, prepared: requests.PreparedRequest, context: Context | None
    ) -> requests.Response:
        """Send with retries; when they run out, fail with the stream, cause and path only."""
        try:
            return send(prepared, context)  # type: ignore[no-any-return]
        except _RETRIED_EXCEPTIONS as exc:
            tries = self.backoff_max_tries()
            raise RetriesExhaustedError(
                f"{self.name}: giving up after {tries} {'try' if tries == 1 else 'tries'}: "
                f"{describe_failure(exc, self.path)}"
            ) from None

    def partition_label(self, context: Context | None) -> str:
        return ""

    # --- discovery samples ------------------------------------------------------------

    def discovery_contexts(self) -> list[dict | None]:
        """The queries whose fields make up the stream (events: one per type)."""
        return [None]

    def fetch(
        self, params: dict, *, expect_json: bool = False, url: str | None = None
    ) -> requests.Response:
        """One request through the same pacing, retries and error mapping as a sync
        (`url`: a next_url, which carries its whole query)."""
        prepared = self.build_prepared_request(
            method="GET", url=url or self.get_url(None), params=params, headers=self.http_headers
        )
        self._expect_json = expect_json
        try:
            return self.send_with_retries(self.request_decorator(self._request), prepared, None)
        finally:
            self._expect_json = True

    # --- records ----------------------------------------------------------------------

    @cached_property
    def known_fields(self) -> frozenset[str] | None:
        """Properties a record may carry; None when the schema allows any."""
        schema = self.effective_schema
        return (
            None if schema.get("additionalProperties") else frozenset(schema.get("properties", {}))
        )

    def drop_unknown_fields(self, row: Record) -> None:
        """Drop properties the catalog lacks (a narrowed selection: see grow_schema, which
        names them in one warning at the end of the stream)."""
        for name in row.keys() - t.cast("frozenset[str]", self.known_fields):
            del row[name]

    @cached_property
    def zone(self) -> dt.tzinfo:
        """api_timezone: where datetimes without an offset are read."""
        return self.settings.zone

    @cached_property
    def required_fields(self) -> tuple[str, ...]:
        """The keys a record must carry to be loaded and bookmarked."""
        return (*self.primary_keys, *((self.replication_key,) if self.replication_key else ()))

    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        kept = self.process_page([row], context)
        if kept and self.schema_growth is not None and self.schema_growth.due:
            if self.schema_growth.announce_before(kept) is not None:
                self._write_schema_message()  # the SDK writes this record's RECORD next
        return kept[0] if kept else None

    def process_page(self, page: list[Record], context: Context | None) -> list[Record]:
        """Post-process a page in place: the records to emit, in order (the SDK's
        post_process, done a page at a time so that per-record work is one loop)."""
        known = self.known_fields
        # One look at the page's keys, rather than one per record, when none is unknown
        # (grow_schema has had that look at a page from get_pages already).
        if known is not None and (
            page is self._keys_known_page or known.issuperset(set().union(*page))
        ):
            known = None
        zone = self.zone
        datetime_fields = self.datetime_fields
        required = self.required_fields
        replication_key = self.replication_key
        normalize = normalize_datetime
        kept: list[Record] = []
        keep = kept.append
        for row in page:
            if known is not None and not known.issuperset(row):
                self.drop_unknown_fields(row)
            for name in datetime_fields:
                value = row.get(name)
                if type(value) is str:
                    try:
                        row[name] = normalize(value, zone)
                    except ValueError:
                        if name == replication_key:
                            self.skip(f"{name} is not a date-time")
                            break
                        row[name] = self.unparsed_datetime(name, value)
            else:  # no break: the replication key, if any, is a date-time
                for key in required:
                    if row.get(key) in (None, ""):
                        self.skip(f"missing {key}")
                        break
                else:
                    keep(row)
        if self.field_conformer.plans:  # rule 2 (field_types.py)
            self.field_conformer.conform_page(kept, self._page_number)
        return kept

    def report_bad_datetime(self, name: str) -> None:
        if name not in self._bad_datetimes:
            self._bad_datetimes.add(name)
            self.logger.warning(
                "%s: field %s holds a value that is not an ISO date-time; passing it through "
                "unchanged",
                self.name,
                name,
            )

    def skip(self, why: str) -> None:
        """Count a record that cannot be loaded or bookmarked (reported at the end)."""
        self._skipped += 1
        if len(self._skipped_positions) < SKIPPED_POSITIONS_REPORTED:
            self._skipped_positions.append(f"page {self._page_number} ({why})")

    def report_skipped(self) -> None:
        if self._skipped:
            self.logger.warning(
                "%s: skipped %d record(s) without their key or replication key; first: %s",
                self.name,
                self._skipped,
                "; ".join(self._skipped_positions),
            )

    # --- custom fields: values fit their declared types, new fields join ------------------
    # (rules in field_types.py and schema_growth.py; these methods only wire them in)

    @cached_property
    def field_conformer(self) -> FieldConformer:
        """Rule 2 for the catalog's fields the built-in schema does not type the same way."""
        declared = self.effective_schema.get("properties", {})
        builtin = self.builtin_schema.get("properties", {})
        return FieldConformer(
            fields_to_conform(declared, builtin), zone=self.zone, misfits=self._field_misfits
        )

    @cached_property
    def schema_growth(self) -> SchemaGrowth | None:
        """None when the schema already allows any field."""
        if self.known_fields is None:
            return None
        closed_because = (
            "discover_custom_fields is off"
            if not self.config.get("discover_custom_fields", True)
            else None
            if all(self.mask.values())
            else "the stream's selection is narrowed"
        )
        return SchemaGrowth(set(self.known_fields), closed_because)

    def grow_schema(self, page: list[dict]) -> None:
        """Add the fields this page brings that the schema lacks (when the whole stream is
        selected); a SCHEMA message goes out before the first record holding one."""
        growth = self.schema_growth
        if growth is None or not page:
            return
        added = growth.new_fields(page)
        self._keys_known_page = page if growth.page_fits else None
        if not added:
            return
        schema = self.effective_schema
        schema = {**schema, "properties": {**schema.get("properties", {}), **added}}
        self._schema = schema
        if self._input_schema is not None:
            self._input_schema = schema
        self._tap.mapper.register_raw_stream_schema(self.name, schema, self.primary_keys)
        self._stream_maps = self._tap.mapper.stream_maps[self.name]
        for name in ("known_fields", "datetime_fields", "conform_plan", "field_conformer"):
            self.__dict__.pop(name, None)
        self.logger.info(
            "%s: field(s) not in the catalog on page %d, added with a new SCHEMA message: %s",
            self.name,
            self._page_number,
            ", ".join(f"{name} ({describe(schema)})" for name, schema in added.items()),
        )

    def unparsed_datetime(self, name: str, value: str) -> str | None:
        """A date-time field's value that is not an ISO date-time: a built-in passes it
        through (with one warning), a custom field makes it null (counted, rule 2)."""
        if name in self.field_conformer.properties:
            self.field_conformer.not_a_datetime(name)
            return None
        self.report_bad_datetime(name)
        return value

    def report_custom_fields(self) -> None:
        for line in self.field_conformer.reports(self.name):
            self.logger.warning(line)
        unlisted = self.schema_growth.warning(self.name) if self.schema_growth else None
        if unlisted:
            self.logger.warning(unlisted)

    # --- the page-at-a-time record path (see fastpath.py) --------------------------------

    fast_path_enabled = True

    def fast_path_applies(self) -> bool:
        """Only where it provably matches the SDK: no maps, flattening or nested selection."""
        if not self.fast_path_enabled or self.ABORT_AT_RECORD_COUNT is not None:
            return False
        if len(self.stream_maps) != 1 or type(self.stream_maps[0]) is not SameRecordTransform:
            return False
        if self.config.get("flattening_enabled") or self.child_streams:
            return False
        # Nested deselection inside a selected property needs the SDK's recursive pop.
        return not any(
            len(breadcrumb) > 2 and not selected and self.mask[breadcrumb[:2]]
            for breadcrumb, selected in self.mask.items()
        )

    @cached_property
    def conform_plan(self) -> fastpath.ObjectPlan:
        return fastpath.compile_object(self.effective_schema, root=True)

    @cached_property
    def deselected_fields(self) -> frozenset[str]:
        properties = self.effective_schema.get("properties", {})
        return frozenset(p for p in properties if not self.mask[("properties", p)])

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> t.Generator[dict, t.Any, t.Any]:
        # Overridden to take the page path, to send ACTIVATE_VERSION once the table is
        # complete, and to report skipped records once per stream.
        try:
            if write_messages and self.fast_path_applies():
                self._sync_pages(context)  # yields nothing: sync() only drains this generator
            else:
                yield from super()._sync_records(context, write_messages=write_messages)
            if self._completed_version is not None:  # also after BATCH messages' records
                super()._write_activate_version_message(self._completed_version)
        finally:
            thaw_pages()
            self.report_skipped()
            self.report_custom_fields()

    def _write_activate_version_message(self, full_table_version: int) -> None:
        # The SDK sends ACTIVATE_VERSION before the first record, and a target that
        # hard-deletes older versions then empties the table for the whole load (or for
        # good, if the run fails). Sent after the last record instead: see _sync_records.
        self._completed_version = full_table_version

    def _sync_pages(self, context: Context | None) -> None:
        """The SDK's record loop (singer-sdk pinned <0.55) with per-record work done per page:
        the same contexts, state, metrics and messages."""
        record_counter = self.get_record_counter()
        timer = self.get_sync_timer()
        contexts = [context] if context is not None else self.partitions
        with record_counter, timer:
            for element in contexts or [{}]:
                record_counter.with_context(element)
                timer.with_context(element)
                current = element or None
                partition = self._get_state_partition_context(current)
                self._write_starting_replication_value(current)
                for page in self.get_pages(current):
                    record_counter.increment(self.emit_page(page, current, partition))
                    self._write_state_message()
                    del page  # one parsed page at a time
                if current == partition:
                    self._finalize_state(self.get_context_state(current))
        if not context:
            self._finalize_state(self.stream_state)
        self._write_state_message()

    def emit_page(
        self, page: list[dict], context: Context | None, partition: Context | None
    ) -> int:
        """Post-process, conform and write one page's RECORD messages; bookmark them."""
        extracted = utc_now()
        records = self.process_page(page, context)
        for key, value in (partition or {}).items():
            # The SDK adds a partition's context to records that lack it (events from a
            # `type=` query all carry their type already: one C-level look, no loop).
            if not all(map(dict.__contains__, records, repeat(key))):
                for record in records:
                    record.setdefault(key, value)
        if deselected := self.deselected_fields:
            for record in records:
                for name in deselected & record.keys():
                    del record[name]
        fastpath.conform_page(self.conform_plan, records)
        if not records:
            return 0
        lines = fastpath.record_lines
        split = None
        if self.schema_growth is not None and self.schema_growth.due:
            split = self.schema_growth.announce_before(records)
        if split is None:
            self._tap.message_writer.write_lines(  # type: ignore[attr-defined]
                lines(self.name, records, self._stream_version, extracted)
            )
        else:  # a SCHEMA message right before the first record holding a new field
            self._tap.message_writer.write_lines(  # type: ignore[attr-defined]
                lines(self.name, records[:split], self._stream_version, extracted)
            )
            self._write_schema_message()
            self._tap.message_writer.write_lines(  # type: ignore[attr-defined]
                lines(self.name, records[split:], self._stream_version, extracted)
            )
        self.state_manager.is_flushed = False
        if bookmark_field := self.replication_key:
            values: list[t.Any] = list(map(dict.get, records, repeat(bookmark_field)))
            if set(map(type, values)) != {str}:  # e.g. a number: no bookmark from that one
                values = [value for value in values if type(value) is str]
            self.bookmarks.note_page(partition_key(context), values)
            self.checkpoint_page(context)
        return len(records)

    # --- bookmarks --------------------------------------------------------------------

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        # The SDK calls this per record; the bookmark moves per page (see bookmarks.py).
        value = latest_record.get(self.replication_key) if self.replication_key else None
        if isinstance(value, str):
            self.bookmarks.note(partition_key(context), value)

    def begin_bookmark(self, context: Context | None) -> None:
        value = self.get_context_state(context).get("replication_key_value")
        self.bookmarks.begin(partition_key(context), value)

    def checkpoint_page(self, context: Context | None) -> None:
        """Decide the bookmark after a page whose records have all been emitted."""
        key = partition_key(context)
        outcome = self.bookmarks.close_page(key)
        if outcome.became_unordered:
            self.logger.warning(
                "%s%s: records arrive out of %s order; the bookmark stays where this run "
                "found it until the partition completes",
                self.name,
                self.partition_label(context),
                self.replication_key,
            )
            self.restore_bookmark(context, self.bookmarks.start_value(key))
        if outcome.advance_to is not None:
            self.advance_bookmark(context, *outcome.advance_to)

    def complete_bookmark(self, context: Context | None) -> None:
        latest = self.bookmarks.complete(partition_key(context))
        if latest is not None:
            self.advance_bookmark(context, *latest)

    def advance_bookmark(self, context: Context | None, instant: dt.datetime, value: str) -> None:
        current = self.bookmark(context)
        if current is None or instant > current:
            self.restore_bookmark(context, value)

    def restore_bookmark(self, context: Context | None, value: t.Any) -> None:
        state = self.get_context_state(context)
        if value is None:
            state.pop("replication_key_value", None)
        else:
            state["replication_key"] = self.replication_key
            state["replication_key_value"] = value
        self.state_manager.is_flushed = False

    def bookmark(self, context: Context | None) -> dt.datetime | None:
        """The stored bookmark of this stream or partition, as an instant."""
        state = self.get_context_state(context)
        value = state.get("replication_key_value")
        if not value or state.get("replication_key") != self.replication_key:
            return None
        try:
            return parse_instant(str(value))
        except ValueError:
            return None


def decode_page(body: bytes, decode: t.Callable[[bytes], t.Any] = msgspec.json.decode) -> t.Any:
    """Decode a JSON page out of the cyclic GC's sight.

    A page is hundreds of thousands of acyclic objects, freed by reference counting once
    written; collections triggered while allocating and emitting them cost more than the
    decoding. So the GC is paused while decoding and the page is frozen (moved to the
    permanent generation, which collections skip) until the stream ends (thaw_pages).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect(0)  # young garbage is collected, not frozen with the page
        payload = decode(body)
        gc.freeze()
        return payload
    finally:
        if enabled:
            gc.enable()


def thaw_pages() -> None:
    gc.unfreeze()


def partition_key(context: Context | None) -> tuple:
    return tuple(sorted((context or {}).items()))


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
