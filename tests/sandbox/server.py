"""The sandbox server's public names, from the modules that define them.

The API doc (shared/reference/custobar-data-api.txt) is the contract; DESIGN.md §4 adds the
switches for what the doc leaves open and the faults a client must survive. The server is split
along its concerns:

- ``query``: a request's query string validated into a ``Query``; cursors; the filter table;
- ``filtering``: the records a query matches, and their order;
- ``responses``: the ``Response`` value and the JSON, CSV and error bodies;
- ``store``: the current records, query results and the page cache;
- ``faults``: injected faults and the switches;
- ``routing``: the HTTP server and handler, the request log, the Authorization check;
- ``control``: the ``Sandbox`` class that starts, stops and steers it all.
"""

from __future__ import annotations

from .control import DEFAULT_BODY_CACHE_BYTES, TEST_TOKEN, Sandbox
from .data import STREAMS, Dataset, Record, generate_dataset
from .faults import FAULT_KINDS, HTML_ERROR_PAGE, SWITCHES, FaultRule, fault_response
from .filtering import compile_filters, order_records, swap_one_adjacent_pair, value_matches
from .query import (
    BOOLEAN,
    DEFAULT_LIMIT,
    EXACT,
    FILTERS,
    FROM_DATE,
    MAX_CSV_LIMIT,
    MAX_LIMIT,
    PHONE,
    STOCK,
    TO_DATE,
    UTC_DAY,
    Predicate,
    Query,
    QueryError,
    decode_cursor,
    encode_cursor,
    filter_kind,
    instant_of,
    parse_instant,
    parse_query,
)
from .responses import (
    CSV_TYPE,
    HTML_TYPE,
    JSON_TYPE,
    NEXT_URL_HEADER,
    Response,
    error_response,
    project,
    render_csv,
    render_json,
)
from .routing import check_authorization
from .store import REPLICATION_KEYS

__all__ = [
    "BOOLEAN",
    "CSV_TYPE",
    "DEFAULT_BODY_CACHE_BYTES",
    "DEFAULT_LIMIT",
    "EXACT",
    "FAULT_KINDS",
    "FILTERS",
    "FROM_DATE",
    "HTML_ERROR_PAGE",
    "HTML_TYPE",
    "JSON_TYPE",
    "MAX_CSV_LIMIT",
    "MAX_LIMIT",
    "NEXT_URL_HEADER",
    "PHONE",
    "REPLICATION_KEYS",
    "STOCK",
    "STREAMS",
    "SWITCHES",
    "TEST_TOKEN",
    "TO_DATE",
    "UTC_DAY",
    "Dataset",
    "FaultRule",
    "Predicate",
    "Query",
    "QueryError",
    "Record",
    "Response",
    "Sandbox",
    "check_authorization",
    "compile_filters",
    "decode_cursor",
    "encode_cursor",
    "error_response",
    "fault_response",
    "filter_kind",
    "generate_dataset",
    "instant_of",
    "order_records",
    "parse_instant",
    "parse_query",
    "project",
    "render_csv",
    "render_json",
    "swap_one_adjacent_pair",
    "value_matches",
]
