"""The Singer message writer: msgspec encoding, plus whole pages of pre-encoded lines."""

from __future__ import annotations

import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter

from tap_custobar.interrupts import OUTPUT_GUARD

if t.TYPE_CHECKING:
    from singer_sdk.singerlib import Message


class CustobarWriter(MsgSpecWriter):
    """MsgSpecWriter that can also write a page of RECORD lines in one call; a signal
    arriving during a write stops the run only once the write is complete."""

    def write_message(self, message: Message) -> None:
        with OUTPUT_GUARD:
            super().write_message(message)

    def write_lines(self, lines: bytes | bytearray) -> None:
        with OUTPUT_GUARD:
            sys.stdout.buffer.write(lines)
            sys.stdout.flush()
