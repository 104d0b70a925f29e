"""Big jobs of several tenants share the throughput in proportion to their caps.

With the default worker, slice, fanout and lease settings (only the upstream latency is
shortened): one qcluster of the default four workers, and big jobs of tenants whose caps
are 10, 10 and 20 submitted together, more work than the four workers' slices can hold at
once. While every job is under way, each tenant's numbers per second, over their caps,
must be within 20 % of one another: a task that waits for a slot its tenant's cap has no
room for hands its worker over to a tenant with room, rather than holding it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support.harness import ENGINE_SETTINGS, Stack, settings_env, wait_until
from tests.support.numbers import first_call_successes

pytestmark = pytest.mark.e2e

LATENCY_MS = 100
CAPS = {"ten-a": 10, "ten-b": 10, "twenty": 20}
# Numbers per job: at the caps' full rate (400/s together) the jobs last at least 25 s,
# more than two slices, before the first of them (the cap of 20) could finish.
BIG = 6000
MEASURE_SECONDS = 20.0
SHARE_TOLERANCE = 0.20


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    defaults = settings_env(*ENGINE_SETTINGS)
    s: Stack = make_stack(latency_ms=LATENCY_MS, workers=("host",), q_workers=None, **defaults)
    for name, cap in CAPS.items():
        s.create_tenant(name, max_concurrency=cap)
    return s


def _numbers(start: int, count: int) -> list[str]:
    return first_call_successes(count, start=15600000000 + start)


def _done(stack: Stack, tenant: str, job_uuid: str, number: str) -> int:
    """Numbers of the job that are final, read through one number (a small answer)."""
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
    assert body["status"] != "completed", f"{tenant}'s job completed inside the measurement"
    return int(body["success_count"]) + int(body["failure_count"])


def test_it_shares_the_throughput_of_big_jobs_in_proportion_to_the_caps(stack: Stack) -> None:
    jobs = {}
    for i, tenant in enumerate(CAPS):
        numbers = _numbers(100_000 * (i + 1), BIG)
        response = (
            stack.tenants[tenant]
            .session()
            .post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
        )
        assert response.status_code == 202, response.text
        jobs[tenant] = (str(response.json()["job_uuid"]), numbers[0])

    def counts() -> dict[str, int]:
        return {tenant: _done(stack, tenant, job, first) for tenant, (job, first) in jobs.items()}

    wait_until(lambda: all(counts().values()), timeout=30, interval=0.1, what="every job under way")
    before, started = counts(), time.monotonic()
    time.sleep(MEASURE_SECONDS)
    after, elapsed = counts(), time.monotonic() - started

    rates = {tenant: (after[tenant] - before[tenant]) / elapsed for tenant in CAPS}
    per_slot = {tenant: rates[tenant] / cap for tenant, cap in CAPS.items()}
    print(
        "numbers per second: "
        + ", ".join(f"{t} (cap {CAPS[t]}) {rates[t]:.0f}, {per_slot[t]:.2f} per slot" for t in CAPS)
    )
    assert min(per_slot.values()) >= (1 - SHARE_TOLERANCE) * max(per_slot.values()), per_slot
