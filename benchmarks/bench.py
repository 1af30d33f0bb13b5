"""Throughput, CPU and peak memory of tap-custobar against the sandbox, next to the raw limit.

    .venv/bin/python -m benchmarks.bench --customers 1000000 --runs 3
    .venv/bin/python -m benchmarks.bench --customers 100000 --streams customers,events
    .venv/bin/python -m benchmarks.bench --customers 1000000 --memory-check

The sandbox (``python -m tests.sandbox``) runs as a child process on a free port; its start-up
(data generation) is never measured. Per stream, after an untimed warm-up read that fills the
sandbox's page caches, the raw client (benchmarks/raw_client.py: requests + msgspec, one Singer
RECORD line per record) and tap-custobar (a discovered catalog with only that stream selected)
run alternately, ``--runs`` times each, as child processes writing to a pipe read here. For each:
wall seconds from spawn to reaping; CPU seconds and peak RSS from ``os.wait4``; RECORD lines
counted on its stdout; requests from the sandbox's request log (cleared before each child); and
the sandbox process's CPU seconds meanwhile (from /proc), which tells whether the server, not
the client, limits the raw figures. Medians over the runs; peak RSS is the maximum.

``--memory-check`` instead starts the sandbox at ``--memory-small`` customers (default 100,000
or half of N), then at ``--customers``, and compares the tap's peak RSS on customers: flat
memory means a ratio near 1 (the target is within 10%). Never a test: it asserts no speed.
"""

# ruff: noqa: S603, S310 - starting processes and local HTTP requests is the point
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.sandbox import EVENT_TYPES, STREAMS

ROOT = Path(__file__).resolve().parent.parent
RAW_CLIENT = Path(__file__).resolve().parent / "raw_client.py"
RECORD_LINE = b'\n{"type":"RECORD"'  # the tap and the raw client write compact JSON lines
MB = 1024 * 1024


def process_cpu_seconds(pid: int, *, children: bool) -> float:
    """User + system CPU seconds of a live process (plus its reaped children's, if asked)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class SandboxProcess:
    """``python -m tests.sandbox`` as a child process, serving data set ``sizes``."""

    def __init__(self, sizes: dict[str, int], timeout: float) -> None:
        command = [sys.executable, "-m", "tests.sandbox", "--port", "0"]
        for name, size in sizes.items():
            command += [f"--{name.replace('_', '-')}", str(size)]
        started = time.perf_counter()
        self.proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        timer = threading.Timer(timeout, self.proc.kill)  # a hung start-up ends the readline
        timer.start()
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip().removeprefix("SANDBOX_URL=")
        self.token = self.proc.stdout.readline().decode().strip().removeprefix("SANDBOX_TOKEN=")
        timer.cancel()
        if not self.token:
            self.stop()
            raise RuntimeError(f"the sandbox did not start within {timeout:.0f} s")
        self.startup_seconds = time.perf_counter() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the server process has used so far (all its threads)."""
        return process_cpu_seconds(self.proc.pid, children=False)

    def requests(self, *, clear: bool = False) -> list[dict[str, Any]]:
        if clear:
            request = urllib.request.Request(f"{self.url}/_sandbox/clear-requests", method="POST")
            urllib.request.urlopen(request, timeout=60).close()
            return []
        with urllib.request.urlopen(f"{self.url}/_sandbox/requests", timeout=60) as response:
            return json.loads(response.read())


@dataclass
class Measure:
    role: str  # "raw" or "tap"
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    records: int
    stdout_mb: float
    requests: int  # to the stream's endpoint
    non_200: int
    sandbox_cpu_s: float
    first_pages: list[str]  # query strings without a cursor


def count_records(pipe: Any, counts: dict[str, int]) -> None:
    """Drain a child's stdout, counting bytes and RECORD lines (a match spans two reads once)."""
    tail = b"\n"  # the first line follows no newline
    while chunk := pipe.read1(MB):
        counts["bytes"] += len(chunk)
        counts["records"] += (tail + chunk).count(RECORD_LINE)
        tail = chunk[-(len(RECORD_LINE) - 1) :]


