"""The Singer message writer: msgspec encoding, plus whole pages of pre-encoded lines."""

from __future__ import annotations

import sys

from singer_sdk.contrib.msgspec import MsgSpecWriter


class CustobarWriter(MsgSpecWriter):
    """MsgSpecWriter that can also write a page of RECORD lines in one call."""

    def write_lines(self, lines: bytes | bytearray) -> None:
        sys.stdout.buffer.write(lines)
        sys.stdout.flush()
