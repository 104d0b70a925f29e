"""Under load, nothing is lost, doubled or miscounted.

80 concurrent clients of two tenants submit a mix of synchronous (at most 10
numbers) and queued (11 to 40 numbers) jobs to gunicorn, served by two qcluster
processes, then poll each job until it is completed. Every number's outcome is
known in advance (the simulated Multitel decides by the number's last digits),
so the test checks every result, the live counts, the rows in the database, and
how often Multitel was called for each number: once, or as many times as a
retryable answer demands by design.

Stack settings: ``API_THROTTLE_RATE`` is raised to 100000/min for this stack,
because 40 clients of one tenant submitting and polling make several thousand
requests a minute, beyond the default 600/min; the throttle still runs on
every request but never answers 429 here. Latency is 20 ms per upstream call.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.support.harness import Stack, Tenant

pytestmark = pytest.mark.e2e

CLIENTS = 80  # half per tenant; half of each tenant's clients submit a synchronous job
JOBS_PER_CLIENT = 1
CAP = 10
MAX_ATTEMPTS = 3  # MULTITEL_MAX_ATTEMPTS (default)
# For every job of every client to be completed, from the first submission: a bound for a
# loaded machine; a quiet one needs a fraction of it (the test prints how long it took).
DEADLINE_SECONDS = 90
TENANTS = ("load-one", "load-two")
POLL_SECONDS = 1.0
ASYNC_MAX = 40
SYNC_MAX = 10  # SYNC_MAX_NUMBERS (default)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    s: Stack = make_stack(
        latency_ms=20,
        workers=("load-a", "load-b"),
        # 40 request threads: half the clients are served at once, the rest wait in
        # gunicorn's backlog. Each thread keeps a database connection, so more would
        # crowd a shared PostgreSQL server (max_connections 100 by default).
        web_workers=2,
        web_threads=20,
        q_workers=4,
        API_THROTTLE_RATE="100000/min",
        RESTORE_BATCH_SIZE="10",
        RESTORE_TASK_SLICE_SECONDS="1",
    )
    for name in TENANTS:
        s.create_tenant(name, max_concurrency=CAP)
    return s


def calls_expected(number: str, calls: int, *, queued: bool) -> bool:
    """Whether ``calls`` upstream calls are what the number's answers demand. A queued number
    never answered (..90) gets a second round of attempts before it fails, and one more
    round (whole or cut short) for every time the tenant's breaker held it back meanwhile (the
    503s of many such
    numbers at once look like an outage and may open it)."""
    expected = expected_outcome(number)[2]
    if queued and number.endswith("90"):
        # A round cut short by the open breaker counts its calls too: only the round that fails
        # is whole, after at least one more.
        return calls >= 2 * MAX_ATTEMPTS
    return calls == expected


def expected_outcome(number: str) -> tuple[str, int, int]:
    """(status, status_code, upstream calls) for a number, from the simulated Multitel's rules;
    the calls of a queued job's ..90 number are checked by ``calls_expected``."""
    tail2, tail1 = number[-2:], number[-1:]
    by_tail2 = {
        "90": ("failed", 503, MAX_ATTEMPTS),  # 503 on every call: retried, then failed
        "91": ("success", 200, 2),  # 503 once, then success
        "92": ("success", 200, 2),  # 429 with Retry-After: 1 once, then success
        "93": ("failed", 502, 1),  # HTML with 200
        "94": ("failed", 502, 1),  # empty body
        "96": ("failed", 502, 1),  # truncated JSON
        "97": ("failed", 500, 1),  # HTML with 500
    }
    if tail2 in by_tail2:
        return by_tail2[tail2]
    if tail1 == "2":
        return ("failed", 500, 1)
    if tail1 == "5":
        return ("failed", 404, 1)
    return ("success", 200, 1)


