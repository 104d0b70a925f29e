"""One tenant's slow webhook receivers cannot slow another tenant's restores.

Deliveries run on the webhook queue's own qcluster (``Q_QUEUE=webhooks``), so eight
receivers that drip their answers a byte a second hold webhook workers for up to
``WEBHOOK_TIMEOUT`` (the default, 10 s) each, and no worker that restores numbers.
Both clusters run with their default number of workers.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings

from tests.support import peers
from tests.support.harness import Stack, wait_until
from tests.support.numbers import plain_numbers

pytestmark = pytest.mark.e2e

LATENCY_MS = 300
CALM_NUMBERS = 50
HOSTILE_JOBS = 8


@pytest.fixture(scope="module")
def stack(make_stack: Any) -> Stack:
    s: Stack = make_stack(
        latency_ms=LATENCY_MS,
        workers=("restorer",),
        q_workers=None,  # the default
        webhook_workers=None,  # the default
        WEBHOOK_TIMEOUT=str(settings.WEBHOOK_TIMEOUT),  # the default, not the harness's short one
    )
    s.create_tenant("calm", max_concurrency=10)
    s.create_tenant("hostile", max_concurrency=10)
    return s


def _submit(stack: Stack, tenant: str, numbers: list[str], webhook_url: str | None = None) -> str:
    body: dict[str, Any] = {"numbers": numbers}
    if webhook_url:
        body["webhook_url"] = webhook_url
    response = stack.tenants[tenant].session().post(f"{stack.web_url}/v3/bulk_restore", json=body, timeout=30)
    assert response.status_code == 202, response.text
    return str(response.json()["job_uuid"])


def _time_to_complete(stack: Stack, tenant: str, numbers: list[str]) -> float:
    started = time.monotonic()
    job_uuid = _submit(stack, tenant, numbers)
    session = stack.tenants[tenant].session()

    def done() -> bool:
        body = session.get(
            f"{stack.web_url}/v3/bulk_restore_status", params={"job_uuid": job_uuid}, timeout=10
        ).json()
        return bool(body["status"] == "completed")

    wait_until(done, timeout=120, interval=0.05, what="the calm tenant's job")
    return time.monotonic() - started


def test_it_restores_another_tenants_job_at_full_speed_while_eight_receivers_drip(stack: Stack) -> None:
    numbers = plain_numbers(CALM_NUMBERS * 3)
    alone = _time_to_complete(stack, "calm", numbers[:CALM_NUMBERS])

    with peers.hostile_peer(peers.drip_body()) as receiver:
        hostile = [
            _submit(
                stack,
                "hostile",
                plain_numbers(11, start=15561240001 + i * 10_000),
                f"{receiver.url}/hook/{i}",
            )
            for i in range(HOSTILE_JOBS)
        ]
        # Every hostile job is restored and its webhook is being delivered, a byte a second.
        for job_uuid in hostile:
            stack.wait_for_job(stack.tenants["hostile"], job_uuid, timeout=60)
        wait_until(lambda: receiver.connections >= 4, timeout=30, what="deliveries to the dripping receivers")

        beside = _time_to_complete(stack, "calm", numbers[CALM_NUMBERS : 2 * CALM_NUMBERS])
        held = receiver.connections

    assert held >= 4  # the receivers were holding deliveries while the calm job ran
    assert beside <= alone * 1.2, (alone, beside)
