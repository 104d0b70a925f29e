"""A big job does not hold the workers: tasks hand over after a time slice, so a
small job submitted behind it (of another tenant, or of the same one) is done
in seconds while the big job is still far from finished."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.harness import Stack, wait_until

pytestmark = pytest.mark.e2e

LATENCY_MS = 150
BIG = 3000
SMALL = 20
# At most 10 calls in flight for tenant A at 150 ms each: the big job needs at
# least 3000 / 10 * 0.15 = 45 s whatever the machine. A small job must be done
# well within that.
SMALL_JOB_BOUND_SECONDS = 15


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # One qcluster with two worker processes: the big job's four tasks
    # (RESTORE_JOB_FANOUT) are more than it can run at once, so a later job gets
    # a worker only because each task hands over after its time slice.
    s: Stack = make_stack(latency_ms=LATENCY_MS, workers=("fair",), RESTORE_JOB_FANOUT="4")
    s.create_tenant("alpha", max_concurrency=10)
    s.create_tenant("beta", max_concurrency=10)
    return s


@pytest.fixture(scope="module")
def big_job(stack: Stack) -> Iterator[tuple[str, str]]:
    """Tenant alpha's 3000-number job, running; its workers are killed at the end, unfinished."""
    numbers = _plain_numbers(0, BIG)
    job_uuid = _submit(stack, "alpha", numbers)
    wait_until(lambda: _progress(stack, "alpha", job_uuid, numbers[0])[1] >= 20, timeout=60, what="progress")
    yield job_uuid, numbers[0]
    stack.stop("fair")


def _plain_numbers(start: int, count: int) -> list[str]:
    """Numbers the simulated Multitel restores on the first call (no fault tails, no 2 or 5)."""
    candidates = (str(15580000000 + start + i) for i in range(count * 3))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97 and n[-1] not in "25"][:count]


def _submit(stack: Stack, tenant: str, numbers: list[str]) -> str:
    response = (
        stack.tenants[tenant]
        .session()
        .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _progress(stack: Stack, tenant: str, job_uuid: str, number: str) -> tuple[str, int]:
    """A job's status and how many of its numbers are final (one result entry fetched)."""
    body = (
        stack.tenants[tenant]
        .session()
        .get(
            f"{stack.web_url}/v3/bulk_restore_status",
            params={"job_uuid": job_uuid, "number": number},
            timeout=10,
        )
        .json()
    )
    return str(body["status"]), int(body["success_count"]) + int(body["failure_count"])


def _run_small_job(stack: Stack, tenant: str, start: int) -> tuple[float, dict[str, Any]]:
    numbers = _plain_numbers(start, SMALL)
    began = time.monotonic()
    job_uuid = _submit(stack, tenant, numbers)
    status = stack.wait_for_job(stack.tenants[tenant], job_uuid, timeout=60)
    elapsed = time.monotonic() - began
    assert [r["status"] for r in status["results"]] == ["success"] * SMALL
    assert (status["success_count"], status["failure_count"]) == (SMALL, 0)
    return elapsed, status


def test_it_finishes_another_tenants_small_job_while_a_big_job_runs(
    stack: Stack, big_job: tuple[str, str]
) -> None:
    big_uuid, big_first = big_job

    elapsed, _ = _run_small_job(stack, "beta", 100_000)

    assert elapsed < SMALL_JOB_BOUND_SECONDS
    big_status, big_done = _progress(stack, "alpha", big_uuid, big_first)
    assert big_status == "processing"
    assert big_done < BIG - 1000, big_done


def test_it_interleaves_a_small_job_with_a_big_job_of_the_same_tenant(
    stack: Stack, big_job: tuple[str, str]
) -> None:
    big_uuid, big_first = big_job

    elapsed, _ = _run_small_job(stack, "alpha", 200_000)

    assert elapsed < SMALL_JOB_BOUND_SECONDS
    big_status, big_done = _progress(stack, "alpha", big_uuid, big_first)
    assert big_status == "processing"
    assert big_done < BIG - 1000, big_done
