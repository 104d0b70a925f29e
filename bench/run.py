"""Benchmarks of the bulk restore portal against the real stack (``make bench``).

Starts gunicorn, qcluster processes and the simulated Multitel with a set
latency on loopback, measures, and prints a table of figures and ratios. Each
figure is the median of several runs; each ratio is taken within one run (both
of its terms measured in that run) and the median of those ratios is reported.

1. sync      a 10-number request at upstream latency L = 200 ms, against L
2. async     N numbers at L = 50 ms under a tenant cap C, against the physical
             limit N*L/C, and against a sequential client script
3. scale     PostgreSQL + Redis, one vs two qcluster processes, with a cap that
             one process cannot fill alone
4. api       POST of 10,000 numbers, status of a completed 10,000-number job,
             status filtered to one number, an authenticated request alone
5. memory    peak RSS of the qcluster processes working a 10,000 and a
             100,000-number job (webhook included)

Usage: python bench/run.py [--quick] [--sections sync,async,scale,api,memory]
       [--db postgres|sqlite] [--runs N] [--output bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import (
    PG_ADMIN_URL,
    REDIS_BASE_URL,
    Stack,
    Tenant,
    memory_kib,
    numbers,
    process_tree,
)
from tests.support.harness import PYTHON, REPO

SECTIONS = ("sync", "async", "scale", "api", "memory")


# --- Results --------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    figure: str
    values: list[float]
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        section: str,
        figure: str,
        values: list[float],
        unit: str,
        *,
        goal: str = "",
        check: Callable[[float], bool] | None = None,
        note: str = "",
    ) -> Row:
        row = Row(section, figure, values, unit, goal, None, note)
        if check is not None and values:
            row.met = check(row.median)
        self.rows.append(row)
        shown = values if len(values) <= 10 else [min(values), max(values)]
        label = "runs" if len(values) <= 10 else f"{len(values)} runs, min and max"
        print(
            f"  {figure}: {fmt(row.median, unit)} ({label}: {', '.join(fmt(v, unit) for v in shown)})",
            flush=True,
        )
        return row

    def table(self) -> str:
        lines = [
            "| # | figure | median | runs | goal | met |",
            "|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            figure = row.figure + (f" ({row.note})" if row.note else "")
            lines.append(
                f"| {row.section} | {figure} | {fmt(row.median, row.unit)} | {len(row.values)} "
                f"| {row.goal} | {met} |"
            )
        return "\n".join(lines)


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit == "queries":
        return f"{value:.0f}"
    if unit == "/s":
        return f"{value:.0f}/s"
    return f"{value:g} {unit}"


# --- Helpers ------------------------------------------------------------------------------


def sequential_client(stack: Stack, tenant: Tenant, nums: list[str]) -> float:
    """What Multitel's document suggests: call the single-number endpoint once per number,
    one after the other. Returns the wall time in seconds.

    Generous to the script: it keeps one connection alive (the document's curl
    loop would open a new one per number) and does not retry anything.
    """
    with requests.Session() as session:
        session.auth = (tenant.multitel_username, tenant.multitel_password)
        started = time.monotonic()
        for number in nums:
            response = session.get(
                f"{stack.multitel_url}/v3/restore/{number}",
                headers={"Accept": "application/json"},
                timeout=30,
            )
            response.json()
        return time.monotonic() - started


def run_job(stack: Stack, tenant: Tenant, nums: list[str], *, timeout: float, **extra: Any) -> dict[str, Any]:
    """Submit a queued job and wait until it is completed; wall times from the POST."""
    stack.fake_reset()
    sent, response = stack.submit(tenant, nums, **extra)
    posted = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"expected 202, got {response.status_code}: {response.text[:300]}")
    job_uuid = response.json()["job_uuid"]
    job = stack.wait_job(job_uuid, timeout=timeout, webhook="webhook_url" in extra)
    if job["success_count"] != len(nums):
        raise RuntimeError(f"job {job_uuid}: {job['success_count']} of {len(nums)} succeeded")
    calls = stack.fake_calls_total()
    if calls != len(nums):
        raise RuntimeError(f"job {job_uuid}: {calls} upstream calls for {len(nums)} numbers")
    return {
        "uuid": job_uuid,
        "post_s": posted - sent,
        "total_s": job["completed_at"].timestamp() - sent,
        "started_s": job["started_at"].timestamp() - sent,
    }


def timed(call: Callable[[], requests.Response], expected: int) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code != expected:
        raise RuntimeError(f"expected HTTP {expected}, got {response.status_code}: {response.text[:300]}")
    return elapsed * 1000


class WebhookSink:
    """Receives webhooks (and throws the bodies away after counting their bytes)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                remaining = int(self.headers.get("Content-Length", 0))
                size = remaining
                while remaining:
                    remaining -= len(self.rfile.read(min(remaining, 1 << 20)))
                sink.received.append(size)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TreeSampler:
    """Samples the memory of a process tree until stopped: peak VmHWM of any one process
    (a high-water mark kept by the kernel) and peak of the tree's summed VmRSS."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.hwm: dict[int, int] = {}
        self.peak_sum_rss = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        total = 0
        for pid in process_tree(self.root):
            rss, hwm = memory_kib(pid)
            total += rss
            if hwm:
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
        self.peak_sum_rss = max(self.peak_sum_rss, total)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self._sample()
            time.sleep(self.interval)

    def stop(self) -> tuple[float, float]:
        """(peak RSS of one process, peak summed RSS of the tree), in MiB."""
        self._sample()
        self.stopped.set()
        self.thread.join()
        return max(self.hwm.values(), default=0) / 1024, self.peak_sum_rss / 1024


# --- 1. Sync ------------------------------------------------------------------------------


def bench_sync(args: argparse.Namespace, report: Report) -> None:
    latency = 200.0
    print(f"\n[1] synchronous request of 10 numbers at L = {latency:g} ms", flush=True)
    with Stack.build(db=args.db, redis=args.db == "postgres", latency_ms=latency) as stack:
        tenant = stack.create_tenant("sync", max_concurrency=10)
        nums = numbers(10)
        body = json.dumps({"numbers": nums})
        session = tenant.session()

        def post() -> requests.Response:
            return session.post(
                f"{stack.web_url}/v3/bulk_restore",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )

        for _ in range(4):  # warm up both gunicorn workers and their connection pools
            post()
        times, ratios, seq_ratios = [], [], []
        for _ in range(args.runs_sync):
            elapsed = timed(post, 200)
            seq = sequential_client(stack, tenant, nums) * 1000
            times.append(elapsed)
            ratios.append(elapsed / latency)
            seq_ratios.append(seq / latency)
        report.add("1", "sync 10 numbers, response time", times, "ms")
        report.add(
            "1", "sync 10 numbers, response time / L", ratios, "ratio", goal="≤ 1.3", check=lambda v: v <= 1.3
        )
        report.add("1", "sequential script, 10 numbers, time / L", seq_ratios, "ratio", goal="(≈ 10)")


# --- 2. Async throughput ------------------------------------------------------------------


def bench_async(args: argparse.Namespace, report: Report) -> None:
    latency = 50.0
    sizes = [1000] if args.quick else [1000, 10_000]
    caps = [10, 50]
    n_seq = args.seq_numbers
    print(
        f"\n[2] queued jobs at L = {latency:g} ms: N = {sizes}, C = {caps}; one qcluster of "
        f"{args.async_workers} workers, RESTORE_JOB_FANOUT={args.async_fanout}",
        flush=True,
    )
    env = {"RESTORE_JOB_FANOUT": str(args.async_fanout)}
    with Stack.build(db=args.db, redis=args.db == "postgres", latency_ms=latency, **env) as stack:
        tenants = {cap: stack.create_tenant(f"cap{cap}", max_concurrency=cap) for cap in caps}
        stack.start_worker("host", workers=args.async_workers)
        run_job(stack, tenants[caps[-1]], numbers(200), timeout=120)  # warm up
        totals: dict[tuple[int, int], list[float]] = {}
        ratios: dict[tuple[int, int], list[float]] = {}
        speedups: dict[tuple[int, int], list[float]] = {}
        seq_per_number = []
        for run in range(args.runs):
            for n in sizes:
                for cap in caps:
                    ideal = n * latency / 1000 / cap
                    job = run_job(stack, tenants[cap], numbers(n, offset=run), timeout=ideal * 20 + 60)
                    totals.setdefault((n, cap), []).append(job["total_s"])
                    ratios.setdefault((n, cap), []).append(job["total_s"] / ideal)
                    print(
                        f"    run {run + 1}: N={n} C={cap}: {job['total_s']:.2f} s "
                        f"(ideal {ideal:.2f} s, POST {job['post_s'] * 1000:.0f} ms)",
                        flush=True,
                    )
            seq = sequential_client(stack, tenants[caps[0]], numbers(n_seq)) / n_seq
            seq_per_number.append(seq * 1000)
            for n in sizes:
                for cap in caps:
                    speedups.setdefault((n, cap), []).append(seq * n / totals[(n, cap)][-1])
        for n in sizes:
            for cap in caps:
                ideal = n * latency / 1000 / cap
                report.add("2", f"N={n:,} C={cap}: total time (ideal {ideal:g} s)", totals[(n, cap)], "s")
                report.add(
                    "2",
                    f"N={n:,} C={cap}: total / (N·L/C)",
                    ratios[(n, cap)],
                    "ratio",
                    goal="≤ 1.15",
                    check=lambda v: v <= 1.15,
                )
                report.add(
                    "2",
                    f"N={n:,} C={cap}: speed-up over the sequential script",
                    speedups[(n, cap)],
                    "x",
                    note=f"script measured on {n_seq} numbers, extrapolated linearly to N",
                )
        report.add("2", "sequential script, time per number", seq_per_number, "ms")


# --- 3. Scale-out -------------------------------------------------------------------------


def bench_scale(args: argparse.Namespace, report: Report) -> None:
    latency = 50.0
    n = 1500 if args.quick else 4000
    workers, batch, cap = 2, 10, 40
    print(
        f"\n[3] scale-out on PostgreSQL + Redis: N = {n}, L = {latency:g} ms, cap {cap}; each qcluster "
        f"has {workers} workers of {batch} calls in flight ({workers * batch} per process)",
        flush=True,
    )
    env = {"RESTORE_BATCH_SIZE": str(batch), "RESTORE_JOB_FANOUT": str(2 * workers)}
    with Stack.build(db="postgres", redis=True, latency_ms=latency, **env) as stack:
        tenant = stack.create_tenant("scale", max_concurrency=cap)
        stack.start_worker("one", workers=workers)
        run_job(stack, tenant, numbers(200), timeout=120)  # warm up
        ratios, one_rates, two_rates = [], [], []
        for run in range(args.runs):
            one = run_job(stack, tenant, numbers(n, offset=run), timeout=300)
            stack.start_worker("two", workers=workers)
            two = run_job(stack, tenant, numbers(n, offset=run + 1), timeout=300)
            stack.stop("two")
            one_rates.append(n / one["total_s"])
            two_rates.append(n / two["total_s"])
            ratios.append(one["total_s"] / two["total_s"])
            print(f"    run {run + 1}: one {one['total_s']:.2f} s, two {two['total_s']:.2f} s", flush=True)
        report.add(
            "3",
            "one qcluster: numbers per second",
            one_rates,
            "/s",
            note=f"ideal {workers * batch / latency * 1000:.0f}/s",
        )
        report.add(
            "3",
            "two qclusters: numbers per second",
            two_rates,
            "/s",
            note=f"ideal {cap / latency * 1000:.0f}/s",
        )
        report.add("3", "throughput two / one", ratios, "ratio", goal="≥ 1.8", check=lambda v: v >= 1.8)


# --- 4. API overhead ----------------------------------------------------------------------


def bench_api(args: argparse.Namespace, report: Report) -> None:
    print("\n[4] API overhead (timings over HTTP against gunicorn; queries in-process)", flush=True)
    with Stack.build(db=args.db, redis=args.db == "postgres", latency_ms=1) as stack:
        tenant = stack.create_tenant("api", max_concurrency=50)
        worker = "api-worker"
        stack.start_worker(worker, workers=4, extra_env={"RESTORE_JOB_FANOUT": "5"})
        nums = numbers(10_000)
        done = run_job(stack, tenant, nums, timeout=600)
        stack.stop(worker)  # from here on, queued jobs stay queued
        session = tenant.session()
        status_url = f"{stack.web_url}/v3/bulk_restore_status"
        body = json.dumps({"numbers": numbers(10_000, offset=20_000)})
        probe = nums[len(nums) // 2]

        def post() -> requests.Response:
            return session.post(
                f"{stack.web_url}/v3/bulk_restore",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=60,
            )

        kinds: list[tuple[str, Callable[[], requests.Response], int, int, str, float]] = [
            ("post_10000", post, 202, args.runs_post, "POST 10,000 numbers until 202", 500),
            (
                "status_full",
                lambda: session.get(status_url, params={"job_uuid": done["uuid"]}, timeout=60),
                200,
                args.runs_status,
                "status of a completed 10,000-number job",
                300,
            ),
            (
                "status_filtered",
                lambda: session.get(
                    status_url, params={"job_uuid": done["uuid"], "number": probe}, timeout=60
                ),
                200,
                args.runs_small,
                "status filtered to one number",
                10,
            ),
            (
                "auth_only",
                lambda: session.get(status_url, timeout=60),
                400,
                args.runs_small,
                "authentication alone (valid credential, 400 for the missing job_uuid)",
                0,
            ),
        ]
        for _, call, expected, _, _, _ in kinds:  # warm up every gunicorn worker
            for _ in range(4):
                timed(call, expected)
        queries = json.loads(
            subprocess.run(
                [PYTHON, "bench/queries.py", done["uuid"], probe, tenant.api_username, tenant.api_password],
                cwd=REPO,
                env=stack.env,
                capture_output=True,
                text=True,
                check=True,
                timeout=300,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for kind, call, expected, runs, label, goal in kinds:
            values = [timed(call, expected) for _ in range(runs)]
            report.add(
                "4",
                f"{label}: time",
                values,
                "ms",
                goal=f"< {goal} ms" if goal else "",
                check=(lambda v, g=goal: v < g) if goal else None,
            )
            report.add("4", f"{label}: queries per request", [queries[kind]], "queries")


# --- 5. Memory ----------------------------------------------------------------------------


def bench_memory(args: argparse.Namespace, report: Report) -> None:
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    cap = 50
    print(
        f"\n[5] memory of a qcluster (4 workers) working one job of N = {sizes} with a webhook, "
        f"L = 1 ms, cap {cap}",
        flush=True,
    )
    env = {
        "MAX_NUMBERS_PER_JOB": str(max(sizes)),
        "DATA_UPLOAD_MAX_MEMORY_SIZE": str(16 * 1024 * 1024),
        "RESTORE_JOB_FANOUT": "5",
        "WEBHOOK_TIMEOUT": "60",
    }
    sink = WebhookSink()
    try:
        with Stack.build(db=args.db, redis=args.db == "postgres", latency_ms=1, **env) as stack:
            tenant = stack.create_tenant("mem", max_concurrency=cap)
            for n in sizes:
                runs = args.runs_memory if n == max(sizes) else args.runs
                peaks, sums, rates = [], [], []
                for run in range(runs):
                    name = f"mem-{n}-{run}"
                    root = stack.start_worker(name, workers=4)
                    # The webhook (and its body, built a piece at a time) is the webhook queue's work.
                    hooks_root = stack.start_worker(
                        f"{name}-hooks",
                        workers=1,
                        extra_env={"Q_QUEUE": "webhooks", "Q_WEBHOOK_WORKERS": "1"},
                    )
                    time.sleep(1)
                    sampler, hooks_sampler = TreeSampler(root), TreeSampler(hooks_root)
                    before = len(sink.received)
                    job = run_job(
                        stack, tenant, numbers(n, offset=run), timeout=n / 20 + 120, webhook_url=sink.url
                    )
                    (peak, peak_sum), (hooks_peak, hooks_sum) = sampler.stop(), hooks_sampler.stop()
                    peak, peak_sum = max(peak, hooks_peak), peak_sum + hooks_sum
                    stack.stop(name)
                    stack.stop(f"{name}-hooks")
                    if len(sink.received) != before + 1:
                        raise RuntimeError("the webhook was not delivered exactly once")
                    peaks.append(peak)
                    sums.append(peak_sum)
                    rates.append(n / job["total_s"])
                    print(
                        f"    N={n} run {run + 1}: peak process {peak:.0f} MiB, tree {peak_sum:.0f} MiB, "
                        f"{job['total_s']:.1f} s, webhook {sink.received[-1] / 1e6:.1f} MB",
                        flush=True,
                    )
                report.add(
                    "5",
                    f"N={n:,}: peak RSS of the largest qcluster process",
                    peaks,
                    "MiB",
                    goal="< 250 MiB",
                    check=lambda v: v < 250,
                )
                report.add("5", f"N={n:,}: peak RSS of the qcluster trees (restores + webhooks)", sums, "MiB")
                report.add("5", f"N={n:,}: numbers per second (L = 1 ms)", rates, "/s")
    finally:
        sink.close()


# --- Machine and output ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    info: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["CPU"] = line.split(":", 1)[1].strip()
                break
    info["cores"] = str(os.cpu_count())
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        info["RAM"] = f"{kib / 1024 / 1024:.1f} GiB"
    info["OS"] = platform.platform()
    info["Python"] = platform.python_version()
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(PG_ADMIN_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["PostgreSQL"] = str(row[0]) if row else "?"
    info["SQLite"] = sqlite3.sqlite_version
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(REDIS_BASE_URL)
        info["Redis"] = str(client.info("server")["redis_version"])
        client.close()
    return info


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def write_results(path: Path, report: Report, args: argparse.Namespace, meta: dict[str, str]) -> None:
    command = os.environ.get("BENCH_COMMAND") or " ".join(shlex.quote(a) for a in sys.argv)
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` on {meta['date']} in {meta['duration']}.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in machine().items()],
        f"- load average (1, 5, 15 min) at the start: {meta['load_start']}; at the end: {meta['load_end']}",
        "",
        "## Set-up",
        "",
        f"- database for sections 1, 2, 4 and 5: {args.db}"
        + (
            " with Redis as the broker and cache"
            if args.db == "postgres"
            else " (ORM broker, database cache)"
        ),
        f"- section 2: one qcluster with Q_WORKERS={args.async_workers}, RESTORE_JOB_FANOUT="
        f"{args.async_fanout}, RESTORE_BATCH_SIZE 10 (so that the tasks of one job can fill a cap of 50)",
        "- section 3: PostgreSQL + Redis; qclusters of Q_WORKERS=2, RESTORE_BATCH_SIZE 10, cap 40",
        "- section 5: a fresh qcluster (Q_WORKERS=4) per job, sampled every 0.2 s from /proc "
        "(VmHWM per process, summed VmRSS of the tree) until the webhook was delivered",
        "- gunicorn: 2 workers x 8 threads; the simulated Multitel (`manage.py fake_multitel`) "
        "with a fixed latency and no jitter;",
        "  every number is one the simulated Multitel restores at the first call",
        "- each figure is the median of the runs shown; each ratio is computed within one run, "
        "then the median of the ratios is taken",
        "- total time of a queued job: from sending the POST to the job's `completed_at`",
        "",
        "## Results",
        "",
        report.table(),
        "",
    ]
    if report.notes:
        lines += ["## Notes", "", *[f"- {note}" for note in report.notes], ""]
    path.write_text("\n".join(lines))
    print(f"\nwritten to {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N and fewer runs (a few minutes)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated, of " + ", ".join(SECTIONS)
    )
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3; quick 3)")
    parser.add_argument("--async-workers", type=int, default=6, help="Q_WORKERS of the qcluster of section 2")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a goal is missed")
    parser.add_argument("--async-fanout", type=int, default=5, help="RESTORE_JOB_FANOUT of section 2")
    parser.add_argument(
        "--output", default=None, help="write the table here (default: bench/RESULTS.md, not with --quick)"
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or 3
    args.runs_sync = 5 if args.quick else 9
    args.runs_post = 3 if args.quick else 9
    args.runs_status = 5 if args.quick else 15
    args.runs_small = 20 if args.quick else 100
    args.runs_memory = 1
    args.seq_numbers = 100 if args.quick else 300
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.output is None and not args.quick:
        args.output = str(REPO / "bench" / "RESULTS.md")
    return args


@contextlib.contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    started = time.monotonic()
    yield lambda: time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = Report()
    meta = {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "load_start": load_average()}
    benches = {
        "sync": bench_sync,
        "async": bench_async,
        "scale": bench_scale,
        "api": bench_api,
        "memory": bench_memory,
    }
    with stopwatch() as elapsed:
        for section in args.sections:
            benches[section](args, report)
        meta["duration"] = f"{elapsed() / 60:.1f} minutes"
    meta["load_end"] = load_average()
    print("\n" + report.table())
    if args.output:
        write_results(Path(args.output), report, args, meta)
    missed = [row for row in report.rows if row.met is False]
    print(f"\ngoals missed: {len(missed)} of {sum(row.met is not None for row in report.rows)}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
