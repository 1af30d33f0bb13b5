"""Custom-field discovery: which fields a tenant's data has, and real values to type each by.

Per stream (per event type for events): a CSV response without `fields` has a column for every
potential property (API doc), so `format=csv&limit=1` lists every field name; one full JSON
page is the sample. Fields that the header lists and the sample lacks are then looked up with
narrow requests (`fields=<those names>`, paging on) until each has a value or
`discovery_max_records` records (the sample's included) have been read. The values' types
follow field_types.py's rule 1 (one JSON type per field).
"""

from __future__ import annotations

import csv
import io
import time
import typing as t
from dataclasses import dataclass, field

from singer_sdk.exceptions import FatalAPIError

from tap_custobar.field_types import describe, infer_properties, nullable
from tap_custobar.http import RetriesExhaustedError, UnreachableHostError

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Iterable, Iterator

POSTGRES_IDENTIFIER_BYTES = 63
# `fields=` values longer than this are split over several look-ups (URL length limits).
FIELDS_PARAM_CHARS = 1500


class Sampled(t.Protocol):
    """What discovery asks of a stream: its built-in schema, its queries, and for each one
    CSV header and JSON pages."""

    name: str

    @property
    def schema(self) -> dict: ...

    def discovery_contexts(self) -> list[dict | None]: ...

    def fetch_csv_header(self, params: dict) -> list[str]: ...

    def fetch_pages(self, params: dict) -> Iterator[list[dict]]: ...


@dataclass
class FieldSearch:
    """What discovery read for one stream, and what it found."""

    names: list[str] = field(default_factory=list)  # from the CSV headers, in order
    samples: list[dict] = field(default_factory=list)  # records with values to type from
    requests: int = 0
    records: int = 0
    found_by_lookup: dict[str, int] = field(default_factory=dict)  # field -> look-up request no.
    lookups: int = 0
    seen: set[str] = field(default_factory=set)  # fields some sample gave a value

    def add_samples(self, records: Iterable[dict]) -> None:
        for record in records:
            self.samples.append(record)
            self.seen.update(key for key, value in record.items() if value is not None)

    def unseen(self, builtin: t.Collection[str]) -> list[str]:
        """Header fields (not built-in) that no record read so far gave a value."""
        return [
            name
            for name in dict.fromkeys(self.names)
            if name not in builtin and name not in self.seen
        ]


def search_fields(
    stream: Sampled, *, page_size: int, budget: int, logger: logging.Logger
) -> tuple[dict[str, t.Any], FieldSearch]:
    """The stream's schema with every discovered field typed (rule 1), and what it took."""
    started = time.monotonic()
    builtin = set(stream.schema.get("properties", {}))
    search = FieldSearch()
    read: dict[int, int] = {}  # records read per context
    contexts = stream.discovery_contexts()
    for number, context in enumerate(contexts):
        read[number] = read_sample(stream, dict(context or {}), page_size, search, logger)
    for number, context in enumerate(contexts):
        missing = search.unseen(builtin)
        if not missing:
            break
        read[number] += look_up(
            stream, dict(context or {}), missing, page_size, budget - read[number], search
        )
    schema, added = extend_schema(stream.schema, search.names, search.samples)
    seconds = time.monotonic() - started
    log_search(stream.name, schema, added, search, builtin, seconds, logger)
    return schema, search


def read_sample(
    stream: Sampled,
    base: dict[str, t.Any],
    page_size: int,
    search: FieldSearch,
    logger: logging.Logger,
) -> int:
    """The CSV header's names and one full JSON page; returns the records read."""
    try:
        search.requests += 1
        search.names.extend(stream.fetch_csv_header(base))
    except (RetriesExhaustedError, UnreachableHostError):
        raise  # the server cannot be reached: no point asking for the JSON sample too
    except FatalAPIError as exc:
        logger.warning(
            "%s: no CSV field list (%s); discovering from the JSON sample only", stream.name, exc
        )
    search.requests += 1
    records = next(stream.fetch_pages({**base, "limit": page_size}))
    search.add_samples(records)
    search.records += len(records)
    return len(records)


