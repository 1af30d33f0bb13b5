"""The test token must never appear in any output: every captured text passes through here."""

from __future__ import annotations

TEST_TOKEN = "cbsbx_TESTTOKEN_7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4e6b8d0f1"

scanned = {"texts": 0, "chars": 0}


def check_no_token(text: str) -> None:
    scanned["texts"] += 1
    scanned["chars"] += len(text)
    assert TEST_TOKEN not in text, "the API token leaked into captured output"
