"""The data behind the API: the sandbox's current records, query results and a page cache."""

from __future__ import annotations

import threading
from typing import Any

from .data import STREAMS, Dataset, Record
from .filtering import compile_filters, order_records, swap_one_adjacent_pair
from .query import Query
from .responses import Response

# The date that decides where an out_of_order swap happens, per stream that has one.
REPLICATION_KEYS = {"events": "date", "sales": "sale_date"}


class Store:
    """The sandbox's current records, and results computed from them until they change."""

    def __init__(self, dataset: Dataset, body_cache_bytes: int) -> None:
        self.company = dataset.company
        self._records = {stream: list(dataset.records.get(stream, ())) for stream in STREAMS}
        self._lock = threading.RLock()
        self._version = 0
        self._results: dict[tuple[Any, ...], list[Record]] = {}
        self._columns: dict[str, set[str]] = {}
        self._bodies: dict[Query, Response] = {}
        self._body_bytes = 0
        self._body_cache_bytes = body_cache_bytes

    def records(self, stream: str) -> list[Record]:
        with self._lock:
            return list(self._stream(stream))

    def add(self, stream: str, record: Record) -> None:
        with self._lock:
            self._stream(stream).append(dict(record))
            if stream in self._columns:
                self._columns[stream].update(record)
            self._changed()

    def delete(self, stream: str, key: dict[str, Any]) -> int:
        if not key:
            raise ValueError("delete() needs at least one field=value to match")
        with self._lock:
            records = self._stream(stream)
            kept = [r for r in records if any(r.get(k, _ABSENT) != v for k, v in key.items())]
            removed = len(records) - len(kept)
            records[:] = kept
            self._changed()
            return removed

    def select(self, query: Query, switches: frozenset[str]) -> tuple[list[Record], int]:
        """(matching records in order, data version) for a query; don't change the list."""
        order = () if "order_ignored" in switches else query.order
        swap = "out_of_order" in switches and query.stream in REPLICATION_KEYS
        with self._lock:
            records = self._stream(query.stream)
            if not (query.filters or order or swap):
                return records, self._version
            key = (query.stream, query.filters, order, swap)
            if key not in self._results:
                self._results[key] = self._compute(records, query, order, swap)
            return self._results[key], self._version

    def columns(self, stream: str) -> list[str]:
        """Every property any record of the stream has had, sorted."""
        with self._lock:
            if stream not in self._columns:
                self._columns[stream] = {key for record in self._stream(stream) for key in record}
            return sorted(self._columns[stream])

    def cached_body(self, key: Query) -> Response | None:
        return self._bodies.get(key)

    def cache_body(self, key: Query, response: Response, version: int) -> None:
        with self._lock:
            fits = self._body_bytes + len(response.body) <= self._body_cache_bytes
            if version == self._version and fits:  # else the data changed while rendering
                self._bodies[key] = response
                self._body_bytes += len(response.body)

    def _compute(
        self, records: list[Record], query: Query, order: tuple[str, ...], swap: bool
    ) -> list[Record]:
        predicates = compile_filters(query, self.company)
        if predicates:
            records = [r for r in records if all(match(r) for match in predicates)]
        if order:
            records = order_records(records, order)
        if swap:
            records = swap_one_adjacent_pair(records, REPLICATION_KEYS[query.stream])
        return records

    def _stream(self, stream: str) -> list[Record]:
        if stream not in self._records:
            raise ValueError(f"Unknown stream {stream!r}; streams are {', '.join(STREAMS)}")
        return self._records[stream]

    def _changed(self) -> None:
        self._version += 1
        self._results.clear()
        self._bodies.clear()
        self._body_bytes = 0


_ABSENT = object()
