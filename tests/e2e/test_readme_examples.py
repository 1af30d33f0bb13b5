"""The README's shell examples, run as written against the sandbox (and the throwaway PostgreSQL).

Each block marked `<!-- example: NAME -->` in README.md runs in bash with these substitutions
only: the token placeholders become the sandbox's token; `"company": "yourcompany"` in a
config.json becomes the sandbox's `base_url` (with pacing off); the sandbox's documented address
becomes the test sandbox's; the PostgreSQL host part of the URL becomes the throwaway cluster's;
`.venv/bin/` becomes the checkout's; in the parallel-jobs block target-postgres becomes
target-jsonl. Meltano blocks run in a temporary project root (a copy of meltano.yml) with
TAP_CUSTOBAR_BASE_URL pointing at the sandbox (it wins over `company`) and pacing off.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import subprocess
import typing as t
from pathlib import Path

import yaml
from psycopg import sql

from tests.e2e.expected import instant
from tests.e2e.pipeline import (
    ROOT,
    clean_env,
    effective_params,
    jsonl_env,
    read_jsonl,
    redact,
)
from tests.readme_blocks import example
from tests.sandbox import TEST_TOKEN

EXAMPLES = (
    "singer-first-run",
    "singer-next-run",
    "singer-test",
    "quiet-logs",
    "sandbox-tap",
    "meltano-postgres",
    "schedule",
    "parallel-jobs-yaml",
    "parallel-jobs",
)

TOOLS = (
    ROOT / ".venv" / "bin",  # tap-custobar
    ROOT / ".meltano-venv" / "bin",  # meltano
    ROOT / ".meltano" / "loaders" / "target-jsonl" / "venv" / "bin",  # target-jsonl
)


def substituted(body: str, sandbox: t.Any, **more: str) -> str:
    replacements = {
        "<your API token>": TEST_TOKEN,
        "<SANDBOX_TOKEN>": TEST_TOKEN,
        '"company": "yourcompany"': f'"base_url": "{sandbox.url}", "min_request_interval": 0',
        "http://127.0.0.1:8765": sandbox.url,
        ".venv/bin/": f"{ROOT}/.venv/bin/",
        **more,
    }
    for placeholder, value in replacements.items():
        body = body.replace(placeholder, value)
    return body


def run_block(
    body: str, cwd: Path, env: t.Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    base = clean_env()
    path = ":".join([*(str(tool) for tool in TOOLS), base.get("PATH", "/usr/bin:/bin")])
    done = subprocess.run(
        ["bash", "-e", "-c", body],
        cwd=cwd,
        env={**base, "PATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert TEST_TOKEN not in done.stdout + done.stderr, "the API token appeared in the output"
    return done


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, redact((done.stdout + done.stderr)[-6000:])
    return done


def pacing_off(project: Path) -> None:
    """min_request_interval 0 for tap-custobar, as a number in the project's meltano.yml."""
    path = project / "meltano.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    (tap,) = [p for p in config["plugins"]["extractors"] if p["name"] == "tap-custobar"]
    tap.setdefault("config", {})["min_request_interval"] = 0
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def events_requests(sandbox: t.Any) -> list[dict]:
    return [r for r in sandbox.requests if r["stream"] == "events"]


# --- plain Singer ------------------------------------------------------------------------------


def test_plain_singer_examples_first_run_next_run_test_and_quiet_logs(sandbox, tmp_path):
    first = ok(run_block(substituted(example("singer-first-run"), sandbox), tmp_path))
    out = tmp_path / "output"
    for stream in ("customers", "products", "sales", "events"):
        assert len(read_jsonl(out, stream)) == len(sandbox.records(stream)), stream
    # The target's stdout is the last STATE: bookmarks for both incremental streams.
    state = json.loads((tmp_path / "state.json").read_text())
    assert {"sales", "events"} <= set(state["bookmarks"]), first.stdout[-2000:]
    assert all(p.get("replication_key_value") for p in state["bookmarks"]["events"]["partitions"])

    # The next run starts from that state: every events request has a lower date bound.
    sandbox.clear_requests()
    ok(run_block(example("singer-next-run"), tmp_path))
    assert events_requests(sandbox)
    assert all("date.gte" in effective_params(r) for r in events_requests(sandbox))
    assert json.loads((tmp_path / "state.json").read_text())["bookmarks"]["events"]

    # A failing tap fails the pipeline (pipefail), and the saved state is kept.
    saved = (tmp_path / "state.json").read_bytes()
    good_config = (tmp_path / "config.json").read_text()
    (tmp_path / "config.json").write_text(good_config.replace(TEST_TOKEN, "not-the-token"))
    failed = run_block(example("singer-next-run"), tmp_path)
    assert failed.returncode != 0
    assert (tmp_path / "state.json").read_bytes() == saved

    # --test: 0 when the API answers, non-zero when it does not.
    refused = run_block(example("singer-test"), tmp_path)
    assert refused.returncode != 0 and refused.stderr.strip()
    (tmp_path / "config.json").write_text(good_config)
    ok(run_block(example("singer-test"), tmp_path))

    # TAP_CUSTOBAR_LOGLEVEL=WARNING: no METRIC (nor other INFO) lines, the records unchanged.
    quiet = ok(run_block(example("quiet-logs"), tmp_path))
    assert "METRIC" not in quiet.stderr and "INFO" not in quiet.stderr, quiet.stderr[-2000:]
    messages = [json.loads(line) for line in (tmp_path / "messages.jsonl").read_text().splitlines()]
    assert sum(m["type"] == "RECORD" for m in messages) >= len(sandbox.records("customers"))


