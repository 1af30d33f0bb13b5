"""A throwaway PostgreSQL cluster for the end-to-end tests: initdb + pg_ctl in a temp dir.

The server listens on 127.0.0.1 only, on a free port, with trust authentication, and runs as
the `postgres` user when we are root (the server refuses to run as root). `stop()` kills it
(`pg_ctl stop -m immediate`) and removes the directory.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFERRED_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The server binaries or the account to run them are missing, or the server did not start."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: PostgreSQL 15's first, then PATH, then any."""
    candidates = [PREFERRED_BIN_DIR]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise PostgresUnavailable(
        "initdb/pg_ctl not found in /usr/lib/postgresql/*/bin or on PATH: "
        "install the PostgreSQL server (apt-get install -y postgresql)"
    )


@dataclass
class PostgresCluster:
    """A running cluster; `dsn` for psycopg, `sqlalchemy_url` for target-postgres."""

    bin_dir: Path
    root: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    dbname: str = "postgres"
    # Not UTC on purpose: the loads must not depend on the server's zone (see sqlalchemy_url).
    timezone: str = "Asia/Kolkata"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    @property
    def sqlalchemy_url(self) -> str:
        """For target-postgres, whose sessions must run in UTC.

        target-postgres 0.8.1 stores date-times in `timestamp without time zone` columns as wall
        time in the session's zone; `options=-c timezone=UTC` makes that UTC whatever the
        server's zone is (meltano.yml says so too).
        """
        base = f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{self.dbname}"
        return base + "?options=-c%20timezone%3DUTC"

    def _command(self, args: list[str]) -> list[str]:
        """Run as the server account when we are root; as ourselves otherwise."""
        if os.geteuid() != 0:
            return args
        if shutil.which("runuser"):
            return ["runuser", "-u", SERVER_USER, "--", *args]
        return ["su", SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(args)]

    def _run(self, args: list[str], timeout: float = 120) -> None:
        result = subprocess.run(
            self._command(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            check=False,
        )
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
            raise PostgresUnavailable(
                f"{Path(args[0]).name} {args[-1]} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}\n{log[-3000:]}"
            )

    def start(self) -> None:
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "--pgdata", str(self.data_dir),
                "--username", self.user,
                "--auth", "trust",
                "--encoding", "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )  # fmt: skip
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                # A throwaway cluster: durability is not needed, speed is.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                f"-c timezone={self.timezone}",
            ]
        )
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "--pgdata", str(self.data_dir),
                "--log", str(self.log_file),
                "--options", options,
                "--wait",
                "--timeout", "60",
                "start",
            ]
        )  # fmt: skip

    def stop(self) -> None:
        """Kill the server (if it runs) and remove everything; never raises."""
        stop = [
            str(self.bin_dir / "pg_ctl"),
            "--pgdata", str(self.data_dir),
            "--mode", "immediate",
            "--wait",
            "stop",
        ]  # fmt: skip
        try:
            if (self.data_dir / "postmaster.pid").exists():
                subprocess.run(
                    self._command(stop), capture_output=True, timeout=60, check=False
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def create_cluster() -> PostgresCluster:
    """Make the temp dir (owned by the server account when root) and describe a cluster in it."""
    bin_dir = find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="tap-custobar-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam(SERVER_USER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(
                f"running as root but there is no `{SERVER_USER}` account to run the server as "
                "(apt-get install -y postgresql creates it)"
            ) from None
        os.chown(root, account.pw_uid, account.pw_gid)
    return PostgresCluster(bin_dir=bin_dir, root=root, port=free_port())
