"""Fixtures for the end-to-end tests: a throwaway PostgreSQL, the real `meltano` CLI, a sandbox.

`make install` builds `.meltano-venv` (meltano 4.4.1) and runs `meltano install`; the session
checks both once and fails loudly when they are missing. Each test's `meltano` runs in a project
root of its own (tests/e2e/pipeline.py: make_project), so no test writes into the checkout's
system database, state or .meltano/run/, and tests never share bookmarks.
"""

from __future__ import annotations

import typing as t
import uuid
from pathlib import Path

import psycopg
import pytest

from tests.e2e.pipeline import MELTANO, MELTANO_VERSION, ROOT, Meltano, make_project
from tests.e2e.postgres import PostgresCluster, PostgresUnavailable, create_cluster
from tests.sandbox import TEST_TOKEN, Sandbox, generate_dataset


@pytest.fixture(scope="session")
def meltano_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """meltano 4.4.1 in .meltano-venv, with `meltano install` done once, in the checkout.

    Returns an empty system database, migrated once, for the tests' projects to start from.
    """
    if not MELTANO.is_file():
        pytest.fail(f"{MELTANO} is missing: run `make install` first", pytrace=False)
    checkout = Meltano(project=ROOT)
    version = checkout.ok("--version")
    if MELTANO_VERSION not in version.stdout:
        pytest.fail(f"expected meltano {MELTANO_VERSION}, got {version.stdout.strip()}")
    checkout.ok("install", timeout=900)
    template = Meltano(project=make_project(tmp_path_factory.mktemp("meltano") / "template"))
    template.ok("state", "list")  # creates and migrates .meltano/meltano.db
    return template.project / ".meltano" / "meltano.db"


@pytest.fixture
def meltano(meltano_installed: Path, tmp_path: Path) -> Meltano:
    """The meltano CLI in a project root of this test's own (this project's meltano.yml)."""
    return Meltano(project=make_project(tmp_path / "meltano-project", meltano_installed))


@pytest.fixture(scope="session")
def postgres() -> t.Iterator[PostgresCluster]:
    """A PostgreSQL cluster for the session on 127.0.0.1:<free port>, trust auth."""
    try:
        cluster = create_cluster()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        try:
            cluster.start()
        except PostgresUnavailable as error:
            pytest.fail(str(error), pytrace=False)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_schema() -> str:
    """A schema name no other test uses (target-postgres creates it)."""
    return f"e2e_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg(postgres: PostgresCluster) -> t.Iterator[psycopg.Connection]:
    """An autocommit connection to the cluster."""
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def dataset() -> t.Any:
    """A small data set; its dates fall in the 60 days up to today (UTC)."""
    return generate_dataset(customers=250, products=60, sales=150, events_per_type=40, seed=7)


@pytest.fixture
def sandbox(dataset: t.Any) -> t.Iterator[t.Any]:
    """The Custobar stand-in serving `dataset` from this process, on a free port."""
    server = Sandbox(dataset=dataset, token=TEST_TOKEN, port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def state_suffix() -> str:
    """A state id suffix no other run uses."""
    return f"e2e-{uuid.uuid4().hex[:12]}"
