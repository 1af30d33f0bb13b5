"""SIGINT / SIGTERM: the run stops at once and says so, with 128 + the signal's number.

The SDK's own handler writes one more STATE and exits 0, so an interrupted run looked like a
finished one. Here the signal becomes an exception that no `except Exception` on the way
swallows; nothing more is written (no ACTIVATE_VERSION, no STATE beyond those already sent,
which stay valid), and main() prints one line. A signal arriving while a message is being
written waits for the end of that write, so stdout never ends in half a line.
"""

from __future__ import annotations

import signal
import typing as t

if t.TYPE_CHECKING:
    from types import FrameType


class Interrupted(BaseException):  # not Exception: like KeyboardInterrupt
    """The run was stopped by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        return interrupted_message(self.signum)


def interrupted_message(signum: int) -> str:
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = f"signal {signum}"
    return (
        f"tap-custobar: interrupted by {name}; the run stopped before it finished "
        "(STATE messages already written are valid)."
    )


class OutputGuard:
    """Delays an interruption that arrives while a message is being written."""

    def __init__(self) -> None:
        self.writing = 0
        self.pending: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: stop now, or once the current write is complete."""
        if self.pending is not None:
            return  # already stopping
        self.pending = signum
        if not self.writing:
            raise Interrupted(signum)

    def __enter__(self) -> None:
        self.writing += 1

    def __exit__(self, *exc_info: object) -> None:
        self.writing -= 1
        if not self.writing and self.pending is not None and exc_info[0] is None:
            raise Interrupted(self.pending)


OUTPUT_GUARD = OutputGuard()
