"""The test token must never appear in any output: every captured text passes through here."""

from __future__ import annotations

from tests.sandbox.server import TEST_TOKEN

__all__ = ["TEST_TOKEN", "check_no_token"]

scanned = {"texts": 0, "chars": 0}


def check_no_token(text: str) -> None:
    scanned["texts"] += 1
    scanned["chars"] += len(text)
    assert TEST_TOKEN not in text, "the API token leaked into captured output"
