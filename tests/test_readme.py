"""The README's settings table is the one `tap-custobar --about --format=markdown` prints."""

from __future__ import annotations

from scripts.sync_readme_settings import README, about_settings_table, readme_settings_table


def test_readme_settings_table_matches_about() -> None:
    readme = readme_settings_table(README.read_text(encoding="utf-8"))
    assert readme == about_settings_table(), "run `make readme` to refresh README.md"
