"""The code stays lint-clean (ruff) and type-checked (mypy), as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff() -> None:
    done = run("ruff", "check", "tap_custobar", "tests", "benchmarks", "scripts")
    assert done.returncode == 0, done.stdout[-3000:]
    done = run("ruff", "format", "--check", "tap_custobar")
    assert done.returncode == 0, done.stdout[-3000:]


def test_mypy() -> None:
    done = run("mypy", "tap_custobar")
    assert done.returncode == 0, done.stdout[-3000:]
