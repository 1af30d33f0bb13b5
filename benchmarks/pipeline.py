"""The whole pipeline timed: sandbox -> tap-custobar -> target-postgres -> a throwaway PostgreSQL.

    .venv/bin/python -m benchmarks.pipeline --customers 1000000 --runs 3
    .venv/bin/python -m benchmarks.pipeline --customers 100000 --setups default,fast --meltano none

The sandbox (``python -m tests.sandbox``) serves N customers (plus 20 products; no sales, no
events, so that "records" means customers) from a child process; a PostgreSQL cluster is started
in a temp dir (tests/e2e/postgres.py, as user ``postgres`` when we are root). Neither start-up is
measured. Then, alternated run by run (the order rotates), for each row of the table:

* a *setup* pipes the tap's stdout into target-postgres, both started from the Meltano plugin
  venvs (``.meltano/extractors/tap-custobar/venv/bin/tap-custobar``, ``.meltano/loaders/
  target-postgres/venv/bin/target-postgres``), each setup a different target (or tap) config;
* ``tap -> file`` is the tap alone, writing to a file (its Singer output, reused below);
* ``file -> target (...)`` is target-postgres alone, reading that file;
* ``meltano run (...)`` is the real ``meltano run tap-custobar target-postgres`` (settings from the
  environment over meltano.yml), to see what Meltano itself costs.

Every load goes into a fresh schema (a first load, like a new warehouse), and afterwards the rows
are counted: a setup that loads fewer rows than the sandbox serves is flagged, whatever its speed.
For each child: wall seconds from spawning to reaping, CPU seconds (user + system) from
``os.wait4`` (for ``meltano run`` that includes the tap and target it waited for), and the
PostgreSQL server's CPU seconds (its postmaster's own and reaped children's time, from /proc).
The CPU share of a side is its CPU seconds over the pipeline's (tap + target + server; the
sandbox, the API's stand-in, is reported apart). Medians over the runs.

Never a timed test: nothing here asserts a speed; it prints figures.
"""

# ruff: noqa: S603 - starting processes is the point
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.bench import SandboxProcess, process_cpu_seconds
from tests.e2e.postgres import PostgresCluster, create_cluster

ROOT = Path(__file__).resolve().parent.parent
TAP = ROOT / ".meltano" / "extractors" / "tap-custobar" / "venv" / "bin" / "tap-custobar"
TARGET = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
MELTANO = ROOT / ".meltano-venv" / "bin" / "meltano"
PRODUCTS = 20  # sales and events refer to products; the sandbox needs a few
# Settings from the developer's shell must not reach the children.
FOREIGN_ENV_PREFIXES = ("TAP_CUSTOBAR_", "TARGET_POSTGRES_", "MELTANO_")
# Without bytecode caching every start of the tap, target-postgres or meltano compiles their
# modules again (seconds of CPU each); an ordinary installation caches them.
FOREIGN_ENV = ("PYTHONDONTWRITEBYTECODE",)
# Children still running when this process is stopped, killed on the way out.
LIVE: set[subprocess.Popen[bytes]] = set()

# target-postgres as meltano.yml configures it before any speed setting: merge on the key,
# ACTIVATE_VERSION applied with hard deletes.
BASE_TARGET_CONFIG: dict[str, Any] = {
    "load_method": "upsert",
    "hard_delete": True,
    "activate_version": True,
    "add_record_metadata": True,
}
# The loader's own defaults spelled out, so that meltano.yml's choice cannot leak into "default".
LOADER_DEFAULTS: dict[str, Any] = {"validate_records": True, "use_copy": False}
NO_VALIDATE = {"validate_records": False}
COPY = {"use_copy": True}
BIG_BATCHES = {"batch_size_rows": 100000}


@dataclass
class Setup:
    """One way to run the pipeline: target settings (over the base) and whether the tap batches."""

    name: str
    target: dict[str, Any]
    tap_batches: bool = False


