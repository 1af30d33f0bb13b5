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

from tap_custobar.datetimes import parse_instant, parse_utc, utc_sort_keys

if t.TYPE_CHECKING:
    import datetime as dt

    from singer_sdk.helpers.types import Context


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
    """Replication values seen per partition, decided page by page.

    A partition's state is the SDK's state dict of that partition (get_context_state);
    `checkpoint` and `complete` change it, and say whether they did.
    """

    def __init__(self, replication_key: str | None) -> None:
        self.replication_key = replication_key
        self._runs: dict[tuple, PartitionRun] = {}

    def begin(self, key: tuple, state: dict) -> None:
        self._runs.setdefault(key, PartitionRun(state.get("replication_key_value")))

    def checkpoint(self, key: tuple, state: dict) -> tuple[bool, bool]:
        """After a page whose records have all been emitted: (whether the partition just
        turned out to be out of order, whether the state changed)."""
        outcome = self.close_page(key)
        changed = False
        if outcome.became_unordered:  # back to where this run found it
            set_bookmark(state, self.replication_key, self.start_value(key))
            changed = True
        if outcome.advance_to is not None:
            changed = advance_bookmark(state, self.replication_key, outcome.advance_to) or changed
        return outcome.became_unordered, changed

    def complete(self, key: tuple, state: dict) -> bool:
        """The partition is complete: advance to its latest value; whether the state changed."""
        run = self._runs.get(key)
        latest = run.latest if run is not None else None
        return latest is not None and advance_bookmark(state, self.replication_key, latest)

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


def unordered_warning(stream: str, label: str, replication_key: str | None) -> str:
    """Why a partition's bookmark stops moving until the partition completes."""
    return (
        f"{stream}{label}: records arrive out of {replication_key} order; the bookmark stays "
        "where this run found it until the partition completes"
    )


def partition_key(context: Context | None) -> tuple:
    return tuple(sorted((context or {}).items()))


def stored_bookmark(state: dict, replication_key: str | None) -> dt.datetime | None:
    """A partition state's bookmark as an instant (None: none, or not of this key)."""
    value = state.get("replication_key_value")
    if not value or state.get("replication_key") != replication_key:
        return None
    try:
        return parse_instant(str(value))
    except ValueError:
        return None


def set_bookmark(state: dict, replication_key: str | None, value: t.Any) -> None:
    """Set a partition state's bookmark to `value` (None removes it)."""
    if value is None:
        state.pop("replication_key_value", None)
    else:
        state["replication_key"] = replication_key
        state["replication_key_value"] = value


def advance_bookmark(
    state: dict, replication_key: str | None, latest: tuple[dt.datetime, str]
) -> bool:
    """Move the bookmark to `latest` (instant, value) if that is later; whether it moved."""
    current = stored_bookmark(state, replication_key)
    if current is None or latest[0] > current:
        set_bookmark(state, replication_key, latest[1])
        return True
    return False
