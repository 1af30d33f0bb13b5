"""Settings behave the same from every source: `--config=ENV` gives every setting its type, and
an unknown setting name is named with the closest known one."""

from __future__ import annotations

import copy
import decimal
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tap_custobar.settings import CONFIG_SCHEMA, env_value, env_values
from tap_custobar.tap import TapCustobar
from tests.harness import ROOT, parse_messages, select_properties
from tests.leaks import TEST_TOKEN, check_no_token

PROPERTIES = CONFIG_SCHEMA["properties"]


def run_with_env(
    settings: dict[str, str], args: list[str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`tap-custobar --config=ENV <args>` with exactly these TAP_CUSTOBAR_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_CUSTOBAR_")}
    env.update({f"TAP_CUSTOBAR_{name.upper()}": value for name, value in settings.items()})
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, run from a folder without .env
    done = subprocess.run(
        [sys.executable, "-m", "tap_custobar", "--config=ENV", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,  # no .env file there
        env=env,
        check=False,
    )
    check_no_token(done.stdout + done.stderr)
    return done


def test_every_kind_of_setting_works_from_the_environment(sandbox, tmp_path: Path) -> None:
    settings = {
        "api_token": TEST_TOKEN,
        "base_url": sandbox.url,
        "min_request_interval": "0.5",  # number with a fraction (failed before)
        "request_timeout": "30",  # number without one (failed before)
        "max_retries": "1",
        "page_size": "100",
        "event_types": '["BROWSE"]',
        "filters": '{"products": {"visible": true}}',
        "discover_custom_fields": "false",
        "emit_activate_version_messages": "false",
    }
    config = {"api_token": TEST_TOKEN, "base_url": sandbox.url}
    catalog = copy.deepcopy(TapCustobar(config=config).catalog_dict)
    for entry in select_properties(catalog, "customers", None)["streams"]:
        if entry["tap_stream_id"] == "products":  # customers and products selected
            root = next(item for item in entry["metadata"] if not item["breadcrumb"])
            root["metadata"]["selected"] = True
    (tmp_path / "catalog.json").write_text(json.dumps(catalog), encoding="utf-8")
    done = run_with_env(settings, ["--catalog", str(tmp_path / "catalog.json")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = parse_messages(done.stdout)
    streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert streams == {"customers", "products"}
    assert not [m for m in messages if m["type"] == "ACTIVATE_VERSION"]
    entries = sandbox.requests
    first_pages = [e for e in entries if "cursor" not in e["params"]]
    assert {e["params"]["limit"][0] for e in first_pages} == {"100"}
    assert [e["params"]["visible"] for e in first_pages if e["stream"] == "products"] == [["true"]]
    starts = sorted(e["t_start"] for e in entries)
    assert len(starts) >= 4
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 0.45, "paced at 0.5 s"


def test_a_value_that_does_not_read_as_its_type_names_the_setting(tmp_path: Path) -> None:
    settings = {
        "api_token": TEST_TOKEN,
        "base_url": "http://127.0.0.1:9",
        "min_request_interval": "fast",
    }
    done = run_with_env(settings, ["--discover"], tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "min_request_interval" in last and "'fast' is not" in last and "number" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("min_request_interval", "0.5", decimal.Decimal("0.5")),
        ("min_request_interval", "0", 0),
        ("request_timeout", " 30 ", 30),
        ("request_timeout", "1e1", decimal.Decimal("1e1")),
        ("request_timeout", "nan", "nan"),  # left as text: the schema check names it
        ("page_size", "100", 100),
        ("page_size", "10.5", "10.5"),
        ("discover_custom_fields", "False", False),
        ("discover_custom_fields", "yes", True),
        ("discover_custom_fields", "maybe", "maybe"),
        ("event_types", '["BROWSE", "MAIL_OPEN"]', ["BROWSE", "MAIL_OPEN"]),
        ("event_types", "BROWSE, MAIL_OPEN", ["BROWSE", "MAIL_OPEN"]),
        ("filters", '{"products": {"visible": true}}', {"products": {"visible": True}}),
        ("filters", "visible=true", "visible=true"),
        ("start_date", "2026-01-01", "2026-01-01"),
        ("api_token", " 123 ", " 123 "),  # a string setting is never converted
    ],
)
def test_environment_text_gets_the_type_of_its_setting(name: str, text: str, expected) -> None:
    value = env_value(text, PROPERTIES[name])
    assert value == expected and type(value) is type(expected)


def test_environment_values_are_converted_per_setting() -> None:
    raw = {"page_size": "25", "api_timezone": "UTC"}
    assert env_values(raw, CONFIG_SCHEMA) == {"page_size": 25, "api_timezone": "UTC"}


def test_an_unknown_setting_gets_one_warning_naming_the_closest(tmp_path: Path) -> None:
    config = {
        "api_token": TEST_TOKEN,
        "base_url": "http://127.0.0.1:9",
        "discover_custom_fields": False,
        "min_request_intervall": 0.5,
        "start_dat": "2026-01-01",
        "colour": "blue",
        "stream_maps": {},  # the SDK's own settings are known too
        "flattening_enabled": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tap_custobar",
            "--config",
            str(tmp_path / "config.json"),
            *["--discover"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    check_no_token(done.stdout + done.stderr)
    assert done.returncode == 0, done.stderr[-2000:]
    warnings = [line for line in done.stderr.splitlines() if "Unknown setting" in line]
    assert len(warnings) == 3
    assert "`min_request_intervall` is ignored; did you mean `min_request_interval`?" in warnings[0]
    assert "`start_dat` is ignored; did you mean `start_date`?" in warnings[1]
    assert "`colour` is ignored; see `tap-custobar --about`." in warnings[2]
    assert all(" WARNING " in line for line in warnings)


def test_numbers_given_as_text_in_a_config_file_are_read_as_numbers() -> None:
    # What Meltano writes for a `kind: string` setting (the only kind that carries a fraction
    # from an environment variable in Meltano 4.4.1).
    config = {
        "api_token": "0123",
        "base_url": "http://127.0.0.1:9",
        "min_request_interval": "0.5",
        "request_timeout": "30",
        "page_size": "100",
    }
    tap = TapCustobar(config=config, validate_config=True)
    assert tap.config["min_request_interval"] == decimal.Decimal("0.5")
    assert tap.config["request_timeout"] == 30 and tap.config["page_size"] == 100
    assert tap.config["api_token"] == config["api_token"]  # a string setting stays text
    assert tap.session.min_interval == 0.5


def test_text_that_is_no_number_in_a_config_file_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps({"api_token": TEST_TOKEN, "base_url": "http://127.0.0.1:9", "page_size": "lots"})
    )
    done = subprocess.run(
        [sys.executable, "-m", "tap_custobar", "--config", str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    check_no_token(done.stdout + done.stderr)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "page_size" in last and "'lots'" in last
