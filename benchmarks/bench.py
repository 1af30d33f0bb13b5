"""Throughput, CPU and peak memory of tap-custobar against the sandbox, next to the raw limit.

    .venv/bin/python -m benchmarks.bench --customers 1000000 --runs 3
    .venv/bin/python -m benchmarks.bench --customers 100000 --streams customers,events --json o.json
    .venv/bin/python -m benchmarks.bench --customers 1000000 --memory-check

The sandbox (``python -m tests.sandbox``) runs as a child process on a free port; its start-up
(data generation) is never measured. Per stream, after one untimed warm-up read that fills the
sandbox's page caches, the raw client (benchmarks/raw_client.py: requests + msgspec, one Singer
RECORD line per record) and tap-custobar (catalog restricted to that stream) run alternately,
``--runs`` times each, as child processes. For each child:

* wall seconds: from spawning it to reaping it (start-up included, for both);
* CPU seconds: user + system time of the child, from ``os.wait4``;
* peak RSS: the child's ``ru_maxrss`` from ``os.wait4``;
* records: RECORD lines on its stdout, which is a pipe read and counted by a thread here (the
  same for both, so neither writes to a faster sink than the other);
* requests: entries for the stream in the sandbox's request log (cleared before each child);
* sandbox CPU seconds: the server process's CPU time while the child ran (from /proc), to tell
  whether the server, not the client, is what limits the raw figures.

Medians over the runs are reported; peak RSS is the maximum over the runs. ``--memory-check``
instead starts the sandbox twice (``--memory-small`` customers, then ``--customers``) and compares
the tap's peak RSS on customers at both sizes: flat memory means a ratio near 1 (the target is
within 10%).

Other options: ``--tap-ref REF`` measures ``tap_custobar/`` as of a git ref (a snapshot first on
the tap's PYTHONPATH) rather than the working tree, so a run is not disturbed by edits in progress
and before/after figures name their commit; ``--quiet-wait`` waits (untimed) for other work on the
machine to calm down before each run, and the "other CPU s" column says how much there still was;
``--raw-gc on`` keeps the raw client's garbage collector on (see raw_client.py);
``--raw-event-id`` has the raw client compute events' ``event_id`` too (a stricter floor);
``--instructions`` runs the timed runs under valgrind's callgrind and compares instruction
counts, which other work on a shared machine cannot disturb (about 50 times slower).

Never a timed test: nothing here asserts a speed; it prints figures.
"""

# ruff: noqa: S603, S607, S310 - starting processes and local HTTP requests is the point
from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CALLGRIND = ("valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null")
CALLGRIND_TOTAL = re.compile(r"Collected : ([\d,]+)")
RAW_CLIENT = Path(__file__).resolve().parent / "raw_client.py"
STREAMS = ("customers", "products", "sales", "events")
# The sandbox's event types (tests/sandbox/data.py EVENT_TYPES, also the tap's documented ones);
# not imported, to keep this process (whose RSS is a floor under every child's ru_maxrss) small.
EVENT_TYPES = (
    "MAIL_OPEN",
    "MAIL_CLICK",
    "BASKET_ADD",
    "BROWSE",
    "AUTOMATED_CAMPAIGN",
    "MAIL_DEFERRED",
    "MAIL_UNSUBSCRIBE",
    "MAIL_BLOCKED",
)
# Every Singer message line starts with its type (the tap writes with msgspec, compact); a RECORD
# line is one that follows a newline with this prefix.
RECORD_PREFIX = b'\n{"type":"RECORD"'
READ_CHUNK = 1 << 20
MB = 1024 * 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count() or 1


# --- the sandbox -----------------------------------------------------------------------------


