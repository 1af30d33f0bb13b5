"""Print what a `meltano run tap-custobar target-jsonl` left in a folder, per stream.

Usage: python scripts/demo_summary.py [output]

target-jsonl writes one `<stream>.jsonl` (or `<stream>-<timestamp>.jsonl`) file per stream, one
record per line. For each stream this prints the number of records, the number of distinct
primary keys (equal to the records unless something was loaded twice), the files and their size.
Exit status 1 when the folder holds no records at all.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# Primary keys from DESIGN.md §2.
PRIMARY_KEYS = {
    "customers": ("external_id",),
    "products": ("external_id",),
    "sales": ("sale_external_id", "external_id"),
    "events": ("event_id",),
}
# `<stream>.jsonl` or `<stream>-20260101T120000.jsonl` (target-jsonl's do_timestamp_file).
FILE_NAME = re.compile(r"^(?P<stream>.+?)(?:-\d{8}T\d{6})?\.jsonl$")


def summarise(folder: Path) -> list[dict]:
    """One row per stream: records, distinct keys, files, bytes."""
    streams: dict[str, dict] = {}
    for path in sorted(folder.glob("*.jsonl")):
        match = FILE_NAME.match(path.name)
        if not match:
            continue
        stream = match["stream"]
        row = streams.setdefault(
            stream, {"stream": stream, "records": 0, "keys": set(), "files": [], "bytes": 0}
        )
        row["files"].append(path.name)
        row["bytes"] += path.stat().st_size
        key_names = PRIMARY_KEYS.get(stream)
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    continue
                row["records"] += 1
                if key_names:
                    record = json.loads(line)
                    row["keys"].add(tuple(record.get(name) for name in key_names))
    return [streams[name] for name in sorted(streams)]


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else "output")
    rows = summarise(folder) if folder.is_dir() else []
    total = sum(row["records"] for row in rows)
    print(f"\nWhat landed in {folder}/:")
    if not rows:
        print("  nothing: no <stream>.jsonl files")
        return 1
    width = max(len(row["stream"]) for row in rows)
    print(f"  {'stream':<{width}}  {'records':>8}  {'unique keys':>11}  {'size':>9}  files")
    for row in rows:
        keys = str(len(row["keys"])) if row["stream"] in PRIMARY_KEYS else "-"
        size = f"{row['bytes'] / 1024:.1f} KiB"
        files = ", ".join(row["files"])
        print(f"  {row['stream']:<{width}}  {row['records']:>8}  {keys:>11}  {size:>9}  {files}")
    print(f"  {'total':<{width}}  {total:>8}")
    return 0 if total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
