"""The raw limit: the least work any tap must do to move one stream from the API to stdout.

``python benchmarks/raw_client.py --base-url URL --token T --stream customers``

A ``requests.Session`` reads the stream page by page (``limit`` records a page, following
``next_url`` from the body, else the ``X-Custobar-Next-Url`` header), decodes each body with
``msgspec.json.decode`` and writes one Singer RECORD line per record to stdout. It sends the same
first-page queries as tap-custobar (events: one pass per type with ``order=date``; sales:
``order=sale_date``), so both read the very same pages. No schema, no state, no validation: the
floor the benchmark (benchmarks/bench.py) compares the tap with.

The cyclic garbage collector is off by default (``--gc on`` keeps it): decoding a 10,000-record
page creates tens of thousands of dicts and lists, which set off collections that walk every
live container again and again, and that triples the decoding time. The records hold no
reference cycles, so reference counting alone frees each page; any tap can make the same choice,
so the GC's cost is not part of the minimum.

``--event-id`` makes a stricter floor for events: each event also gets DESIGN's ``event_id``
(SHA-256 of its key-sorted compact JSON, here msgspec's sorted encoding), the one piece of
per-record work that the tap's contract requires and this floor otherwise skips.

Deliberately standalone (no import from tap_custobar or tests) so that its start-up cost is just
Python, requests and msgspec.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys

import msgspec
import requests

NEXT_URL_HEADER = "X-Custobar-Next-Url"


def first_page_queries(stream: str, page_size: int, event_types: list[str]) -> list[dict]:
    """Query parameters of each first page, as tap-custobar sends them with a default config."""
    if stream == "events":
        return [{"limit": page_size, "order": "date", "type": name} for name in event_types]
    if stream == "sales":
        return [{"limit": page_size, "order": "sale_date"}]
    return [{"limit": page_size}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--page-size", type=int, default=10000)
    parser.add_argument("--event-types", default="", help="comma-separated (events only)")
    parser.add_argument("--gc", choices=("on", "off"), default="off", help="cyclic GC")
    parser.add_argument("--event-id", action="store_true", help="events: add event_id")
    args = parser.parse_args(argv)
    if args.gc == "off":
        gc.disable()

    session = requests.Session()
    session.headers["Authorization"] = f"Token {args.token}"
    decode = msgspec.json.decode
    encode_into = msgspec.json.Encoder().encode_into
    write = sys.stdout.buffer.write
    stream = args.stream
    event_types = [name for name in args.event_types.split(",") if name]
    message = {"type": "RECORD", "stream": stream, "record": None}
    with_event_id = args.event_id and stream == "events"
    sorted_encode, sha256 = msgspec.json.Encoder(order="sorted").encode, hashlib.sha256

    params: dict | None
    for params in first_page_queries(stream, args.page_size, event_types):
        url: str | None = f"{args.base_url.rstrip('/')}/api/data/{stream}/"
        while url:
            response = session.get(url, params=params, timeout=300)
            response.raise_for_status()
            params = None  # next_url carries the whole query
            body = decode(response.content)
            buffer = bytearray()
            for record in body[stream]:
                if with_event_id:
                    record["event_id"] = sha256(sorted_encode(record)).hexdigest()
                message["record"] = record
                encode_into(message, buffer, -1)
                buffer += b"\n"
            write(buffer)
            url = body.get("next_url") or response.headers.get(NEXT_URL_HEADER)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