class SandboxProcess:
    """``python -m tests.sandbox`` as a child process; stopped by ``stop()`` whatever happens."""

    def __init__(self, sizes: dict[str, int], workdir: Path) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.token = ""
        self.startup_seconds = 0.0

    def start(self, timeout: float) -> None:
        command = [
            sys.executable, "-m", "tests.sandbox", "--port", "0",
            "--customers", str(self.sizes["customers"]),
            "--products", str(self.sizes["products"]),
            "--sales", str(self.sizes["sales"]),
            "--events-per-type", str(self.sizes["events_per_type"]),
        ]  # fmt: skip
        self._stderr_path = self.workdir / f"sandbox-{self.sizes['customers']}.stderr"
        started = time.perf_counter()
        with open(self._stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        lines: queue.Queue[bytes] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=_pump_lines, args=(self.proc.stdout, lines), daemon=True).start()
        deadline = started + timeout
        while not (self.url and self.token):
            try:
                line = lines.get(timeout=0.5).decode("utf-8", "replace").strip()
            except queue.Empty:
                line = ""
            if line.startswith("SANDBOX_URL="):
                self.url = line.partition("=")[2]
            elif line.startswith("SANDBOX_TOKEN="):
                self.token = line.partition("=")[2]
            elif self.proc.poll() is not None and lines.empty():
                raise RuntimeError(
                    f"the sandbox exited ({self.proc.returncode}):\n{self.stderr_tail()}"
                )
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the sandbox did not start within {timeout:.0f} s")
        self.startup_seconds = time.perf_counter() - started

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self._stderr_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (all its threads)."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()  # fields[0] is the state, the 3rd field
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def clear_requests(self) -> None:
        request = urllib.request.Request(f"{self.url}/_sandbox/clear-requests", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.url}/_sandbox/requests", timeout=60) as response:
            return json.loads(response.read())


def _pump_lines(pipe: Any, lines: queue.Queue[bytes]) -> None:
    for line in pipe:
        lines.put(line)


# --- one measured child ----------------------------------------------------------------------


class RecordCounter(threading.Thread):
    """Drains a child's stdout, counting bytes and RECORD lines.

    Reads into one preallocated buffer: fresh megabyte-sized bytes objects per read would make
    this process's RSS creep up (malloc arenas), and that RSS is a floor under every child's
    ru_maxrss.
    """

    def __init__(self, pipe: Any) -> None:
        super().__init__(daemon=True, name="record-counter")
        self.fd = pipe.fileno()
        self.records = 0
        self.bytes = 0

    def run(self) -> None:
        prefix = RECORD_PREFIX
        keep = len(prefix) - 1  # too short to hold a whole match: none is counted twice
        # buffer[:keep] holds the last bytes of the previous read; at first a newline, since
        # the first line follows none.
        buffer = bytearray(keep + READ_CHUNK)
        buffer[keep - 1] = ord("\n")
        target = [memoryview(buffer)[keep:]]
        readv, fd = os.readv, self.fd
        while count := readv(fd, target):
            self.bytes += count
            self.records += buffer.count(prefix, 0, keep + count)
            buffer[:keep] = buffer[count : count + keep]


@dataclass
class Measure:
    role: str  # "raw" or "tap"
    stream: str
    run: int  # 0: the warm-up
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    records: int
    stdout_mb: float
    requests: int  # to the stream's endpoint
    other_requests: int
    non_200: int
    sandbox_cpu_s: float
    rss_floor_mb: float  # this process's peak RSS at the spawn: a floor under peak_rss_mb
    # CPU seconds the machine spent meanwhile on anything but the child, the sandbox and this
    # process: other people's work competing for the same cores (noise in wall_s).
    foreign_cpu_s: float
    first_pages: list[str] = field(default_factory=list)  # query strings without a cursor
    instructions: int | None = None  # --instructions: what callgrind counted for the child


