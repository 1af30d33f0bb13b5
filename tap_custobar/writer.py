"""The Singer message writer: msgspec encoding, plus whole pages of pre-encoded lines."""

from __future__ import annotations

import sys
import typing as t

from singer_sdk.contrib.msgspec import MsgSpecWriter

from tap_custobar.interrupts import OUTPUT_GUARD

if t.TYPE_CHECKING:
    from singer_sdk.singerlib import Message


class CustobarWriter(MsgSpecWriter):
    """MsgSpecWriter that can also write a page of RECORD lines in one call.

    Every write is whole: unbuffered stdout (python -u, PYTHONUNBUFFERED) is a raw file whose
    write() may take only part of the data when a signal interrupts it, and a signal arriving
    during a write stops the run only once the write is complete (interrupts.py).
    """

    def write_message(self, message: Message) -> None:
        write_out(self.format_message(message))

    def write_lines(self, lines: bytes | bytearray) -> None:
        write_out(lines)


def write_out(data: bytes | bytearray) -> None:
    """All of `data` to stdout, flushed; a signal meanwhile takes effect after it."""
    with OUTPUT_GUARD:
        write_all(sys.stdout.buffer, data)
        sys.stdout.flush()


def write_all(stream: t.BinaryIO, data: bytes | bytearray) -> None:
    """Write all of `data`, also to a raw file that takes part of it per call."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written if written is not None else 0 :]
