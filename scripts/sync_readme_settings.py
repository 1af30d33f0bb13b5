"""Copy the settings table of `tap-custobar --about --format=markdown` into README.md.

`make readme` runs it; tests/test_readme.py fails when the two drift apart.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def about_settings_table() -> str:
    about = subprocess.run(
        [sys.executable, "-m", "tap_custobar", "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = about.split("## Settings", 1)[1].strip().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


BLOCK = re.compile(re.escape(BEGIN) + r"(.*?)" + re.escape(END), re.S)


def readme_settings_table(text: str) -> str:
    match = BLOCK.search(text)
    if not match:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return match.group(1).strip()


def main() -> None:
    text = README.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{about_settings_table()}\n{END}"
    README.write_text(BLOCK.sub(lambda _: block, text), encoding="utf-8")


if __name__ == "__main__":
    main()
