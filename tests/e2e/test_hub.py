"""A brand-new Meltano project adds the tap from hub/tap-custobar.yml, as the README shows.

`meltano init`, `meltano add tap-custobar --from-ref <this checkout's hub file>` (its pip_url,
the published git repository, then pointed at this checkout), target-jsonl added as a custom
plugin from a definition file (Meltano Hub is out of reach here), a real `meltano install`, and
a run against the sandbox.
"""

from __future__ import annotations

import json

import yaml

from tests.e2e.expected import STREAMS
from tests.e2e.pipeline import ROOT, Meltano, jsonl_env, read_jsonl
from tests.sandbox import TEST_TOKEN

HUB_FILE = ROOT / "hub" / "tap-custobar.yml"


def target_jsonl_definition() -> dict:
    """target-jsonl as this project's meltano.yml declares it (a custom plugin)."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text(encoding="utf-8"))
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-jsonl"]
    return {key: loader[key] for key in ("name", "namespace", "pip_url", "executable", "settings")}


def test_new_project_adds_the_tap_from_the_hub_file(meltano_installed, sandbox, tmp_path):
    init = Meltano(project=tmp_path)
    init.ok("init", "my-project", "--no-usage-stats")
    meltano = Meltano(project=tmp_path / "my-project")
    meltano.ok("add", "tap-custobar", "--from-ref", str(HUB_FILE), "--no-install")

    path = meltano.project / "meltano.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    (tap,) = config["plugins"]["extractors"]
    assert set(config["plugins"]) == {"extractors"}  # added once, as an extractor
    hub = yaml.safe_load(HUB_FILE.read_text(encoding="utf-8"))
    assert tap["pip_url"] == hub["pip_url"] and tap["pip_url"].startswith("git+https://")
    assert [s["name"] for s in tap["settings"]] == [s["name"] for s in hub["settings"]]
    # Install from this checkout instead of the published repository. Pacing off as a number in
    # meltano.yml.
    tap["pip_url"] = f"-e {ROOT}"
    tap["config"] = {"min_request_interval": 0}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    definition = tmp_path / "target-jsonl.yml"
    definition.write_text(yaml.safe_dump(target_jsonl_definition()), encoding="utf-8")
    meltano.ok("add", "target-jsonl", "--from-ref", str(definition), "--no-install")
    meltano.ok("install", timeout=900)
    extractors = meltano.project / ".meltano" / "extractors"
    assert not extractors.is_symlink()  # a venv of the new project's own
    assert (extractors / "tap-custobar" / "venv" / "bin" / "tap-custobar").is_file()

    out = tmp_path / "output"
    env = {
        "TAP_CUSTOBAR_BASE_URL": sandbox.url,
        "TAP_CUSTOBAR_API_TOKEN": TEST_TOKEN,
        **jsonl_env(out),
    }
    printed = json.loads(meltano.ok("config", "print", "tap-custobar", env=env).stdout)
    assert printed["api_token"].strip("*") == ""  # sensitive: masked
    meltano.ok("run", "tap-custobar", "target-jsonl", env=env)

    for stream in STREAMS:
        assert len(read_jsonl(out, stream)) == len(sandbox.records(stream)), stream
    states = meltano.ok("state", "list").stdout.split()
    assert states == ["dev:tap-custobar-to-target-jsonl"]  # meltano init's default environment
