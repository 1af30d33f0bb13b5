"""The test token must never appear in any output: every captured text passes through here."""

from __future__ import annotations

from tests.sandbox.server import TEST_TOKEN

__all__ = ["TEST_TOKEN", "check_no_token"]

# The whole token and long pieces of it: a token cut or wrapped in a message is still a leak.
TOKEN_FRAGMENTS = (TEST_TOKEN, TEST_TOKEN[6:], TEST_TOKEN[-16:], TEST_TOKEN[:24])

scanned = {"texts": 0, "chars": 0}


def check_no_token(text: str) -> None:
    scanned["texts"] += 1
    scanned["chars"] += len(text)
    assert TEST_TOKEN not in text, "the API token leaked into captured output"
    for fragment in TOKEN_FRAGMENTS:
        assert fragment not in text, "a piece of the API token leaked into captured output"
