"""`--test`: the SDK's dry run (one record per stream), told as one line at the end.

The SDK stops each stream of a dry run with AbortedSync...Exception (from a
MaxRecordsLimitException) and logs "An unhandled error occurred while syncing" for it at
ERROR before suppressing it: a passing test printed one ERROR line per stream. Those records
are filtered out; real failures still end the run with their own error line (main()).
"""

from __future__ import annotations

import logging
import sys
import typing as t

from singer_sdk.exceptions import (
    AbortedSyncFailedException,
    AbortedSyncPausedException,
    MaxRecordsLimitException,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable


class DryRunStopFilter(logging.Filter):
    """Drops the SDK's "unhandled error" line for a dry run's record-limit stop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith("An unhandled error occurred")
            and is_dry_run_stop(sys.exc_info()[1])
        )


def is_dry_run_stop(exc: BaseException | None) -> bool:
    if isinstance(exc, AbortedSyncFailedException | AbortedSyncPausedException):
        exc = exc.__cause__ or exc.__context__
    return isinstance(exc, MaxRecordsLimitException)


DRY_RUN_STOP_FILTER = DryRunStopFilter()


def passed_message(streams: Iterable[str]) -> str:
    return (
        "tap-custobar: connection test passed: the API answered for "
        f"{', '.join(streams)} (one record each at most)."
    )