def run_child(
    role: str,
    stream: str,
    run: int,
    command: list[str],
    sandbox: SandboxProcess,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Measure:
    stderr_path = workdir / f"{role}-{stream}-{run}.stderr"
    sandbox.clear_requests()
    rss_floor = own_peak_rss_mb()
    sandbox_cpu, busy, own_cpu = sandbox.cpu_seconds(), machine_busy_seconds(), own_cpu_seconds()
    with open(stderr_path, "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            counter = RecordCounter(proc.stdout)
            counter.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    counter.join()
    assert proc.stdout is not None
    proc.stdout.close()
    sandbox_cpu = sandbox.cpu_seconds() - sandbox_cpu
    own_cpu = own_cpu_seconds() - own_cpu
    busy = machine_busy_seconds() - busy
    if proc.returncode != 0:
        tail = "\n".join(stderr_path.read_text("utf-8", "replace").splitlines()[-15:])
        raise RuntimeError(f"{role} on {stream} exited with {proc.returncode}:\n{tail}")
    log = sandbox.requests()
    mine = [entry for entry in log if entry.get("stream") == stream]
    counted = CALLGRIND_TOTAL.search(stderr_path.read_text("utf-8", "replace"))
    return Measure(
        role=role,
        stream=stream,
        run=run,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        records=counter.records,
        stdout_mb=counter.bytes / MB,
        requests=len(mine),
        other_requests=len(log) - len(mine),
        non_200=sum(1 for entry in log if entry.get("status") != 200),
        sandbox_cpu_s=sandbox_cpu,
        rss_floor_mb=rss_floor,
        foreign_cpu_s=max(0.0, busy - usage.ru_utime - usage.ru_stime - sandbox_cpu - own_cpu),
        first_pages=sorted(
            entry["query"] for entry in mine if "cursor" not in (entry.get("params") or {})
        ),
        instructions=int(counted.group(1).replace(",", "")) if counted else None,
    )


def own_peak_rss_mb() -> float:
    """This process's peak RSS: Linux carries it over into a child's ru_maxrss at its exec."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat; idle and iowait left out)."""
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS


# --- commands --------------------------------------------------------------------------------


def tap_executable() -> str:
    beside = Path(sys.executable).parent / "tap-custobar"
    found = str(beside) if beside.exists() else shutil.which("tap-custobar")
    if not found:
        raise RuntimeError(
            "tap-custobar is not installed next to this Python (use .venv/bin/python)"
        )
    return found


class Commands:
    """The raw client's and the tap's command lines for one sandbox."""

    def __init__(
        self, sandbox: SandboxProcess, page_size: int, workdir: Path, tap_env: dict[str, str] | None
    ) -> None:
        self.sandbox = sandbox
        self.page_size = page_size
        self.workdir = workdir
        self.tap = tap_executable()
        self.sdk_path = False  # True: the SDK's per-record path (benchmarks/tap_sdk_path.py)
        self.tap_env = tap_env  # None: this process's environment (the working tree's tap)
        self.raw_gc = "off"
        self.raw_event_id = False  # True: the raw client also computes event_id for events
        self.timed_prefix: list[str] = []  # --instructions: the timed runs go under callgrind
        self.config = workdir / f"config-{sandbox.sizes['customers']}.json"
        config = {
            "api_token": sandbox.token,
            "base_url": sandbox.url,
            "min_request_interval": 0,
            "page_size": page_size,
            "event_types": list(EVENT_TYPES),
        }
        self.config.write_text(json.dumps(config))
        self._catalog: dict[str, Any] | None = None
        self.properties: dict[str, int] = {}  # per stream, in the discovered catalog

    def raw(self, stream: str) -> list[str]:
        return [
            sys.executable, str(RAW_CLIENT),
            "--base-url", self.sandbox.url, "--token", self.sandbox.token,
            "--stream", stream, "--page-size", str(self.page_size),
            "--event-types", ",".join(EVENT_TYPES), "--gc", self.raw_gc,
            *(["--event-id"] if self.raw_event_id else []),
        ]  # fmt: skip

    def tap_for(self, stream: str) -> list[str]:
        tap = [sys.executable, "-m", "benchmarks.tap_sdk_path"] if self.sdk_path else [self.tap]
        return [*tap, "--config", str(self.config), "--catalog", str(self.catalog_for(stream))]

    def catalog_for(self, stream: str) -> Path:
        """A discovered catalog with only ``stream`` selected (discovery itself is not timed)."""
        if self._catalog is None:
            done = subprocess.run(
                [self.tap, "--config", str(self.config), "--discover"],
                cwd=ROOT, env=self.tap_env, stdin=subprocess.DEVNULL, capture_output=True,
                check=False,
            )  # fmt: skip
            log = done.stderr.decode("utf-8", "replace")
            if done.returncode != 0:
                tail = "\n".join(log.splitlines()[-15:])
                raise RuntimeError(f"tap-custobar --discover failed:\n{tail}")
            if "discovery failed" in log.lower():
                # A catalog without the custom fields makes the tap drop them: less work, and
                # figures that flatter it.
                lines = [line for line in log.splitlines() if "discovery failed" in line.lower()]
                raise RuntimeError("tap-custobar --discover fell back:\n" + "\n".join(lines))
            self._catalog = json.loads(done.stdout)
            for entry in self._catalog["streams"]:
                self.properties[entry["tap_stream_id"]] = len(
                    entry.get("schema", {}).get("properties", {})
                )
        catalog = json.loads(json.dumps(self._catalog))
        names = [entry["tap_stream_id"] for entry in catalog["streams"]]
        if stream not in names:
            raise RuntimeError(f"the discovered catalog has no stream {stream!r} ({names})")
        for entry in catalog["streams"]:
            for metadata in entry.get("metadata", []):
                if metadata.get("breadcrumb") == []:
                    metadata["metadata"]["selected"] = entry["tap_stream_id"] == stream
        path = self.workdir / f"catalog-{self.sandbox.sizes['customers']}-{stream}.json"
        path.write_text(json.dumps(catalog))
        return path


# --- one stream: warm-up, then raw and tap alternately ---------------------------------------


def wait_for_quiet(max_wait: float, threshold: float = 0.10) -> None:
    """Wait (untimed) until the machine's other work uses under ``threshold`` of its CPUs."""
    if max_wait <= 0:
        return
    deadline = time.perf_counter() + max_wait
    while True:
        before, own = machine_busy_seconds(), own_cpu_seconds()
        time.sleep(1.0)
        load = (machine_busy_seconds() - before - (own_cpu_seconds() - own)) / CPUS
        if load < threshold:
            return
        if time.perf_counter() > deadline:
            progress(
                f"the machine is still {load:.0%} busy after {max_wait:.0f} s: measuring anyway"
            )
            return


def measure_stream(
    stream: str, commands: Commands, runs: int, warmups: int, workdir: Path, quiet_wait: float
) -> list[Measure]:
    sandbox = commands.sandbox
    tap_command = commands.tap_for(stream)  # discovery happens here, before anything is timed
    progress(f"{stream}: the discovered catalog has {commands.properties[stream]} properties")
    measures = []
    for run in range(1, warmups + 1):
        warm = run_child("raw", stream, -run, commands.raw(stream), sandbox, workdir)
        progress(
            f"{stream} warm-up (raw, not counted): {warm.wall_s:.2f} s, {warm.records:,} records, "
            f"sandbox CPU {warm.sandbox_cpu_s:.2f} s"
        )
    for run in range(1, runs + 1):
        for role, command, env in (
            ("raw", commands.raw(stream), None),
            ("tap", tap_command, commands.tap_env),
        ):
            wait_for_quiet(quiet_wait)
            command = [*commands.timed_prefix, *command]
            measure = run_child(role, stream, run, command, sandbox, workdir, env)
            measures.append(measure)
            progress(
                f"{stream} {role} #{run}: {measure.wall_s:.2f} s wall, {measure.cpu_s:.2f} s CPU, "
                f"{measure.records:,} records, {measure.requests} requests, "
                f"peak RSS {measure.peak_rss_mb:.1f} MB, "
                f"sandbox CPU {measure.sandbox_cpu_s:.2f} s, "
                f"other CPU {measure.foreign_cpu_s:.2f} s"
            )
    return measures


def summarize(measures: list[Measure]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for role in ("raw", "tap"):
        mine = [m for m in measures if m.role == role]
        wall = statistics.median(m.wall_s for m in mine)
        records = int(statistics.median(m.records for m in mine))
        summary[role] = {
            "runs": len(mine),
            "median_wall_s": wall,
            "median_cpu_s": statistics.median(m.cpu_s for m in mine),
            "median_user_s": statistics.median(m.user_s for m in mine),
            "median_sys_s": statistics.median(m.sys_s for m in mine),
            "records": records,
            "records_consistent": len({m.records for m in mine}) == 1,
            "records_per_s": records / wall if wall else 0.0,
            "peak_rss_mb": max(m.peak_rss_mb for m in mine),
            "rss_at_floor": any(m.peak_rss_mb <= m.rss_floor_mb + 1 for m in mine),
            "requests": max(m.requests for m in mine),
            "requests_consistent": len({m.requests for m in mine}) == 1,
            "non_200": max(m.non_200 for m in mine),
            "other_requests": max(m.other_requests for m in mine),
            "median_sandbox_cpu_s": statistics.median(m.sandbox_cpu_s for m in mine),
            "median_foreign_cpu_s": statistics.median(m.foreign_cpu_s for m in mine),
            "foreign_load": max(m.foreign_cpu_s / (m.wall_s * CPUS) for m in mine),
            "stdout_mb": statistics.median(m.stdout_mb for m in mine),
            "first_pages": mine[0].first_pages,
            "instructions": (
                statistics.median(counts)
                if (counts := [m.instructions for m in mine if m.instructions is not None])
                else None
            ),
        }
    raw, tap = summary["raw"], summary["tap"]
    summary["ratio_wall"] = tap["median_wall_s"] / raw["median_wall_s"]
    summary["ratio_cpu"] = (
        tap["median_cpu_s"] / raw["median_cpu_s"] if raw["median_cpu_s"] else None
    )
    summary["ratio_instructions"] = (
        tap["instructions"] / raw["instructions"]
        if tap["instructions"] and raw["instructions"]
        else None
    )
    summary["warnings"] = warnings_for(summary)
    return summary


def warnings_for(summary: dict[str, Any]) -> list[str]:
    raw, tap = summary["raw"], summary["tap"]
    found = []
    if raw["records"] != tap["records"]:
        found.append(f"RECORD counts differ: raw {raw['records']:,}, tap {tap['records']:,}")
    for role, numbers in (("raw", raw), ("tap", tap)):
        if not numbers["records_consistent"]:
            found.append(f"{role}: the record count varied between runs")
        if not numbers["requests_consistent"]:
            found.append(f"{role}: the request count varied between runs")
        if numbers["non_200"]:
            found.append(f"{role}: {numbers['non_200']} request(s) were not answered 200")
        if numbers["foreign_load"] > 0.05:
            found.append(
                f"{role}: other processes used up to {numbers['foreign_load']:.0%} of the "
                f"machine's {CPUS} CPUs during a run: wall times are noisy, CPU s less so"
            )
        if numbers["rss_at_floor"]:
            found.append(
                f"{role}: peak RSS is at this process's own (the floor ru_maxrss cannot go "
                "under): the child's true peak may be lower"
            )
        if numbers["other_requests"]:
            found.append(f"{role}: {numbers['other_requests']} request(s) to other endpoints")
    if sorted(map(_query_key, raw["first_pages"])) != sorted(map(_query_key, tap["first_pages"])):
        found.append(
            f"first-page queries differ: raw {raw['first_pages']}, tap {tap['first_pages']}"
        )
    return found


def _query_key(query: str) -> tuple[str, ...]:
    return tuple(sorted(query.split("&")))


# --- output ----------------------------------------------------------------------------------


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def format_table(stream: str, summary: dict[str, Any]) -> str:
    raw, tap = summary["raw"], summary["tap"]
    header = (
        f"== {stream}: {tap['records']:,} records, {tap['requests']} requests per run "
        f"(raw {raw['requests']}); medians of {tap['runs']} runs each, peak RSS = max over runs"
    )
    columns = (
        f"{'':8}{'wall s':>9}{'CPU s':>9}{'records/s':>12}{'peak RSS MB':>13}"
        f"{'requests':>10}{'sandbox CPU s':>15}{'other CPU s':>13}{'stdout MB':>11}"
    )
    rows = [header, columns]
    for role, numbers in (("raw", raw), ("tap", tap)):
        rows.append(
            f"{role:8}{numbers['median_wall_s']:9.2f}{numbers['median_cpu_s']:9.2f}"
            f"{numbers['records_per_s']:12,.0f}{numbers['peak_rss_mb']:13.1f}"
            f"{numbers['requests']:10d}{numbers['median_sandbox_cpu_s']:15.2f}"
            f"{numbers['median_foreign_cpu_s']:13.2f}{numbers['stdout_mb']:11.1f}"
        )
    cpu_ratio = summary["ratio_cpu"]
    rows.append(
        f"{'tap/raw':8}{summary['ratio_wall']:8.2f}x"
        + (f"{cpu_ratio:8.2f}x" if cpu_ratio is not None else f"{'-':>9}")
        + f"{tap['records_per_s'] / raw['records_per_s'] if raw['records_per_s'] else 0:11.2f}x"
        + f"{tap['peak_rss_mb'] / raw['peak_rss_mb']:12.2f}x"
    )
    if summary["ratio_instructions"] is not None:
        raw_g, tap_g = raw["instructions"] / 1e9, tap["instructions"] / 1e9
        rows.append(
            f"{'instr':8}raw {raw_g:.2f} G, tap {tap_g:.2f} G = "
            f"{summary['ratio_instructions']:.2f}x (callgrind; wall, CPU and RSS above are "
            "valgrind's)"
        )
    rows.extend(f"   ! {warning}" for warning in summary["warnings"])
    return "\n".join(rows)


# --- the two modes ---------------------------------------------------------------------------


def dataset_sizes(args: argparse.Namespace, customers: int, streams: list[str]) -> dict[str, int]:
    """Sandbox sizes; streams not measured get (nearly) empty, to spare generation time.

    By default every stream gets about N records, so that no stream's ratio is dominated by
    the fixed start-up cost of a short run: N products, 2N/5 sales transactions (2.4 rows
    each on average) and N/8 events of each of the 8 types.
    """
    sizes = {
        "customers": customers,
        "products": args.products if args.products is not None else max(20, customers),
        "sales": args.sales if args.sales is not None else customers * 2 // 5,
        "events_per_type": (
            args.events_per_type if args.events_per_type is not None else customers // 8
        ),
    }
    if "products" not in streams:
        sizes["products"] = 20  # sales and events refer to products
    if "sales" not in streams:
        sizes["sales"] = 0
    if "events" not in streams:
        sizes["events_per_type"] = 0
    return sizes


def with_sandbox(
    args: argparse.Namespace, sizes: dict[str, int], workdir: Path, streams: list[str]
) -> tuple[dict[str, list[Measure]], float, dict[str, int]]:
    """Start the sandbox, measure ``streams`` on it, stop it; (measures, start-up s, properties)."""
    sandbox = SandboxProcess(sizes, workdir)
    try:
        progress(f"starting the sandbox: {sizes}")
        sandbox.start(args.startup_timeout)
        progress(
            f"sandbox up at {sandbox.url} after {sandbox.startup_seconds:.1f} s (not measured)"
        )
        commands = Commands(sandbox, args.page_size, workdir, args.tap_env)
        commands.sdk_path = args.sdk_path
        commands.raw_gc = args.raw_gc
        commands.raw_event_id = args.raw_event_id
        if args.instructions:
            commands.timed_prefix = list(CALLGRIND)
        results = {}
        for stream in streams:
            results[stream] = measure_stream(
                stream, commands, args.runs, args.warmup, workdir, args.quiet_wait
            )
        return results, sandbox.startup_seconds, commands.properties
    finally:
        sandbox.stop()


def benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    streams = args.streams
    sizes = dataset_sizes(args, args.customers, streams)
    results, startup, properties = with_sandbox(args, sizes, workdir, streams)
    report: dict[str, Any] = {
        "sizes": sizes,
        "sandbox_startup_s": startup,
        "catalog_properties": properties,
        "streams": {},
    }
    print()
    for stream in streams:
        summary = summarize(results[stream])
        report["streams"][stream] = {
            "summary": summary,
            "runs": [asdict(m) for m in results[stream]],
        }
        print(format_table(stream, summary))
        print()
    if len(streams) > 1:
        raw_wall = sum(report["streams"][s]["summary"]["raw"]["median_wall_s"] for s in streams)
        tap_wall = sum(report["streams"][s]["summary"]["tap"]["median_wall_s"] for s in streams)
        raw_cpu = sum(report["streams"][s]["summary"]["raw"]["median_cpu_s"] for s in streams)
        tap_cpu = sum(report["streams"][s]["summary"]["tap"]["median_cpu_s"] for s in streams)
        report["all_streams"] = {"ratio_wall": tap_wall / raw_wall, "ratio_cpu": tap_cpu / raw_cpu}
        print(
            f"all streams ({', '.join(streams)}): tap {tap_wall:.2f} s vs raw {raw_wall:.2f} s "
            f"wall = {tap_wall / raw_wall:.2f}x; CPU {tap_cpu:.2f} s vs {raw_cpu:.2f} s = "
            f"{tap_cpu / raw_cpu:.2f}x"
        )
    if "customers" in streams:
        summary = report["streams"]["customers"]["summary"]
        print(
            f"OVERALL customers ({summary['tap']['records']:,} records): tap/raw = "
            f"{summary['ratio_wall']:.2f}x wall, {summary['ratio_cpu']:.2f}x CPU "
            f"(tap {summary['tap']['records_per_s']:,.0f} rec/s, "
            f"raw {summary['raw']['records_per_s']:,.0f} rec/s)"
        )
    return report


def memory_check(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"sizes": {}, "streams": {}}
    peaks = {}
    print()
    for customers in (args.memory_small, args.customers):
        sizes = dataset_sizes(args, customers, ["customers"])
        results, startup, _ = with_sandbox(args, sizes, workdir, ["customers"])
        summary = summarize(results["customers"])
        key = str(customers)
        report["sizes"][key] = sizes
        report["streams"][key] = {
            "summary": summary,
            "sandbox_startup_s": startup,
            "runs": [asdict(m) for m in results["customers"]],
        }
        peaks[customers] = (summary["tap"]["peak_rss_mb"], summary["raw"]["peak_rss_mb"])
        print(format_table(f"customers at N={customers:,}", summary))
        print()
    small, large = peaks[args.memory_small], peaks[args.customers]
    ratio = large[0] / small[0]
    report["memory_check"] = {
        "small_customers": args.memory_small,
        "large_customers": args.customers,
        "tap_peak_rss_mb": {"small": small[0], "large": large[0]},
        "raw_peak_rss_mb": {"small": small[1], "large": large[1]},
        "tap_ratio": ratio,
        "within_10_percent": ratio <= 1.10,
    }
    print(
        f"MEMORY customers: tap peak RSS {small[0]:.1f} MB at N={args.memory_small:,}, "
        f"{large[0]:.1f} MB at N={args.customers:,}: ratio {ratio:.3f} "
        f"({'within' if ratio <= 1.10 else 'NOT within'} the 10% target); "
        f"raw client {small[1]:.1f} MB -> {large[1]:.1f} MB"
    )
    return report


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="tap-custobar vs a raw requests+msgspec client, against the local sandbox.",
    )
    parser.add_argument("--customers", type=int, default=100000)
    parser.add_argument("--products", type=int, help="default: customers (at least 20)")
    parser.add_argument(
        "--sales", type=int, help="transactions (1-4 rows each); default: customers * 2/5"
    )
    parser.add_argument("--events-per-type", type=int, help="default: customers / 8 (8 types)")
    parser.add_argument(
        "--streams", default=",".join(STREAMS),
        help="comma-separated; streams left out get an (almost) empty sandbox table",
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, alternating")
    parser.add_argument("--warmup", type=int, default=1, help="untimed raw reads per stream first")
    parser.add_argument("--page-size", type=int, default=10000)
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--memory-check", action="store_true",
        help="instead: tap peak RSS on customers at --memory-small and at --customers",
    )  # fmt: skip
    parser.add_argument("--memory-small", type=int, default=100000)
    parser.add_argument("--startup-timeout", type=float, default=1800, help="seconds")
    parser.add_argument(
        "--quiet-wait", type=float, default=30,
        help="before each timed run, wait up to this many seconds (untimed) for other work on "
        "the machine to fall under 10%% of its CPUs; 0: don't wait",
    )  # fmt: skip
    parser.add_argument(
        "--raw-gc", choices=("on", "off"), default="off",
        help="the raw client's cyclic garbage collector (default off: see raw_client.py)",
    )  # fmt: skip
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="run the timed runs under valgrind's callgrind and compare instruction counts: "
        "about 50 times slower, but free of the noise other work on the machine adds to wall "
        "and CPU times (needs valgrind)",
    )
    parser.add_argument(
        "--raw-event-id",
        action="store_true",
        help="the raw client also computes event_id for events (a stricter floor: the hash "
        "every conforming tap must pay)",
    )
    parser.add_argument(
        "--sdk-path",
        action="store_true",
        help="run the tap with its page-at-a-time path off (the SDK's per-record path)",
    )
    parser.add_argument(
        "--tap-ref",
        help="measure tap_custobar/ as of this git ref (e.g. HEAD, a commit) instead of the "
        "working tree: a snapshot put first on the tap's PYTHONPATH; the venv's dependencies",
    )
    args = parser.parse_args(argv)
    args.streams = [name.strip() for name in args.streams.split(",") if name.strip()]
    unknown = sorted(set(args.streams) - set(STREAMS))
    if unknown or not args.streams:
        parser.error(f"--streams: unknown {unknown}; streams are {', '.join(STREAMS)}")
    if args.runs < 1 or args.warmup < 0 or not 1 <= args.page_size <= 10000:
        parser.error("--runs >= 1, --warmup >= 0 and 1 <= --page-size <= 10000")
    if args.instructions and not shutil.which("valgrind"):
        parser.error("--instructions needs valgrind on PATH")
    if args.memory_check and args.memory_small == args.customers:
        parser.error("--memory-check needs --customers different from --memory-small")
    return args


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    def git(*command: str) -> str:
        done = subprocess.run(
            ["git", *command], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    try:
        from importlib.metadata import version

        sdk = version("singer-sdk")
    except Exception:  # informative only
        sdk = "?"
    return {
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "singer_sdk": sdk,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "tap_custobar")),
        "tap_ref": args.tap_ref,
        "raw_gc": args.raw_gc,
        "raw_event_id": args.raw_event_id,
        "instructions": args.instructions,
        "runs": args.runs,
        "warmup": args.warmup,
        "page_size": args.page_size,
        "stdout": "pipe to the benchmark process, which counts RECORD lines",
    }