def look_up(
    stream: Sampled,
    base: dict[str, t.Any],
    missing: list[str],
    page_size: int,
    budget: int,
    search: FieldSearch,
) -> int:
    """Narrow pages (`fields=<missing>`) until each field has a value or the budget is spent."""
    spent = 0
    for group in name_groups(missing):
        wanted = set(group)
        if not wanted or spent >= budget:
            break
        params = {**base, "fields": ",".join(group), "limit": page_size}
        for records in stream.fetch_pages(params):
            search.requests += 1
            search.lookups += 1
            spent += len(records)
            search.records += len(records)
            holding = [r for r in records if any(r.get(name) is not None for name in wanted)]
            search.add_samples(holding)
            for record in holding:
                for name in list(wanted):
                    if record.get(name) is not None:
                        wanted.discard(name)
                        search.found_by_lookup[name] = search.lookups
            if not wanted or spent >= budget:
                break
    return spent


def name_groups(names: list[str]) -> list[list[str]]:
    """The names split so that each group's `fields=` value stays short."""
    groups: list[list[str]] = [[]]
    length = 0
    for name in names:
        if groups[-1] and length + len(name) + 1 > FIELDS_PARAM_CHARS:
            groups.append([])
            length = 0
        groups[-1].append(name)
        length += len(name) + 1
    return groups


def csv_header(text: str) -> list[str]:
    """The column names of a CSV response."""
    reader = csv.reader(io.StringIO(text))
    return [name.strip() for name in next(reader, []) if name.strip()]


def extend_schema(
    schema: dict[str, t.Any], names: Iterable[str], samples: list[dict]
) -> tuple[dict[str, t.Any], list[str]]:
    """The built-in schema plus every discovered field it lacks (built-ins keep their types);
    a field no sample gave a value is `string` (any value loads as its JSON text)."""
    properties = dict(schema.get("properties", {}))
    added: list[str] = []
    sampled = infer_properties(samples)
    for name in [*names, *sampled]:
        if name in properties:
            continue
        properties[name] = sampled.get(name, nullable("string"))
        added.append(name)
    return {**schema, "properties": properties}, added


class TenantUnreadableError(FatalAPIError):
    """Discovery could not read the tenant: no catalog is written."""


def discovery_failure(exc: BaseException) -> str:
    """Why discovery wrote no catalog, and the way to a catalog without asking the tenant."""
    reason = " ".join(str(exc).split()) or exc.__class__.__name__
    return (
        f"discovery could not read the tenant's fields, so no catalog was written: {reason} "
        "(to write the built-in catalog without asking the tenant, set "
        "discover_custom_fields to false)"
    )


def long_names(names: t.Iterable[str]) -> list[str]:
    return [name for name in names if len(name.encode("utf-8")) > POSTGRES_IDENTIFIER_BYTES]


def log_search(
    stream: str,
    schema: dict[str, t.Any],
    added: list[str],
    search: FieldSearch,
    builtin: t.Collection[str],
    seconds: float,
    logger: logging.Logger,
) -> None:
    properties = schema.get("properties", {})
    if added:
        logger.info(
            "%s: discovered %d field(s) beyond the built-in schema: %s",
            stream,
            len(added),
            ", ".join(f"{name} ({describe(properties[name])})" for name in added),
        )
    for name, request in search.found_by_lookup.items():
        logger.info("%s: %s first seen in narrow look-up request %d", stream, name, request)
    if unseen := search.unseen(builtin):
        logger.info(
            "%s: no value within the discovery budget for %s: declared string (a value of "
            "another type loads as its JSON text)",
            stream,
            ", ".join(unseen),
        )
    if too_long := long_names(added):
        logger.warning(
            "%s: field name(s) longer than %d bytes: %s. PostgreSQL cuts identifiers there, so "
            "two such names with a common prefix collide; rename them with stream_maps (README)",
            stream,
            POSTGRES_IDENTIFIER_BYTES,
            ", ".join(too_long),
        )
    logger.info(
        "%s: discovery made %d request(s) in %.1f s and read %d record(s) (%d narrow look-up(s))",
        stream,
        search.requests,
        seconds,
        search.records,
        search.lookups,
    )