def run_child(role: str, stream: str, run: int, command: list[str], sandbox: SandboxProcess,
              workdir: Path) -> Measure:  # fmt: skip
    sandbox.requests(clear=True)
    sandbox_cpu = sandbox.cpu_seconds()
    stderr_path = workdir / f"{role}-{stream}-{run}.stderr"
    counts = {"records": 0, "bytes": 0}
    with open(stderr_path, "wb") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr)
        counter = threading.Thread(target=count_records, args=(proc.stdout, counts))
        counter.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        counter.join()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = stderr_path.read_text("utf-8", "replace").splitlines()[-15:]
        raise RuntimeError(f"{role} on {stream} failed:\n" + "\n".join(tail))
    log = sandbox.requests()
    mine = [entry for entry in log if entry.get("stream") == stream]
    return Measure(
        role=role,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        records=counts["records"],
        stdout_mb=counts["bytes"] / MB,
        requests=len(mine),
        non_200=sum(1 for entry in log if entry.get("status") != 200),
        sandbox_cpu_s=sandbox.cpu_seconds() - sandbox_cpu,
        first_pages=sorted(e["query"] for e in mine if "cursor" not in (e.get("params") or {})),
    )


class Commands:
    """The raw client's and the tap's command lines for one sandbox."""

    def __init__(self, sandbox: SandboxProcess, args: argparse.Namespace, workdir: Path) -> None:
        self.sandbox, self.args, self.workdir = sandbox, args, workdir
        self.config = workdir / "config.json"
        self.config.write_text(json.dumps({
            "api_token": sandbox.token, "base_url": sandbox.url, "min_request_interval": 0,
            "page_size": args.page_size, "event_types": list(EVENT_TYPES),
        }))  # fmt: skip
        tap = str(Path(sys.executable).parent / "tap-custobar")
        self.tap = [sys.executable, "-m", "benchmarks.tap_sdk_path"] if args.sdk_path else [tap]
        discovered = subprocess.run(
            [tap, "--config", str(self.config), "--discover"], cwd=ROOT, capture_output=True
        )
        log = discovered.stderr.decode("utf-8", "replace")
        if discovered.returncode != 0 or "discovery failed" in log.lower():
            # A catalog without the custom fields would make the tap drop them: flattering.
            raise RuntimeError("tap-custobar --discover failed:\n" + log[-3000:])
        self.catalog = json.loads(discovered.stdout)

    def raw(self, stream: str) -> list[str]:
        return [
            sys.executable, str(RAW_CLIENT), "--base-url", self.sandbox.url,
            "--token", self.sandbox.token, "--stream", stream,
            "--page-size", str(self.args.page_size), "--event-types", ",".join(EVENT_TYPES),
            *(["--event-id"] if self.args.raw_event_id else []),
        ]  # fmt: skip

    def tap_for(self, stream: str) -> list[str]:
        catalog = json.loads(json.dumps(self.catalog))
        for entry in catalog["streams"]:
            for item in entry["metadata"]:
                if not item["breadcrumb"]:
                    item["metadata"]["selected"] = entry["tap_stream_id"] == stream
        path = self.workdir / f"catalog-{stream}.json"
        path.write_text(json.dumps(catalog))
        return [*self.tap, "--config", str(self.config), "--catalog", str(path)]


