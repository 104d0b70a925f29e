"""Every worker busy with other tenants' big jobs: a small job still starts within a second.

With the default worker, slice, fanout and lease settings (only the upstream latency is
shortened): one qcluster of the default four workers, big jobs of one and then five
other tenants (four tasks each, so they hold every worker), and a small queued job of a
tenant whose cap has room. A task that sees another tenant's job waiting for a worker
ends its slice at once, and a task of a job that has had its turn goes to the back of
the queue while one waits.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.harness import ENGINE_SETTINGS, Stack, settings_env, wait_until
from tests.support.numbers import first_call_successes

pytestmark = pytest.mark.e2e

LATENCY_MS = 100
BIG = 3000
SMALL = 20
START_GOAL_SECONDS = 1.0
FINISH_GOAL_SECONDS = 1.0  # beyond the small job's own time, measured alone in the same run


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    defaults = settings_env(*ENGINE_SETTINGS)
    s: Stack = make_stack(latency_ms=LATENCY_MS, workers=("host",), q_workers=None, **defaults)
    for name in ("small", *(f"big{i}" for i in range(5))):
        s.create_tenant(name, max_concurrency=10)
    return s


def _numbers(start: int, count: int) -> list[str]:
    return first_call_successes(count, start=15590000000 + start)


def _submit(stack: Stack, tenant: str, numbers: list[str]) -> str:
    response = (
        stack.tenants[tenant]
        .session()
        .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _summary(stack: Stack, tenant: str, job_uuid: str, number: str) -> dict[str, Any]:
    """The job's counts and status, read through one number (a small answer, fast to poll)."""
    return dict(
        stack.tenants[tenant]
        .session()
        .get(
            f"{stack.web_url}/v3/bulk_restore_status",
            params={"job_uuid": job_uuid, "number": number},
            timeout=10,
        )
        .json()
    )


def _small_job(stack: Stack, offset: int) -> tuple[float, float]:
    """Submit the small job; return how long until it started and until it completed."""
    numbers = _numbers(offset, SMALL)
    posted = time.monotonic()
    job_uuid = _submit(stack, "small", numbers)
    started = wait_until(
        lambda: _summary(stack, "small", job_uuid, numbers[0])["status"] != "pending" and time.monotonic(),
        timeout=60,
        interval=0.02,
        what="the small job to start",
    )
    finished = wait_until(
        lambda: _summary(stack, "small", job_uuid, numbers[0])["status"] == "completed" and time.monotonic(),
        timeout=60,
        interval=0.02,
        what="the small job to complete",
    )
    return started - posted, finished - posted


def _start_big_jobs(stack: Stack, tenants: list[str]) -> None:
    """Submit a big job for each tenant; return once every one of them is under way."""
    jobs = []
    for i, tenant in enumerate(tenants):
        numbers = _numbers(100_000 * (i + 1), BIG)
        jobs.append((tenant, _submit(stack, tenant, numbers), numbers[0]))

    def under_way() -> bool:
        return all(_summary(stack, t, job, first)["success_count"] >= 20 for t, job, first in jobs)

    wait_until(under_way, timeout=60, interval=0.1, what="the big jobs to be under way")


def test_it_starts_a_small_job_at_once_behind_one_and_then_five_tenants_big_jobs(stack: Stack) -> None:
    _small_job(stack, offset=0)  # warm up
    _, alone = _small_job(stack, offset=1000)

    _start_big_jobs(stack, ["big0"])
    started_1, finished_1 = _small_job(stack, offset=2000)

    _start_big_jobs(stack, ["big1", "big2", "big3", "big4"])
    started_5, finished_5 = _small_job(stack, offset=3000)

    print(
        f"small job alone: {alone:.2f} s; behind one big job: started after {started_1:.2f} s, "
        f"done after {finished_1:.2f} s; behind five: started after {started_5:.2f} s, "
        f"done after {finished_5:.2f} s"
    )
    for started, finished in ((started_1, finished_1), (started_5, finished_5)):
        assert started <= START_GOAL_SECONDS
        assert finished <= alone + FINISH_GOAL_SECONDS
