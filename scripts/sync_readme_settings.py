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
    about = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "tap_custobar", "--about", "--format=markdown"],
        capture_output=True, text=True, check=True,
    ).stdout
    lines = about.split("## Settings", 1)[1].strip().splitlines()
    return "\n".join(line for line in lines if line.startswith("|"))


def readme_settings_table(text: str) -> str:
    match = re.search(re.escape(BEGIN) + r"\n(.*?)\n" + re.escape(END), text, re.S)
    if not match:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    return match.group(1).strip()


def main() -> None:
    text = README.read_text(encoding="utf-8")
    current = readme_settings_table(text)
    README.write_text(text.replace(current, about_settings_table()), encoding="utf-8")


if __name__ == "__main__":
    main()
