"""A job accepted with 202 is never lost (docs/api.md#queued-answer): not when every qcluster
process is killed mid-job, and not when its queue messages are lost. The
database holds the work; leases and the sweeper bring it back."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest

from tests.support.harness import Stack, wait_until

pytestmark = pytest.mark.e2e

CAP = 10


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    # Leases expire after 8 s (the smallest the system checks allow with
    # MULTITEL_TIMEOUT 2 x 3 attempts), so that the sweeper can take back the
    # numbers of a killed worker within the test.
    s: Stack = make_stack(latency_ms=100, workers=("worker-a", "worker-b"), RESTORE_LEASE_SECONDS="8")
    s.create_tenant("rec", max_concurrency=CAP)
    return s


def _plain_numbers(start: int, count: int) -> list[str]:
    """Numbers the simulated Multitel restores on the first call (no fault tails, no 2 or 5)."""
    candidates = (str(15560000000 + start + i) for i in range(count * 3))
    return [n for n in candidates if not 90 <= int(n[-2:]) <= 97 and n[-1] not in "25"][:count]


def _submit(stack: Stack, numbers: list[str]) -> str:
    response = (
        stack.tenants["rec"]
        .session()
        .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _job_rows(stack: Stack, job_uuid: str) -> dict[str, Any]:
    """The job's numbers by status, straight from the database."""
    return dict(
        stack.query(
            "import json; from restores.models import NumberResult as R; "
            f"rows = R.objects.filter(job__uuid='{job_uuid}'); "
            "print(json.dumps({s: sorted(rows.filter(status=s).values_list('number', flat=True)) "
            "for s in ('pending', 'processing', 'success', 'failed')}))"
        )
    )


def _summary(stack: Stack, job_uuid: str, number: str) -> dict[str, Any]:
    """Status and live counts, with one result entry only: cheap enough to poll."""
    response = (
        stack.tenants["rec"]
        .session()
        .get(
            f"{stack.web_url}/v3/bulk_restore_status",
            params={"job_uuid": job_uuid, "number": number},
            timeout=10,
        )
    )
    return dict(response.json())


def _sweep_until_completed(stack: Stack, tenant_job: str, timeout: float) -> dict[str, Any]:
    """Run ``manage.py sweep --stale-after 0`` until the job completes."""
    session = stack.tenants["rec"].session()
    deadline = time.monotonic() + timeout
    sweeps: list[str] = []
    while time.monotonic() < deadline:
        sweeps.append(stack.manage("sweep", "--stale-after", "0").stdout.strip())
        body = session.get(
            f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": tenant_job}, timeout=10
        ).json()
        if body["status"] == "completed":
            return dict(body)
        time.sleep(1)
    raise AssertionError(f"job {tenant_job} did not complete after {len(sweeps)} sweeps: {sweeps[-3:]}")


def _assert_complete_and_consistent(status: dict[str, Any], numbers: list[str]) -> None:
    assert status["status"] == "completed"
    assert [r["number"] for r in status["results"]] == numbers
    assert all(r["status"] == "success" and r["attempts"] >= 1 for r in status["results"])
    assert status["success_count"] == sum(r["status"] == "success" for r in status["results"])
    assert status["failure_count"] == sum(r["status"] == "failed" for r in status["results"])
    assert (status["success_count"], status["failure_count"]) == (len(numbers), 0)


def test_it_finishes_a_job_whose_every_worker_was_killed_mid_job(stack: Stack) -> None:
    numbers = _plain_numbers(0, 300)
    job_uuid = _submit(stack, numbers)
    # Kill every qcluster (the whole process group: cluster, pusher, workers) once
    # some numbers are final and others are still to do, while calls are in flight.
    wait_until(
        lambda: (
            _summary(stack, job_uuid, numbers[0])["success_count"] >= 40
            and stack.fake_stats()["in_flight"].get("mt-rec", 0) > 0
        ),
        timeout=60,
        interval=0.05,
        what="progress with calls in flight",
    )
    groups = [stack.processes[name].pid for name in ("worker-a", "worker-b")]
    for name in ("worker-a", "worker-b"):
        stack.stop(name, signal.SIGKILL)
    # Every process of both clusters (sentinel, pusher, monitor, workers) is gone.
    wait_until(lambda: all(stack.group_gone(g) for g in groups), timeout=10, what="every qcluster process")
    at_kill = _job_rows(stack, job_uuid)
    leased_at_kill = set(at_kill["processing"])
    final_at_kill = set(at_kill["success"]) | set(at_kill["failed"])
    assert 40 <= len(final_at_kill) < len(numbers), at_kill
    # The test must exercise expired leases: numbers were in flight when the workers died.
    # Leased: at most one number in flight and one in line for each slot of the cap.
    assert 1 <= len(leased_at_kill) <= 2 * CAP, at_kill

    for name in ("worker-c", "worker-d"):
        stack.start_worker(name)
    status = _sweep_until_completed(stack, job_uuid, timeout=60)

    _assert_complete_and_consistent(status, numbers)
    # The numbers held by the dead workers were taken back and finished by the new ones.
    claimed_by = stack.query(
        "import json; from restores.models import NumberResult as R; "
        f"print(json.dumps(dict(R.objects.filter(job__uuid='{job_uuid}')"
        ".values_list('number', 'claimed_by'))))"
    )
    assert {claimed_by[n] for n in leased_at_kill} <= {"worker-c", "worker-d"}
    # Upstream: every number called exactly once, except those the kill left unrecorded
    # (in flight, or finished and not yet recorded: at most two per slot of the cap),
    # which may have been called a second time.
    calls = stack.fake_stats()["calls_by_number"]
    called_twice = {n for n in numbers if calls.get(n) == 2}
    assert all(calls.get(n) in (1, 2) for n in numbers), {n: calls.get(n) for n in numbers}
    assert called_twice <= leased_at_kill
    assert len(called_twice) <= 2 * CAP
    assert all(calls[n] == 1 for n in final_at_kill)


def test_it_finishes_a_job_whose_queue_messages_were_lost(stack: Stack) -> None:
    for name in [n for n in stack.processes if n.startswith("worker-")]:
        stack.stop(name, signal.SIGKILL)
    numbers = _plain_numbers(5000, 40)
    job_uuid = _submit(stack, numbers)

    # Lose every message of the stack's queue while no worker is running.
    queue_name = stack.env["Q_CLUSTER_NAME"]
    if "REDIS_URL" in stack.env:
        import redis

        connection = redis.Redis.from_url(stack.env["REDIS_URL"])
        key = f"django_q:{queue_name}:q"
        assert connection.llen(key) >= 1  # the job's wake-up calls were there
        assert connection.delete(key) == 1
        assert connection.llen(key) == 0
        connection.close()
    else:
        deleted = stack.query(
            "import json; from django_q.models import OrmQ; "
            f"print(json.dumps(OrmQ.objects.filter(key='{queue_name}').delete()[0]))"
        )
        assert deleted >= 1  # the job's wake-up calls were there
        assert stack.query("import json; from django_q.models import OrmQ; print(OrmQ.objects.count())") == 0

    # A worker that starts queues a recovery sweep: the job is woken up with no sweep by hand.
    stack.start_worker("worker-e")
    status = stack.wait_for_job(stack.tenants["rec"], job_uuid, timeout=60)
    _assert_complete_and_consistent(status, numbers)
    calls = stack.fake_stats()["calls_by_number"]
    assert {n: calls.get(n) for n in numbers} == dict.fromkeys(numbers, 1)