def test_sandbox_example_runs_against_the_sandbox(sandbox, tmp_path):
    done = ok(run_block(substituted(example("sandbox-tap"), sandbox), tmp_path))
    lines = (tmp_path / "sandbox-messages.jsonl").read_text().splitlines()
    records = collections.Counter(
        m["stream"] for m in map(json.loads, lines) if m["type"] == "RECORD"
    )
    assert records == {s: len(sandbox.records(s)) for s in records} and len(records) == 4
    # With the discovered catalog, no field is dropped.
    assert "not in the catalog" not in done.stderr


# --- Meltano -----------------------------------------------------------------------------------


def test_meltano_examples_load_postgres_in_utc_and_schedule(meltano, postgres, pg, sandbox):
    project = meltano.project
    pacing_off(project)
    schema = "custobar"  # meltano.yml's default_target_schema
    pg.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    cluster = f"{postgres.user}@{postgres.host}:{postgres.port}/{postgres.dbname}"
    body = substituted(
        example("meltano-postgres"), sandbox, **{"user:password@dbhost:5432/warehouse": cluster}
    )
    assert "timezone%3DUTC" in body  # the README's URL carries the session zone
    env = {"TAP_CUSTOBAR_BASE_URL": sandbox.url}
    ok(run_block(body, project, env))

    rows = dict(
        pg.execute(
            sql.SQL("SELECT external_id, date_joined FROM {}.customers").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    )
    assert len(rows) == len(sandbox.records("customers"))
    joined = [c for c in sandbox.records("customers") if c.get("date_joined")]
    assert joined
    for customer in joined:
        # Stored as UTC wall time although the server's zone is not UTC.
        stored = rows[customer["external_id"]]
        utc = instant(customer["date_joined"]).astimezone(dt.timezone.utc)
        assert stored == utc.replace(tzinfo=None), customer

    # The default environment, prod, names the state id.
    states = meltano.ok("state", "list").stdout.split()
    assert states == ["prod:tap-custobar-to-target-postgres"], states

    scheduled = ok(run_block(example("schedule"), project))
    assert "custobar-daily" in scheduled.stdout + scheduled.stderr


def test_parallel_jobs_example_runs_two_jobs_at_once(meltano, sandbox, tmp_path):
    project = meltano.project
    pacing_off(project)
    path = project / "meltano.yml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    jobs = yaml.safe_load(example("parallel-jobs-yaml"))["plugins"]["extractors"]
    config["plugins"]["extractors"].extend(jobs)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    out = tmp_path / "output"
    env = {
        "TAP_CUSTOBAR_BASE_URL": sandbox.url,
        "TAP_CUSTOBAR_API_TOKEN": TEST_TOKEN,
        **jsonl_env(out),
    }
    body = substituted(example("parallel-jobs"), sandbox, **{"target-postgres": "target-jsonl"})
    ok(run_block(body, project, env))

    events = read_jsonl(out, "events")
    by_type = collections.Counter(e["type"] for e in events)
    expected = collections.Counter(
        e["type"] for e in sandbox.records("events") if e["type"] in ("MAIL_OPEN", "BROWSE")
    )
    assert by_type == expected
    assert len({e["event_id"] for e in events}) == len(events)
    assert sorted(p.name for p in out.iterdir()) == ["events.jsonl"]

    for job, kind in (("tap-custobar--mail-open", "MAIL_OPEN"), ("tap-custobar--browse", "BROWSE")):
        state = json.loads(meltano.ok("state", "get", f"prod:{job}-to-target-jsonl").stdout)
        partitions = state["singer_state"]["bookmarks"]["events"]["partitions"]
        assert [p["context"] for p in partitions] == [{"type": kind}], partitions
        assert partitions[0]["replication_key_value"]
        # Each job ran from its own folder, with the pinned catalog.
        assert (project / ".meltano" / "run" / job / "tap.properties.json").is_file()