def measure_stream(stream: str, commands: Commands, args: argparse.Namespace,
                   workdir: Path) -> list[Measure]:  # fmt: skip
    sandbox = commands.sandbox
    for run in range(1, args.warmup + 1):
        warm = run_child("raw", stream, -run, commands.raw(stream), sandbox, workdir)
        progress(f"{stream} warm-up (raw, not counted): {warm.wall_s:.2f} s")
    measures = []
    for run in range(1, args.runs + 1):
        for role, command in (("raw", commands.raw(stream)), ("tap", commands.tap_for(stream))):
            measure = run_child(role, stream, run, command, sandbox, workdir)
            measures.append(measure)
            progress(
                f"{stream} {role} #{run}: {measure.wall_s:.2f} s wall, {measure.cpu_s:.2f} s CPU, "
                f"{measure.records:,} records, {measure.requests} requests, "
                f"peak RSS {measure.peak_rss_mb:.1f} MB, sandbox CPU {measure.sandbox_cpu_s:.2f} s"
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
            "records": records,
            "records_per_s": records / wall,
            "peak_rss_mb": max(m.peak_rss_mb for m in mine),
            "requests": max(m.requests for m in mine),
            "median_sandbox_cpu_s": statistics.median(m.sandbox_cpu_s for m in mine),
            "stdout_mb": statistics.median(m.stdout_mb for m in mine),
        }
        warnings = summary.setdefault("warnings", [])
        if len({(m.records, m.requests) for m in mine}) > 1:
            warnings.append(f"{role}: the record or request count varied between runs")
        if non_200 := max(m.non_200 for m in mine):
            warnings.append(f"{role}: {non_200} request(s) were not answered 200")
    raw, tap = summary["raw"], summary["tap"]
    if raw["records"] != tap["records"]:
        summary["warnings"].append(
            f"RECORD counts differ: raw {raw['records']:,}, tap {tap['records']:,}"
        )
    queries = {m.role: sorted(tuple(sorted(q.split("&"))) for q in m.first_pages) for m in measures}
    if queries["raw"] != queries["tap"]:
        summary["warnings"].append(f"first-page queries differ: {queries}")
    summary["ratio_wall"] = tap["median_wall_s"] / raw["median_wall_s"]
    summary["ratio_cpu"] = tap["median_cpu_s"] / raw["median_cpu_s"]
    return summary


def format_table(stream: str, summary: dict[str, Any]) -> str:
    raw, tap = summary["raw"], summary["tap"]
    rows = [
        f"== {stream}: {tap['records']:,} records, {tap['requests']} requests per run "
        f"(raw {raw['requests']}); medians of {tap['runs']} runs each, peak RSS = max over runs",
        f"{'':8}{'wall s':>9}{'CPU s':>9}{'records/s':>12}{'peak RSS MB':>13}"
        f"{'requests':>10}{'sandbox CPU s':>15}{'stdout MB':>11}",
    ]
    for role, numbers in (("raw", raw), ("tap", tap)):
        rows.append(
            f"{role:8}{numbers['median_wall_s']:9.2f}{numbers['median_cpu_s']:9.2f}"
            f"{numbers['records_per_s']:12,.0f}{numbers['peak_rss_mb']:13.1f}"
            f"{numbers['requests']:10d}{numbers['median_sandbox_cpu_s']:15.2f}"
            f"{numbers['stdout_mb']:11.1f}"
        )
    rows.append(
        f"{'tap/raw':8}{summary['ratio_wall']:8.2f}x{summary['ratio_cpu']:8.2f}x"
        f"{tap['records_per_s'] / raw['records_per_s']:11.2f}x"
        f"{tap['peak_rss_mb'] / raw['peak_rss_mb']:12.2f}x"
    )
    rows.extend(f"   ! {warning}" for warning in summary["warnings"])
    return "\n".join(rows)


