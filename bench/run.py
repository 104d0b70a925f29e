"""Benchmarks of the bulk restore portal against the real stack (``make bench``).

Starts gunicorn, qcluster processes and the simulated Multitel with a set
latency on loopback, measures, and prints a table of figures and ratios. Each
figure is the median of several runs; each ratio is taken within one run (both
of its terms measured in that run) and the median of those ratios is reported.
Every section runs on each database asked for (``--db``, both by default): SQLite
with the ORM broker and the database cache, and PostgreSQL with Redis as the broker
and cache.

1. sync      a 10-number request at upstream latency L = 200 ms, against L
2. async     N = 1,000 and 10,000 numbers at L = 50 ms under a tenant cap C = 10, one
             qcluster with the default worker settings: against the physical limit
             N*L/C and against the peer (``bench/peer.py``: C threads calling the
             single-number endpoint over one keep-alive session) on the same simulated
             Multitel; where the time goes (from the simulated Multitel's notes of every
             call), and the CPU per number of the qcluster, the web, the database server
             and Redis against the peer's, at L = 50 ms (the goal's rows) and at L = 5 ms
3. scale     two qclusters of Q_WORKERS=1 against one, cap 40, L = 300 ms: a cap one
             process cannot fill alone
4. api       POST of 10,000 numbers, status of a completed 10,000-number job,
             status filtered to one number, an authenticated request alone
5. memory    peak RSS of the qcluster processes working a 10,000 and a
             100,000-number job (webhook included)

Usage: python bench/run.py [--quick] [--sections sync,async,scale,api,memory]
       [--db both|postgres|sqlite] [--runs N] [--output bench/RESULTS.md]
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
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cpu import PgBackends, PidsCpu, SetCpu, exists, tree
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
DATABASES = ("sqlite", "postgres")
DB_LABEL = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# The settings whose values the report shows as the stack's processes saw them.
WORKER_SETTINGS = (
    "Q_WORKERS",
    "RESTORE_JOB_FANOUT",
    "RESTORE_BATCH_SIZE",
    "RESTORE_TASK_SLICE_SECONDS",
    "Q_POLL",
)


# --- Results --------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    db: str
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
        db: str = "",
        goal: str = "",
        check: Callable[[float], bool] | None = None,
        note: str = "",
    ) -> Row:
        values = [v for v in values if v == v]  # nan: not measured in that run
        row = Row(section, db, figure, values, unit, goal, None, note)
        if check is not None and values:
            row.met = check(row.median)
        self.rows.append(row)
        shown = values if len(values) <= 10 else [min(values), max(values)]
        label = "runs" if len(values) <= 10 else f"{len(values)} runs, min and max"
        detail = f"{label}: {', '.join(fmt(v, unit) for v in shown)}" if values else note
        print(f"  {figure}: {fmt(row.median, unit)} ({detail})", flush=True)
        return row

    def table(self) -> str:
        lines = [
            "| # | db | figure | median | runs | goal | met |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            met = "" if row.met is None else ("yes" if row.met else "**no**")
            figure = row.figure + (f" ({row.note})" if row.note else "")
            runs = ", ".join(fmt(v, row.unit) for v in row.values) if 1 < len(row.values) <= 9 else ""
            count = f"{len(row.values)}" + (f": {runs}" if runs else "")
            lines.append(
                f"| {row.section} | {DB_LABEL.get(row.db, row.db)} | {figure} | {fmt(row.median, row.unit)} "
                f"| {count} | {row.goal} | {met} |"
            )
        return "\n".join(lines)


def fmt(value: float, unit: str) -> str:
    if value != value:  # nan
        return "n/a"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else (f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms")
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    if unit in ("queries", "calls", "connections"):
        return f"{value:.0f}" if value == int(value) else f"{value:.1f}"
    if unit == "/s":
        return f"{value:.0f}/s"
    if unit == "%":
        return f"{value:.1f} %"
    return f"{value:g} {unit}"


# --- Helpers ------------------------------------------------------------------------------


def run_job(stack: Stack, tenant: Tenant, nums: list[str], *, timeout: float, **extra: Any) -> dict[str, Any]:
    """Submit a queued job and wait until it is completed; wall times from the POST."""
    stack.fake_reset()
    sent, response = stack.submit(tenant, nums, **extra)
    posted = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"expected 202, got {response.status_code}: {response.text[:300]}")
    job_uuid = response.json()["job_uuid"]
    job = stack.wait_job(job_uuid, timeout=timeout, webhook="webhook_url" in extra, interval=0.05)
    if job["success_count"] != len(nums):
        raise RuntimeError(f"job {job_uuid}: {job['success_count']} of {len(nums)} succeeded")
    stats = stack.fake_stats()
    if int(stats["calls_total"]) != len(nums):
        raise RuntimeError(f"job {job_uuid}: {stats['calls_total']} upstream calls for {len(nums)} numbers")
    return {
        "uuid": job_uuid,
        "sent": sent,
        "post_s": posted - sent,
        "total_s": job["completed_at"].timestamp() - sent,
        "started_s": job["started_at"].timestamp() - sent,
        "completed": job["completed_at"].timestamp(),
        "max_in_flight": int(stats["max_in_flight"].get(tenant.multitel_username, 0)),
    }


def run_peer(stack: Stack, tenant: Tenant, nums: list[str], *, concurrency: int) -> dict[str, Any]:
    """The peer (``bench/peer.py``) in a process of its own against the stack's simulated
    Multitel, with the tenant's Multitel account; its wall and CPU time, measured by itself."""
    stack.fake_reset()
    # Loopback only: no proxy from the environment applies to the peer's calls.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    started = time.time()
    done = subprocess.run(
        [
            PYTHON,
            "bench/peer.py",
            "--url",
            stack.multitel_url,
            "--username",
            tenant.multitel_username,
            "--password",
            tenant.multitel_password,
            "--concurrency",
            str(concurrency),
        ],
        input="\n".join(nums) + "\n",
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=len(nums) + 120,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["succeeded"] != len(nums):
        raise RuntimeError(f"peer: {result['succeeded']} of {len(nums)} succeeded")
    stats = stack.fake_stats()
    if int(stats["calls_total"]) != len(nums):
        raise RuntimeError(f"peer: {stats['calls_total']} upstream calls for {len(nums)} numbers")
    result["launched"] = started
    return result


def timed(call: Callable[[], requests.Response], expected: int) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    if response.status_code != expected:
        raise RuntimeError(f"expected HTTP {expected}, got {response.status_code}: {response.text[:300]}")
    return elapsed * 1000


def breakdown(calls: list[tuple[float, float, int]], *, cap: int) -> dict[str, float]:
    """Where the time of a run of upstream calls goes, from the simulated Multitel's notes.

    With at most ``cap`` calls in flight, the k-th call to start (in order of start) can
    begin only after the (k - cap)-th call to end has ended: the difference is the time
    that slot of the cap stood idle between two calls (the client's own work on an answer,
    recording it, claiming the next number, sending the next request).
    """
    starts = sorted(c[0] for c in calls)
    ends = sorted(c[1] for c in calls)
    durations = [c[1] - c[0] for c in calls]
    gaps = sorted(starts[j + cap] - ends[j] for j in range(len(calls) - cap))
    span = ends[-1] - starts[0]

    def pct(p: float) -> float:
        return gaps[min(len(gaps) - 1, int(p * len(gaps)))] * 1000 if gaps else float("nan")

    events = sorted([(s, 1) for s in starts] + [(e, -1) for e in ends], key=lambda x: (x[0], x[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return {
        "first_start": starts[0],
        "last_end": ends[-1],
        "span_s": span,
        "fill_s": starts[min(cap, len(starts)) - 1] - starts[0],
        "call_ms": statistics.fmean(durations) * 1000,
        "gap_ms": statistics.fmean(gaps) * 1000 if gaps else float("nan"),
        "gap_p50_ms": pct(0.5),
        "gap_p90_ms": pct(0.9),
        "gap_p99_ms": pct(0.99),
        "gap_max_ms": gaps[-1] * 1000 if gaps else float("nan"),
        "busy_pct": 100 * sum(durations) / (cap * span) if span > 0 else float("nan"),
        "peak_in_flight": peak,
        "connections": len({c[2] for c in calls}),
    }


class StackCpu:
    """CPU seconds of the stack's processes over one interval, by part: the qcluster
    process trees, gunicorn, the simulated Multitel, and the database server and Redis
    when they run on this machine (see ``bench/cpu.py``)."""

    def __init__(self, stack: Stack, workers: list[str], *, pg_backends: PgBackends | None) -> None:
        def trees(names: list[str]) -> Callable[[], list[int]]:
            return lambda: [pid for name in names for pid in tree(stack.processes[name].pid)]

        self.parts: dict[str, SetCpu | PidsCpu] = {
            "qcluster": SetCpu(trees(workers)),
            "web": SetCpu(trees(["web"])),
            "multitel": SetCpu(trees(["multitel"])),
        }
        if pg_backends is not None:
            self.parts["postgres_backends"] = PidsCpu(pg_backends, interval=0.2)
            postmaster = pg_backends.postmaster
            if postmaster is not None:
                self.parts["postgres_server"] = SetCpu(lambda: tree(postmaster))
        redis_pid = _redis_pid(stack.env.get("REDIS_URL", ""))
        if redis_pid is not None:
            self.parts["redis"] = SetCpu(lambda: tree(redis_pid))

    def start(self) -> None:
        for part in self.parts.values():
            part.start()

    def stop(self) -> dict[str, float]:
        return {name: part.stop() for name, part in self.parts.items()}

    def churn(self) -> tuple[int, int]:
        """How many processes of the qcluster trees started and exited during the interval."""
        part = self.parts["qcluster"]
        assert isinstance(part, SetCpu)
        return len(part.started), len(part.exited)


def _is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


def _redis_pid(url: str) -> int | None:
    """The pid of the Redis server at ``url`` when it runs on this machine."""
    if not url or not _is_local(url):
        return None
    with contextlib.suppress(Exception):
        import redis

        client = redis.Redis.from_url(url)
        pid = int(client.info("server")["process_id"])
        client.close()
        return pid if exists(pid) else None
    return None


def pg_backends_of(stack: Stack) -> PgBackends | None:
    """The stack's PostgreSQL backends, when the server runs on this machine (not the
    benchmark's own connection, which polls the job)."""
    if stack.db.is_sqlite or not _is_local(PG_ADMIN_URL):
        return None
    backends = PgBackends(PG_ADMIN_URL, stack.db.name, exclude=[stack.db.backend_pid() or 0])
    if backends.postmaster is None:  # its processes are not ours to read (another pid namespace)
        backends.close()
        return None
    return backends


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


def build(db: str, **kwargs: Any) -> Stack:
    """A stack on ``db``: SQLite with the ORM broker, or PostgreSQL with Redis."""
    return Stack.build(db=db, redis=db == "postgres", **kwargs)


# --- 1. Sync ------------------------------------------------------------------------------


def bench_sync(args: argparse.Namespace, report: Report, db: str) -> None:
    latency = 200.0
    print(f"\n[1] {DB_LABEL[db]}: synchronous request of 10 numbers at L = {latency:g} ms", flush=True)
    with build(db, latency_ms=latency, traced=True) as stack:
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
        times, ratios, peer_ratios, first, last, spread = [], [], [], [], [], []
        for _ in range(args.runs_sync):
            stack.fake_reset()
            sent = time.time()
            elapsed = timed(post, 200)
            answered = time.time()
            calls = stack.fake_trace()
            peer = run_peer(stack, tenant, nums, concurrency=10)
            times.append(elapsed)
            ratios.append(elapsed / latency)
            peer_ratios.append(peer["wall_s"] * 1000 / latency)
            first.append((min(c[0] for c in calls) - sent) * 1000)
            last.append((answered - max(c[1] for c in calls)) * 1000)
            spread.append((max(c[0] for c in calls) - min(c[0] for c in calls)) * 1000)
        report.add("1", "sync 10 numbers, response time", times, "ms", db=db)
        report.add(
            "1",
            "sync 10 numbers, response time / L",
            ratios,
            "ratio",
            db=db,
            goal="≤ 1.10",
            check=lambda v: v <= 1.10,
        )
        report.add("1", "peer (C = 10), 10 numbers, time / L", peer_ratios, "ratio", db=db)
        report.add("1", "where the time goes: POST → first upstream call", first, "ms", db=db)
        report.add("1", "where the time goes: first → last upstream call started", spread, "ms", db=db)
        report.add("1", "where the time goes: last call's end → answer received", last, "ms", db=db)


# --- 2. Async throughput against the limit and the peer; CPU per number ---------------------


def _per_number_ms(seconds: float, n: int) -> float:
    return seconds * 1000 / n


def bench_async(args: argparse.Namespace, report: Report, db: str) -> None:
    latency, cpu_latency, cap = 50.0, 5.0, 10
    sizes = [1000] if args.quick else [1000, 10_000]
    cpu_n = args.cpu_numbers
    print(
        f"\n[2] {DB_LABEL[db]}: queued jobs at L = {latency:g} ms, N = {sizes}, cap C = {cap}, one qcluster "
        f"with the default worker settings, against N·L/C and the peer (C = {cap} threads); "
        f"then CPU at L = {cpu_latency:g} ms, N = {cpu_n:,}",
        flush=True,
    )
    with build(db, latency_ms=latency, traced=True) as stack:
        tenant = stack.create_tenant("async", max_concurrency=cap)
        in_force = stack.settings_in_force(WORKER_SETTINGS)
        report.notes.append(
            f"section 2, {DB_LABEL[db]}: settings in force in the qcluster: "
            + ", ".join(f"{k}={v}" for k, v in in_force.items())
        )
        stack.start_worker("host", workers=None)
        pg = pg_backends_of(stack)
        figures: dict[tuple[float, int], dict[str, list[float]]] = {}
        churn: list[tuple[int, int]] = []

        def measure(lat: float, n: int, run: int) -> None:
            nums = numbers(n, offset=run)
            ideal = n * lat / 1000 / cap
            meter = StackCpu(stack, ["host"], pg_backends=pg)
            meter.start()
            job = run_job(stack, tenant, nums, timeout=ideal * 20 + 120)
            cpu = meter.stop()
            churn.append(meter.churn())
            trace = breakdown(stack.fake_trace(), cap=cap)
            peer_meter = StackCpu(stack, ["host"], pg_backends=None)
            peer_meter.start()
            peer = run_peer(stack, tenant, nums, concurrency=cap)
            peer_cpu = peer_meter.stop()
            peer_trace = breakdown(stack.fake_trace(), cap=cap)
            f = figures.setdefault((lat, n), {})

            def put(key: str, value: float) -> None:
                f.setdefault(key, []).append(value)

            put("total", job["total_s"])
            put("peer", peer["wall_s"])
            put("vs_peer", job["total_s"] / peer["wall_s"])
            put("vs_ideal", job["total_s"] / ideal)
            put("peer_vs_ideal", peer["wall_s"] / ideal)
            put("max_in_flight", job["max_in_flight"])
            put("first_call", (trace["first_start"] - job["sent"]) * 1000)
            put("post", job["post_s"] * 1000)
            put("answered_to_first_call", (trace["first_start"] - job["sent"] - job["post_s"]) * 1000)
            put("fill", trace["fill_s"] * 1000)
            put("span", trace["span_s"])
            put("tail", (job["completed"] - trace["last_end"]) * 1000)
            put("call", trace["call_ms"])
            put("peer_call", peer_trace["call_ms"])
            put("gap", trace["gap_ms"])
            put("gap_p50", trace["gap_p50_ms"])
            put("gap_p90", trace["gap_p90_ms"])
            put("gap_p99", trace["gap_p99_ms"])
            put("peer_gap", peer_trace["gap_ms"])
            put("peer_gap_p90", peer_trace["gap_p90_ms"])
            put("busy", trace["busy_pct"])
            put("peer_busy", peer_trace["busy_pct"])
            put("connections", trace["connections"])
            put("cpu_qcluster", _per_number_ms(cpu["qcluster"], n))
            put("cpu_peer", _per_number_ms(peer["cpu_s"], n))
            put("cpu_vs_peer", cpu["qcluster"] / peer["cpu_s"] if peer["cpu_s"] else float("nan"))
            put("cpu_web", _per_number_ms(cpu["web"], n))
            put("cpu_pg", _per_number_ms(cpu.get("postgres_backends", float("nan")), n))
            put("cpu_pg_server", _per_number_ms(cpu.get("postgres_server", float("nan")), n))
            put("cpu_redis", _per_number_ms(cpu.get("redis", float("nan")), n))
            put("cpu_multitel", _per_number_ms(cpu["multitel"], n))
            put("cpu_multitel_peer", _per_number_ms(peer_cpu["multitel"], n))
            # The database's share is that of the backends serving the stack (not the whole
            # server's, which holds any other load on it).
            portal_all = (
                cpu["qcluster"] + cpu["web"] + cpu.get("postgres_backends", 0.0) + cpu.get("redis", 0.0)
            )
            put("cpu_portal_all", _per_number_ms(portal_all, n))
            db_cpu = "in-process" if stack.db.is_sqlite else f"{f['cpu_pg'][-1]:.2f} ms"
            print(
                f"    L={lat:g} ms N={n}: portal {job['total_s']:.2f} s, peer {peer['wall_s']:.2f} s "
                f"(ideal {ideal:.2f} s); POST→first call {f['first_call'][-1]:.0f} ms, slot gap "
                f"{trace['gap_ms']:.1f} ms (peer {peer_trace['gap_ms']:.1f}), tail {f['tail'][-1]:.0f} ms; "
                f"CPU/number qcluster {f['cpu_qcluster'][-1]:.2f} ms, peer {f['cpu_peer'][-1]:.2f} ms, "
                f"db {db_cpu}, web {f['cpu_web'][-1]:.2f} ms",
                flush=True,
            )

        try:
            run_job(stack, tenant, numbers(200), timeout=120)  # warm up the workers
            run_peer(stack, tenant, numbers(200), concurrency=cap)
            for run in range(args.runs):
                for n in sizes:
                    measure(latency, n, run)
            stack.start_multitel(cpu_latency)
            run_job(stack, tenant, numbers(200), timeout=120)
            for run in range(args.runs):
                measure(cpu_latency, cpu_n, run)
        finally:
            if pg is not None:
                pg.close()
        started, exited = sum(c[0] for c in churn), sum(c[1] for c in churn)
        report.notes.append(
            f"section 2, {DB_LABEL[db]}: qcluster processes started during the {len(churn)} measured jobs: "
            f"{started}, exited: {exited} (an exited one's CPU is counted through its parent)"
        )

        def add(key: str, lat: float, n: int, label: str, unit: str, **kw: Any) -> None:
            report.add("2", f"L={lat:g} ms N={n:,}: {label}", figures[(lat, n)][key], unit, db=db, **kw)

        for n in sizes:
            ideal = n * latency / 1000 / cap
            add("total", latency, n, f"portal, POST → completed_at (N·L/C = {ideal:g} s)", "s")
            add("peer", latency, n, "peer, time", "s")
            add("vs_peer", latency, n, "portal / peer", "ratio", goal="≤ 1.10", check=lambda v: v <= 1.10)
            add("vs_ideal", latency, n, "portal / (N·L/C)", "ratio", goal="≤ 1.15", check=lambda v: v <= 1.15)
            add("peer_vs_ideal", latency, n, "peer / (N·L/C)", "ratio")
            add(
                "max_in_flight",
                latency,
                n,
                f"highest calls in flight (cap {cap})",
                "calls",
                goal=f"≤ {cap}",
                check=lambda v: v <= cap,
            )
            add("first_call", latency, n, "where the time goes: POST → first upstream call", "ms")
            add("post", latency, n, "where the time goes: POST → its 202 answer", "ms")
            add(
                "answered_to_first_call",
                latency,
                n,
                "where the time goes: 202 answer → first upstream call",
                "ms",
            )
            add("fill", latency, n, f"where the time goes: first → {cap}th call started", "ms")
            add("span", latency, n, "where the time goes: first call → last call's end", "s")
            add("tail", latency, n, "where the time goes: last call's end → completed_at", "ms")
            add("call", latency, n, "upstream call as the simulated Multitel saw it, portal", "ms")
            add("peer_call", latency, n, "upstream call as the simulated Multitel saw it, peer", "ms")
            add("gap", latency, n, "idle slot between two calls, mean, portal", "ms")
            add("gap_p50", latency, n, "idle slot between two calls, median, portal", "ms")
            add("gap_p90", latency, n, "idle slot between two calls, 90th percentile, portal", "ms")
            add("gap_p99", latency, n, "idle slot between two calls, 99th percentile, portal", "ms")
            add("peer_gap", latency, n, "idle slot between two calls, mean, peer", "ms")
            add("peer_gap_p90", latency, n, "idle slot between two calls, 90th percentile, peer", "ms")
            add("busy", latency, n, "slots busy (calls' time / (C · span)), portal", "%")
            add("peer_busy", latency, n, "slots busy (calls' time / (C · span)), peer", "%")
            add("connections", latency, n, "upstream connections the portal used", "connections")
        for lat, n in [*((latency, n) for n in sizes), (cpu_latency, cpu_n)]:
            if lat == cpu_latency:
                ideal = n * lat / 1000 / cap
                add("total", lat, n, f"portal, POST → completed_at (N·L/C = {ideal:g} s)", "s")
                add("peer", lat, n, "peer, time", "s")
                add("vs_peer", lat, n, "portal / peer", "ratio")
            # The goal is the issue's: at L = 50 ms, N = 1,000 and 10,000, the runs whose time is
            # measured against N·L/C and the peer. The L = 5 ms rows only show how the CPU per
            # number moves when the calls are short.
            cpu_goal: dict[str, Any] = (
                {"goal": "≤ 1.5", "check": lambda v: v <= 1.5} if lat == latency else {}
            )
            add("cpu_qcluster", lat, n, "CPU per number, qcluster processes", "ms")
            add("cpu_peer", lat, n, "CPU per number, peer", "ms")
            add("cpu_vs_peer", lat, n, "CPU per number, qcluster / peer", "ratio", **cpu_goal)
            if db == "postgres":
                add(
                    "cpu_pg",
                    lat,
                    n,
                    "CPU per number, database server (backends of the stack's database)",
                    "ms",
                )
                add(
                    "cpu_pg_server",
                    lat,
                    n,
                    "CPU per number, database server (whole server, others' load included)",
                    "ms",
                )
                add("cpu_redis", lat, n, "CPU per number, Redis server", "ms")
            else:
                report.add(
                    "2",
                    f"L={lat:g} ms N={n:,}: CPU per number, database server",
                    [],
                    "ms",
                    db=db,
                    note="n/a: SQLite runs inside the qcluster processes, counted there",
                )
            add("cpu_web", lat, n, "CPU per number, web (gunicorn)", "ms")
            add(
                "cpu_portal_all",
                lat,
                n,
                "CPU per number, portal in all (qcluster + web + database backends + Redis)",
                "ms",
            )
            add("cpu_multitel", lat, n, "CPU per number, simulated Multitel serving the portal", "ms")
            add("cpu_multitel_peer", lat, n, "CPU per number, simulated Multitel serving the peer", "ms")


# --- 3. Scale-out -------------------------------------------------------------------------


def bench_scale(args: argparse.Namespace, report: Report, db: str) -> None:
    latency, cap, workers = 300.0, 40, 1
    n = 600 if args.quick else 1200
    with build(db, latency_ms=latency, traced=True) as stack:
        tenant = stack.create_tenant("scale", max_concurrency=cap)
        in_force = stack.settings_in_force(WORKER_SETTINGS, extra_env={"Q_WORKERS": str(workers)})
        window = min(int(in_force.get("RESTORE_BATCH_SIZE") or 10), cap)
        print(
            f"\n[3] {DB_LABEL[db]}: one against two qclusters of Q_WORKERS={workers}: N = {n}, "
            f"L = {latency:g} ms, cap {cap}; each qcluster keeps {window} calls in flight "
            f"(RESTORE_BATCH_SIZE {in_force.get('RESTORE_BATCH_SIZE')}, fanout "
            f"{in_force.get('RESTORE_JOB_FANOUT')})",
            flush=True,
        )
        stack.start_worker("one", workers=workers)
        run_job(stack, tenant, numbers(100), timeout=120)  # warm up
        ratios, one_rates, two_rates, one_flight, two_flight, peaks = [], [], [], [], [], []
        for run in range(args.runs):
            one = run_job(stack, tenant, numbers(n, offset=2 * run * n), timeout=600)
            one_trace = breakdown(stack.fake_trace(), cap=cap)
            stack.start_worker("two", workers=workers)
            # Warmed up as "one" was: a fresh process's first tasks pay for its imports and
            # connections.
            run_job(stack, tenant, numbers(100, offset=1_000_000), timeout=120)
            two = run_job(stack, tenant, numbers(n, offset=(2 * run + 1) * n), timeout=600)
            two_trace = breakdown(stack.fake_trace(), cap=cap)
            stack.stop("two")
            one_rates.append(n / one["total_s"])
            two_rates.append(n / two["total_s"])
            ratios.append(one["total_s"] / two["total_s"])
            one_flight.append(one_trace["busy_pct"] * cap / 100)
            two_flight.append(two_trace["busy_pct"] * cap / 100)
            peaks.append(max(one["max_in_flight"], two["max_in_flight"]))
            print(f"    run {run + 1}: one {one['total_s']:.2f} s, two {two['total_s']:.2f} s", flush=True)
        report.add(
            "3",
            "one qcluster: numbers per second",
            one_rates,
            "/s",
            db=db,
            note=f"ideal {window / latency * 1000:.0f}/s",
        )
        report.add(
            "3",
            "two qclusters: numbers per second",
            two_rates,
            "/s",
            db=db,
            note=f"ideal {2 * window / latency * 1000:.0f}/s",
        )
        report.add("3", "one qcluster: mean calls in flight", one_flight, "calls", db=db)
        report.add("3", "two qclusters: mean calls in flight", two_flight, "calls", db=db)
        report.add(
            "3", "throughput two / one", ratios, "ratio", db=db, goal="≥ 1.9", check=lambda v: v >= 1.9
        )
        report.add(
            "3",
            f"highest calls in flight (cap {cap})",
            peaks,
            "calls",
            db=db,
            goal=f"≤ {cap}",
            check=lambda v: v <= cap,
        )


# --- 4. API overhead ----------------------------------------------------------------------


def bench_api(args: argparse.Namespace, report: Report, db: str) -> None:
    print(
        f"\n[4] {DB_LABEL[db]}: API overhead (timings over HTTP against gunicorn; queries in-process)",
        flush=True,
    )
    with build(db, latency_ms=1) as stack:
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
                db=db,
                goal=f"< {goal} ms" if goal else "",
                check=_below(goal) if goal else None,
            )
            report.add("4", f"{label}: queries per request", [queries[kind]], "queries", db=db)


def _below(limit: float) -> Callable[[float], bool]:
    return lambda value: value < limit


# --- 5. Memory ----------------------------------------------------------------------------


def bench_memory(args: argparse.Namespace, report: Report, db: str) -> None:
    sizes = [2_000, 20_000] if args.quick else [10_000, 100_000]
    cap = 50
    print(
        f"\n[5] {DB_LABEL[db]}: memory of a qcluster (4 workers) working one job of N = {sizes} "
        f"with a webhook, L = 1 ms, cap {cap}",
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
        with build(db, latency_ms=1, **env) as stack:
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
                    db=db,
                    goal="< 250 MiB",
                    check=lambda v: v < 250,
                )
                report.add(
                    "5", f"N={n:,}: peak RSS of the qcluster trees (restores + webhooks)", sums, "MiB", db=db
                )
                report.add("5", f"N={n:,}: numbers per second (L = 1 ms)", rates, "/s", db=db)
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
            row = conn.execute("SHOW autovacuum").fetchone()
            info["PostgreSQL autovacuum"] = str(row[0]) if row else "?"
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


class LoadSampler:
    """The 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, interval: float = 5) -> None:
        self.values: list[float] = []
        self.stopped = threading.Event()
        self.interval = interval
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.values.append(os.getloadavg()[0])
            if self.stopped.wait(self.interval):
                return

    def stop(self) -> str:
        self.stopped.set()
        self.thread.join()
        values = self.values or [os.getloadavg()[0]]
        return f"min {min(values):.2f}, median {statistics.median(values):.2f}, max {max(values):.2f}"


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
        f"- load average (1, 5, 15 min) at the start: {meta['load_start']}; at the end: {meta['load_end']}; "
        f"1-minute load during the run: {meta['load_during']}",
        "",
        "## Set-up",
        "",
        "- every section on "
        + " and on ".join(
            "SQLite with the ORM broker and the database cache"
            if db == "sqlite"
            else "PostgreSQL with Redis as the broker and cache"
            for db in args.dbs
        )
        + ", each with a fresh database",
        "- section 1: a synchronous request of 10 numbers, tenant cap 10, L = 200 ms; the peer "
        "(`bench/peer.py`) restores the same 10 numbers with 10 threads",
        "- section 2: one qcluster with the settings' defaults (no Q_WORKERS, RESTORE_JOB_FANOUT or "
        "RESTORE_BATCH_SIZE set; the values in force are in the notes), tenant cap C = 10, L = 50 ms "
        f"(the CPU goal is on these rows), then L = 5 ms (N = {args.cpu_numbers:,}) to show the CPU "
        "with short calls; in each run the portal's job, then the peer "
        "(C threads calling `GET /v3/restore/<number>` over one keep-alive `requests.Session`, retrying "
        "429/502/503/504, results in a dict; a process of its own) on the same numbers and the same "
        "simulated Multitel",
        "- section 2, where the time goes: the simulated Multitel (`bench/traced_multitel.py`, the "
        "server of `manage.py fake_multitel` noting each call's start and end) gives the time from the "
        "POST to the first call, the span of the calls, the tail to `completed_at`, and the idle time of "
        "a slot: with at most C calls in flight, the k-th call to start waits for the (k - C)-th to end, "
        "and the difference is the slot's idle time between two calls",
        "- section 2, CPU: utime + stime (+ the children's that exited) from /proc of every process of "
        "the qcluster's tree, before the POST and after completion; the web (gunicorn) tree on its own "
        "line; PostgreSQL: the backends of the stack's database (sampled every 0.2 s) and, as an upper "
        "bound with any other load on the server, the postmaster's whole process tree; Redis: the whole "
        "server; the peer: getrusage of its own process around its calls",
        "- section 3: qclusters of Q_WORKERS=1 (other settings at their defaults), tenant cap 40, "
        "L = 300 ms: one qcluster cannot fill the cap alone; in each run a job on one qcluster, then a "
        "second one is started, warmed up with a 100-number job, and a job on both is measured",
        "- section 5: a fresh qcluster (Q_WORKERS=4) per job, sampled every 0.2 s from /proc "
        "(VmHWM per process, summed VmRSS of the tree) until the webhook was delivered",
        "- gunicorn: 2 workers x 8 threads; the simulated Multitel with a fixed latency and no jitter;",
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
    parser.add_argument(
        "--db", choices=("both", *DATABASES), default="both", help="the database of every section (both)"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per figure of every section (default 3, but section 1: 9, quick 5; the API "
        "section's requests keep their own counts)",
    )
    parser.add_argument(
        "--cpu-numbers",
        type=int,
        default=None,
        help="N of section 2's CPU runs at L = 5 ms (10,000; quick 1,000)",
    )
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a goal is missed")
    parser.add_argument(
        "--output", default=None, help="write the table here (default: bench/RESULTS.md, not with --quick)"
    )
    args = parser.parse_args(argv)
    args.dbs = list(DATABASES) if args.db == "both" else [args.db]
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    args.runs_sync = args.runs or (5 if args.quick else 9)
    args.runs = args.runs or 3
    args.cpu_numbers = args.cpu_numbers or (1000 if args.quick else 10_000)
    args.runs_post = 3 if args.quick else 9
    args.runs_status = 5 if args.quick else 15
    args.runs_small = 20 if args.quick else 100
    args.runs_memory = 1
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
    benches: dict[str, Callable[[argparse.Namespace, Report, str], None]] = {
        "sync": bench_sync,
        "async": bench_async,
        "scale": bench_scale,
        "api": bench_api,
        "memory": bench_memory,
    }
    load = LoadSampler()
    failed = []
    with stopwatch() as elapsed:
        for section in args.sections:
            for db in args.dbs:
                try:
                    benches[section](args, report, db)
                except Exception as exc:  # the other sections still run and are reported
                    traceback.print_exc()
                    failed.append(f"{section} on {DB_LABEL[db]}")
                    report.notes.append(f"section {section} on {DB_LABEL[db]} FAILED: {exc!r}"[:500])
        meta["duration"] = f"{elapsed() / 60:.1f} minutes"
    meta["load_end"] = load_average()
    meta["load_during"] = load.stop()
    print("\n" + report.table())
    print(
        f"\nload average at the start {meta['load_start']}, at the end {meta['load_end']}; "
        f"1-minute load during the run: {meta['load_during']}"
    )
    for note in report.notes:
        print(f"note: {note}")
    if args.output:
        write_results(Path(args.output), report, args, meta)
    missed = [row for row in report.rows if row.met is False]
    print(f"\ngoals missed: {len(missed)} of {sum(row.met is not None for row in report.rows)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 2
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
