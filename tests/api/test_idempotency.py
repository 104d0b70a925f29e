"""Idempotency-Key on POST /v3/bulk_restore (docs/api.md#idempotency)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from restores import services
from restores.api import _fingerprint, _submission_fields
from restores.models import IdempotencyKey, Job
from tests.support.parties import Party
from tests.support.queue import Task

pytestmark = pytest.mark.django_db

QUEUED = {"numbers": [str(15551250001 + i * 100) for i in range(12)]}


@pytest.fixture(autouse=True)
def no_broker(enqueued: list[Task]) -> None:
    """Tasks are recorded (``enqueued``), not sent to a broker."""


def _post(party: Party, body: dict[str, Any], key: str | None) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return party.client.post("/v3/bulk_restore", body, format="json", **headers)


def test_it_answers_the_same_key_and_body_with_the_original_answer_and_no_new_job(owner: Party) -> None:
    first = _post(owner, QUEUED, "key-1")
    again = _post(owner, QUEUED, "key-1")

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1


def test_it_replays_a_synchronous_answer_too(owner: Party, fake_multitel: Any) -> None:
    body = {"numbers": ["15551230111", "15551230112"]}
    first = _post(owner, body, "sync-key")
    again = _post(owner, body, "sync-key")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert sum(fake_multitel.state.calls_by_number.values()) == 2  # restored once


def test_it_refuses_the_same_key_with_a_different_body_with_422(owner: Party) -> None:
    _post(owner, QUEUED, "key-2")
    other = _post(owner, {"numbers": QUEUED["numbers"][:11]}, "key-2")

    assert other.status_code == 422
    assert other.json()["error"] == "idempotency_key_reused"
    assert Job.objects.count() == 1


def test_it_refuses_a_key_still_being_answered_with_409(owner: Party) -> None:
    assert owner.tenant is not None
    fingerprint = _fingerprint(_submission_fields(QUEUED))
    decision = services.idempotency_key_begin(tenant=owner.tenant, key="busy", request_hash=fingerprint)
    assert decision.record is not None

    response = _post(owner, QUEUED, "busy")

    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_key_in_use"
    assert Job.objects.count() == 0


def test_it_keeps_keys_apart_per_tenant(owner: Party, second: Party) -> None:
    a = _post(owner, QUEUED, "shared-key")
    b = _post(second, QUEUED, "shared-key")

    assert a.status_code == b.status_code == 202
    assert a.json()["job_uuid"] != b.json()["job_uuid"]
    assert Job.objects.count() == 2


def test_it_forgets_a_key_after_24_hours(owner: Party) -> None:
    first = _post(owner, QUEUED, "old-key")
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = _post(owner, QUEUED, "old-key")

    assert again.status_code == 202
    assert again.json()["job_uuid"] != first.json()["job_uuid"]


def test_it_does_not_remember_a_rejected_request(owner: Party) -> None:
    bad = _post(owner, {"numbers": ["not-a-number"]}, "fix-me")
    fixed = _post(owner, {"numbers": ["not-a-number"]}, "fix-me")
    corrected = _post(owner, QUEUED, "fix-me")

    assert bad.status_code == fixed.status_code == 400
    assert corrected.status_code == 202
    assert IdempotencyKey.objects.get(key="fix-me").state == IdempotencyKey.State.COMPLETED


def test_it_takes_over_a_key_left_in_progress_by_a_request_that_died(owner: Party) -> None:
    assert owner.tenant is not None
    services.idempotency_key_begin(tenant=owner.tenant, key="orphan", request_hash="x")
    IdempotencyKey.objects.update(locked_until=timezone.now() - timedelta(seconds=1))

    response = _post(owner, QUEUED, "orphan")

    assert response.status_code == 202


@pytest.mark.parametrize(
    ("header", "stored"),
    [
        ('"quoted-key"', "quoted-key"),
        ('"with \\"escaped\\" quote"', 'with "escaped" quote'),
        ("plain", "plain"),
    ],
)
def test_it_accepts_tokens_and_structured_field_strings(owner: Party, header: str, stored: str) -> None:
    assert _post(owner, QUEUED, header).status_code == 202
    assert IdempotencyKey.objects.filter(key=stored).exists()


@pytest.mark.parametrize("header", ["", '""', "x" * 256, "tab\there", "é"])
def test_it_rejects_a_malformed_key_and_stores_nothing(owner: Party, header: str) -> None:
    response = _post(owner, QUEUED, header)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_idempotency_key"
    assert Job.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_it_makes_exactly_one_job_from_two_identical_requests_racing(owner: Party) -> None:
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        from django.db import connection

        barrier.wait()
        try:
            statuses.append(_post(owner, QUEUED, "race").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert Job.objects.count() == 1
    assert sorted(statuses).count(202) >= 1
    assert set(statuses) <= {202, 409}
