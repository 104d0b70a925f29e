"""Multitel down for 20 s in the middle of a job: the breaker holds the work back, nothing fails.

Runs with the default breaker, retry, lease, slice and sweep settings; only the upstream
latency is shortened. The simulated Multitel answers every restore with 503 while its
outage lasts (``POST /_fake/outage``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from django.conf import settings

from tests.support.harness import Stack, settings_env, wait_until
from tests.support.numbers import first_call_successes

pytestmark = pytest.mark.e2e

CAP = 10
NUMBERS = 400
LATENCY_MS = 100
OUTAGE_SECONDS = 20
DEFAULTS = (
    "UPSTREAM_BREAKER_FAILURES",
    "UPSTREAM_BREAKER_COOLDOWN",
    "UPSTREAM_BREAKER_COOLDOWN_MAX",
    "UPSTREAM_OUTAGE_MAX",
    "MULTITEL_MAX_ATTEMPTS",
    "MULTITEL_BACKOFF_BASE",
    "MULTITEL_BACKOFF_MAX",
    "MULTITEL_TIMEOUT",
    "RESTORE_LEASE_SECONDS",
    "RESTORE_TASK_SLICE_SECONDS",
    "RESTORE_BATCH_SIZE",
    "RESTORE_STALE_SECONDS",
)


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    defaults = settings_env(*DEFAULTS)
    s: Stack = make_stack(latency_ms=LATENCY_MS, workers=("worker",), q_workers=None, **defaults)
    s.create_tenant("outage", max_concurrency=CAP)
    return s


def _numbers(count: int, offset: int = 0) -> list[str]:
    """Numbers the simulated Multitel restores at the first call."""
    return first_call_successes(count, start=15580000000 + offset)


def _status(stack: Stack, job_uuid: str) -> dict[str, Any]:
    response = (
        stack.tenants["outage"]
        .session()
        .get(f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _breaker_states(stack: Stack) -> list[str]:
    return list(
        stack.query(
            "import json; from restores.models import BreakerEvent; "
            "print(json.dumps(list(BreakerEvent.objects.filter(tenant__name='outage')"
            ".order_by('at', 'id').values_list('state', flat=True))))"
        )
    )


def test_it_rides_out_a_twenty_second_outage_without_failing_a_number(stack: Stack) -> None:
    numbers = _numbers(NUMBERS)
    session = stack.tenants["outage"].session()
    response = session.post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": numbers}, timeout=30)
    assert response.status_code == 202, response.text
    job_uuid = str(response.json()["job_uuid"])
    wait_until(
        lambda: _status(stack, job_uuid)["success_count"] >= 100,
        timeout=60,
        interval=0.05,
        what="the job to be under way",
    )

    requests.post(f"{stack.multitel_url}/_fake/outage", json={"seconds": OUTAGE_SECONDS}, timeout=5)
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    wait_until(lambda: "open" in _breaker_states(stack), timeout=10, what="the breaker to open")

    # A synchronous request meeting the open breaker is answered at once, with 503 results.
    sync_numbers = _numbers(5, offset=900_000)
    started = time.monotonic()
    sync = session.post(f"{stack.web_url}/v3/bulk_restore", json={"numbers": sync_numbers}, timeout=30)
    answered_in = time.monotonic() - started
    assert sync.status_code == 200, sync.text
    assert answered_in < 2.0, answered_in
    assert {r["status_code"] for r in sync.json()["results"]} == {503}
    assert all("circuit breaker is open" in r["message"] for r in sync.json()["results"])

    # While Multitel is down the queued job waits: nothing of it fails.
    during = _status(stack, job_uuid)
    assert during["status"] == "processing"
    assert during["failure_count"] == 0

    status = wait_until(
        lambda: (s := _status(stack, job_uuid))["status"] == "completed" and s,
        timeout=OUTAGE_SECONDS + 90,
        interval=0.2,
        what="the job to complete",
    )
    done_after_outage = time.monotonic() - outage_ends
    stats = stack.fake_stats()
    print(
        f"completed {done_after_outage:.1f} s after the outage ended; "
        f"{stats['calls_total']} upstream calls, {stats['outage_calls']} during the outage; "
        f"breaker: {' -> '.join(_breaker_states(stack))}"
    )
    assert (status["success_count"], status["failure_count"]) == (NUMBERS, 0)
    assert [r["status"] for r in status["results"]] == ["success"] * NUMBERS
    # The breaker opened at the burst, probed with one number at a time, and closed.
    states = _breaker_states(stack)
    assert states[0] == "open" and states[-1] == "closed", states
    assert set(states) == {"open", "half_open", "closed"}, states
    # Calls during the outage: the burst that opened it (the calls in flight) and the probes,
    # not three attempts for every number the outage would have reached.
    assert stats["outage_calls"] <= 3 * CAP + 3 * states.count("half_open"), stats["outage_calls"]
    # Back within the longest cooldown of the outage's end, plus the rest of the work.
    assert done_after_outage <= settings.UPSTREAM_BREAKER_COOLDOWN_MAX + 15, done_after_outage
    assert max(stats["max_in_flight"].values()) <= CAP
