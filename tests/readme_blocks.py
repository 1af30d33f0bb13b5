"""The README's fenced code blocks and the marker comment that precedes each.

A `bash` block is either run by tests/e2e/test_readme_examples.py (`<!-- example: NAME -->` on
the line before its fence) or says why not (`<!-- not run: REASON -->`). Other blocks may carry
an example marker too, for a test to read them (a YAML snippet the test applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"

FENCE = re.compile(
    r"(?:^<!-- (?P<marker>example|not run): (?P<label>[^\n]*?) -->\n)?"
    r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    marker: str | None  # "example", "not run" or None
    label: str  # the example's name, or the reason it is not run
    line: int


def readme_blocks(text: str | None = None) -> list[Block]:
    text = README.read_text(encoding="utf-8") if text is None else text
    return [
        Block(
            lang=match["lang"],
            body=match["body"],
            marker=match["marker"],
            label=match["label"] or "",
            line=text.count("\n", 0, match.start("lang")) + 1,
        )
        for match in FENCE.finditer(text)
    ]


def example(name: str) -> str:
    """The body of the README block marked `<!-- example: name -->`."""
    found = [b.body for b in readme_blocks() if b.marker == "example" and b.label == name]
    assert len(found) == 1, f"README.md has {len(found)} blocks marked `example: {name}`"
    return found[0]