SETUPS = {
    setup.name: setup
    for setup in (
        Setup("default", {}),
        Setup("validate_records=false", NO_VALIDATE),
        Setup("use_copy=true", COPY),
        Setup("both (validate_records=false, use_copy=true)", {**NO_VALIDATE, **COPY}),
        Setup("both + batch_size_rows=100000", {**NO_VALIDATE, **COPY, **BIG_BATCHES}),
        Setup("BATCH (jsonl+gzip)", {}, tap_batches=True),
        Setup("BATCH + use_copy=true", COPY, tap_batches=True),
    )
}
SHORT_NAMES = {
    "default": "default",
    "no-validate": "validate_records=false",
    "copy": "use_copy=true",
    "fast": "both (validate_records=false, use_copy=true)",
    "fast-big": "both + batch_size_rows=100000",
    "batch": "BATCH (jsonl+gzip)",
    "batch-copy": "BATCH + use_copy=true",
}
CHOSEN = "fast"


# --- the processes ---------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(FOREIGN_ENV_PREFIXES) and k not in FOREIGN_ENV
    }
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def server_cpu_seconds(cluster: PostgresCluster) -> float:
    """The PostgreSQL server's CPU seconds so far: the postmaster's, its reaped backends', and
    those of backends still alive."""
    postmaster = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
    total = process_cpu_seconds(postmaster, children=True)
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            total += process_cpu_seconds(int(child), children=True)
        except FileNotFoundError:
            pass  # exited (and counted in the postmaster's cutime) meanwhile
    return total


@dataclass
class Child:
    command: list[str]
    stdin: Any = subprocess.DEVNULL
    stdout: Any = subprocess.DEVNULL
    env: dict[str, str] = field(default_factory=clean_env)
    cwd: Path = ROOT


@dataclass
class Measure:
    row: str
    run: int
    wall_s: float
    records: int  # rows in the database afterwards (or RECORD lines, for the tap alone)
    cpu_s: dict[str, float]  # per side: tap, target, meltano (tap + target + meltano), server
    peak_rss_mb: dict[str, float]  # per child
    sandbox_cpu_s: float
    problems: list[str] = field(default_factory=list)


def run_children(
    children: dict[str, Child], stderr_dir: Path
) -> tuple[float, dict[str, float], dict[str, float], list[str]]:
    """Start the children (in order; an earlier one's stdout is the next one's stdin if it is a
    pipe), reap them all; (wall seconds, CPU seconds and peak RSS MB per child, failures)."""
    procs: dict[int, str] = {}
    failures: list[str] = []
    started = time.perf_counter()
    pipe = None  # the previous child's stdout, when it is to be this child's stdin
    for name, child in children.items():
        with open(stderr_dir / f"{name}.stderr", "wb") as stderr:
            proc = subprocess.Popen(
                child.command,
                stdin=pipe if pipe is not None else child.stdin,
                stdout=child.stdout,
                stderr=stderr,
                env=child.env,
                cwd=child.cwd,
            )
        # This process keeps no end of a pipe or file open: a reader's death must reach the writer.
        for handle in (pipe, child.stdin, child.stdout):
            if handle is not None and hasattr(handle, "close"):
                handle.close()
        pipe = proc.stdout
        procs[proc.pid] = name
        LIVE.add(proc)
    cpu: dict[str, float] = {}
    rss: dict[str, float] = {}
    for pid, name in procs.items():
        _, status, usage = os.wait4(pid, 0)
        LIVE.difference_update({p for p in LIVE if p.pid == pid})
        cpu[name] = usage.ru_utime + usage.ru_stime
        rss[name] = usage.ru_maxrss / 1024
        if os.waitstatus_to_exitcode(status) != 0:
            tail = (stderr_dir / f"{name}.stderr").read_text(errors="replace")[-2000:]
            failures.append(f"{name} exited {os.waitstatus_to_exitcode(status)}: {tail}")
    wall = time.perf_counter() - started
    return wall, cpu, rss, failures


