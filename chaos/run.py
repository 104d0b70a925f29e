"""Faults on a portal of several hosts (``make chaos``): one table of figures, a goal each.

The portal runs as five hosts on this machine, each a Linux network namespace of its own
(``tests/support/netns.py``): ``web`` (gunicorn), ``w1``, ``w2`` and ``w3`` (a restore
``qcluster`` and a webhook ``qcluster`` each) and ``multitel`` (the simulated Multitel).
PostgreSQL and Redis are servers of this run's own (``tests/support/backends.py``) in the
root namespace, listening on the addresses of the ``db`` and ``cache`` networks; clients
and webhook receivers are in the root namespace, on the ``front`` network. Every
address is one this run made; no namespace has a route off the machine or a name server.
Every setting is at its default but the simulated Multitel's latency.

Each fault is made in the middle of two tenants' queued jobs (2,000 numbers each, cap 10)
while each tenant also sends a synchronous request of 5 numbers every second and polls
its job's status every second (after a warm-up job that is not reported):

- ``baseline``: no fault, the time every other row is measured against;
- ``worker host killed``: every process of the host holding the most leases, SIGKILLed
  (started again once the jobs are done);
- ``worker host cut off 60 s``: that host's links to the database and the broker down (its
  link to Multitel up: it goes on calling for what it holds, and its late results are
  refused), then up again; it must rejoin by itself (it claims numbers of later jobs);
- ``web host cut off from the database 20 s``;
- ``PostgreSQL restarted`` (stopped as by a crash, started 5 s later);
- ``Redis restarted, its data lost`` (killed, started 5 s later, empty);
- ``Multitel down 60 s`` (every call answered 503).

Figures per fault, each with its goal: numbers lost (not final when the run ends, or a
queued job not completed), numbers failed (every number is one the simulated Multitel
restores at the first call), numbers restored twice upstream (from the simulated
Multitel's count of calls that restored a number; goal: no more than were leased at the
fault, the numbers in flight or in a worker's line), cap violations (calls in flight
over the tenant's cap, as the simulated Multitel saw them), answers that broke the
contract (anything but a 200/202 in the contract's shape, or its 503 with
``Retry-After``: a 500, a wrong shape, no answer within 30 s), and the time from the first
submission to both jobs' completion against the baseline's (goal: no more over it than
the engine promises: a dead or cut-off holder's numbers claimed again by the hosts that
live within 30 s of the fault; completion within a minute of a backend's return; nothing
claimed while Multitel is down, and 30 s to find it back; the web host's cut-off at most
its own length, though queued work does not go through it). Every answer and webhook
of the run must be in the contract, and every process must still run at the end (a
worker host cut off must rejoin by itself: it must claim numbers of the later jobs).

Usage: python chaos/run.py [--latency-ms 50] [--numbers 2000]
       [--faults kill,cut,web,postgres,redis,multitel]
       [--output chaos/RESULTS.md] [--keep]
Exit status: 0 when every goal is met, 1 when one is not, 2 when this machine cannot
make network namespaces or run the servers (the message says what is missing).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.backends import PrivatePostgres, PrivateRedis, servers_missing
from tests.support.contract import JOB_KEYS, QUEUED_KEYS, UNAVAILABLE
from tests.support.harness import Processes, database_rows, inherited_env, wait_until
from tests.support.harness import WebhookReceiver as Receiver
from tests.support.netns import NamespacesUnavailable, Network, namespaces_unavailable
from tests.support.numbers import first_call_successes

CAP = 10
SYNC_NUMBERS = 5
SYNC_EVERY = 1.0  # seconds between a tenant's synchronous requests
STATUS_EVERY = 1.0  # seconds between a tenant's status polls of its job
WARM_UP_NUMBERS = 200
WORKER_HOSTS = ("w1", "w2", "w3")
CLIENT_TIMEOUT = 30.0
# What the engine promises after a fault is over (the engine issue's recovery goals).
CLAIMED_AGAIN_WITHIN = 30.0  # a dead (or cut off) holder's numbers claimed by the hosts that live
BACK_WITHIN = 60.0  # a job completes within a minute of a backend's return
DATABASE_DOWN_SECONDS = 5.0
FINAL = ("success", "failed")


# --- The hosts ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Cluster(Processes):
    """The portal on five hosts, its own PostgreSQL and Redis, and the clients' side."""

    net: Network
    postgres: PrivatePostgres
    redis: PrivateRedis
    database: str
    latency_ms: float
    receiver: Receiver | None = None
    tenants: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> API credentials

    @property
    def web_url(self) -> str:
        return f"http://{self.net.address('web')}:8000"

    @property
    def multitel_url(self) -> str:
        return f"http://{self.net.address('multitel')}:9100"

    def root_env(self) -> dict[str, str]:
        """For the harness's own manage.py commands, in the root namespace."""
        return {
            **self.env,
            "DATABASE_URL": self.postgres.url(self.database),
            "REDIS_URL": self.redis.url,
        }

    def on(self, host: str) -> list[str]:
        return self.net.hosts[host].exec_prefix()

    def start_host_processes(self, host: str) -> None:
        if host == "web":
            self.start(
                "web",
                "-m",
                "gunicorn",
                "portal.wsgi",
                "--bind",
                f"{self.net.address('web')}:8000",
                "--workers",
                "2",
                "--threads",
                "8",
                prefix=self.on("web"),
            )
        elif host == "multitel":
            accept = [f"--accept=mt-{name}:mt-{name}-pw" for name in ("a", "b")]
            self.start(
                "multitel",
                "manage.py",
                "fake_multitel",
                "--host",
                self.net.address("multitel"),
                "--port",
                "9100",
                "--latency-ms",
                str(self.latency_ms),
                *accept,
                prefix=self.on("multitel"),
            )
        else:
            self.start(
                "restores@" + host,
                "manage.py",
                "qcluster",
                extra_env={"WORKER_NAME": host},
                prefix=self.on(host),
            )
            self.start(
                "webhooks@" + host,
                "manage.py",
                "qcluster",
                extra_env={"WORKER_NAME": f"{host}-webhooks", "Q_QUEUE": "webhooks"},
                prefix=self.on(host),
            )
            for name in ("restores@" + host, "webhooks@" + host):
                wait_until(
                    lambda name=name: (
                        self.running(name) and re.search(r"Q Cluster \S+ \[.*\] running\.", self.log(name))
                    ),
                    timeout=60,
                    what=f"{name} to start",
                )

    def host_processes(self, host: str) -> list[str]:
        return [name for name in self.processes if name.endswith("@" + host) or name == host]

    def kill_host(self, host: str) -> None:
        for name in self.host_processes(host):
            self.stop(name, signal.SIGKILL)

    def dead(self) -> list[str]:
        """The processes that have died (empty: none)."""
        return [name for name, proc in self.processes.items() if proc.poll() is not None]

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return database_rows(self.postgres.url(self.database), query, params)

    def fake_stats(self) -> dict[str, Any]:
        """The simulated Multitel's counters (``/_fake/stats``)."""
        return dict(_session().get(self.multitel_url + "/_fake/stats", timeout=10).json())

    def fake_post(self, path: str, body: dict[str, Any] | None = None) -> None:
        """Tell the simulated Multitel something: ``/_fake/reset``, ``/_fake/outage``."""
        _session().post(self.multitel_url + path, json=body or {}, timeout=10).raise_for_status()


