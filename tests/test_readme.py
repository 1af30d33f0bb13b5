"""The README: its settings table is `tap-custobar --about`'s, and every shell block is accounted for."""

from __future__ import annotations

from scripts.sync_readme_settings import README, about_settings_table, readme_settings_table
from tests.e2e.test_readme_examples import EXAMPLES
from tests.readme_blocks import readme_blocks


def test_readme_settings_table_matches_about() -> None:
    readme = readme_settings_table(README.read_text(encoding="utf-8"))
    assert readme == about_settings_table(), "run `make readme` to refresh README.md"


def test_every_shell_block_is_run_or_says_why_not() -> None:
    shell = [b for b in readme_blocks() if b.lang in ("bash", "sh", "shell", "console")]
    assert shell, "no shell blocks found: has the fence format changed?"
    unmarked = [b.line for b in shell if b.marker is None]
    assert not unmarked, (
        f"README.md lines {unmarked}: mark each shell block `<!-- example: NAME -->` (and run it "
        "in tests/e2e/test_readme_examples.py) or `<!-- not run: REASON -->`"
    )
    named = [b.label for b in readme_blocks() if b.marker == "example"]
    assert len(named) == len(set(named)), f"example names used twice: {sorted(named)}"
    # Every example the README marks is one the e2e test runs, and the other way round.
    assert set(named) == set(EXAMPLES)