# --- the configs -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.sandbox: SandboxProcess  # started by run()
        self.cluster: PostgresCluster | None = None
        self.singer_file = workdir / "tap-output.singer"
        self.batch_root = workdir / "batches"
        self.expected = args.customers + PRODUCTS
        self.measures: list[Measure] = []

    def write_json(self, name: str, data: dict[str, Any]) -> Path:
        path = self.workdir / name
        path.write_text(json.dumps(data))
        return path

    def tap_config(self, batches: bool) -> Path:
        config: dict[str, Any] = {
            "base_url": self.sandbox.url,
            "api_token": self.sandbox.token,
            "min_request_interval": 0,
        }
        if batches:
            config["batch_config"] = {
                "encoding": {"format": "jsonl", "compression": "gzip"},
                "storage": {"root": self.batch_root.as_uri(), "prefix": "batch-"},
            }
        return self.write_json(f"tap-{'batch' if batches else 'records'}.json", config)

    def target_config(self, schema: str, settings: dict[str, Any]) -> Path:
        assert self.cluster is not None
        config = {
            **BASE_TARGET_CONFIG,
            **LOADER_DEFAULTS,
            **settings,
            "sqlalchemy_url": self.cluster.sqlalchemy_url,
            "default_target_schema": schema,
        }
        return self.write_json(f"target-{schema}.json", config)

    # --- one measured row ---

    def measure(self, row: str, run: int) -> Measure:
        assert self.cluster is not None
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        logs = self.workdir / "logs" / f"{run}-{schema}"
        logs.mkdir(parents=True)
        shutil.rmtree(self.batch_root, ignore_errors=True)
        self.batch_root.mkdir()
        children = self.children_for(row, schema)
        sandbox_cpu, server_cpu = self.sandbox.cpu_seconds(), server_cpu_seconds(self.cluster)
        wall, cpu, rss, problems = run_children(children, logs)
        time.sleep(0.2)  # let the server reap the target's backends
        cpu["server"] = server_cpu_seconds(self.cluster) - server_cpu
        sandbox_cpu = self.sandbox.cpu_seconds() - sandbox_cpu
        if row == "tap -> file":
            records = count_records(self.singer_file)
        elif row == "tap -> /dev/null":
            records = self.expected  # nothing to count; the file row checks the tap's output
        else:
            records, more = self.loaded_rows(schema)
            problems += more
        if records != self.expected:
            problems.append(f"{records} records, {self.expected} expected")
        leftover = list(self.batch_root.rglob("*"))
        if leftover:
            problems.append(f"{len(leftover)} batch files left in the storage root")
        return Measure(row, run, wall, records, cpu, rss, sandbox_cpu, problems)

    def children_for(self, row: str, schema: str) -> dict[str, Child]:
        if row == "tap -> file":
            return {"tap": Child([str(TAP), "--config", str(self.tap_config(False))],
                                 stdout=self.singer_file.open("wb"))}  # fmt: skip
        if row == "tap -> /dev/null":
            return {"tap": Child([str(TAP), "--config", str(self.tap_config(False))])}
        if row.startswith("file -> target"):
            setup = SETUPS[SHORT_NAMES[row.partition("(")[2].rstrip(")")]]
            config = self.target_config(schema, setup.target)
            return {"target": Child([str(TARGET), "--config", str(config)],
                                    stdin=self.singer_file.open("rb"))}  # fmt: skip
        if row.startswith("meltano run"):
            return {"meltano": self.meltano_child(row.partition("(")[2].rstrip(")"), schema)}
        setup = SETUPS[row]
        tap_config = self.tap_config(setup.tap_batches)
        target_config = self.target_config(schema, setup.target)
        return {
            "tap": Child([str(TAP), "--config", str(tap_config)], stdout=subprocess.PIPE),
            "target": Child([str(TARGET), "--config", str(target_config)]),
        }

    def meltano_child(self, which: str, schema: str) -> Child:
        """``meltano run`` with meltano.yml's settings ("project") or the loader's defaults."""
        assert self.cluster is not None
        env = clean_env(
            TAP_CUSTOBAR_BASE_URL=self.sandbox.url,
            TAP_CUSTOBAR_API_TOKEN=self.sandbox.token,
            TAP_CUSTOBAR_MIN_REQUEST_INTERVAL="0",
            TARGET_POSTGRES_SQLALCHEMY_URL=self.cluster.sqlalchemy_url,
            TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA=schema,
        )
        if which == "default":
            env.update({f"TARGET_POSTGRES_{k.upper()}": json.dumps(v) for k, v in
                        LOADER_DEFAULTS.items()})  # fmt: skip
        command = [
            str(MELTANO), "--environment=sandbox", "run",
            "--state-id-suffix", f"bench-{schema}", "tap-custobar", "target-postgres",
        ]  # fmt: skip
        return Child(command, env=env)

    def loaded_rows(self, schema: str) -> tuple[int, list[str]]:
        assert self.cluster is not None
        problems = []
        with psycopg.connect(self.cluster.dsn, autocommit=True) as connection:
            total = 0
            for table in ("customers", "products"):
                name = sql.Identifier(schema, table)
                count, unversioned = connection.execute(
                    sql.SQL(
                        "SELECT count(*), count(*) FILTER (WHERE _sdc_table_version IS NULL)"
                        " FROM {}"
                    ).format(name)
                ).fetchone() or (0, 0)
                total += count
                if unversioned:
                    problems.append(f"{table}: {unversioned} rows without _sdc_table_version")
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        return total, problems

    # --- the whole benchmark ---

    def rows(self) -> list[str]:
        """The rows in the order of one run: the first two setups (default, the chosen one) and
        meltano come early, so that a run cut short still has what the comparison needs."""
        setups = [SHORT_NAMES[name] for name in self.args.setups]
        rows = ["tap -> file", "tap -> /dev/null", *setups[:2]]
        rows += [f"meltano run ({name})" for name in self.args.meltano]
        rows += setups[2:]
        rows += [f"file -> target ({name})" for name in self.args.target_alone]
        return rows

    def run(self) -> list[Measure]:
        progress(f"starting the sandbox with {self.args.customers} customers")
        sizes = {"customers": self.args.customers, "products": PRODUCTS, "sales": 0}
        self.sandbox = SandboxProcess({**sizes, "events_per_type": 0}, timeout=900)
        self.cluster = create_cluster()
        try:
            self.cluster.start()
            progress(f"sandbox at {self.sandbox.url}; PostgreSQL on port {self.cluster.port}")
            # Warm-up (untimed): the sandbox's page caches, the Singer file for target rows, and
            # the children's bytecode caches.
            self.measure("tap -> file", 0)
            for command in ([str(TARGET), "--about"], [str(MELTANO), "--version"]):
                subprocess.run(command, env=clean_env(), capture_output=True, check=False)
            rows = self.rows()
            measures = self.measures
            for run in range(1, self.args.runs + 1):
                shift = (run - 1) % len(rows)
                for row in rows[shift:] + rows[:shift]:
                    measure = self.measure(row, run)
                    measures.append(measure)
                    progress(describe(measure))
            return measures
        finally:
            for proc in LIVE:
                proc.kill()
            self.cluster.stop()
            self.sandbox.stop()


