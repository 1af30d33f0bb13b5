"""Fields that appear after discovery: add them to the stream, or name them once.

A tenant adds custom fields whenever it likes, and Meltano caches catalogs. When the whole
stream is selected (no property deselected, as `meltano select customers.*` gives), a field
the catalog lacks is typed by rule 1 from the page where it first appears and kept from then
on; the page writer sends a new SCHEMA message before the first RECORD holding it (on either
record path). With a narrowed selection (or with discover_custom_fields off) it is not emitted
(Meltano's meaning of a narrowed selection), and the stream's one warning at the end names it.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

from tap_custobar.field_types import infer_type


@dataclass
class SchemaGrowth:
    """Decides, page by page, which unknown fields join a stream's schema (the record
    processing asks with a page's unknown fields, before its records)."""

    # Why new fields may not join (e.g. a narrowed selection) and what lets them; None: they may.
    closed: tuple[str, str] | None
    unlisted: list[str] = field(default_factory=list)  # seen, not emitted (narrowed selection)

    def new_fields(self, page: list[dict], unknown: set[str]) -> dict[str, dict[str, t.Any]]:
        """The rule-1 schemas of a page's unknown fields, if they may join the stream; else
        they are only remembered for the warning (and the record path drops them)."""
        names = sorted(unknown)
        if self.closed is not None:
            self.unlisted.extend(name for name in names if name not in self.unlisted)
            return {}
        return {name: infer_type(record.get(name) for record in page) for name in names}

    def warning(self, stream: str) -> str | None:
        if not self.unlisted or self.closed is None:
            return None
        why, remedy = self.closed
        return (
            f"{stream}: field(s) {', '.join(self.unlisted)} are in the data but not in the "
            f"catalog, and {why}, so they were not emitted; to load them, {remedy}"
        )