def snapshot_tap(ref: str, workdir: Path) -> tuple[dict[str, str], str]:
    """tap_custobar/ as of ``ref`` in ``workdir``: (the tap's environment, a description)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if commit.returncode != 0:
        raise RuntimeError(f"--tap-ref {ref}: not a commit ({commit.stderr.strip()})")
    sha = commit.stdout.strip()
    source = workdir / "tap-source"
    source.mkdir()
    archive = workdir / "tap-source.tar"
    subprocess.run(
        ["git", "archive", "--format=tar", f"--output={archive}", sha, "tap_custobar"],
        cwd=ROOT, check=True,
    )  # fmt: skip
    subprocess.run(["tar", "-xf", str(archive), "-C", str(source)], check=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), env.get("PYTHONPATH")]))
    return env, f"git {ref} = {sha[:12]} (snapshot at {source / 'tap_custobar'})"


def tap_source(args: argparse.Namespace, workdir: Path) -> str:
    """Where the tap's code comes from; checks that the tap really imports it from there."""
    if args.tap_ref:
        args.tap_env, description = snapshot_tap(args.tap_ref, workdir)
    else:
        args.tap_env = None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tap_custobar"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        description = f"working tree (HEAD {head}{', tap_custobar/ modified' if dirty else ''})"
    interpreter = Path(tap_executable()).read_text(errors="replace").splitlines()[0][2:].strip()
    found = subprocess.run(
        [interpreter, "-c", "import tap_custobar; print(tap_custobar.__file__)"],
        cwd=workdir,  # not ROOT: `-c` puts the current folder first on sys.path
        env=args.tap_env, capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    expected = (workdir / "tap-source") if args.tap_ref else ROOT
    if not found or not Path(found).resolve().is_relative_to(expected.resolve()):
        raise RuntimeError(f"the tap would import tap_custobar from {found!r}, not {expected}")
    return description


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every finally: children are stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    began = time.perf_counter()
    meta = metadata(args)
    try:
        with tempfile.TemporaryDirectory(prefix="tap-custobar-bench-") as directory:
            workdir = Path(directory)
            meta["tap_source"] = tap_source(args, workdir)
            print(f"tap-custobar: {meta['tap_source']}", flush=True)
            if args.raw_event_id:
                print("raw: computes event_id for events (--raw-event-id)", flush=True)
            report = memory_check(args, workdir) if args.memory_check else benchmark(args, workdir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    meta["total_s"] = time.perf_counter() - began
    # Every child's ru_maxrss is at least this process's RSS when it was spawned (Linux keeps
    # the pre-exec high-water mark), so this is the floor of the peak RSS column.
    meta["bench_process_peak_rss_mb"] = own_peak_rss_mb()
    report = {"meta": meta, **report}
    print(
        f"total {meta['total_s']:.1f} s (sandbox start-up included); this process's peak RSS "
        f"{meta['bench_process_peak_rss_mb']:.1f} MB is the floor of the peak RSS figures; "
        f"{meta['cpus']} CPUs shared by sandbox, child and counter (and whatever else runs: "
        "'other CPU s')"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