def count_records(path: Path) -> int:
    count = 0
    with path.open("rb") as lines:
        for line in lines:
            if line.startswith(b'{"type":"RECORD"'):
                count += 1
    return count


# --- reporting -------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def describe(m: Measure) -> str:
    cpu = ", ".join(f"{side} {seconds:.1f}" for side, seconds in m.cpu_s.items())
    problems = f" PROBLEMS: {m.problems}" if m.problems else ""
    return f"run {m.run} {m.row}: {m.wall_s:.1f} s, {m.records} records, CPU s: {cpu}{problems}"


def summarize(measures: list[Measure], rows: list[str]) -> list[dict[str, Any]]:
    summary = []
    for row in rows:
        mine = [m for m in measures if m.row == row]
        if not mine:
            continue
        sides = sorted({side for m in mine for side in m.cpu_s})
        cpu = {side: statistics.median(m.cpu_s.get(side, 0.0) for m in mine) for side in sides}
        wall = statistics.median(m.wall_s for m in mine)
        summary.append(
            {
                "row": row,
                "runs": len(mine),
                "wall_s": wall,
                "walls": [round(m.wall_s, 1) for m in mine],
                "records_per_s": statistics.median(m.records / m.wall_s for m in mine),
                "records": statistics.median(m.records for m in mine),
                "cpu_s": cpu,
                "sandbox_cpu_s": statistics.median(m.sandbox_cpu_s for m in mine),
                "peak_rss_mb": {
                    name: max(m.peak_rss_mb.get(name, 0.0) for m in mine)
                    for name in sorted({n for m in mine for n in m.peak_rss_mb})
                },
                "problems": sorted({p for m in mine for p in m.problems}),
            }
        )
    return summary