@dataclass
class Submission:
    tenant: str
    numbers: list[str]  # as sent, possibly with a repeated number
    unique: list[str]
    http_status: int = 0
    body: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _plan(client: int, rng: random.Random) -> list[Submission]:
    """This client's jobs: synchronous and queued, on numbers no other job uses."""
    tenant = TENANTS[client % 2]
    jobs = []
    for j in range(JOBS_PER_CLIENT):
        synchronous = (client // 2 + j) % 2 == 0
        size = rng.randint(1, 10) if synchronous else rng.randint(11, ASYNC_MAX)
        if client in (0, 2):  # the edges: 10 numbers and a repeat (synchronous), 11 numbers (queued)
            size = 10 if synchronous else 11
        base = 15610000000 + client * 100_000 + j * 1000
        # Any tail but ..95, which hangs for seconds on every attempt and tells nothing more here.
        offsets = rng.sample([k for k in range(1000) if k % 100 != 95], size)
        unique = [str(base + k) for k in offsets]
        repeat = client == 0 or rng.random() < 0.2
        numbers = [*unique, unique[0]] if repeat else list(unique)  # a repeat counts once
        jobs.append(Submission(tenant=tenant, numbers=numbers, unique=unique))
    return jobs


def _run_client(stack: Stack, tenant: Tenant, jobs: list[Submission], start: threading.Barrier) -> None:
    session = tenant.session()
    start.wait()
    deadline = time.monotonic() + DEADLINE_SECONDS
    for job in jobs:
        try:
            response = session.post(
                f"{stack.web_url}/v3/bulk_restore", json={"numbers": job.numbers}, timeout=60
            )
            job.http_status, job.body = response.status_code, response.json()
        except (requests.RequestException, ValueError) as exc:
            job.error = f"submit: {exc!r}"
    for job in jobs:
        if job.error or job.http_status not in (200, 202):
            continue
        # Poll like a tenant would, cheaply (one result entry), then read the whole job once
        # it is completed (a synchronous job is stored and can be polled too).
        job_uuid = job.body["job_uuid"]
        try:
            while True:
                summary = session.get(
                    f"{stack.web_url}/v3/bulk_restore_status",
                    params={"job_uuid": job_uuid, "number": job.unique[0]},
                    timeout=30,
                ).json()
                if summary.get("status") in ("completed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    job.error = f"not completed within {DEADLINE_SECONDS}s: {summary}"
                    break
                time.sleep(POLL_SECONDS)  # a client's polling interval, not a wait for a condition
            job.final = session.get(
                f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=30
            ).json()
        except (requests.RequestException, ValueError) as exc:
            job.error = f"poll: {exc!r}"


def _check_job(job: Submission) -> list[str]:
    """What is wrong with one job, as seen by its client."""
    problems: list[str] = []
    expected_code = 200 if len(job.unique) <= SYNC_MAX else 202
    if job.error or job.http_status != expected_code:
        return [f"{job.tenant} {len(job.unique)} numbers: HTTP {job.http_status} {job.error} {job.body}"]
    bodies = [job.final] + ([job.body] if expected_code == 200 else [])
    for body in bodies:
        uuid = body["job_uuid"]
        results = body["results"]
        if body["status"] != "completed":
            problems.append(f"{uuid}: status {body['status']}")
        if body["total_numbers"] != len(job.unique) or [r["number"] for r in results] != job.unique:
            problems.append(f"{uuid}: numbers {[r['number'] for r in results]} != {job.unique}")
            continue
        successes = sum(r["status"] == "success" for r in results)
        failures = sum(r["status"] == "failed" for r in results)
        if (body["success_count"], body["failure_count"]) != (successes, failures) or (
            successes + failures != len(job.unique)
        ):
            problems.append(
                f"{uuid}: counts {body['success_count']}+{body['failure_count']} "
                f"vs results {successes}+{failures} of {len(job.unique)}"
            )
        for r in results:
            status, code, calls = expected_outcome(r["number"])
            seen = (r["status"], r["status_code"], r.get("attempts", calls))
            if seen[:2] != (status, code) or not calls_expected(
                r["number"], seen[2], queued=expected_code == 202
            ):
                problems.append(f"{uuid}: {r['number']} gave {seen}, expected {(status, code, calls)}: {r}")
    return problems


def _database_facts(stack: Stack) -> dict[str, Any]:
    return dict(
        stack.query(
            "import json; from django.db.models import Count, Q, F; "
            "from restores.models import Job, NumberResult as R, UpstreamAttempt as A; "
            "jobs = Job.objects.annotate("
            "s=Count('results', filter=Q(results__status='success')), "
            "f=Count('results', filter=Q(results__status='failed')), n=Count('results')); "
            "print(json.dumps({"
            "'jobs': list(Job.objects.values_list('uuid', flat=True).order_by('pk')), "
            "'results': R.objects.count(), "
            "'not_final': R.objects.exclude(status__in=['success', 'failed']).count(), "
            "'duplicate_numbers': list(R.objects.values('job_id', 'number').annotate(c=Count('id'))"
            ".filter(c__gt=1).values_list('number', flat=True)), "
            "'duplicate_positions': R.objects.values('job_id', 'position').annotate(c=Count('id'))"
            ".filter(c__gt=1).count(), "
            "'counters_off': [str(u) for u in jobs.exclude(success_count=F('s'), failure_count=F('f'), "
            "total_numbers=F('n')).values_list('uuid', flat=True)], "
            "'attempts_by_number': dict(A.objects.values_list('result__number').annotate(c=Count('id'))), "
            "}, default=str))"
        )
    )


def test_it_completes_every_job_of_80_concurrent_clients_exactly_once(stack: Stack) -> None:
    rng = random.Random(20251028)
    plans = [_plan(client, rng) for client in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [
            pool.submit(_run_client, stack, stack.tenants[jobs[0].tenant], jobs, start) for jobs in plans
        ]
        for future in futures:
            future.result()
    elapsed = time.monotonic() - began
    jobs = [job for plan in plans for job in plan]
    print(f"{len(jobs)} jobs, {sum(len(j.unique) for j in jobs)} numbers in {elapsed:.1f}s")

    # Every job was accepted (200 or 202, never 429 or 5xx), completed, and is right.
    problems = [problem for job in jobs for problem in _check_job(job)]
    assert not problems, f"{len(problems)} problems, first ones: {problems[:10]}"
    kinds = Counter((job.tenant, job.http_status) for job in jobs)
    assert kinds == {(t, s): CLIENTS * JOBS_PER_CLIENT // 4 for t in TENANTS for s in (200, 202)}, kinds

    # The database holds exactly these jobs, each number once, counters equal to the rows.
    facts = _database_facts(stack)
    assert sorted(facts["jobs"]) == sorted(job.body["job_uuid"] for job in jobs)
    assert facts["results"] == sum(len(job.unique) for job in jobs)
    assert facts["not_final"] == 0
    assert facts["duplicate_numbers"] == [] and facts["duplicate_positions"] == 0
    assert facts["counters_off"] == []

    # Upstream: each number called once, or as often as its retryable answers demand;
    # every call recorded as an attempt; no tenant above its cap.
    stats = stack.fake_stats()
    calls = stats["calls_by_number"]
    queued = {n: len(job.unique) > SYNC_MAX for job in jobs for n in job.unique}
    assert set(calls) == set(queued)
    assert [n for n, c in calls.items() if not calls_expected(n, c, queued=queued[n])] == []
    assert facts["attempts_by_number"] == calls
    assert stats["rejected_auth"] == 0
    for name in TENANTS:
        assert stats["max_in_flight"][f"mt-{name}"] <= CAP
