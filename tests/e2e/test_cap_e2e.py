"""A tenant's ``max_concurrency`` bounds its upstream calls in flight across every
qcluster process and web process (docs/api.md#upstream), measured where it
matters: at the simulated Multitel, per Multitel username."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.harness import Stack, wait_until

pytestmark = pytest.mark.e2e

CAP = 4


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # One task at a time per qcluster (which then holds one task, not a backlog), each with
    # at most 3 calls in flight: neither process can fill the cap of 4 alone, so both always
    # find room and work at once, and together they could exceed the cap (6) but for it.
    s: Stack = make_stack(latency_ms=100, workers=("cap-a", "cap-b"), q_workers=1, RESTORE_BATCH_SIZE="3")
    s.create_tenant("capped", max_concurrency=CAP)
    s.create_tenant("mixed", max_concurrency=CAP)
    return s


def _plain_numbers(start: int, count: int) -> list[str]:
    """Numbers the simulated Multitel restores on the first call (no fault tails, no 2 or 5)."""
    candidates = (str(15570000000 + start + i) for i in range(count * 3))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97 and n[-1] not in "25"][:count]


def _submit_async(stack: Stack, tenant: str, numbers: list[str]) -> str:
    response = (
        stack.tenants[tenant]
        .session()
        .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _done(stack: Stack, tenant: str, job_uuid: str, number: str) -> int:
    """Final numbers of a job so far (the status endpoint with one result entry)."""
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
    return int(body["success_count"]) + int(body["failure_count"])


def _claimed_by(stack: Stack, job_uuid: str) -> list[str]:
    return list(
        stack.query(
            "import json; from restores.models import NumberResult as R; "
            f"print(json.dumps(sorted(set(R.objects.filter(job__uuid='{job_uuid}')"
            ".values_list('claimed_by', flat=True)))))"
        )
    )


def _assert_all_restored_once(stack: Stack, status: dict[str, Any], numbers: list[str]) -> None:
    assert status["status"] == "completed"
    assert [r["number"] for r in status["results"]] == numbers
    assert all(r["status"] == "success" for r in status["results"])
    assert (status["success_count"], status["failure_count"]) == (len(numbers), 0)
    calls = stack.fake_stats()["calls_by_number"]
    assert {n: calls.get(n) for n in numbers} == dict.fromkeys(numbers, 1)


def test_it_keeps_a_tenants_calls_in_flight_within_its_cap_across_two_qclusters(stack: Stack) -> None:
    numbers = _plain_numbers(0, 120)
    job_uuid = _submit_async(stack, "capped", numbers)

    status = stack.wait_for_job(stack.tenants["capped"], job_uuid, timeout=120)

    _assert_all_restored_once(stack, status, numbers)
    # Both processes worked on the job, and together never had more than the cap in flight
    # upstream, while using it.
    assert _claimed_by(stack, job_uuid) == ["cap-a", "cap-b"]
    peak = stack.fake_stats()["max_in_flight"]["mt-capped"]
    assert CAP - 1 <= peak <= CAP


def test_it_shares_the_cap_between_synchronous_requests_and_queued_jobs(stack: Stack) -> None:
    tenant = stack.tenants["mixed"]
    numbers = _plain_numbers(10_000, 200)
    job_uuid = _submit_async(stack, "mixed", numbers)
    wait_until(lambda: _done(stack, "mixed", job_uuid, numbers[0]) >= CAP, timeout=60, what="progress")
    sync_batches = [_plain_numbers(20_000 + 100 * i, 8) for i in range(4)]

    def restore_now(batch: list[str]) -> Any:
        return tenant.session().post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": batch}, timeout=60)

    # Four synchronous requests (eight numbers each, on two gunicorn workers)
    # while the queued job of the same tenant runs on two qclusters.
    with ThreadPoolExecutor(max_workers=len(sync_batches)) as pool:
        responses = list(pool.map(restore_now, sync_batches))
    # The queued job was running all along (at cap 4 and 100 ms, its 200 numbers take 5 s or more).
    done_after_sync = _done(stack, "mixed", job_uuid, numbers[0])
    assert done_after_sync < len(numbers)
    status = stack.wait_for_job(tenant, job_uuid, timeout=120)

    for batch, response in zip(sync_batches, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["status"] for r in body["results"]] == ["success"] * len(batch), body
    _assert_all_restored_once(stack, status, numbers)
    calls = stack.fake_stats()["calls_by_number"]
    assert all(calls.get(n) == 1 for batch in sync_batches for n in batch)
    peak = stack.fake_stats()["max_in_flight"]["mt-mixed"]
    assert CAP - 1 <= peak <= CAP
