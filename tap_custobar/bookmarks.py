"""Bookmark bookkeeping for one run: bookmarks advance page by page, as instants.

The SDK compares bookmark strings and, with its sort check off, overwrites a bookmark with
an older value. Here a bookmark only moves forward, compares as an instant, and moves at
page boundaries, once the page's order is known. If a partition's records ever arrive out
of order (an API that ignores `order`), a mid-stream bookmark could pass records still to
come: the bookmark goes back to where this run found it and advances only when the
partition completes.
"""

from __future__ import annotations

import itertools
import operator
import typing as t
from dataclasses import dataclass, field

from tap_custobar.datetimes import parse_utc, utc_sort_keys

if t.TYPE_CHECKING:
    import datetime as dt


@dataclass
class PartitionRun:
    """What one run has seen of one stream partition."""

    start_value: t.Any  # the stored bookmark when this run reached the partition
    latest: tuple[dt.datetime, str] | None = None
    unordered: bool = False
    page: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PageOutcome:
    """After a page: the value the bookmark may advance to, and whether order just broke."""

    advance_to: tuple[dt.datetime, str] | None
    became_unordered: bool


class BookmarkTracker:
    """Replication values seen per partition, decided page by page."""

    def __init__(self) -> None:
        self._runs: dict[tuple, PartitionRun] = {}

    def begin(self, key: tuple, start_value: t.Any) -> None:
        self._runs.setdefault(key, PartitionRun(start_value))

    def start_value(self, key: tuple) -> t.Any:
        return self._runs[key].start_value

    def note(self, key: tuple, value: str) -> None:
        self._runs.setdefault(key, PartitionRun(None)).page.append(value)

    def note_page(self, key: tuple, values: list[str]) -> None:
        self._runs.setdefault(key, PartitionRun(None)).page.extend(values)

    def close_page(self, key: tuple) -> PageOutcome:
        run = self._runs.get(key)
        if run is None or not run.page:
            return PageOutcome(None, became_unordered=False)
        ordered, top = self._order_and_top(run)
        if run.latest is None or top[0] > run.latest[0]:
            run.latest = top
        run.page = []
        became_unordered = not ordered and not run.unordered
        run.unordered = run.unordered or not ordered
        return PageOutcome(None if run.unordered else run.latest, became_unordered)

    @staticmethod
    def _order_and_top(run: PartitionRun) -> tuple[bool, tuple[dt.datetime, str]]:
        """Whether the page continues the run in order, and its latest value."""
        values = run.page
        previous = run.latest[1] if run.latest else None
        keys = utc_sort_keys(values if previous is None else [previous, *values])
        if keys is not None:  # no parsing per record
            ordered = all(map(operator.le, keys, itertools.islice(keys, 1, None)))
            page_keys = keys if previous is None else keys[1:]
            top_value = values[page_keys.index(max(page_keys))]
            return ordered, (parse_utc(top_value), top_value)
        instants = [parse_utc(value) for value in values]
        ordered = all(a <= b for a, b in itertools.pairwise(instants))
        ordered = ordered and (run.latest is None or instants[0] >= run.latest[0])
        top = max(range(len(instants)), key=instants.__getitem__)
        return ordered, (instants[top], values[top])

    def complete(self, key: tuple) -> tuple[dt.datetime, str] | None:
        """The value to advance to once the partition is complete."""
        run = self._runs.get(key)
        return run.latest if run is not None else None
