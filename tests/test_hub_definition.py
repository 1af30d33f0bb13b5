"""hub/tap-custobar.yml (Meltano Hub's format) and meltano.yml declare the tap as --about does."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.harness import ROOT

HUB = yaml.safe_load((ROOT / "hub" / "tap-custobar.yml").read_text(encoding="utf-8"))
PROJECT = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
(PROJECT_TAP,) = [p for p in PROJECT["plugins"]["extractors"] if p["name"] == "tap-custobar"]
KINDS = {"string", "integer", "boolean", "options", "array", "object", "date_iso8601", "file"}


def about() -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "tap_custobar", "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_hub_definition_has_what_hub_requires() -> None:
    assert HUB["name"] == "tap-custobar" and HUB["namespace"] == "tap_custobar"
    assert HUB["variant"] and HUB["executable"] == "tap-custobar"
    assert HUB["pip_url"].startswith("git+https://") and HUB["pip_url"].endswith(".git")
    assert HUB["repo"] in HUB["pip_url"]
    assert HUB["select"] == [
        f"{stream}.*" for stream in ("customers", "products", "sales", "events")
    ]
    for setting in HUB["settings"]:
        assert setting["kind"] in KINDS, setting  # Hub knows no `decimal`
        assert setting.get("label") and setting.get("description"), setting["name"]
    sensitive = [s["name"] for s in HUB["settings"] if s.get("sensitive")]
    assert sensitive == ["api_token"]


def test_every_setting_and_capability_of_the_tap_is_declared() -> None:
    info = about()
    assert [s["name"] for s in HUB["settings"]] == list(info["settings"]["properties"])
    assert sorted(HUB["capabilities"]) == sorted(info["capabilities"])
    properties = info["settings"]["properties"]
    for setting in HUB["settings"]:
        types = properties[setting["name"]]["type"]
        if "number" in types:  # from the environment a fraction must survive Meltano
            assert setting["kind"] == "string", setting["name"]


def test_meltano_yml_declares_the_tap_settings_as_the_hub_file_does() -> None:
    hub = {s["name"]: s for s in HUB["settings"]}
    for setting in PROJECT_TAP["settings"]:
        expected = hub[setting["name"]]
        for key in ("kind", "label", "value", "sensitive", "options"):
            assert setting.get(key) == expected.get(key), (setting["name"], key)
    assert PROJECT_TAP["settings_group_validation"] == HUB["settings_group_validation"]
    # The default environment (Meltano 4.4.1's `meltano run` needs one) overrides nothing.
    (default,) = [e for e in PROJECT["environments"] if e["name"] == PROJECT["default_environment"]]
    assert default.get("config") is None, default
