"""Per-tenant throttling and slowing down credential guessing (docs/api.md#throttling)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.throttling import Rate, parse_rate
from restores.models import Job
from tests.support.parties import Party, api_client

STATUS = "/v3/bulk_restore_status"


def _address() -> str:
    """A client address of this test's own, so counters never carry over between tests."""
    return f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"


def test_it_parses_rates() -> None:
    assert parse_rate("600/min") == Rate(600, 60)
    assert parse_rate("5/s") == Rate(5, 1)
    assert parse_rate("100/hour") == Rate(100, 3600)
    assert parse_rate("off") is None


def test_it_throttles_a_tenant_over_its_rate_with_429_and_retry_after(
    owner: Party, second: Party, settings: Any
) -> None:
    settings.API_THROTTLE_RATE = "3/min"
    params = {"job_uuid": str(uuid.uuid4())}

    answers = [owner.client.get(STATUS, params).status_code for _ in range(3)]
    over = owner.client.get(STATUS, params)
    others = second.client.get(STATUS, params)

    assert answers == [404, 404, 404]
    assert over.status_code == 429
    assert over.json()["error"] == "throttled"
    assert 1 <= int(over["Retry-After"]) <= 60
    assert others.status_code == 404  # another tenant has its own allowance


def test_it_counts_every_credential_of_a_tenant_together(owner: Party, settings: Any) -> None:
    from accounts.services import api_credential_create

    assert owner.tenant is not None
    settings.API_THROTTLE_RATE = "2/min"
    issued = api_credential_create(tenant=owner.tenant)
    other_key = api_client(issued.credential.username, issued.secret)
    params = {"job_uuid": str(uuid.uuid4())}

    owner.client.get(STATUS, params)
    other_key.get(STATUS, params)

    assert other_key.get(STATUS, params).status_code == 429


def test_it_stores_nothing_for_a_throttled_submission(owner: Party, settings: Any) -> None:
    settings.API_THROTTLE_RATE = "1/min"
    owner.client.get(STATUS, {"job_uuid": str(uuid.uuid4())})

    response = owner.client.post("/v3/bulk_restore", {"numbers": ["15551230111"]}, format="json")

    assert response.status_code == 429
    assert Job.objects.count() == 0


def test_it_slows_down_guessing_of_api_credentials(owner: Party, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "5/min"
    address = _address()
    from rest_framework.test import APIClient

    guesser = APIClient(REMOTE_ADDR=address)
    guesser.credentials(HTTP_AUTHORIZATION="Basic b3duZXItYXBpOndyb25n")  # owner-api:wrong
    params = {"job_uuid": str(uuid.uuid4())}

    failures = [guesser.get(STATUS, params).status_code for _ in range(5)]
    blocked = guesser.get(STATUS, params)
    # Even the right secret is refused from that address until the window ends...
    right = APIClient(REMOTE_ADDR=address)
    right.credentials(HTTP_AUTHORIZATION=owner.client._credentials["HTTP_AUTHORIZATION"])
    # ...while the tenant's own system, elsewhere, is unaffected.
    elsewhere = owner.client.get(STATUS, params, REMOTE_ADDR=_address())

    assert failures == [401] * 5
    assert blocked.status_code == 429
    assert blocked.json()["error"] == "throttled"
    assert int(blocked["Retry-After"]) >= 1
    assert right.get(STATUS, params).status_code == 429
    assert elsewhere.status_code == 404


@pytest.mark.django_db
def test_it_does_not_count_successful_logins_as_failures(owner: Party, settings: Any) -> None:
    settings.AUTH_FAILURE_RATE = "2/min"
    params = {"job_uuid": str(uuid.uuid4())}
    address = _address()

    statuses = [owner.client.get(STATUS, params, REMOTE_ADDR=address).status_code for _ in range(5)]

    assert statuses == [404] * 5