def format_table(summary: list[dict[str, Any]]) -> str:
    """One row per setup; ratios and shares only where they mean something."""
    default = next((s for s in summary if s["row"] == "default"), None)
    tap_alone = next((s["wall_s"] for s in summary if s["row"] == "tap -> /dev/null"), None)
    lines = [
        "| what ran | wall s | records/s | speed-up over default | tap CPU s | target CPU s "
        "| PostgreSQL CPU s | tap share of CPU | tap share of wall | records per loader CPU s "
        "| target peak RSS MB | check |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in summary:
        cpu = s["cpu_s"]
        tap, server = cpu.get("tap"), cpu.get("server", 0.0)
        loader = cpu.get("target", cpu.get("meltano"))
        piped = tap is not None and "target" in cpu
        pipeline = piped or "meltano" in cpu
        share = f"{100 * (tap or 0) / sum(cpu.values()):.1f} %" if piped else ""
        wall_share = f"{100 * tap_alone / s['wall_s']:.0f} %" if tap_alone and pipeline else ""
        ratio = f"{default['wall_s'] / s['wall_s']:.2f}x" if default and pipeline else ""
        rss = s["peak_rss_mb"].get("target")
        per_loader_cpu = f"{s['records'] / loader:,.0f}" if loader and "target" in cpu else ""
        lines.append(
            f"| {s['row']} | {s['wall_s']:.1f} | {s['records_per_s']:,.0f} | {ratio} "
            f"| {fmt(tap)} | {fmt(loader)} | {server:.1f} | {share} | {wall_share} "
            f"| {per_loader_cpu} | {fmt(rss, 0)} "
            f"| {'; '.join(s['problems']) or 'all rows loaded'} |"
        )
    return "\n".join(lines)


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--setups",
        default=",".join(SHORT_NAMES),
        help=f"tap -> target setups, comma-separated, of {', '.join(SHORT_NAMES)}",
    )
    parser.add_argument(
        "--target-alone", default=f"default,{CHOSEN}", help="setups to run from the tap's file"
    )
    parser.add_argument(
        "--meltano",
        default="default,project",
        help="meltano run rows: default (the loader's defaults), project (meltano.yml's), none",
    )
    parser.add_argument("--json", type=Path, help="also write the measures and summary here")
    args = parser.parse_args(argv)
    for name in ("setups", "target_alone", "meltano"):
        value = [part for part in getattr(args, name).split(",") if part and part != "none"]
        setattr(args, name, value)
    unknown = [name for name in args.setups + args.target_alone if name not in SHORT_NAMES]
    if unknown:
        parser.error(f"unknown setups {unknown}; known: {', '.join(SHORT_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [str(path) for path in (TAP, TARGET, MELTANO) if not path.exists()]
    if missing:
        print(f"missing {missing}: run `make install` first", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    started = time.perf_counter()
    bench = Bench(args, workdir)
    stopped = ""
    try:
        bench.run()
    except (KeyboardInterrupt, SystemExit):
        stopped = " STOPPED EARLY: the rows measured so far;"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    measures = bench.measures
    summary = summarize(measures, bench.rows())
    load = os.getloadavg()
    print(
        f"\n{args.customers:,} customers (+{PRODUCTS} products), {args.runs} run(s) per row, "
        f"medians;{stopped} {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end; "
        f"{time.perf_counter() - started:.0f} s in all.\n"
    )
    print(format_table(summary))
    if args.json:
        args.json.write_text(
            json.dumps({"measures": [m.__dict__ for m in measures], "summary": summary}, indent=1)
        )
    return 1 if stopped else 0


if __name__ == "__main__":
    raise SystemExit(main())