def _session(auth: tuple[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy, no netrc: only the hosts this run made
    if auth is not None:
        session.auth = auth
    return session


def cluster_start(tmp: Path, *, latency_ms: float) -> Cluster:
    net = Network.create(
        hosts={
            "web": ("front", "db", "cache"),
            **{host: ("front", "db", "cache") for host in WORKER_HOSTS},
            "multitel": ("front",),
        }
    )
    postgres = PrivatePostgres.create(
        tmp / "postgres", listen=("127.0.0.1", net.root_address("db")), trusted=(net.subnet("db"),)
    )
    redis = PrivateRedis(directory=tmp / "redis", bind=("127.0.0.1", net.root_address("cache")))
    database = "portal_chaos"
    env = {
        **inherited_env(),
        "DATABASE_URL": postgres.url(database, host=net.root_address("db")),
        "REDIS_URL": redis.url_on(net.root_address("cache")),
        "SECRET_KEY": "chaos-secret-key-for-this-run-only-0123456789",
        "ALLOWED_HOSTS": net.address("web"),
        "MULTITEL_BASE_URL": f"http://{net.address('multitel')}:9100",
        "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
        "Q_CLUSTER_NAME": f"chaos{uuid.uuid4().hex[:8]}",
        "PYTHONUNBUFFERED": "1",
    }
    cluster = Cluster(
        tmp=tmp, env=env, net=net, postgres=postgres, redis=redis, database=database, latency_ms=latency_ms
    )
    try:
        postgres.start()
        with contextlib.closing(psycopg.connect(postgres.url(), autocommit=True)) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        redis.start()
        _manage(cluster, "migrate", "--noinput", "-v0")
        for name in ("a", "b"):
            _manage(
                cluster,
                "create_tenant",
                f"tenant-{name}",
                "--api-username",
                f"tenant-{name}-api",
                "--api-password",
                f"tenant-{name}-api-secret-for-the-chaos-run",
                "--upstream-username",
                f"mt-{name}",
                "--upstream-password",
                f"mt-{name}-pw",
                "--max-concurrency",
                str(CAP),
            )
            cluster.tenants[name] = (f"tenant-{name}-api", f"tenant-{name}-api-secret-for-the-chaos-run")
        cluster.receiver = Receiver(host=net.root_address("front"))
        for host in ("multitel", "web", *WORKER_HOSTS):
            cluster.start_host_processes(host)
        wait_until(lambda: cluster.running("multitel") and cluster.fake_stats(), timeout=30, what="Multitel")
        wait_until(
            lambda: (
                cluster.running("web")
                and _session().get(f"{cluster.web_url}/v3/bulk_restore_status", timeout=2).status_code == 401
            ),
            timeout=60,
            what="gunicorn",
        )
    except BaseException:
        cluster_close(cluster)
        raise
    return cluster


def _manage(cluster: Cluster, *args: str) -> str:
    result = cluster.run_manage(*args, extra_env=cluster.root_env(), timeout=180)
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def cluster_close(cluster: Cluster) -> None:
    with contextlib.suppress(Exception):
        cluster.stop_all()
    if cluster.receiver is not None:
        with contextlib.suppress(Exception):
            cluster.receiver.close()
    with contextlib.suppress(Exception):
        cluster.redis.destroy()
    with contextlib.suppress(Exception):
        cluster.postgres.destroy()
    cluster.net.destroy()


# --- The contract, as a client sees it ------------------------------------------------------------


def _unavailable_problem(response: requests.Response) -> str | None:
    if response.headers.get("Retry-After") is None:
        return "503 without Retry-After"
    try:
        body = response.json()
    except ValueError:
        return "503 that is not JSON"
    return None if body == UNAVAILABLE else f"503 with {body!r}"


def sync_answer_problem(response: requests.Response, numbers: list[str]) -> str | None:
    if response.status_code == 503:
        return _unavailable_problem(response)
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    body = response.json()
    if list(body) != JOB_KEYS or body["status"] != "completed":
        return f"200 with keys {list(body)}, status {body.get('status')!r}"
    if [r["number"] for r in body["results"]] != numbers or any(
        r["status"] not in FINAL for r in body["results"]
    ):
        return "200 whose results are not every number, final"
    return None


def queued_answer_problem(response: requests.Response) -> str | None:
    if response.status_code == 503:
        return _unavailable_problem(response)
    if response.status_code != 202:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    body = response.json()
    return None if list(body) == QUEUED_KEYS else f"202 with keys {list(body)}"


def status_answer_problem(response: requests.Response) -> str | None:
    if response.status_code == 503:
        return _unavailable_problem(response)
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    body = response.json()
    if list(body) != JOB_KEYS:
        return f"200 with keys {list(body)}"
    final = sum(r["status"] in FINAL for r in body["results"])
    if body["success_count"] + body["failure_count"] != final:
        return f"counts {body['success_count']}+{body['failure_count']} against {final} final results"
    return None


@dataclass
class Answers:
    """What the clients of one tenant saw."""

    count: Counter[str] = field(default_factory=Counter)  # HTTP status (or "none") -> answers
    problems: list[str] = field(default_factory=list)
    sync_numbers: list[str] = field(default_factory=list)  # numbers of synchronous requests answered 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status: str, problem: str | None) -> None:
        with self.lock:
            self.count[status] += 1
            if problem is not None:
                self.problems.append(problem)


def _ask(
    answers: Answers, call: Callable[[], requests.Response], check: Callable[[requests.Response], str | None]
) -> requests.Response | None:
    started = time.monotonic()
    try:
        response = call()
    except requests.RequestException as exc:
        answers.note("none", f"no answer within {time.monotonic() - started:.1f} s: {type(exc).__name__}")
        return None
    try:
        problem = check(response)
    except ValueError as exc:
        problem = f"HTTP {response.status_code} that is not JSON: {exc}"
    answers.note(str(response.status_code), problem)
    return response


# --- One fault ------------------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    length: float  # seconds from its start to its end
    allowed: float  # seconds its run may take over the baseline's: what the engine promises
    start: Callable[[Cluster, str], None]  # (cluster, the host chosen) -> the fault begins
    end: Callable[[Cluster, str], None]
    host_fault: bool = False  # made on the worker host holding the most leases


@dataclass
class Outcome:
    fault: str
    seconds: float
    lost: int
    failed: int
    twice: int
    leased_at_fault: int
    cap_over: int
    broken: int
    answers: Counter[str]
    problems: list[str]
    by_host: dict[str, int]
    host: str = ""
    allowed: float | None = None  # seconds over the baseline allowed
    baseline: float | None = None
    dead_processes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def met(self) -> dict[str, bool]:
        goals = {
            "lost": self.lost == 0,
            "failed": self.failed == 0,
            "twice": self.twice <= self.leased_at_fault,
            "cap": self.cap_over == 0,
            "contract": self.broken == 0,
            "processes": not self.dead_processes,
        }
        if self.allowed is not None and self.baseline is not None:
            goals["time"] = self.seconds <= self.baseline + self.allowed
        return goals


def scenario_run(cluster: Cluster, fault: Fault | None, *, index: int, numbers: int) -> Outcome:
    """Two tenants' queued jobs, synchronous requests and status polls; ``fault`` in the middle."""
    assert cluster.receiver is not None
    cluster.fake_post("/_fake/reset")
    name = fault.name if fault else "baseline"
    started = time.monotonic()
    stop = threading.Event()
    answers = {tenant: Answers() for tenant in cluster.tenants}
    jobs: dict[str, str] = {}
    done_at: dict[str, float] = {}
    last: dict[str, dict[str, Any]] = {}
    queued_numbers: list[str] = []
    base = 15550000000 + index * 1_000_000
    for t, tenant in enumerate(cluster.tenants):
        mine = first_call_successes(numbers, start=base + t * 300_000)
        queued_numbers += mine
        jobs[tenant] = _submit(cluster, tenant, mine, answers[tenant], hook=f"/{index}/{tenant}")
    threads = []
    for t, tenant in enumerate(cluster.tenants):
        sync_pool = iter(first_call_successes(20_000, start=base + t * 300_000 + 150_000))
        threads.append(
            threading.Thread(target=_sync_loop, args=(cluster, tenant, sync_pool, answers[tenant], stop))
        )
        threads.append(
            threading.Thread(
                target=_status_loop,
                args=(cluster, tenant, jobs[tenant], answers[tenant], stop, done_at, last, started),
            )
        )
    for thread in threads:
        thread.start()
    leased = 0
    host = ""
    notes: list[str] = []
    try:
        if fault is not None:
            # In the middle: a quarter of the first job done.
            wait_until(
                lambda: (last.get("a") or {}).get("success_count", 0) >= numbers // 4,
                timeout=120,
                interval=0.1,
                what="a quarter of the job",
            )
            holders = cluster.sql(
                "SELECT claimed_by, count(*) FROM restores_numberresult WHERE status = 'processing' "
                "GROUP BY claimed_by ORDER BY count(*) DESC"
            )
            leased = sum(n for _, n in holders)
            workers = [(h, n) for h, n in holders if h in WORKER_HOSTS]
            host = workers[0][0] if (fault.host_fault and workers) else ""
            fault.start(cluster, host)
            fault_at = time.monotonic()
            notes.append(f"fault at {fault_at - started:.1f} s ({leased} numbers leased: {dict(holders)})")
            time.sleep(fault.length)
            fault.end(cluster, host)
            notes.append(f"over at {time.monotonic() - started:.1f} s")
        limit = 600.0
        wait_until(lambda: len(done_at) == len(jobs), timeout=limit, interval=0.2, what=f"{name}: both jobs")
    except Exception as exc:
        notes.append(f"gave up: {exc}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)
    seconds = max(done_at.values()) - started if len(done_at) == len(jobs) else float("inf")
    with contextlib.suppress(Exception):
        wait_until(
            lambda: all(cluster.receiver.hooks_for(f"/{index}/{t}") for t in cluster.tenants),  # type: ignore[union-attr]
            timeout=60,
            what="the webhooks",
        )
    for tenant in cluster.tenants:
        if not cluster.receiver.hooks_for(f"/{index}/{tenant}"):
            answers[tenant].note("webhook", f"no webhook for the job of tenant {tenant}")
    # Final figures, from the database and the simulated Multitel.
    job_rows = cluster.sql(
        "SELECT j.total_numbers, j.status, "
        "count(*) FILTER (WHERE r.status IN ('success', 'failed')), "
        "count(*) FILTER (WHERE r.status = 'failed'), "
        "j.success_count + j.failure_count "
        "FROM restores_job j JOIN restores_numberresult r ON r.job_id = j.id WHERE j.uuid = ANY(%s) "
        "GROUP BY j.id",
        [uuid.UUID(u) for u in jobs.values()],
    )
    lost = failed = 0
    for total, status, final, failures, counted in job_rows:
        lost += total - final if status == "completed" else total
        failed += failures
        if counted != final:
            notes.append(f"a job counted {counted} numbers for {final} final results")
            lost += abs(final - counted)
    lost += numbers * len(jobs) - sum(row[0] for row in job_rows)
    for number, status_code, message, attempts, holder in cluster.sql(
        "SELECT r.number, r.status_code, r.message, r.attempts, r.claimed_by FROM restores_numberresult r "
        "JOIN restores_job j ON j.id = r.job_id WHERE j.uuid = ANY(%s) AND r.status <> 'success' LIMIT 5",
        [uuid.UUID(u) for u in jobs.values()],
    ):
        notes.append(f"not restored: {number} ({status_code}, {message!r}, {attempts} attempts, by {holder})")
    stats = cluster.fake_stats()
    restored = stats["restored_by_number"]
    sync_numbers = [n for a in answers.values() for n in a.sync_numbers]
    twice = sum(max(0, restored.get(n, 0) - 1) for n in queued_numbers + sync_numbers)
    cap_over = sum(max(0, peak - CAP) for peak in stats["max_in_flight"].values())
    by_host = dict(
        cluster.sql(
            "SELECT r.claimed_by, count(*) FROM restores_numberresult r "
            "JOIN restores_job j ON j.id = r.job_id WHERE j.uuid = ANY(%s) GROUP BY r.claimed_by",
            [uuid.UUID(u) for u in jobs.values()],
        )
    )
    return Outcome(
        fault=name,
        seconds=seconds,
        lost=lost,
        failed=failed,
        twice=twice,
        leased_at_fault=leased,
        cap_over=cap_over,
        broken=sum(len(a.problems) for a in answers.values()),
        answers=sum((a.count for a in answers.values()), Counter()),
        problems=[p for a in answers.values() for p in a.problems],
        by_host={str(k): v for k, v in by_host.items()},
        host=host,
        allowed=fault.allowed if fault else None,
        dead_processes=cluster.dead(),
        notes=notes,
    )


def _submit(cluster: Cluster, tenant: str, numbers: list[str], answers: Answers, *, hook: str) -> str:
    assert cluster.receiver is not None
    session = _session(cluster.tenants[tenant])
    key = uuid.uuid4().hex
    body = {"numbers": numbers, "webhook_url": cluster.receiver.url(hook)}

    def post() -> requests.Response:
        return session.post(
            f"{cluster.web_url}/v3/bulk_restore",
            json=body,
            headers={"Idempotency-Key": key},
            timeout=CLIENT_TIMEOUT,
        )

    response = wait_until(
        lambda: (r := _ask(answers, post, queued_answer_problem)) is not None and r.status_code == 202 and r,
        timeout=120,
        interval=1,
        what=f"tenant {tenant}'s job accepted",
    )
    return str(response.json()["job_uuid"])


def _sync_loop(cluster: Cluster, tenant: str, pool: Any, answers: Answers, stop: threading.Event) -> None:
    session = _session(cluster.tenants[tenant])
    while not stop.is_set():
        began = time.monotonic()
        numbers = [next(pool) for _ in range(SYNC_NUMBERS)]
        response = _ask(
            answers,
            lambda numbers=numbers: session.post(  # type: ignore[misc]
                f"{cluster.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=CLIENT_TIMEOUT
            ),
            lambda r, numbers=numbers: sync_answer_problem(r, numbers),  # type: ignore[misc]
        )
        if response is not None and response.status_code == 200:
            with answers.lock:
                answers.sync_numbers += numbers
        stop.wait(max(0.0, SYNC_EVERY - (time.monotonic() - began)))


def _status_loop(
    cluster: Cluster,
    tenant: str,
    job_uuid: str,
    answers: Answers,
    stop: threading.Event,
    done_at: dict[str, float],
    last: dict[str, dict[str, Any]],
    started: float,
) -> None:
    session = _session(cluster.tenants[tenant])
    while not stop.is_set():
        response = _ask(
            answers,
            lambda: session.get(
                f"{cluster.web_url}/v3/bulk_restore_status",
                params={"job_uuid": job_uuid},
                timeout=CLIENT_TIMEOUT,
            ),
            status_answer_problem,
        )
        if response is not None and response.status_code == 200:
            body = response.json()
            last[tenant] = body
            if body["status"] == "completed" and tenant not in done_at:
                done_at[tenant] = time.monotonic()
        stop.wait(STATUS_EVERY)


# --- The faults -------------------------------------------------------------------------------


def _kill(cluster: Cluster, host: str) -> None:
    cluster.kill_host(host)


def _cut(cluster: Cluster, host: str) -> None:
    cluster.net.cut(host, "db")
    cluster.net.cut(host, "cache")


def _mend(cluster: Cluster, host: str) -> None:
    cluster.net.mend(host, "db")
    cluster.net.mend(host, "cache")


def _postgres_stop(cluster: Cluster, host: str) -> None:
    cluster.postgres.stop("immediate")


def _postgres_start(cluster: Cluster, host: str) -> None:
    cluster.postgres.start()


def _redis_stop(cluster: Cluster, host: str) -> None:
    cluster.redis.stop()


def _redis_start(cluster: Cluster, host: str) -> None:
    cluster.redis.start()


def _multitel_down(cluster: Cluster, host: str) -> None:
    cluster.fake_post("/_fake/outage", {"seconds": 60})


def _nothing(cluster: Cluster, host: str) -> None:
    pass


FAULTS = {
    # The hosts that live claim a dead (or cut off) holder's numbers within 30 s of the fault.
    # The killed host's processes are started again once the jobs are done (see main).
    "kill": Fault("worker host killed", 0, CLAIMED_AGAIN_WITHIN, _kill, _nothing, host_fault=True),
    "cut": Fault("worker host cut off 60 s", 60, CLAIMED_AGAIN_WITHIN, _cut, _mend, host_fault=True),
    # The web host is a holder too: of its synchronous requests' slots and numbers.
    "web": Fault(
        "web host cut off from the database 20 s",
        20,
        CLAIMED_AGAIN_WITHIN,
        lambda c, h: c.net.cut("web", "db"),
        lambda c, h: c.net.mend("web", "db"),
    ),
    # Done within a minute of the backend's return.
    "postgres": Fault(
        "PostgreSQL restarted",
        DATABASE_DOWN_SECONDS,
        DATABASE_DOWN_SECONDS + BACK_WITHIN,
        _postgres_stop,
        _postgres_start,
    ),
    "redis": Fault(
        "Redis restarted, its data lost",
        DATABASE_DOWN_SECONDS,
        DATABASE_DOWN_SECONDS + BACK_WITHIN,
        _redis_stop,
        _redis_start,
    ),
    # Nothing is claimed while Multitel is down; the breaker's next probe (at most
    # UPSTREAM_BREAKER_COOLDOWN_MAX, 5 s, after the last) finds it back.
    "multitel": Fault("Multitel down 60 s", 60, 60 + CLAIMED_AGAIN_WITHIN, _multitel_down, _nothing),
}


# --- The table ----------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    def mark(ok: bool, text: str) -> str:
        return text if ok else f"**{text}**"

    lines = [
        "| fault | lost (0) | failed (0) | restored twice (≤ leased at the fault) | cap violations (0) "
        "| answers breaking the contract (0) | to completion (≤ baseline + allowed) | answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        met = o.met()
        time_text = f"{o.seconds:.1f} s"
        if o.allowed is not None and o.baseline is not None:
            time_text += f" (≤ {o.baseline:.1f} + {o.allowed:.0f} s)"
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(o.answers.items()))
        lines.append(
            f"| {o.fault}{f' ({o.host})' if o.host else ''} | {mark(met['lost'], str(o.lost))} "
            f"| {mark(met['failed'], str(o.failed))} "
            f"| {mark(met['twice'], f'{o.twice} (≤ {o.leased_at_fault})')} "
            f"| {mark(met['cap'], str(o.cap_over))} | {mark(met['contract'], str(o.broken))} "
            f"| {mark(met.get('time', True), time_text)} | {answers} |"
        )
    return "\n".join(lines)


def report(outcomes: list[Outcome], args: argparse.Namespace, started: dt.datetime) -> str:
    out = [
        "# Faults on a portal of several hosts",
        "",
        f"Written by `make chaos` (`python chaos/run.py`) on {started:%Y-%m-%d %H:%M} UTC, "
        f"on this machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"L = {args.latency_ms:g} ms, {args.numbers:,} numbers per tenant, cap {CAP}, every other setting at "
        "its default. See the docstring of `chaos/run.py` for what each column means.",
        "",
        table(outcomes),
        "",
        "## Notes",
        "",
    ]
    for o in outcomes:
        out.append(f"- {o.fault}: numbers by host {dict(sorted(o.by_host.items()))}; " + "; ".join(o.notes))
        for problem in Counter(o.problems).most_common(5):
            out.append(f"  - {problem[1]} times: {problem[0]}")
        if o.dead_processes:
            out.append(f"  - processes that died: {', '.join(o.dead_processes)}")
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--numbers", type=int, default=2000)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--output", default=str(Path(__file__).resolve().parent / "RESULTS.md"))
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()
    why = namespaces_unavailable()
    missing = servers_missing()
    if why is not None or missing:
        print(
            f"chaos: this machine cannot run the hosts: {why or 'missing ' + ', '.join(missing)}",
            file=sys.stderr,
        )
        return 2
    faults = [FAULTS[name] for name in args.faults.split(",") if name]
    started = dt.datetime.now(dt.UTC)
    tmp = Path(tempfile.mkdtemp(prefix="portal-chaos-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    outcomes: list[Outcome] = []
    try:
        cluster = cluster_start(tmp, latency_ms=args.latency_ms)
    except NamespacesUnavailable as exc:
        print(f"chaos: {exc}", file=sys.stderr)
        return 2
    try:
        # Warm-up, not reported: the first jobs after a start pay for connections and imports.
        scenario_run(cluster, None, index=99, numbers=WARM_UP_NUMBERS)
        baseline = scenario_run(cluster, None, index=0, numbers=args.numbers)
        outcomes.append(baseline)
        print(table(outcomes), flush=True)
        cut_host = ""
        cut_index = 0
        for index, fault in enumerate(faults, start=1):
            outcome = scenario_run(cluster, fault, index=index, numbers=args.numbers)
            outcome.baseline = baseline.seconds
            outcomes.append(outcome)
            if fault is FAULTS["kill"] and outcome.host:
                cluster.start_host_processes(outcome.host)  # as an operator would
                outcome.dead_processes = [
                    p for p in outcome.dead_processes if not p.endswith("@" + outcome.host)
                ]
            if fault is FAULTS["cut"]:
                cut_host, cut_index = outcome.host, index
            print(table(outcomes[-1:]).splitlines()[-1], flush=True)
        if cut_host:
            later = sum(o.by_host.get(cut_host, 0) for o in outcomes[cut_index + 1 :])
            cut = outcomes[cut_index]
            cut.notes.append(
                f"{cut_host} claimed {later} numbers of the jobs after it (it rejoined by itself)"
            )
            if later == 0 and cut_index < len(outcomes) - 1:
                cut.dead_processes.append(f"{cut_host} claimed nothing after it was back")
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        cluster_close(cluster)
    text = report(outcomes, args, started)
    Path(args.output).write_text(text)
    print("\n" + text)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs: {tmp}")
    return 0 if all(all(o.met().values()) for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
