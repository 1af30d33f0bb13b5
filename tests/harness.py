"""Run the tap against the sandbox, in-process or as a real process, and read its messages."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import typing as t
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

from tap_custobar.tap import TapCustobar
from tests.leaks import check_no_token

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TapRun:
    """The Singer messages of one run, sorted by kind."""

    messages: list[dict]
    stderr: str = ""
    returncode: int = 0
    records: dict[str, list[dict]] = field(default_factory=dict)
    schemas: dict[str, dict] = field(default_factory=dict)
    states: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for message in self.messages:
            kind = message["type"]
            if kind == "RECORD":
                self.records.setdefault(message["stream"], []).append(message["record"])
            elif kind == "SCHEMA":
                self.schemas[message["stream"]] = message
            elif kind == "STATE":
                self.states.append(message["value"])

    @property
    def final_state(self) -> dict:
        return self.states[-1]


def parse_messages(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sandbox_config(sandbox: t.Any, **overrides: t.Any) -> dict:
    config = {
        "api_token": sandbox.token,
        "base_url": sandbox.url,
        "min_request_interval": 0,
        "max_retries": 2,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def run_tap(
    config: dict, *, catalog: dict | None = None, state: dict | None = None
) -> TapRun:
    """Sync in this process (fast); stdout is captured as bytes, like the real writer's."""
    buffer = io.BytesIO()
    stdout = io.TextIOWrapper(buffer, encoding="utf-8")
    tap = TapCustobar(config=config, catalog=catalog, state=state or {}, validate_config=True)
    with redirect_stdout(stdout):
        tap.sync_all()
        stdout.flush()
    text = buffer.getvalue().decode("utf-8")
    check_no_token(text)
    return TapRun(parse_messages(text))


def run_tap_cli(
    config: dict,
    *,
    catalog: dict | None = None,
    state: dict | None = None,
    args: t.Sequence[str] = (),
    timeout: float = 120,
) -> TapRun:
    """Run `tap-custobar` as a real process with config/catalog/state files."""
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "tap_custobar", "--config", _write(tmp, "config", config)]
        if catalog is not None:
            argv += ["--catalog", _write(tmp, "catalog", catalog)]
        if state is not None:
            argv += ["--state", _write(tmp, "state", state)]
        argv += list(args)
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False,
        )
    check_no_token(done.stdout + done.stderr)
    one_document = any(arg in ("--discover", "--about") for arg in args)
    messages = [] if one_document else parse_messages(done.stdout)
    run = TapRun(messages, stderr=done.stderr, returncode=done.returncode)
    if one_document and done.returncode == 0:
        run.messages = [json.loads(done.stdout)]  # the catalog or the about document
    return run


def _write(folder: str, name: str, payload: dict) -> str:
    path = Path(folder) / f"{name}.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


def select_properties(catalog: dict, stream: str, properties: t.Iterable[str] | None) -> dict:
    """Select one stream (all or some properties) and deselect every other stream."""
    wanted = None if properties is None else set(properties)
    for entry in catalog["streams"]:
        for item in entry["metadata"]:
            breadcrumb = item["breadcrumb"]
            if not breadcrumb:
                item["metadata"]["selected"] = entry["tap_stream_id"] == stream
            elif entry["tap_stream_id"] == stream and wanted is not None:
                item["metadata"]["selected"] = breadcrumb[1] in wanted  # nested ones follow
    return catalog