def dataset_sizes(args: argparse.Namespace, customers: int, streams: list[str]) -> dict[str, int]:
    """About N records per stream (N products, 2N/5 sales of 2.4 rows, N/8 events of 8 types),
    so that no ratio is dominated by start-up; streams not measured (nearly) empty."""
    return {
        "customers": customers,
        "products": (args.products or max(20, customers)) if "products" in streams else 20,
        "sales": (args.sales or customers * 2 // 5) if "sales" in streams else 0,
        "events_per_type": (args.events_per_type or customers // 8) if "events" in streams else 0,
    }


def with_sandbox(args: argparse.Namespace, customers: int, streams: list[str],
                 workdir: Path) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Start the sandbox, measure ``streams`` on it, stop it: each stream's summary."""
    sizes = dataset_sizes(args, customers, streams)
    progress(f"starting the sandbox: {sizes}")
    sandbox = SandboxProcess(sizes, args.startup_timeout)
    try:
        progress(
            f"sandbox up at {sandbox.url} after {sandbox.startup_seconds:.1f} s (not measured)"
        )
        commands = Commands(sandbox, args, workdir)
        return {s: summarize(measure_stream(s, commands, args, workdir)) for s in streams}
    finally:
        sandbox.stop()


def benchmark(args: argparse.Namespace, workdir: Path) -> None:
    results = with_sandbox(args, args.customers, args.streams, workdir)
    print()
    for stream, summary in results.items():
        print(format_table(stream, summary), end="\n\n")
    if "customers" in results:
        summary = results["customers"]
        print(
            f"OVERALL customers ({summary['tap']['records']:,} records): tap/raw = "
            f"{summary['ratio_wall']:.2f}x wall, {summary['ratio_cpu']:.2f}x CPU "
            f"(tap {summary['tap']['records_per_s']:,.0f} rec/s, "
            f"raw {summary['raw']['records_per_s']:,.0f} rec/s)"
        )


def memory_check(args: argparse.Namespace, workdir: Path) -> None:
    peaks = {}
    print()
    for customers in (args.memory_small, args.customers):
        summary = with_sandbox(args, customers, ["customers"], workdir)["customers"]
        peaks[customers] = (summary["tap"]["peak_rss_mb"], summary["raw"]["peak_rss_mb"])
        print(format_table(f"customers at N={customers:,}", summary), end="\n\n")
    small, large = peaks[args.memory_small], peaks[args.customers]
    ratio = large[0] / small[0]
    print(
        f"MEMORY customers: tap peak RSS {small[0]:.1f} MB at N={args.memory_small:,}, "
        f"{large[0]:.1f} MB at N={args.customers:,}: ratio {ratio:.3f} "
        f"({'within' if ratio <= 1.10 else 'NOT within'} the 10% target); "
        f"raw client {small[1]:.1f} MB -> {large[1]:.1f} MB"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description="tap-custobar vs a raw requests+msgspec client, against the local sandbox.",
    )
    parser.add_argument("--customers", type=int, default=100000)
    parser.add_argument("--products", type=int, help="default: customers (at least 20)")
    parser.add_argument(
        "--sales", type=int, help="transactions (1-4 rows); default: customers * 2/5"
    )
    parser.add_argument("--events-per-type", type=int, help="default: customers / 8 (8 types)")
    parser.add_argument("--streams", default=",".join(STREAMS), help="comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each, alternating")
    parser.add_argument("--warmup", type=int, default=1, help="untimed raw reads per stream first")
    parser.add_argument("--page-size", type=int, default=10000)
    parser.add_argument("--memory-check", action="store_true", help="instead: peak RSS at 2 sizes")
    parser.add_argument("--memory-small", type=int, help="default: min(100000, N/2)")
    parser.add_argument("--startup-timeout", type=float, default=1800, help="seconds")
    parser.add_argument("--raw-event-id", action="store_true", help="raw computes event_id too")
    parser.add_argument("--sdk-path", action="store_true", help="tap on the SDK's per-record path")
    args = parser.parse_args(argv)
    args.streams = [name.strip() for name in args.streams.split(",") if name.strip()]
    if not args.streams or set(args.streams) - set(STREAMS):
        parser.error(f"--streams: streams are {', '.join(STREAMS)}")
    if args.runs < 1 or args.warmup < 0 or not 1 <= args.page_size <= 10000:
        parser.error("--runs >= 1, --warmup >= 0 and 1 <= --page-size <= 10000")
    # Several pages at the small size too, or the allocator's high-water mark is not reached.
    args.memory_small = args.memory_small or min(100000, args.customers // 2)
    if args.memory_check and args.memory_small == args.customers:
        parser.error("--memory-check needs --customers different from --memory-small")
    return args


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # runs finally:
    began = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="tap-custobar-bench-") as directory:
            (memory_check if args.memory_check else benchmark)(args, Path(directory))
    except RuntimeError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 1
    print(f"total {time.perf_counter() - began:.1f} s (sandbox start-up included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
