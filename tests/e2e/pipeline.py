"""Running the real `meltano` CLI as a subprocess, in a project root of its own per test.

`make_project` gives a test a Meltano project in a temporary folder: a copy of this project's
meltano.yml, and the plugin venvs that `make install` built under the checkout's .meltano/
(symlinked, so a test costs no install). Meltano keeps its system database, state, logs and
.meltano/run/ files under the project root, so test runs never touch the checkout's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.sandbox import TEST_TOKEN
from tests.sandbox.server import decode_cursor

if t.TYPE_CHECKING:
    from tests.e2e.postgres import PostgresCluster

ROOT = Path(__file__).resolve().parents[2]
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
MELTANO_VERSION = "4.4.1"
# Plugin and Meltano settings from the developer's shell must not reach the runs.
FOREIGN_ENV_PREFIXES = ("TAP_CUSTOBAR_", "TARGET_POSTGRES_", "TARGET_JSONL_", "MELTANO_")


def redact(text: str) -> str:
    """Output safe to show: the sandbox token replaced (the leak check runs before this)."""
    return text.replace(TEST_TOKEN, "<TOKEN>")


@dataclass
class MeltanoResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, chars: int = 6000) -> str:
        return redact(self.output[-chars:])


def clean_env() -> dict[str, str]:
    """This process's environment without plugin settings, plus quiet, plain-text output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    return env


def make_project(folder: Path, system_db: Path | None = None) -> Path:
    """A Meltano project in `folder` with this project's meltano.yml and installed plugins.

    `system_db`: an empty, migrated system database to start from (Meltano creates and
    migrates one on a project's first command otherwise, a few seconds each time).
    """
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "meltano.yml", folder / "meltano.yml")
    system = folder / ".meltano"
    system.mkdir()
    if system_db is not None:
        shutil.copy(system_db, system / "meltano.db")
    for kind in ("extractors", "loaders"):
        installed = ROOT / ".meltano" / kind
        if not installed.is_dir():
            pytest.fail(f"{installed} is missing: run `make install` first", pytrace=False)
        (system / kind).symlink_to(installed, target_is_directory=True)
    return folder


@dataclass
class Meltano:
    """The meltano CLI, run in the project root `project`."""

    project: Path
    executable: Path = MELTANO
    base_env: dict[str, str] = field(default_factory=clean_env)

    def __call__(
        self, *args: str, env: t.Mapping[str, str] | None = None, timeout: float = 300
    ) -> MeltanoResult:
        if "install" in args and (self.project / ".meltano" / "extractors").is_symlink():
            # The plugin venvs are the checkout's: installing from here would rebuild them
            # from this copy of meltano.yml (`pip_url: -e .` is relative to the project).
            raise AssertionError("`meltano install` in a project made by make_project")
        done = subprocess.run(
            [str(self.executable), *args],
            cwd=self.project,
            env={**self.base_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        result = MeltanoResult(list(args), done.returncode, done.stdout, done.stderr)
        if TEST_TOKEN in result.output:
            # Never show the text: it holds the token.
            pytest.fail(f"the API token appeared in the output of `meltano {' '.join(args[:2])}`")
        return result

    def ok(self, *args: str, **kwargs: t.Any) -> MeltanoResult:
        """Run; fail the test with the (redacted) end of the output when meltano fails."""
        result = self(*args, **kwargs)
        if result.returncode != 0:
            pytest.fail(
                f"`meltano {' '.join(args)}` exited {result.returncode}:\n{result.tail()}",
                pytrace=False,
            )
        return result

    def run_pipeline(
        self,
        loader: str,
        *,
        env: t.Mapping[str, str],
        state_suffix: str,
        extra: t.Sequence[str] = (),
    ) -> MeltanoResult:
        """`meltano --environment=sandbox run tap-custobar <loader>` under its own state id.

        --no-install: Meltano would otherwise reinstall a plugin whose venv it finds stale, into
        the checkout's venvs.
        """
        return self.ok(
            "--environment=sandbox",
            "run",
            "--no-install",
            "--state-id-suffix",
            state_suffix,
            *extra,
            "tap-custobar",
            loader,
            env=env,
        )


def tap_env(sandbox: t.Any, **settings: str) -> dict[str, str]:
    """The tap's settings as environment variables, pointing at `sandbox`."""
    # min_request_interval is 0 in meltano.yml's sandbox environment.
    env = {
        "TAP_CUSTOBAR_BASE_URL": sandbox.url,
        "TAP_CUSTOBAR_API_TOKEN": TEST_TOKEN,
        "TAP_CUSTOBAR_MAX_RETRIES": "2",
        # Several pages per stream and per event type.
        "TAP_CUSTOBAR_PAGE_SIZE": "100",
    }
    env.update({f"TAP_CUSTOBAR_{name.upper()}": value for name, value in settings.items()})
    return env


def postgres_env(postgres: PostgresCluster, schema: str, **settings: str) -> dict[str, str]:
    """target-postgres pointed at the throwaway cluster, loading into `schema`."""
    env = {
        "TARGET_POSTGRES_SQLALCHEMY_URL": postgres.sqlalchemy_url,
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": schema,
    }
    env.update({f"TARGET_POSTGRES_{name.upper()}": value for name, value in settings.items()})
    return env


def effective_params(entry: t.Mapping[str, t.Any]) -> dict[str, str]:
    """A logged sandbox request's query, with a next_url cursor decoded to what it stands for."""
    params = {name: values[-1] for name, values in entry["params"].items()}
    if "cursor" in params:
        pairs, _offset = decode_cursor(params["cursor"])
        params = dict(pairs)
    return params


def read_jsonl(folder: Path, stream: str) -> list[dict]:
    """The records target-jsonl wrote for `stream` (do_timestamp_file off: `<stream>.jsonl`)."""
    path = folder / f"{stream}.jsonl"
    assert path.is_file(), f"no {path.name} in {sorted(p.name for p in folder.iterdir())}"
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def jsonl_env(folder: Path) -> dict[str, str]:
    return {"TARGET_JSONL_DESTINATION_PATH": str(folder), "TARGET_JSONL_DO_TIMESTAMP_FILE": "false"}


def checkout_system_files() -> dict[str, tuple[int, int]]:
    """The checkout's Meltano system files (.meltano/ minus the plugin venvs): size, mtime."""
    system = ROOT / ".meltano"
    return {
        str(path.relative_to(system)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in system.rglob("*")
        if path.is_file() and path.relative_to(system).parts[0] not in ("extractors", "loaders")
    }
