"""Run the sandbox in the foreground: ``python -m tests.sandbox --port 8765 --customers 5000``.

Prints ``SANDBOX_URL=...`` and ``SANDBOX_TOKEN=...`` once it serves, then serves until SIGTERM
or SIGINT. Out-of-process users read the request log at ``GET /_sandbox/requests`` and clear it
with ``POST /_sandbox/clear-requests``.
"""

from __future__ import annotations

import argparse
import errno
import gc
import signal
import sys
import threading
from datetime import date
from typing import Any

from .data import generate_dataset
from .server import SWITCHES, TEST_TOKEN, Sandbox


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.sandbox",
        description="A local stand-in for Custobar's data API, serving generated data.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--products", type=int, help="default: customers / 10, at least 20")
    parser.add_argument("--sales", type=int, help="transactions; default: customers / 2")
    parser.add_argument("--events-per-type", type=int, help="default: customers / 4")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--company", default="acme", help="prefix of the custom fields")
    parser.add_argument(
        "--anchor", type=date.fromisoformat, help="last day of the data (default: today, UTC)"
    )
    parser.add_argument("--token", default=TEST_TOKEN)
    parser.add_argument("--switch", action="append", default=[], choices=sorted(SWITCHES))
    return parser.parse_args(argv)


def dataset_sizes(args: argparse.Namespace) -> dict[str, int]:
    """Sizes given on the command line, the others scaled from the number of customers."""
    customers = args.customers
    return {
        "customers": customers,
        "products": args.products if args.products is not None else max(20, customers // 10),
        "sales": args.sales if args.sales is not None else customers // 2,
        "events_per_type": (
            args.events_per_type if args.events_per_type is not None else customers // 4
        ),
    }


def cannot_listen(host: str, port: int, error: OSError) -> str:
    """One line for a port the sandbox cannot listen on, with the way out."""
    if error.errno == errno.EADDRINUSE:
        reason = "is already in use (another sandbox, or another program)"
    else:
        reason = f"cannot be used: {error.strerror or error}"
    return (
        f"python -m tests.sandbox: port {port} on {host} {reason}. Pick another with "
        "--port <number>, or --port 0 for a free one (the SANDBOX_URL= line shows which)."
    )


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGINT, _exit_cleanly)
    dataset = generate_dataset(
        **dataset_sizes(args), anchor=args.anchor, seed=args.seed, company=args.company
    )
    # The data set lives until exit: spare the garbage collector from walking it again and again.
    gc.freeze()
    sandbox = Sandbox(dataset, token=args.token, host=args.host, port=args.port)
    sandbox.switches = args.switch
    try:
        sandbox.start()
    except OSError as error:
        print(cannot_listen(args.host, args.port, error), file=sys.stderr)
        return 1
    try:
        print(f"SANDBOX_URL={sandbox.url}", flush=True)
        print(f"SANDBOX_TOKEN={args.token}", flush=True)
        threading.Event().wait()  # until a signal raises SystemExit
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
